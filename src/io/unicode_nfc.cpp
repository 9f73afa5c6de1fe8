// NFC in segments: the text is cut before every code point that nothing
// before it can reorder with or compose with (a "boundary": class 0, not the
// second half of any composition, and decomposing, if at all, to such a code
// point first). A segment that is one code point which NFC keeps (ASCII, most
// letters, precomposed letters, Hangul syllables) is copied; any other is
// decomposed, put in canonical order and composed again.
#include "io/unicode_nfc.h"

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/check.h"
#include "io/unicode_nfc_tables.h"

namespace longctx::unicode {
namespace {

// Hangul syllables compose from and decompose to conjoining jamo arithmetically.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

bool is_syllable(uint32_t cp) { return cp >= kSBase && cp < kSBase + kSCount; }

enum Kind : uint8_t {
  kBoundary = 1,  // a segment starts here
  kStable = 2,    // NFC keeps it as it is when it stands alone
  kDecomposes = 4,
};

class Props {
 public:
  explicit Props(NfcData data);

  uint8_t ccc(uint32_t cp) const {
    if (cp < 0x10000) return ccc_bmp_[cp];
    auto it = supp_.find(cp);
    return it == supp_.end() ? 0 : it->second.ccc;
  }
  uint8_t kind(uint32_t cp) const {
    if (cp < 0x10000) return kind_bmp_[cp];
    auto it = supp_.find(cp);
    return it == supp_.end() ? kBoundary | kStable : it->second.kind;
  }
  void normalize(std::string_view seg, std::string& out) const;

 private:
  struct Info {
    uint8_t ccc = 0, kind = kBoundary | kStable;
  };
  void decompose(uint32_t cp, std::vector<uint32_t>& out) const;
  uint32_t compose(uint32_t a, uint32_t b) const;  // 0: none
  static uint64_t key(uint32_t a, uint32_t b) { return uint64_t(a) << 32 | b; }

  std::vector<uint8_t> ccc_bmp_, kind_bmp_;
  std::unordered_map<uint32_t, Info> supp_;  // only code points above the BMP that are not kBoundary|kStable
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decomp_;
  std::unordered_map<uint64_t, uint32_t> compose_;
};

Props::Props(NfcData data) : ccc_bmp_(0x10000, 0), kind_bmp_(0x10000, 0) {
  using namespace tables;
  const bool hf = data == NfcData::kTokenizers;
  std::unordered_map<uint32_t, uint8_t> ccc_of;
  for (size_t i = 0; i < kCccCount; i++) {
    if (hf && (kCcc[i].flags & kNotInTokenizers)) continue;
    for (uint32_t c = kCcc[i].first; c <= kCcc[i].last; c++) ccc_of[c] = kCcc[i].ccc;
  }
  std::unordered_set<uint32_t> second, composes;
  for (size_t i = 0; i < kDecompCount; i++) {
    const Decomposition& d = kDecomp[i];
    if (hf && (d.flags & kNotInTokenizers)) continue;
    decomp_[d.cp] = {d.first, d.second};
    if (d.flags & kComposes) {
      compose_[key(d.first, d.second)] = d.cp;
      second.insert(d.second);
      composes.insert(d.cp);
    }
  }
  for (uint32_t v = kVBase; v < kVBase + kVCount; v++) second.insert(v);
  for (uint32_t t = kTBase + 1; t < kTBase + kTCount; t++) second.insert(t);

  auto ccc = [&](uint32_t c) {
    auto it = ccc_of.find(c);
    return it == ccc_of.end() ? uint8_t(0) : it->second;
  };
  auto first_of = [&](uint32_t c) {  // first code point of the full decomposition
    if (is_syllable(c)) return kLBase + (c - kSBase) / kNCount;
    for (auto it = decomp_.find(c); it != decomp_.end(); it = decomp_.find(c)) c = it->second.first;
    return c;
  };
  auto info = [&](uint32_t c) {
    Info in;
    in.ccc = ccc(c);
    const bool dec = is_syllable(c) || decomp_.count(c);
    const uint32_t f = first_of(c);
    const bool boundary = in.ccc == 0 && !second.count(c) && ccc(f) == 0 && !second.count(f);
    const bool stable = boundary && (!dec || is_syllable(c) || composes.count(c));
    in.kind = uint8_t((boundary ? kBoundary : 0) | (stable ? kStable : 0) | (dec ? kDecomposes : 0));
    return in;
  };
  for (uint32_t c = 0; c < 0x10000; c++) {
    const Info in = info(c);
    ccc_bmp_[c] = in.ccc, kind_bmp_[c] = in.kind;
  }
  std::vector<uint32_t> special;
  for (auto& [c, v] : ccc_of) special.push_back(c);
  for (auto& [c, d] : decomp_) special.push_back(c);
  for (uint32_t c : second) special.push_back(c);
  for (uint32_t c : special)
    if (c >= 0x10000) supp_[c] = info(c);
}

void Props::decompose(uint32_t cp, std::vector<uint32_t>& out) const {
  if (!(kind(cp) & kDecomposes)) return out.push_back(cp);
  if (is_syllable(cp)) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + s % kNCount / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto& [a, b] = decomp_.at(cp);
  decompose(a, out);
  if (b) decompose(b, out);
}

uint32_t Props::compose(uint32_t a, uint32_t b) const {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (is_syllable(a) && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = compose_.find(key(a, b));
  return it == compose_.end() ? 0 : it->second;
}

void Props::normalize(std::string_view seg, std::string& out) const {
  thread_local std::vector<uint32_t> cps;
  thread_local std::vector<uint8_t> cc;
  cps.clear();
  for (size_t i = 0; i < seg.size();) {
    uint32_t cp = 0;
    i += utf8_next(seg, i, cp);  // validated by the caller
    decompose(cp, cps);
  }
  const size_t n = cps.size();
  cc.resize(n);
  for (size_t i = 0; i < n; i++) cc[i] = ccc(cps[i]);
  // Canonical ordering: each run of non-starters sorted stably by class (an
  // insertion sort for the usual short runs; long ones, which only odd text
  // has, in O(n log n)).
  thread_local std::vector<std::pair<uint8_t, uint32_t>> run;
  for (size_t b = 0; b < n;) {
    if (cc[b] == 0) {
      b++;
      continue;
    }
    size_t e = b;
    while (e < n && cc[e] != 0) e++;
    if (e - b <= 32) {
      for (size_t i = b + 1; i < e; i++)
        for (size_t j = i; j > b && cc[j - 1] > cc[j]; j--)
          std::swap(cc[j - 1], cc[j]), std::swap(cps[j - 1], cps[j]);
    } else {
      run.clear();
      for (size_t i = b; i < e; i++) run.emplace_back(cc[i], cps[i]);
      std::stable_sort(run.begin(), run.end(), [](auto& x, auto& y) { return x.first < y.first; });
      for (size_t i = b; i < e; i++) cc[i] = run[i - b].first, cps[i] = run[i - b].second;
    }
    b = e;
  }
  // Composition: each code point joins the last starter unless something between blocks it.
  size_t len = 0, starter = SIZE_MAX;
  uint8_t last = 0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t c = cps[i];
    const uint8_t k = cc[i];
    if (starter != SIZE_MAX && (last < k || (last == 0 && len - 1 == starter))) {
      if (const uint32_t p = compose(cps[starter], c)) {
        cps[starter] = p;
        continue;
      }
    }
    if (k == 0) starter = len;
    last = k;
    cps[len++] = c;
  }
  for (size_t i = 0; i < len; i++) append_utf8(out, cps[i]);
}

const Props& props(NfcData data) {
  static const Props unicode(NfcData::kUnicode), hf(NfcData::kTokenizers);
  return data == NfcData::kTokenizers ? hf : unicode;
}

}  // namespace

size_t utf8_next(std::string_view s, size_t i, uint32_t& cp) {
  const unsigned char c = s[i];
  if (c < 0x80) return cp = c, 1;
  const size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  uint32_t v = c & (0x7F >> n);
  for (size_t k = 1; k < n; k++) {
    const unsigned char t = s[i + k];
    if ((t & 0xC0) != 0x80) return 0;
    v = v << 6 | (t & 0x3F);
  }
  if ((n == 3 && (v < 0x800 || (v >= 0xD800 && v < 0xE000))) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)))
    return 0;
  cp = v;
  return n;
}

size_t utf8_invalid_at(std::string_view s) {
  uint32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    if (uint8_t(s[i]) < 0x80) {
      i++;
      continue;
    }
    const size_t n = utf8_next(s, i, cp);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

void append_nfc(std::string_view text, std::string& out, NfcData data) {
  const Props& p = props(data);
  out.reserve(out.size() + text.size());
  size_t copied = 0;   // text[0, copied) is in `out`; runs of kept code points are copied at once
  size_t seg = 0;      // start of the pending segment
  bool simple = true;  // it is one code point that NFC keeps
  auto flush = [&](size_t end) {
    if (simple) return;
    out.append(text.substr(copied, seg - copied));
    p.normalize(text.substr(seg, end - seg), out);
    copied = end;
  };
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = uint8_t(text[i]);
    size_t n = 1;
    uint8_t kind = kBoundary | kStable;
    if (cp >= 0x80) {
      n = utf8_next(text, i, cp);
      if (n == 0) FAIL("NFC: text is not valid UTF-8 (at byte ", i, ")");
      kind = p.kind(cp);
    }
    if (kind & kBoundary) {
      if (i > 0) flush(i);
      seg = i;
      simple = kind & kStable;
    } else {
      simple = false;
    }
    i += n;
  }
  if (!text.empty()) flush(text.size());
  out.append(text.substr(copied));
}

const char* unicode_version() { return tables::kUnicodeVersion; }

}  // namespace longctx::unicode

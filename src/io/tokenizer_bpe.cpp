// What the BPE tokenizers share, step for step as HF `tokenizers` does it so
// that the ids agree: added tokens cut out first (leftmost-longest, the
// non-normalized ones in the raw text, the normalized ones in the normalized
// text), the normalizer, and BPE merging by rank.
#include "io/tokenizer_bpe.h"

#include <algorithm>
#include <mutex>
#include <queue>

#include "core/check.h"
#include "io/tokenizer_sp.h"
#include "io/unicode_nfc.h"

namespace longctx::bpe {
namespace {

constexpr size_t kMaxCachedWord = 256;        // longer words are rare; caching them only costs memory
constexpr size_t kMaxCacheEntries = 1 << 18;  // then the cache stops growing (HF does the same)

using Emit =
    std::function<void(std::string_view, int32_t, size_t)>;  // (text, -1, offset) or ({}, added id, _)

void split_literals(std::string_view text, const LiteralMatcher& m, const Emit& emit) {
  size_t pos = 0;
  if (!m.empty()) {
    for (auto hit = m.find(text, 0); hit.id >= 0; hit = m.find(text, pos)) {
      if (hit.pos > pos) emit(text.substr(pos, hit.pos - pos), -1, pos);
      emit({}, hit.id, hit.pos);
      pos = hit.pos + hit.len;
    }
  }
  if (pos < text.size()) emit(text.substr(pos), -1, pos);
}

}  // namespace

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  size_t pos = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, pos)) {
    out.append(s, pos, at - pos).append(to);
    pos = at + from.size();
  }
  out.append(s, pos);
  s.swap(out);
}

void LiteralMatcher::add(const std::string& s, int32_t id) {
  if (s.empty()) return;
  auto& b = buckets_[uint8_t(s[0])];
  b.emplace_back(s, id);
  std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first.size() > y.first.size(); });
  count_++;
}

LiteralMatcher::Hit LiteralMatcher::find(std::string_view text, size_t from) const {
  for (size_t i = from; i < text.size(); i++) {
    for (const auto& [s, id] : buckets_[uint8_t(text[i])])
      if (text.substr(i, s.size()) == s) return {i, s.size(), id};
  }
  return {};
}

BpeBase::BpeBase(const Spec& spec)
    : path_(spec.path),
      unk_(spec.unk_id),
      bos_(spec.bos_id),
      eos_(spec.eos_id),
      fuse_unk_(spec.fuse_unk),
      ignore_merges_(spec.ignore_merges),
      norm_(spec.norm) {
  for (auto& [tok, id] : spec.vocab) vocab_.emplace(tok, id);
  for (size_t r = 0; r < spec.merges.size(); r++) {
    const Merge& m = spec.merges[r];
    merges_[pair_key(m.left, m.right)] = {int32_t(r),
                                          m.merged};  // a repeated pair keeps its last rank, as HF
  }
  int32_t top = -1;
  for (auto& [tok, id] : spec.vocab) top = std::max(top, id);
  for (const AddedToken& a : spec.added) top = std::max(top, a.id);
  vocab_size_ = int64_t(top) + 1;
  id_text_.assign(size_t(top + 1), {});
  known_.assign(size_t(top + 1), false);
  for (auto& [tok, id] : spec.vocab) id_text_[id] = tok, known_[id] = true;
  for (const AddedToken& a : spec.added) {
    id_text_[a.id] = a.content, known_[a.id] = true;
    added_ids_[a.content] = a.id;
    if (!a.normalized) {
      raw_added_.add(a.content, a.id);
    } else {  // HF matches the normalized form of its text in the normalized text, and decodes to that form
      normalize(a.content, id_text_[a.id]);
      norm_added_.add(id_text_[a.id], a.id);
    }
  }
}

int32_t BpeBase::token_id(std::string_view token) const {
  if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return -1;
}

const std::string& BpeBase::token_text(int32_t id) const {
  CHECK(id >= 0 && size_t(id) < id_text_.size() && known_[id], "tokenizer ", path_, ": cannot decode id ", id,
        " (not in the vocab)");
  return id_text_[id];
}

void BpeBase::normalize(std::string_view text, std::string& out) const {
  out.assign(text);
  std::string tmp;
  for (const NormStep& n : norm_) {
    switch (n.kind) {
      case NormStep::Kind::kNfc:
        tmp.clear();
        unicode::append_nfc(out, tmp, unicode::NfcData::kTokenizers);
        out.swap(tmp);
        break;
      case NormStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, n.text);
        break;
      case NormStep::Kind::kReplace: replace_all(out, n.text, n.with); break;
    }
  }
}

std::vector<int32_t> BpeBase::encode(std::string_view text) const {
  if (const size_t bad = unicode::utf8_invalid_at(text); bad != std::string_view::npos)
    FAIL("tokenizer ", path_, ": text is not valid UTF-8 (at byte ", bad, ")");
  std::vector<int32_t> ids;
  std::string normalized;
  split_literals(text, raw_added_, [&](std::string_view gap, int32_t id, size_t at) {
    if (id >= 0) return ids.push_back(id);
    std::string_view n = gap;
    if (!norm_.empty()) {
      normalize(gap, normalized);
      n = normalized;
    }
    split_literals(n, norm_added_, [&](std::string_view piece, int32_t nid, size_t nat) {
      if (nid >= 0) return ids.push_back(nid);
      encode_text(piece, at == 0 && nat == 0, ids);
    });
  });
  return ids;
}

void BpeBase::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  const bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::shared_lock lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  if (symbols(word, syms)) merge(syms);
  ids.insert(ids.end(), syms.begin(), syms.end());
  if (cacheable) {
    std::unique_lock lock(cache_mu_);
    if (cache_.size() < kMaxCacheEntries) cache_.emplace(std::string(word), std::move(syms));
  }
}

// Repeatedly merges the lowest-ranked adjacent pair, leftmost first. A heap
// keyed (rank, position) with lazy deletion keeps long words (runs of
// spaces, digits, symbols, whole lines without a pre-tokenizer) at
// O(n log n); symbols form a linked list.
void BpeBase::merge(std::vector<int32_t>& word) const {
  const int32_t n = int32_t(word.size());
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; i++) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  using Cand = std::pair<int32_t, int32_t>;  // (rank, position of the left symbol)
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto rule = [&](int32_t pos) -> const MergeRule* {
    if (pos < 0 || next[pos] < 0) return nullptr;
    auto it = merges_.find(pair_key(word[pos], word[next[pos]]));
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto push = [&](int32_t pos) {
    if (const MergeRule* r = rule(pos)) heap.push({r->rank, pos});
  };
  for (int32_t i = 0; i + 1 < n; i++) push(i);
  while (!heap.empty()) {
    const auto [rank, pos] = heap.top();
    heap.pop();
    const MergeRule* r = word[pos] < 0 ? nullptr : rule(pos);
    if (!r || r->rank != rank) continue;  // stale: a neighbour merged since this was pushed
    const int32_t right = next[pos];
    word[pos] = r->merged;
    word[right] = -1;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    push(prev[pos]);
    push(pos);
  }
  std::erase(word, -1);
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Spec spec) {
  return spec.byte_level() ? make_byte_level_tokenizer(spec) : make_sentencepiece_tokenizer(spec);
}

}  // namespace longctx::bpe

// .npy token arrays: every accepted integer dtype and format version, the
// files we write, and one test per rejection (each error names the file).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/check.h"
#include "harness.h"
#include "io/npy.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;

namespace {

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_npy_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& name) const { return dir_ + "/" + name; }

  // An .npy file with this version, header dict text (padded with '\n') and data bytes.
  std::string raw(const std::string& name, const std::string& dict, const std::string& data, int major = 1,
                  const char* magic = "\x93NUMPY") {
    const std::string path = p(name);
    std::ofstream out(path, std::ios::binary);
    out.write(magic, 6);
    out.put(char(major)).put(0);
    const uint32_t hlen = uint32_t(dict.size() + 1);
    out.write(reinterpret_cast<const char*>(&hlen), major == 1 ? 2 : 4);
    out << dict << '\n' << data;
    return path;
  }
  std::string dict(const std::string& descr, const std::string& shape, const char* fortran = "False") {
    return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  }

  std::string dir_;
};

TEST_F(NpyTest, RoundTripI32TwoDims) {
  std::vector<int32_t> v(12);
  for (int i = 0; i < 12; i++) v[size_t(i)] = i * 1000 + 7;
  save_npy_i32(p("t.npy"), {3, 4}, v.data());
  EXPECT_FALSE(fs::exists(p("t.npy.tmp")));
  EXPECT_EQ(fs::file_size(p("t.npy")) % 64, 48u % 64) << "header pads the data start to 64 bytes";
  const TokenArray t = load_tokens_npy(p("t.npy"));
  EXPECT_EQ(t.rows, 3);
  EXPECT_EQ(t.cols, 4);
  EXPECT_EQ(t.ids, v);
}

TEST_F(NpyTest, OneDimBecomesOneRow) {
  const std::vector<int32_t> v = {5, 4, 3, 2, 1};
  save_npy_i32(p("one.npy"), {5}, v.data());
  const TokenArray t = load_tokens_npy(p("one.npy"));
  EXPECT_EQ(t.rows, 1);
  EXPECT_EQ(t.cols, 5);
  EXPECT_EQ(t.ids, v);
  save_npy_i32(p("empty.npy"), {0}, nullptr);
  const TokenArray e = load_tokens_npy(p("empty.npy"));
  EXPECT_EQ(e.rows, 1);
  EXPECT_EQ(e.cols, 0);
  EXPECT_TRUE(e.ids.empty());
}

TEST_F(NpyTest, AllIntegerDtypes) {
  const std::vector<int32_t> want = {0, 1, 7, 100, 127, 3};
  std::vector<int8_t> i1(want.begin(), want.end());
  std::vector<uint8_t> u1(want.begin(), want.end());
  std::vector<int16_t> i2(want.begin(), want.end());
  std::vector<uint16_t> u2(want.begin(), want.end());
  std::vector<int32_t> i4(want.begin(), want.end());
  std::vector<uint32_t> u4(want.begin(), want.end());
  std::vector<int64_t> i8(want.begin(), want.end());
  std::vector<uint64_t> u8(want.begin(), want.end());
  const std::pair<std::string, std::string> cases[] = {
      {"|i1", bytes_of(i1)}, {"|u1", bytes_of(u1)}, {"<i2", bytes_of(i2)}, {"<u2", bytes_of(u2)},
      {"<i4", bytes_of(i4)}, {"<u4", bytes_of(u4)}, {"<i8", bytes_of(i8)}, {"<u8", bytes_of(u8)}};
  for (const auto& [descr, data] : cases) {
    const TokenArray t = load_tokens_npy(raw("d.npy", dict(descr, "(2, 3)"), data));
    EXPECT_EQ(t.rows, 2) << descr;
    EXPECT_EQ(t.cols, 3) << descr;
    EXPECT_EQ(t.ids, want) << descr;
  }
  // The extremes that still fit int32.
  const std::vector<uint16_t> big16 = {65535};
  EXPECT_EQ(load_tokens_npy(raw("u2.npy", dict("<u2", "(1,)"), bytes_of(big16))).ids[0], 65535);
  const std::vector<int64_t> big64 = {2147483647};
  EXPECT_EQ(load_tokens_npy(raw("i8.npy", dict("<i8", "(1,)"), bytes_of(big64))).ids[0], 2147483647);
}

TEST_F(NpyTest, FormatVersions2And3) {
  const std::vector<int32_t> v = {9, 8, 7, 6};
  for (int major : {2, 3}) {
    const TokenArray t = load_tokens_npy(raw("v.npy", dict("<i4", "(4,)"), bytes_of(v), major));
    EXPECT_EQ(t.ids, v) << "version " << major;
  }
}

TEST_F(NpyTest, HeaderSpellingVariants) {
  const std::vector<int32_t> v = {1, 2, 3, 4, 5, 6};
  const std::string dicts[] = {
      R"({"descr": "<i4", "fortran_order": False, "shape": (2,3)})",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i4'}",
      "{ 'descr' : '<i4' ,\n'fortran_order':False,'shape':( 2 , 3 , ) ,}   ",
      "{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 3L), }"};  // Python 2 longs
  for (const std::string& d : dicts) {
    const TokenArray t = load_tokens_npy(raw("h.npy", d, bytes_of(v)));
    EXPECT_EQ(t.rows, 2) << d;
    EXPECT_EQ(t.ids, v) << d;
  }
}

TEST_F(NpyTest, SaveF32Layout) {
  const std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, 7.f};
  save_npy_f32(p("f.npy"), {2, 3}, v.data());
  std::ifstream in(p("f.npy"), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  ASSERT_GE(s.size(), 10u);
  EXPECT_EQ(s.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t hlen = uint8_t(s[8]) | size_t(uint8_t(s[9])) << 8;
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header = s.substr(10, hlen);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (2, 3)"), std::string::npos) << header;
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(s.size(), 10 + hlen + 24);
  EXPECT_EQ(std::memcmp(s.data() + 10 + hlen, v.data(), 24), 0);
  // Floats are not token ids.
  expect_error([&] { load_tokens_npy(p("f.npy")); }, {"f.npy", "non-integer dtype '<f4'"});
}

// ------------------------------------------------------------ rejections

TEST_F(NpyTest, ErrorMissingFile) {
  expect_error([&] { load_tokens_npy(p("absent.npy")); }, {"absent.npy", "cannot open"});
}

TEST_F(NpyTest, ErrorBadMagic) {
  const std::string path = raw("magic.npy", dict("<i4", "(1,)"), std::string(4, '\0'), 1, "XNUMPY");
  expect_error([&] { load_tokens_npy(path); }, {"magic.npy", "bad magic"});
  std::ofstream(p("tiny.npy")) << "\x93NU";
  expect_error([&] { load_tokens_npy(p("tiny.npy")); }, {"tiny.npy", "bad magic"});
}

TEST_F(NpyTest, ErrorUnsupportedVersion) {
  const std::string path = raw("ver.npy", dict("<i4", "(1,)"), std::string(4, '\0'), 4);
  expect_error([&] { load_tokens_npy(path); }, {"ver.npy", "unsupported .npy format version 4.0"});
}

TEST_F(NpyTest, ErrorMalformedHeader) {
  const std::pair<std::string, std::string> cases[] = {
      {"'descr': '<i4'", "expected '{'"},
      {"{'descr': '<i4', 'fortran_order': False", "expected ','"},
      {"{'descr': '<i4', 'fortran_order': False, 'shape': [1]}", "unexpected value"},
      {"{'descr': '<i4', 'fortran_order': False}", "missing 'shape'"},
      {"{'descr': 4, 'fortran_order': False, 'shape': (1,)}", "unexpected value"},
      {"{'descr': (1,), 'fortran_order': False, 'shape': (1,)}", "'descr' has the wrong type"},
      {"{'descr': '<i4', 'fortran_order': 'no', 'shape': (1,)}", "'fortran_order' has the wrong type"},
      {"{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (1,)}", "duplicate key"},
      {"{'descr': '<i4', 'fortran_order': False, 'shape': (-1,)}", "non-negative integer"},
      {"{'descr': '<i4', 'fortran_order': False, 'shape': (1,)} x", "trailing characters"}};
  for (const auto& [d, problem] : cases) {
    const std::string path = raw("hdr.npy", d, std::string(4, '\0'));
    expect_error([&] { load_tokens_npy(path); }, {"hdr.npy", "malformed header", problem});
  }
}

TEST_F(NpyTest, ErrorFortranOrder) {
  const std::string path = raw("f.npy", dict("<i4", "(2, 2)", "True"), std::string(16, '\0'));
  expect_error([&] { load_tokens_npy(path); }, {"f.npy", "fortran_order True"});
}

TEST_F(NpyTest, ErrorNonIntegerOrBigEndian) {
  const std::pair<std::string, std::string> cases[] = {
      {"<f4", "non-integer"}, {"<f8", "non-integer"}, {"|b1", "non-integer"},
      {">i4", "big-endian"},  {">u2", "big-endian"},  {"<i3", "unsupported integer dtype"},
      {"<U8", "non-integer"}};
  for (const auto& [descr, problem] : cases) {
    const std::string path = raw("dt.npy", dict(descr, "(2,)"), std::string(16, '\0'));
    expect_error([&] { load_tokens_npy(path); }, {"dt.npy", problem, descr});
  }
}

TEST_F(NpyTest, ErrorDims) {
  const std::string three = raw("d3.npy", dict("<i4", "(2, 2, 2)"), std::string(32, '\0'));
  expect_error([&] { load_tokens_npy(three); }, {"d3.npy", "got 3 dims"});
  const std::string zero = raw("d0.npy", dict("<i4", "()"), std::string(4, '\0'));
  expect_error([&] { load_tokens_npy(zero); }, {"d0.npy", "got 0 dims"});
}

TEST_F(NpyTest, ErrorTruncatedData) {
  const std::string path = raw("tr.npy", dict("<i4", "(3, 4)"), std::string(40, '\0'));
  expect_error([&] { load_tokens_npy(path); }, {"tr.npy", "truncated", "needs 48 bytes", "has 40"});
}

// ---- limits: sizes from the header are checked against the file before any allocation

TEST_F(NpyTest, ShapeWhoseProductOverflowsIsRefused) {
  // (2^40, 2^40) elements overflow uint64; (~1e18, 2) fits but its bytes do not
  const std::string ovf = raw("ovf.npy", dict("<i8", "(1099511627776, 1099511627776)"), "");
  expect_error([&] { load_tokens_npy(ovf); }, {"ovf.npy", "shape too large"});
  const std::string bytes = raw("ovf2.npy", dict("<i8", "(999999999999999999, 2)"), "");
  expect_error([&] { load_tokens_npy(bytes); }, {"ovf2.npy", "shape too large"});
}

TEST_F(NpyTest, TerabyteShapeInASmallFileIsRefusedNotAttempted) {
  const std::string path = raw("tb.npy", dict("<i4", "(262144, 1048576)"), std::string(16, '\0'));
  expect_error([&] { load_tokens_npy(path); },
               {"tb.npy", "truncated", "needs 1099511627776 bytes", "has 16"});
}

TEST_F(NpyTest, HeaderLengthBeyondTheFileIsRefusedBeforeReading) {
  // version 2.0: a 4-byte header length of 16 MB in a 40-byte file
  const std::string path = p("hl.npy");
  {
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x02\x00", 8);
    const uint32_t hlen = (1u << 24) - 1;
    out.write(reinterpret_cast<const char*>(&hlen), 4);
    out << std::string(28, ' ');
  }
  expect_error([&] { load_tokens_npy(path); },
               {"hl.npy", "header length 16777215", "exceeds the file size 40"});
}

TEST_F(NpyTest, ErrorValueOutOfRange) {
  const std::vector<int64_t> big = {5, 2147483648LL};
  expect_error([&] { load_tokens_npy(raw("big.npy", dict("<i8", "(2,)"), bytes_of(big))); },
               {"big.npy", "2147483648", "index 1", "does not fit int32"});
  const std::vector<uint32_t> ubig = {3000000000u};
  expect_error([&] { load_tokens_npy(raw("ubig.npy", dict("<u4", "(1,)"), bytes_of(ubig))); },
               {"ubig.npy", "does not fit int32"});
  const std::vector<uint64_t> huge = {~uint64_t(0)};
  expect_error([&] { load_tokens_npy(raw("huge.npy", dict("<u8", "(1,)"), bytes_of(huge))); },
               {"huge.npy", "does not fit int32"});
  const std::vector<int32_t> neg = {1, 2, -3};
  expect_error([&] { load_tokens_npy(raw("neg.npy", dict("<i4", "(3,)"), bytes_of(neg))); },
               {"neg.npy", "negative value -3", "index 2"});
  const std::vector<int16_t> neg2 = {-1};
  expect_error([&] { load_tokens_npy(raw("neg2.npy", dict("<i2", "(1,)"), bytes_of(neg2))); },
               {"neg2.npy", "negative value -1"});
}

}  // namespace

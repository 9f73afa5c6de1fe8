// safetensors: round trips (F32/BF16, single file and sharded) and one test
// per header validation rule, each checking that the error names the file and
// the problem on a single line.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "harness.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;

namespace {

std::vector<float> values(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SafeTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_st_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& name) const { return dir_ + "/" + name; }

  // A file with exactly this header text and these data bytes.
  std::string raw(const std::string& name, const std::string& header, size_t data_bytes = 0) {
    const std::string path = p(name);
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(data_bytes, '\0');
    return path;
  }
  // One-tensor header: name "w" with the given entry JSON.
  std::string raw_entry(const std::string& name, const std::string& entry, size_t data_bytes) {
    return raw(name, "{\"w\":" + entry + "}", data_bytes);
  }

  // Three tensors of different shapes, including a scalar and an empty one.
  void make_tensors() {
    a_ = values(6, 1), b_ = values(4, 2), c_ = values(1, 3);
    ts_ = {{"model.a", Tensor(a_.data(), {2, 3})},
           {"b", Tensor(b_.data(), {4})},
           {"scalar", Tensor(c_.data(), {})},
           {"empty", Tensor(nullptr, {0, 5})}};
  }

  std::string dir_;
  std::vector<float> a_, b_, c_;
  std::vector<NamedTensor> ts_;
};

TEST_F(SafeTensorsTest, RoundTripF32) {
  make_tensors();
  const std::string path = p("m.safetensors");
  save_safetensors(path, ts_);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  uint64_t n = 0;
  std::memcpy(&n, slurp(path).data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";

  SafeTensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors()[0].name, "model.a");  // written in the order given
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const SafeTensorInfo* b = f.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::F32);
  EXPECT_EQ(b->shape, Shape({4}));
  EXPECT_EQ(b->end - b->begin, 16u);
  EXPECT_EQ(f.find("nope"), nullptr);

  std::vector<float> got(6);
  f.read_f32("model.a", got.data(), {2, 3});
  EXPECT_EQ(got, a_);
  got.assign(4, 0.f);
  f.read_f32("b", got.data(), {4});
  EXPECT_EQ(got, b_);
  float s = 0;
  f.read_f32("scalar", &s, {});
  EXPECT_EQ(s, c_[0]);
  f.read_f32("empty", nullptr, {0, 5});
  EXPECT_EQ(f.find("empty")->shape, Shape({0, 5}));
}

TEST_F(SafeTensorsTest, RoundTripBF16) {
  std::vector<float> v = values(1000, 4);
  v[0] = 0.f, v[1] = -0.f, v[2] = 1e30f, v[3] = 1.f / 3.f;
  const std::string path = p("bf.safetensors");
  save_safetensors(path, {{"x", Tensor(v.data(), {10, 100})}}, SaveDType::BF16);
  SafeTensorsFile f(path);
  EXPECT_EQ(f.find("x")->dtype, DType::BF16);
  EXPECT_EQ(f.find("x")->end, 2000u);
  std::vector<float> got(1000);
  f.read_f32("x", got.data(), {10, 100});
  for (size_t i = 0; i < v.size(); i++) ASSERT_EQ(got[i], bf16_to_f32(f32_to_bf16(v[i]))) << i;
}

TEST_F(SafeTensorsTest, ReadsF16) {
  const float want[3] = {1.5f, -2.f, 65504.f};
  uint16_t h[3];
  for (int i = 0; i < 3; i++) h[i] = f32_to_f16(want[i]);
  const std::string path =
      raw_entry("h.safetensors", R"({"dtype":"F16","shape":[3],"data_offsets":[0,6]})", 0);
  std::ofstream(path, std::ios::app | std::ios::binary).write(reinterpret_cast<const char*>(h), 6);
  float got[3];
  SafeTensorsFile(path).read_f32("w", got, {3});
  for (int i = 0; i < 3; i++) EXPECT_EQ(got[i], want[i]);
}

TEST_F(SafeTensorsTest, MetadataRoundTripAndHeaderPadding) {
  float x = 7.f;
  save_safetensors(p("a.safetensors"), {{"x", Tensor(&x, {1})}}, SaveDType::F32,
                   {{"step", "12"}, {"k", "v"}});
  SafeTensorsFile a(p("a.safetensors"));
  EXPECT_EQ(a.metadata().size(), 2u);
  EXPECT_EQ(a.metadata().at("step"), "12");
  save_safetensors(p("b.safetensors"), {{"x", Tensor(&x, {1})}}, SaveDType::F32, {});
  EXPECT_TRUE(SafeTensorsFile(p("b.safetensors")).metadata().empty());
  // Headers padded with trailing spaces (as other writers do) are accepted.
  const std::string path = raw("pad.safetensors", "{}      ");
  EXPECT_TRUE(SafeTensorsFile(path).tensors().empty());
}

TEST_F(SafeTensorsTest, DirAcceptsFileAndModelSafetensors) {
  make_tensors();
  save_safetensors(p("model.safetensors"), ts_);
  for (const std::string& src : {dir_, p("model.safetensors")}) {
    SafeTensorsDir d(src);
    EXPECT_EQ(d.names(), (std::vector<std::string>{"b", "empty", "model.a", "scalar"}));
    EXPECT_TRUE(d.has("b"));
    EXPECT_FALSE(d.has("c"));
    EXPECT_EQ(d.shape("model.a"), Shape({2, 3}));
    std::vector<float> got(6);
    d.read_f32("model.a", got.data(), {2, 3});
    EXPECT_EQ(got, a_);
  }
}

TEST_F(SafeTensorsTest, ShardedRoundTrip) {
  std::vector<float> a = values(100, 5), b = values(100, 6), c = values(300, 7), d = values(50, 8);
  std::vector<NamedTensor> ts = {{"a", Tensor(a.data(), {100})},
                                 {"b", Tensor(b.data(), {10, 10})},
                                 {"c", Tensor(c.data(), {3, 100})},
                                 {"d", Tensor(d.data(), {50})}};
  const std::string out = p("sharded");
  save_safetensors_sharded(out, ts, 800);  // a+b fill shard 1; c alone is too big; d follows
  for (const char* f : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                        "model-00003-of-00003.safetensors", "model.safetensors.index.json"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out + "/model-00004-of-00003.safetensors"));

  const auto idx = nlohmann::json::parse(slurp(out + "/model.safetensors.index.json"));
  EXPECT_EQ(idx["metadata"]["total_size"], 550 * 4);
  EXPECT_EQ(idx["weight_map"]["a"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["b"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["c"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(idx["weight_map"]["d"], "model-00003-of-00003.safetensors");

  SafeTensorsDir dir(out);
  EXPECT_EQ(dir.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(dir.shape("c"), Shape({3, 100}));
  std::vector<float> got(300);
  dir.read_f32("c", got.data(), {3, 100});
  EXPECT_EQ(got, c);
  got.resize(100);
  dir.read_f32("b", got.data(), {10, 10});
  EXPECT_EQ(got, b);
  // Errors on a sharded model name the shard that holds the tensor.
  expect_error([&] { dir.read_f32("c", got.data(), {300}); },
               {"model-00002-of-00003.safetensors", "'c'", "(3, 100)", "(300)"});
}

TEST_F(SafeTensorsTest, ShardedBF16SingleShardKeepsShardedNames) {
  std::vector<float> a = values(64, 9);
  save_safetensors_sharded(p("one"), {{"a", Tensor(a.data(), {8, 8})}}, 1 << 20, SaveDType::BF16);
  EXPECT_TRUE(fs::exists(p("one/model-00001-of-00001.safetensors")));
  EXPECT_FALSE(fs::exists(p("one/model.safetensors")));
  const auto idx = nlohmann::json::parse(slurp(p("one/model.safetensors.index.json")));
  EXPECT_EQ(idx["metadata"]["total_size"], 128);
  std::vector<float> got(64);
  SafeTensorsDir(p("one")).read_f32("a", got.data(), {8, 8});
  for (size_t i = 0; i < 64; i++) EXPECT_EQ(got[i], bf16_to_f32(f32_to_bf16(a[i])));
}

// ------------------------------------------------------------ header validation

TEST_F(SafeTensorsTest, ErrorMissingFile) {
  expect_error([&] { SafeTensorsFile f(p("absent.safetensors")); }, {"absent.safetensors", "cannot open"});
  expect_error([&] { SafeTensorsDir d(p("absent")); }, {"absent", "no such file"});
}

TEST_F(SafeTensorsTest, ErrorFileTooShort) {
  const std::string path = p("short.safetensors");
  std::ofstream(path) << "abcd";
  expect_error([&] { SafeTensorsFile f(path); }, {"short.safetensors", "too short"});
}

TEST_F(SafeTensorsTest, ErrorHeaderLengthBeyondFile) {
  const std::string path = p("len.safetensors");
  const uint64_t n = 1000;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << "{}";
  out.close();
  expect_error([&] { SafeTensorsFile f(path); }, {"len.safetensors", "header length 1000", "exceeds"});
}

TEST_F(SafeTensorsTest, ErrorHeaderLengthAbsurd) {
  const std::string path = p("huge.safetensors");
  const uint64_t n = uint64_t(1) << 40;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << "{}";
  out.close();
  expect_error([&] { SafeTensorsFile f(path); }, {"huge.safetensors", "absurd"});
}

// ---- limits: sizes read from the file are checked against the file before
// anything is allocated (a corrupt or hostile header must not cost memory)

TEST_F(SafeTensorsTest, HeaderLengthTwoToTheSixtyThreeIsRefused) {
  const std::string path = p("h63.safetensors");
  const uint64_t n = uint64_t(1) << 63;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << "{}";
  out.close();
  expect_error([&] { SafeTensorsFile f(path); }, {"h63.safetensors", "header length 9223372036854775808"});
}

TEST_F(SafeTensorsTest, OneTerabyteTensorIsRefusedNotAttempted) {
  // A valid-looking header declaring 2^40 bytes of F32 in a file of a few bytes:
  // refused against the file size, with no allocation or read of that size.
  const std::string path = raw_entry(
      "tb.safetensors", R"({"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]})", 8);
  expect_error([&] { SafeTensorsFile f(path); },
               {"tb.safetensors", "'w'", "1099511627776", "beyond the data section (8 bytes)"});
  // and through the directory reader (what `grad --model` uses)
  expect_error([&] { SafeTensorsDir d(path); }, {"tb.safetensors", "beyond the data section"});
}

TEST_F(SafeTensorsTest, ShapeWhoseProductOverflowsIsRefused) {
  // 2^32 * 2^32 elements wraps a uint64 to 0; with data_offsets [0, 0] it would pass a size check
  const std::string path = raw_entry(
      "ovf.safetensors", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0);
  expect_error([&] { SafeTensorsFile f(path); }, {"ovf.safetensors", "overflows"});
  // numel fits but numel * 4 bytes does not
  const std::string bytes = raw_entry(
      "ovf2.safetensors", R"({"dtype":"F32","shape":[4611686018427387904,2],"data_offsets":[0,0]})", 0);
  expect_error([&] { SafeTensorsFile f(bytes); }, {"ovf2.safetensors", "size mismatch"});
}

TEST_F(SafeTensorsTest, ErrorHeaderNotJson) {
  const std::string path = raw("nj.safetensors", "{\"w\": [1, 2");
  expect_error([&] { SafeTensorsFile f(path); }, {"nj.safetensors", "not valid JSON"});
}

TEST_F(SafeTensorsTest, ErrorHeaderNotObject) {
  const std::string path = raw("arr.safetensors", "[1, 2]");
  expect_error([&] { SafeTensorsFile f(path); }, {"arr.safetensors", "not a JSON object"});
}

TEST_F(SafeTensorsTest, ErrorEntryMissingFields) {
  const std::pair<const char*, const char*> cases[] = {{R"({"shape":[1],"data_offsets":[0,4]})", "dtype"},
                                                       {R"({"dtype":"F32","data_offsets":[0,4]})", "shape"},
                                                       {R"({"dtype":"F32","shape":[1]})", "data_offsets"}};
  for (const auto& [entry, field] : cases) {
    const std::string path = raw_entry("miss.safetensors", entry, 4);
    expect_error([&] { SafeTensorsFile f(path); }, {"miss.safetensors", "'w'", "missing", field});
  }
}

TEST_F(SafeTensorsTest, ErrorEntryWrongJsonTypes) {
  const std::pair<const char*, const char*> cases[] = {
      {"5", "entry must be an object"},
      {R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", "dtype must be a string"},
      {R"({"dtype":"F32","shape":"abc","data_offsets":[0,4]})", "shape must be an array"},
      {R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", "shape must hold integers"},
      {R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", "data_offsets must be an array"},
      {R"({"dtype":"F32","shape":[1],"data_offsets":["0","4"]})", "data_offsets must hold integers"}};
  for (const auto& [entry, problem] : cases) {
    const std::string path = raw_entry("types.safetensors", entry, 4);
    expect_error([&] { SafeTensorsFile f(path); }, {"types.safetensors", problem});
  }
}

TEST_F(SafeTensorsTest, ErrorUnsupportedDtype) {
  const std::string path =
      raw_entry("f8.safetensors", R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})", 4);
  expect_error([&] { SafeTensorsFile f(path); }, {"f8.safetensors", "unsupported dtype", "F8_E4M3"});
}

TEST_F(SafeTensorsTest, ErrorTooManyDims) {
  const std::string path =
      raw_entry("dims.safetensors", R"({"dtype":"U8","shape":[1,1,1,1,1,1,1],"data_offsets":[0,1]})", 1);
  expect_error([&] { SafeTensorsFile f(path); }, {"dims.safetensors", "7 dims"});
}

TEST_F(SafeTensorsTest, ErrorNegativeDim) {
  const std::string path =
      raw_entry("neg.safetensors", R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4);
  expect_error([&] { SafeTensorsFile f(path); }, {"neg.safetensors", "negative"});
}

TEST_F(SafeTensorsTest, ErrorEndBeforeBegin) {
  const std::string path =
      raw_entry("eb.safetensors", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})", 8);
  expect_error([&] { SafeTensorsFile f(path); }, {"eb.safetensors", "end 4 < begin 8"});
}

TEST_F(SafeTensorsTest, ErrorSizeMismatch) {
  const std::string path =
      raw_entry("sz.safetensors", R"({"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]})", 8);
  expect_error([&] { SafeTensorsFile f(path); }, {"sz.safetensors", "size mismatch", "needs 12"});
}

TEST_F(SafeTensorsTest, ErrorOffsetsBeyondData) {
  const std::string path =
      raw_entry("bey.safetensors", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 4);
  expect_error([&] { SafeTensorsFile f(path); }, {"bey.safetensors", "beyond the data section"});
}

TEST_F(SafeTensorsTest, ErrorOverlap) {
  const std::string path = raw("ov.safetensors",
                               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               12);
  expect_error([&] { SafeTensorsFile f(path); }, {"ov.safetensors", "'b' overlaps 'a'"});
}

TEST_F(SafeTensorsTest, ErrorHole) {
  const std::string path = raw("hole.safetensors",
                               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                               20);
  expect_error([&] { SafeTensorsFile f(path); }, {"hole.safetensors", "hole", "[8, 12)"});
  const std::string tail =
      raw_entry("tail.safetensors", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 12);
  expect_error([&] { SafeTensorsFile f(tail); }, {"tail.safetensors", "4 trailing bytes"});
}

TEST_F(SafeTensorsTest, ErrorDuplicateName) {
  const std::string path = raw("dup.safetensors",
                               R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                               R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                               8);
  expect_error([&] { SafeTensorsFile f(path); }, {"dup.safetensors", "duplicate", "'a'"});
}

TEST_F(SafeTensorsTest, ErrorBadMetadata) {
  const std::string path = raw("meta.safetensors", R"({"__metadata__":{"step":12}})");
  expect_error([&] { SafeTensorsFile f(path); }, {"meta.safetensors", "__metadata__", "must be a string"});
}

TEST_F(SafeTensorsTest, ReadRefusesNonFloatAndWrongShape) {
  const std::string path = raw("int.safetensors",
                               R"({"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                               R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}})",
                               32);
  SafeTensorsFile f(path);  // non-float dtypes are fine in the header
  EXPECT_EQ(f.find("ids")->dtype, DType::I32);
  float buf[6];
  expect_error([&] { f.read_f32("ids", buf, {2}); }, {"int.safetensors", "'ids'", "non-float dtype I32"});
  expect_error(
      [&] {
        f.read_f32("w", buf, {3, 2});
      },
      {"int.safetensors", "'w'", "(2, 3)", "expected (3, 2)"});
  expect_error([&] { f.read_f32("v", buf, {6}); }, {"int.safetensors", "no tensor", "'v'"});
}

TEST_F(SafeTensorsTest, SaveRejectsDuplicateAndNonF32) {
  float x[2] = {1, 2};
  expect_error(
      [&] {
        save_safetensors(p("d.safetensors"), {{"a", Tensor(x, {1})}, {"a", Tensor(x, {2})}});
      },
      {"d.safetensors", "duplicate", "'a'"});
  expect_error(
      [&] {
        save_safetensors(p("i.safetensors"), {{"a", Tensor(x, {2}, DType::I32)}});
      },
      {"i.safetensors", "only F32"});
  EXPECT_FALSE(fs::exists(p("d.safetensors")));
}

// ------------------------------------------------------------ index validation

class SafeTensorsIndexTest : public SafeTensorsTest {
 protected:
  // A two-shard model whose index the test then rewrites.
  void SetUp() override {
    SafeTensorsTest::SetUp();
    x_ = values(8, 11);
    save_safetensors_sharded(dir_, {{"a", Tensor(x_.data(), {8})}, {"b", Tensor(x_.data(), {8})}}, 32);
  }
  void write_index(const std::string& text) { std::ofstream(p("model.safetensors.index.json")) << text; }
  std::vector<float> x_;
};

TEST_F(SafeTensorsIndexTest, ErrorIndexNotJsonOrNotObject) {
  write_index("{\"weight_map\": ");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "not valid JSON"});
  write_index("[]");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "not a JSON object"});
}

TEST_F(SafeTensorsIndexTest, ErrorIndexWeightMap) {
  write_index(R"({"metadata": {}})");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "weight_map"});
  write_index(R"({"weight_map": ["a"]})");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "weight_map"});
  write_index(R"({"weight_map": {"a": 1}})");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "'a'", "must be a string"});
}

TEST_F(SafeTensorsIndexTest, ErrorMissingShard) {
  fs::remove(p("model-00002-of-00002.safetensors"));
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model-00002-of-00002.safetensors", "missing"});
}

TEST_F(SafeTensorsIndexTest, ErrorTensorAbsentFromShard) {
  write_index(
      R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",)"
      R"( "c": "model-00002-of-00002.safetensors"}})");
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model-00001-of-00002.safetensors", "'b'", "absent"});
}

TEST_F(SafeTensorsIndexTest, ErrorTensorNotListed) {
  write_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors"}})");
  SafeTensorsDir ok(dir_);  // the unlisted shard is never opened
  EXPECT_EQ(ok.names(), std::vector<std::string>{"a"});
  save_safetensors(p("model-00001-of-00002.safetensors"),
                   {{"a", Tensor(x_.data(), {8})}, {"z", Tensor(x_.data(), {1})}});
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model-00001-of-00002.safetensors", "'z'", "not listed"});
}

TEST_F(SafeTensorsIndexTest, ErrorShardOutsideTheDirectory) {
  // weight_map values are file names beside the index; a path would read any file on the machine
  for (const char* shard :
       {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x.safetensors", "..", ""}) {
    write_index(std::string(R"({"weight_map": {"a": ")") + shard + R"("}})");
    expect_error([&] { SafeTensorsDir d(dir_); },
                 {"model.safetensors.index.json", "'a'", "plain file names"});
  }
}

TEST_F(SafeTensorsIndexTest, ErrorIndexTooLarge) {
  // an index of 100 MB + 1 byte (sparse: no disk used) is refused before it is read
  { std::ofstream out(p("model.safetensors.index.json"), std::ios::binary | std::ios::trunc); }
  fs::resize_file(p("model.safetensors.index.json"), 100'000'001);
  expect_error([&] { SafeTensorsDir d(dir_); }, {"model.safetensors.index.json", "too large"});
}

TEST_F(SafeTensorsIndexTest, ErrorEmptyDirectory) {
  const std::string empty = p("empty");
  fs::create_directory(empty);
  expect_error([&] { SafeTensorsDir d(empty); }, {"empty", "neither model.safetensors"});
}

}  // namespace

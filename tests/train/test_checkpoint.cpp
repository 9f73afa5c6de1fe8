// Checkpoints: what counts as complete, sharded writes read back by name and
// range on any number of ranks, and the errors of a broken one.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "comm/comm.h"
#include "harness.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_ckpt_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void step_dir(const std::string& name, const std::string& complete) {
    fs::create_directories(dir_ + "/checkpoints/" + name);
    if (complete != "-") std::ofstream(dir_ + "/checkpoints/" + name + "/COMPLETE") << complete;
  }
  std::string dir_;
};

TEST_F(CheckpointTest, CompleteOnlyWhenCompleteHoldsItsOwnStep) {
  step_dir("step_00000001", "1\n");
  step_dir("step_00000002", "");                 // cut while written: the disk filled
  step_dir("step_00000003", "2\n");              // another step's marker
  step_dir("step_00000004", "-");                // none
  step_dir("step_99999999999999999999", "1\n");  // past int64 (a fuzzing finding: std::stoll threw)
  step_dir("step_1x", "1\n");
  EXPECT_EQ(latest_checkpoint(dir_), dir_ + "/checkpoints/step_00000001");
}

TEST_F(CheckpointTest, ShardsReadBackByNameAndRange) {
  // two "ranks" wrote interleaved slices of a 10-element tensor; a whole-file
  // reader and a sharded one give the same elements
  std::vector<float> w(10), m(10), v(10);
  for (int i = 0; i < 10; i++)
    w[size_t(i)] = float(i), m[size_t(i)] = float(100 + i), v[size_t(i)] = float(200 + i);
  auto local = make_local_comm();
  const fs::path ck = fs::path(dir_) / "checkpoints" / "step_00000005";
  save_checkpoint_sharded(
      dir_, 5,
      {{"x", 0, 4, w.data(), m.data(), v.data()}, {"x", 4, 6, w.data() + 4, m.data() + 4, v.data() + 4}},
      {{"step", 5}}, {{"config.json", "{}"}}, 2, *local);
  ASSERT_TRUE(fs::exists(ck / "COMPLETE"));
  ASSERT_TRUE(fs::exists(ck / "shard-00000-of-00001.safetensors"));
  const CheckpointReader r(ck.string());
  EXPECT_EQ(r.ranks_written(), 1);
  std::vector<float> got(5);
  r.read("", "x", Shape{2, 5}, 2, 5, got.data());  // across the two slices
  EXPECT_EQ(got, (std::vector<float>{2, 3, 4, 5, 6}));
  r.read("v.", "x", Shape{2, 5}, 8, 2, got.data());
  EXPECT_EQ(got[0], 208.f);
  EXPECT_EQ(got[1], 209.f);
  EXPECT_EQ(r.state()["step"], 5);
  expect_error([&] { r.read("", "y", Shape{10}, 0, 10, got.data()); }, {"no tensor 'y'"});
  expect_error([&] { r.read("", "x", Shape{12}, 0, 1, got.data()); }, {"'x' holds 10 elements", "12"});
  // a shard missing: refused naming it
  fs::rename(ck / "shard-00000-of-00001.safetensors", ck / "shard-00001-of-00002.safetensors");
  expect_error([&] { CheckpointReader bad(ck.string()); }, {"shard-00000-of-00001", "missing"});
}

}  // namespace

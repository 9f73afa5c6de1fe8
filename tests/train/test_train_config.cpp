// The train config (YAML, overrides, curriculum, the checks that fuzzing
// prompted) and the progress line's ETA.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "harness.h"
#include "train/progress.h"
#include "train/train_config.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;

namespace {

TEST(TrainConfigCurriculum, StagesSetLengthAndOptionallyBatch) {
  const TrainConfig c = train_config_from_json(
      {{"model", {{"init", {{"vocab_size", 8}}}}},
       {"seq_len", 64},
       {"batch_size", 2},
       {"curriculum",
        {{{"until_step", 10}, {"seq_len", 16}, {"batch_size", 8}},
         {{"until_step", 20}, {"seq_len", 32}, {"grad_accum", 3}, {"lr_scale", 0.5}}}}},
      "cfg.yaml");
  EXPECT_EQ(c.grad_accum_at(5), 1);
  EXPECT_EQ(c.grad_accum_at(15), 3);
  EXPECT_EQ(c.lr_scale_at(5), 1.0);
  EXPECT_EQ(c.lr_scale_at(15), 0.5);
  EXPECT_EQ(c.lr_scale_at(25), 1.0);
  EXPECT_EQ(c.seq_len_at(0), 16);
  EXPECT_EQ(c.batch_size_at(9), 8);
  EXPECT_EQ(c.seq_len_at(10), 32);
  EXPECT_EQ(c.batch_size_at(10), 2);
  EXPECT_EQ(c.seq_len_at(20), 64);
  EXPECT_EQ(c.batch_size_at(25), 2);
  expect_error(
      [] {
        train_config_from_json({{"model", {{"init", {{"vocab_size", 8}}}}},
                                {"curriculum", {{{"until_step", 10}, {"seq_len", 16}, {"rows", 8}}}}},
                               "cfg.yaml");
      },
      {"cfg.yaml", "curriculum stage"});
}

class TrainConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_tcfg_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string text(const std::string& name, const std::string& body) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << body;
    return dir_ + "/" + name;
  }
  TrainConfig load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
    return load_train_config(text("t.yaml", yaml), overrides);
  }
  std::string dir_;
};

TEST_F(TrainConfigFile, ItsOwnYamlLoadsBack) {
  // chunk_budget 0 (auto) used to be written as 0, which the loader refuses
  const TrainConfig c = load("model: {path: m}\nchunk_mode: seco\nchunk_size: 64\noffload: host\n");
  const std::string again = text("again.yaml", to_yaml(c.raw));
  const TrainConfig d = load_train_config(again, {});
  EXPECT_EQ(c.raw, d.raw);
  EXPECT_EQ(d.raw["chunk_budget"], "auto");
}

TEST_F(TrainConfigFile, NonUtf8TextIsRefused) {
  // nlohmann::json throws type_error 316 when it dumps such a string (in an error message, a log line)
  expect_error([&] { load("model: {path: m}\nsteps: ten\x88\x88\n"); }, {"t.yaml", "not UTF-8"});
  expect_error([&] { load("model: {path: m}\n\xff: 1\n"); }, {"t.yaml", "not UTF-8"});
  expect_error([&] { load("model: {path: m}\n", {"out_dir=runs/\xc0\xaf"}); }, {"override", "not UTF-8"});
  EXPECT_EQ(load("model: {path: m}\nout_dir: \"runs/caf\xc3\xa9\"\n").out_dir, "runs/caf\xc3\xa9");
}

TEST_F(TrainConfigFile, TopLevelMustBeAMapping) {
  // a scalar document plus an override used to hit operator[] on a string
  expect_error([&] { load("just words\n", {"seq_len=256"}); }, {"t.yaml", "mapping"});
  expect_error([&] { load("- a\n- b\n"); }, {"t.yaml", "mapping"});
}

TEST_F(TrainConfigFile, NullIsAnErrorExceptForMappings) {
  // `key:` with no value used to reach get<std::string>() / get<int64_t>() as null
  expect_error([&] { load("model: {path: m}\ncp_kind:\n"); }, {"t.yaml", "'cp_kind'", "string", "null"});
  expect_error([&] { load("model: {path: m}\nseq_len: ~\n"); }, {"t.yaml", "'seq_len'", "integer", "null"});
  expect_error([&] { load("model: {path: null}\n"); }, {"t.yaml", "'model.path'", "null"});
  const TrainConfig c = load("model: {path: m}\neval:\nlora:\n");  // mappings: the defaults
  EXPECT_EQ(c.raw["eval"]["samples"], 4);
  EXPECT_EQ(c.plan.lora.rank, 0);
}

TEST_F(TrainConfigFile, NumbersMustBeFiniteAndInRange) {
  // inf / nan used to become numbers (strtod reads them): lr: inf passed "lr > 0", and float(1e300)
  // for AdamW is undefined; now they stay strings, and the optimizer numbers must fit a float
  expect_error([&] { load("model: {path: m}\nlr: inf\n"); }, {"t.yaml", "'lr'", "number", "string"});
  expect_error([&] { load("model: {path: m}\nweight_decay: nan\n"); }, {"t.yaml", "'weight_decay'"});
  expect_error([&] { load("model: {path: m}\nlr: 1.0e+300\n"); }, {"t.yaml", "'lr'", "fit a float"});
  expect_error([&] { load("model: {path: m}\nbeta2: 1.5\n"); }, {"t.yaml", "'beta2'", "[0, 1)"});
  expect_error([&] { load("model: {path: m}\nwarmup_steps: -3\n"); }, {"t.yaml", "'warmup_steps'", ">= 0"});
  expect_error([&] { load("model: {path: m}\nseq_len: 4294967296\n"); }, {"t.yaml", "'seq_len'", "absurd"});
  expect_error([&] { load("model: {path: m}\nseq_len: 1048576\nbatch_size: 2097152\n"); },
               {"t.yaml", "batch_size * seq_len", "absurd"});
  expect_error([&] { load("model: {path: m}\ncurriculum: [{until_step: 5, seq_len: 4294967296}]\n"); },
               {"t.yaml", "curriculum seq_len"});
  EXPECT_EQ(load("model: {path: m}\nout_dir: nan\n").out_dir, "nan");  // a string where a string is wanted
}

TEST_F(TrainConfigFile, ListElementsAreChecked) {
  // found by fuzzing: lora.targets holding a mapping reached get<std::vector<std::string>>() (type_error)
  expect_error([&] { load("model: {path: m}\n", {"lora.targets=[{qze: 344}, v_proj]"}); },
               {"t.yaml", "'lora.targets[0]'", "string", "mapping"});
  expect_error([&] { load("model: {path: m}\neval: {depths: [0.5, deep]}\n"); },
               {"t.yaml", "'eval.depths[1]'"});
  // eval.* is read after training: refuse at load time what would fail there, hours later
  expect_error([&] { load("model: {path: m}\neval: {lengths: [1024, 2.5]}\n"); },
               {"t.yaml", "'eval.lengths'", "2.5"});
  expect_error([&] { load("model: {path: m}\neval: {lengths: [0]}\n"); }, {"t.yaml", "'eval.lengths'"});
  expect_error([&] { load("model: {path: m}\neval: {depths: [1.5]}\n"); },
               {"t.yaml", "'eval.depths'", "[0, 1]"});
  expect_error([&] { load("model: {path: m}\neval: {samples: 0}\n"); }, {"t.yaml", "'eval.samples'"});
  EXPECT_EQ(load("model: {path: m}\neval: {lengths: [128, 512], depths: [0, 1]}\n").eval["lengths"][1], 512);
}

// The ETA foresees a curriculum: after the cheap steps it prices the dear ones
// at the rate measured so far, not at the cheap steps' time each.
TEST(Progress, EtaWeighsTheStepsLeftByTheirWork) {
  std::vector<double> work = {1, 1, 1, 1, 10, 10};  // 4 short steps, then 2 ten times dearer
  Progress p(6, false, work);
  for (int64_t s = 1; s <= 4; s++) p.update(s, 1.0, 1.0, 0, 0.5);  // 0.5 s per unit of work
  EXPECT_NEAR(p.eta_seconds(4), 0.5 * 20, 1e-9);
  p.update(5, 1.0, 1.0, 0, 10.0);  // now 12 s for 14 units
  EXPECT_NEAR(p.eta_seconds(5), 12.0 / 14.0 * 10, 1e-9);
  Progress uniform(4, false);
  uniform.update(1, 1.0, 1.0, 0, 2.0);
  EXPECT_NEAR(uniform.eta_seconds(1), 6.0, 1e-9);
  EXPECT_THROW(Progress(3, false, {1, 2}), Error);
  p.finish(), uniform.finish();
}

}  // namespace

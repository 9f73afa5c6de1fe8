// Training checkpoints that survive crashes:
//   OUT/checkpoints/step_NNNNNNNN/{model,optimizer}.safetensors, state.json, config.json, COMPLETE
// written under a temporary name, fsynced, renamed, and marked complete last.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/params.h"

namespace longctx {

class Comm;

// What training changes: the trained tensors (all weights, or the LoRA
// adapters) and their AdamW moments, by name.
struct TrainedState {
  std::vector<NamedTensor> w, m, v;
};
std::vector<NamedTensor> named_tensors(const ParamSet& p);
std::vector<NamedTensor> named_tensors(const LoraSet& p);

// Writes the checkpoint of `step` and prunes all but the newest keep_last
// complete ones (never the one just written). When a write fails (disk full)
// it throws naming the step, after removing what it had written: the complete
// checkpoints before it are untouched.
void save_checkpoint(const std::string& out_dir, int64_t step, const TrainedState& t,
                     const nlohmann::json& state, int64_t keep_last,
                     const std::map<std::string, std::string>& extra_files = {});
// Across ranks each rank writes its own shard, in parallel and without
// gathering: step_NNNNNNNN/shard-RRRRR-of-PPPPP.safetensors holds this rank's
// slices [from, from + n) of the trained tensors ("NAME@FROM", "m.NAME@FROM",
// "v.NAME@FROM", 1-D), rank 0 adds state.json and the extra files, and marks
// the checkpoint COMPLETE only once every shard is written. Collective: when
// any rank fails, every rank throws and nothing incomplete is left.
struct ShardSlice {
  std::string name;
  int64_t from = 0, n = 0;
  const float *w = nullptr, *m = nullptr, *v = nullptr;  // host memory, n each
};
void save_checkpoint_sharded(const std::string& out_dir, int64_t step, const std::vector<ShardSlice>& mine,
                             const nlohmann::json& state,
                             const std::map<std::string, std::string>& extra_files, int64_t keep_last,
                             Comm& comm);

// Reads a checkpoint however it was written (whole files by one rank, or the
// shards of any number of ranks) by tensor name and element range, so that a
// run resumes on another number of ranks and ZeRO stage.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& dir);
  int ranks_written() const { return ranks_; }  // 1: whole files
  // Elements [from, from + n) of prefix + name ("" weights, "m." / "v." AdamW
  // moments), a tensor of `shape`; throws when the checkpoint lacks any of
  // them, or holds the tensor with another shape.
  void read(const std::string& prefix, const std::string& name, const Shape& shape, int64_t from, int64_t n,
            float* dst) const;
  nlohmann::json state() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Slice {
    int64_t from, n;
    size_t file;
    std::string stored;  // its name in the file
  };
  std::string dir_;
  int ranks_ = 1;
  bool sharded_ = false;
  std::vector<SafeTensorsFile> files_;
  std::map<std::string, std::vector<Slice>> slices_;  // prefix + name -> its slices, by from
};

// The first non-finite value of the weights or moments ("m."/"v." name[index]),
// or "" when all are finite: a checkpoint is never written from a poisoned state.
std::string first_non_finite(const TrainedState& t);
std::string first_non_finite(const std::vector<ShardSlice>& mine);
// Path of the newest complete checkpoint under out_dir, or "" if none.
std::string latest_checkpoint(const std::string& out_dir);
// Fills t's tensors and returns state.json.
nlohmann::json load_checkpoint(const std::string& dir, const TrainedState& t);

}  // namespace longctx

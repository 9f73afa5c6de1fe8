#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "comm/comm.h"
#include "core/check.h"
#include "io/safetensors.h"

namespace longctx {

namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_file_synced(const fs::path& p, const std::string& text) {
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    CHECK(f.good(), p.string(), ": write failed");
  }
  fsync_path(p);
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", (long long)step);
  return buf;
}

// A checkpoint is complete when its COMPLETE file holds its own step number:
// an empty or cut COMPLETE (the disk filled while it was written) is not.
bool is_complete(const fs::path& dir) {
  const std::string n = dir.filename().string(), digits = n.size() > 5 ? n.substr(5) : "";
  if (n.rfind("step_", 0) != 0 || digits.empty() || digits.size() > 18 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;  // not a step directory (or a step past int64: never one we wrote)
  std::ifstream f(dir / "COMPLETE");
  long long step = -1;
  if (!(f >> step)) return false;
  return std::strtoll(digits.c_str(), nullptr, 10) == step;
}

// Complete checkpoints, oldest first.
std::vector<fs::path> complete_checkpoints(const fs::path& root) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && n.find('.') == std::string::npos && is_complete(e.path()))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<NamedTensor> prefixed(std::vector<NamedTensor> t, const std::string& prefix) {
  for (auto& n : t) n.name = prefix + n.name;
  return t;
}

}  // namespace

std::vector<NamedTensor> named_tensors(const ParamSet& p) {
  std::vector<NamedTensor> t;
  for (size_t i = 0; i < p.specs().size(); i++) t.push_back({p.specs()[i].name, p.tensor(i)});
  return t;
}

std::vector<NamedTensor> named_tensors(const LoraSet& p) {
  std::vector<NamedTensor> t;
  for (size_t i = 0; i < p.specs().size(); i++) t.push_back({p.specs()[i].name, p.tensor(i)});
  return t;
}

namespace {

// Everything after the tensor files, in the temporary directory tmp: state.json
// and the extra files, then the rename to final_dir and COMPLETE, last.
void publish(const fs::path& root, const fs::path& tmp, const fs::path& final_dir, int64_t step,
             const nlohmann::json& state, const std::map<std::string, std::string>& extra) {
  write_file_synced(tmp / "state.json", state.dump(1) + "\n");
  for (const auto& [name, text] : extra) write_file_synced(tmp / name, text);
  fsync_path(tmp);
  fs::remove_all(final_dir);  // an incomplete one left by a crash
  fs::rename(tmp, final_dir);
  fsync_path(root);
  write_file_synced(final_dir / "COMPLETE", std::to_string(step) + "\n");  // last: marks it usable
  fsync_path(final_dir);
}

// Nothing half-written stays behind to be taken for a checkpoint (or to fill the disk further).
void discard(const fs::path& tmp, const fs::path& final_dir) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!is_complete(final_dir)) fs::remove_all(final_dir, ec);
}

// Old complete ones beyond keep_last (never the newest), and leftovers of crashed saves.
void prune(const fs::path& root, const fs::path& newest, int64_t keep_last) {
  auto done = complete_checkpoints(root);
  for (size_t i = 0; i + size_t(keep_last) < done.size(); i++)
    if (done[i] != newest) fs::remove_all(done[i]);
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp") != std::string::npos || !fs::exists(e.path() / "COMPLETE")) fs::remove_all(e.path());
  }
}

std::string shard_name(int rank, int ranks) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard-%05d-of-%05d.safetensors", rank, ranks);
  return buf;
}

}  // namespace

void save_checkpoint(const std::string& out_dir, int64_t step, const TrainedState& t,
                     const nlohmann::json& state, int64_t keep_last,
                     const std::map<std::string, std::string>& extra_files) {
  const fs::path root = fs::path(out_dir) / "checkpoints";
  fs::create_directories(root);
  const fs::path final_dir = root / step_name(step);
  const fs::path tmp = root / (step_name(step) + ".tmp" + std::to_string(::getpid()));
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    save_safetensors((tmp / "model.safetensors").string(), t.w);
    auto opt_tensors = prefixed(t.m, "m.");
    for (auto& n : prefixed(t.v, "v.")) opt_tensors.push_back(n);
    save_safetensors((tmp / "optimizer.safetensors").string(), opt_tensors);
    publish(root, tmp, final_dir, step, state, extra_files);
  } catch (const std::exception& e) {
    discard(tmp, final_dir);
    FAIL("checkpoint of step ", step, " in ", root.string(), " not written: ", e.what());
  }
  prune(root, final_dir, keep_last);
}

void save_checkpoint_sharded(const std::string& out_dir, int64_t step, const std::vector<ShardSlice>& mine,
                             const nlohmann::json& state,
                             const std::map<std::string, std::string>& extra_files, int64_t keep_last,
                             Comm& comm) {
  const int rank = comm.rank(), P = comm.size();
  const fs::path root = fs::path(out_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(step);
  const fs::path tmp = root / (step_name(step) + ".tmp");  // one name for every rank
  std::string error;
  // every rank learns whether any failed, and which one first
  auto failed_rank = [&] {
    double f = error.empty() ? 0 : double(P - rank);
    comm.all_reduce_max(&f, 1);
    return f > 0 ? P - int(f) : -1;
  };
  auto fail_all = [&](int who, const char* during) {
    if (rank == 0) discard(tmp, final_dir);
    if (!error.empty()) FAIL("checkpoint of step ", step, " in ", root.string(), " not written: ", error);
    FAIL("checkpoint of step ", step, " in ", root.string(), " not written: rank ", who, " failed ", during,
         " (its own error is on its stderr)");
  };
  if (rank == 0) try {
      fs::create_directories(root);
      fs::remove_all(tmp);
      fs::create_directories(tmp);
    } catch (const std::exception& e) {
      error = e.what();
    }
  if (const int who = failed_rank(); who >= 0) fail_all(who, "to make the directory");
  try {
    std::vector<NamedTensor> t;
    for (const char* prefix : {"", "m.", "v."})
      for (const ShardSlice& s : mine) {
        const float* p = prefix[0] == 0 ? s.w : prefix[0] == 'm' ? s.m : s.v;
        t.push_back({str_cat(prefix, s.name, "@", s.from),
                     Tensor(const_cast<float*>(p), {s.n}, DType::F32, Tier::host)});
      }
    save_safetensors(
        (tmp / shard_name(rank, P)).string(), t, SaveDType::F32,
        {{"format", "longctx-shard"}, {"rank", std::to_string(rank)}, {"ranks", std::to_string(P)}});
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (const int who = failed_rank(); who >= 0) fail_all(who, "to write its shard");
  if (rank == 0) try {  // every shard is there: rank 0 completes it
      publish(root, tmp, final_dir, step, state, extra_files);
      prune(root, final_dir, keep_last);
    } catch (const std::exception& e) {
      error = e.what();
    }
  if (const int who = failed_rank(); who >= 0) fail_all(who, "to complete it");
}

std::string first_non_finite(const TrainedState& t) {
  for (const auto* set : {&t.w, &t.m, &t.v})
    for (const NamedTensor& n : *set) {
      const float* p = n.t.f32();
      for (int64_t i = 0, e = n.t.numel(); i < e; i++)
        if (!std::isfinite(p[i]))
          return (set == &t.w ? "" : set == &t.m ? "m." : "v.") + n.name + "[" + std::to_string(i) + "]";
    }
  return "";
}

std::string first_non_finite(const std::vector<ShardSlice>& mine) {
  for (const char* prefix : {"", "m.", "v."})
    for (const ShardSlice& s : mine) {
      const float* p = prefix[0] == 0 ? s.w : prefix[0] == 'm' ? s.m : s.v;
      for (int64_t i = 0; i < s.n; i++)
        if (!std::isfinite(p[i])) return str_cat(prefix, s.name, "[", s.from + i, "]");
    }
  return "";
}

std::string latest_checkpoint(const std::string& out_dir) {
  auto done = complete_checkpoints(fs::path(out_dir) / "checkpoints");
  return done.empty() ? "" : done.back().string();
}

CheckpointReader::CheckpointReader(const std::string& dir) : dir_(dir) {
  if (fs::exists(fs::path(dir) / "model.safetensors")) {  // whole files, by one rank
    files_.emplace_back(dir + "/model.safetensors");
    files_.emplace_back(dir + "/optimizer.safetensors");
    for (size_t f = 0; f < files_.size(); f++)
      for (const SafeTensorInfo& t : files_[f].tensors())
        slices_[t.name].push_back({0, t.shape.numel(), f, t.name});
    return;
  }
  // shards: shard-RRRRR-of-PPPPP.safetensors, every one of them
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("shard-", 0) == 0) names.push_back(e.path().filename().string());
  CHECK(!names.empty(), dir, ": neither model.safetensors nor shard-*.safetensors: not a checkpoint");
  std::sort(names.begin(), names.end());
  ranks_ = int(names.size()), sharded_ = true;
  for (int r = 0; r < ranks_; r++) {
    CHECK(names[size_t(r)] == shard_name(r, ranks_), dir, ": has ", ranks_, " shard files but not ",
          shard_name(r, ranks_), " (a shard is missing or stray)");
    files_.emplace_back(dir + "/" + names[size_t(r)]);
    for (const SafeTensorInfo& t : files_.back().tensors()) {
      const size_t at = t.name.rfind('@');
      CHECK(at != std::string::npos && t.shape.n == 1, files_.back().path(), ": tensor '", t.name,
            "' is not a slice NAME@FROM of one dimension");
      char* end = nullptr;
      const long long from = std::strtoll(t.name.c_str() + at + 1, &end, 10);
      CHECK(end && *end == 0 && from >= 0, files_.back().path(), ": bad slice start in '", t.name, "'");
      slices_[t.name.substr(0, at)].push_back({from, t.shape.numel(), size_t(r), t.name});
    }
  }
  for (auto& [name, v] : slices_)
    std::sort(v.begin(), v.end(), [](const Slice& a, const Slice& b) { return a.from < b.from; });
}

void CheckpointReader::read(const std::string& prefix, const std::string& name, const Shape& shape,
                            int64_t from, int64_t n, float* dst) const {
  const int64_t numel = shape.numel();
  const std::string key = prefix + name;
  const auto it = slices_.find(key);
  CHECK(it != slices_.end(), dir_, ": the checkpoint has no tensor '", key,
        "' (another model or LoRA config?)");
  CHECK(from >= 0 && n >= 0 && from + n <= numel, dir_, ": elements [", from, ", ", from + n, ") of '", key,
        "' asked for a tensor of ", numel);
  int64_t covered = 0, stored_end = 0;
  std::vector<float> buf;
  for (const Slice& s : it->second) {
    stored_end = std::max(stored_end, s.from + s.n);
    const int64_t a = std::max(from, s.from), b = std::min(from + n, s.from + s.n);
    if (a >= b) continue;
    const SafeTensorsFile& f = files_[s.file];
    buf.resize(size_t(s.n));
    f.read_f32(s.stored, buf.data(), sharded_ ? Shape{s.n} : shape);  // whole files: the shape exactly
    std::copy(buf.begin() + (a - s.from), buf.begin() + (b - s.from), dst + (a - from));
    covered += b - a;
  }
  CHECK(stored_end == numel, dir_, ": '", key, "' holds ", stored_end, " elements, the model's has ", numel);
  CHECK(covered == n, dir_, ": the shards hold only ", covered, " of elements [", from, ", ", from + n,
        ") of '", key, "' (an incomplete or mixed checkpoint)");
}

nlohmann::json CheckpointReader::state() const {
  std::ifstream f(dir_ + "/state.json");
  CHECK(f.good(), dir_, "/state.json: cannot read");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    FAIL(dir_, "/state.json: not valid JSON: ", e.what());
  }
}

nlohmann::json load_checkpoint(const std::string& dir, const TrainedState& t) {
  const CheckpointReader r(dir);
  for (const auto& [prefix, set] :
       {std::pair<const char*, const std::vector<NamedTensor>*>{"", &t.w}, {"m.", &t.m}, {"v.", &t.v}})
    for (const NamedTensor& n : *set) r.read(prefix, n.name, n.t.shape, 0, n.t.numel(), n.t.f32());
  return r.state();
}

}  // namespace longctx

#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

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
  std::ifstream f(dir / "COMPLETE");
  long long step = -1;
  if (!(f >> step)) return false;
  const std::string n = dir.filename().string();  // step_NNNNNNNN
  return n.size() > 5 && n.substr(5).find_first_not_of("0123456789") == std::string::npos &&
         std::stoll(n.substr(5)) == step;
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

void read_into(const std::vector<NamedTensor>& t, const SafeTensorsFile& f, const std::string& prefix) {
  for (const NamedTensor& n : t) f.read_f32(prefix + n.name, n.t.f32(), n.t.shape);
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

void save_checkpoint(const std::string& out_dir, int64_t step, const TrainedState& t,
                     const nlohmann::json& state, int64_t keep_last) {
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
    write_file_synced(tmp / "state.json", state.dump(1) + "\n");
    fsync_path(tmp);
    fs::remove_all(final_dir);  // an incomplete one left by a crash
    fs::rename(tmp, final_dir);
    fsync_path(root);
    write_file_synced(final_dir / "COMPLETE", std::to_string(step) + "\n");  // last: marks it usable
    fsync_path(final_dir);
  } catch (const std::exception& e) {
    // nothing half-written stays behind to be taken for a checkpoint (or to fill the disk further)
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (!is_complete(final_dir)) fs::remove_all(final_dir, ec);
    FAIL("checkpoint of step ", step, " in ", root.string(), " not written: ", e.what());
  }

  // prune: old complete ones beyond keep_last, and leftovers of crashed saves
  auto done = complete_checkpoints(root);
  for (size_t i = 0; i + size_t(keep_last) < done.size(); i++)
    if (done[i] != final_dir) fs::remove_all(done[i]);
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp") != std::string::npos || !fs::exists(e.path() / "COMPLETE")) fs::remove_all(e.path());
  }
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

std::string latest_checkpoint(const std::string& out_dir) {
  auto done = complete_checkpoints(fs::path(out_dir) / "checkpoints");
  return done.empty() ? "" : done.back().string();
}

nlohmann::json load_checkpoint(const std::string& dir, const TrainedState& t) {
  read_into(t.w, SafeTensorsFile(dir + "/model.safetensors"), "");
  SafeTensorsFile o(dir + "/optimizer.safetensors");
  read_into(t.m, o, "m.");
  read_into(t.v, o, "v.");
  std::ifstream f(dir + "/state.json");
  CHECK(f.good(), dir, "/state.json: cannot read");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    FAIL(dir, "/state.json: not valid JSON: ", e.what());
  }
}

}  // namespace longctx

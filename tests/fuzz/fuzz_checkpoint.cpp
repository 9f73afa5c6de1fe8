// Checkpoint metadata: latest_checkpoint over a fuzzed set of checkpoint
// directory names (complete or not), then load_checkpoint of the one it picks
// with a fuzzed state.json (the tensors are fixed and valid), then the data
// state inside it restored into a token-file source and a JSONL source, as a
// resumed run does. Input: directory names one per line, a NUL, then
// state.json; without a NUL the whole input is state.json in step_00000001.
// Each directory gets a COMPLETE marker holding the digits after "step_" (what
// save_checkpoint writes); a trailing '!' on the name leaves the marker out,
// a trailing '?' writes "1" into it instead.
#include "fuzz_common.h"
#include "io/npy.h"
#include "train/checkpoint.h"
#include "train/data.h"

using namespace longctx;

namespace {

struct Fixture {
  std::string run, model, optimizer;
  std::vector<float> w{1, 2}, m{3, 4}, v{5, 6};
  std::unique_ptr<DataSource> tokens, jsonl;
  Fixture() {
    run = fs::path(fuzz::scratch_path("run/x")).parent_path().string();
    model = fuzz::scratch_path("fixed/model.safetensors");
    optimizer = fuzz::scratch_path("fixed/optimizer.safetensors");
    save_safetensors(model, {{"w", Tensor(w.data(), Shape{2})}});
    save_safetensors(optimizer, {{"m.w", Tensor(m.data(), Shape{2})}, {"v.w", Tensor(v.data(), Shape{2})}});
    const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7};
    DataConfig t;
    t.paths = {fuzz::scratch_path("fixed/tokens.npy")};
    save_npy_i32(t.paths[0], {int64_t(ids.size())}, ids.data());
    tokens = make_data_source(t, 1, 0);
    DataConfig j;
    j.kind = "jsonl";
    j.paths = {fuzz::scratch_file("fixed/docs.jsonl", "{\"text\": \"abc\"}\n\n{\"text\": \"defgh\"}\n")};
    jsonl = make_data_source(j, 1, 0);
  }
};

std::string plain_name(std::string_view s) {
  if (s.size() > 64 || s.empty() || s == "." || s == ".." || s.find('/') != std::string_view::npos) return "";
  return std::string(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fx;
  const fuzz::Split in = fuzz::split_at_nul(data, size);
  struct Dir {
    std::string name;
    char marker;  // '\0': the digits of the name, '!': none, '?': "1"
  };
  std::vector<Dir> dirs;
  std::string_view state = in.head;
  if (in.has_rest) {
    state = in.rest;
    for (std::string_view l : fuzz::lines(in.head)) {
      char marker = '\0';
      if (!l.empty() && (l.back() == '!' || l.back() == '?')) marker = l.back(), l.remove_suffix(1);
      if (std::string n = plain_name(l); !n.empty() && dirs.size() < 4) dirs.push_back({n, marker});
    }
  } else {
    dirs.push_back({"step_00000001", '\0'});
  }
  const fs::path root = fs::path(fx.run) / "checkpoints";
  fs::remove_all(root);
  fs::create_directories(root);
  for (const Dir& d : dirs) {
    fs::create_directories(root / d.name);
    if (d.marker == '!') continue;
    const std::string digits = d.name.size() > 5 ? d.name.substr(5) : "";
    fuzz::write_bytes((root / d.name / "COMPLETE").string(), d.marker == '?' ? "1\n" : digits + "\n");
  }
  std::string latest;
  fuzz::clean("", [&] { latest = latest_checkpoint(fx.run); });
  if (latest.empty()) return 0;
  fs::copy_file(fx.model, latest + "/model.safetensors", fs::copy_options::overwrite_existing);
  fs::copy_file(fx.optimizer, latest + "/optimizer.safetensors", fs::copy_options::overwrite_existing);
  fuzz::write_bytes(latest + "/state.json", state);

  std::vector<float> w(2), m(2), v(2);
  TrainedState ts;
  ts.w = {{"w", Tensor(w.data(), Shape{2})}};
  ts.m = {{"w", Tensor(m.data(), Shape{2})}};
  ts.v = {{"w", Tensor(v.data(), Shape{2})}};
  nlohmann::json st;
  if (!fuzz::clean(latest, [&] { st = load_checkpoint(latest, ts); })) return 0;
  if (w[1] != 2 || m[1] != 4 || v[1] != 6) fuzz::report("tensors read wrong", latest);
  if (!st.is_object() || !st.contains("data")) return 0;
  // What a resumed run does with the data state; either source may refuse it, cleanly.
  for (DataSource* src : {fx.tokens.get(), fx.jsonl.get()}) {
    const nlohmann::json before = src->state();
    if (fuzz::clean("", [&] { src->restore(st["data"]); })) {
      Batch b;
      fuzz::clean("", [&] { src->next(b, 2, 3); });
    }
    src->restore(before);
  }
  return 0;
}

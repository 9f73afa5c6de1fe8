#include "train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cfloat>
#include <cmath>
#include <fstream>
#include <map>

#include "core/check.h"
#include "train/cp_step.h"

namespace longctx {

namespace {

using json = nlohmann::json;

// Every key `train` knows, with its default. Sub-objects listed here as
// "free" (model.init, data.*, eval.*) are checked by their own readers.
const json& schema() {
  static const json s = json::parse(R"({
    "model": {"path": "", "init": null, "override": null},
    "data": {},
    "seq_len": 1024, "batch_size": 1, "grad_accum": 1, "steps": 100,
    "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 10, "decay_steps": 0, "weight_decay": 0.1, "grad_clip": 1.0,
    "beta1": 0.9, "beta2": 0.95, "seed": 0, "out_dir": "runs/train", "save_every": 0, "keep_last": 2,
    "resume": false, "stop_after": 0, "log_every": 1, "max_bad_steps": 5, "curriculum": [],
    "grace_seconds": 30.0, "on_checkpoint_error": "stop", "watchdog_seconds": 600.0,
    "device_mem": "", "host_mem": "", "device": "auto", "dtype": "auto", "comm": "auto",
    "cp_kind": "ulysses", "cp_ulysses": 2, "dp": 1, "zero": 0, "plan": "manual", "recompute": "full", "offload": "none", "offload_dir": "", "offload_model": "none", "offload_optimizer": "none", "kv_dtype": "auto", "kv_grad_dtype": "auto",
    "mlp_tiles": null, "loss_tiles": null, "chunk_mode": "none", "chunk_size": null, "chunk_budget": null,
    "lora": {"rank": 0, "alpha": 16.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "eval": {"lengths": [], "depths": [0.1, 0.5, 0.9], "samples": 4, "heatmap": "passkey.png"}
  })");
  return s;
}

// Whether s is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF). yaml-cpp passes any bytes through; nlohmann::json
// throws when it later dumps a string that is not UTF-8.
bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// A config text, key or value must be UTF-8: `src` names the file (or override) in the error.
const std::string& utf8(const std::string& s, const std::string& src) {
  if (!valid_utf8(s)) {
    std::string shown;
    for (char ch : s.substr(0, 40)) shown += std::isprint(static_cast<unsigned char>(ch)) ? ch : '?';
    FAIL(src, ": not UTF-8 text: '", shown, "'");
  }
  return s;
}

json yaml_to_json(const YAML::Node& n, const std::string& src) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return nullptr;
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(yaml_to_json(e, src));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[utf8(kv.first.as<std::string>(), src)] = yaml_to_json(kv.second, src);
      return o;
    }
    default: break;
  }
  const std::string& s = utf8(n.Scalar(), src);
  if (n.Tag() == "!") return s;  // quoted: always a string
  bool b;
  if (YAML::convert<bool>::decode(n, b) && s != "y" && s != "n") return b;
  char* end = nullptr;
  errno = 0;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0' && errno == 0) return i;
  const double d = std::strtod(s.c_str(), &end);
  // inf and nan stay strings: no config number may be one (a key that wants a number says so)
  if (!s.empty() && *end == '\0' && std::isfinite(d)) return d;
  return s;
}

std::string kind_of(const json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "a mapping";
  return "null";
}

// Same JSON kind as the default (integers are numbers too; null default:
// anything). A null value (`key:` with nothing after it) keeps the default of
// a mapping and is an error for anything else.
void check_type(const std::string& key, const json& def, const json& v, const std::string& src) {
  if (def.is_null() || (v.is_null() && def.is_object())) return;
  const bool ok = (def.is_boolean() && v.is_boolean()) ||
                  (def.is_number_integer() && v.is_number_integer()) ||
                  (def.is_number_float() && v.is_number()) || (def.is_string() && v.is_string()) ||
                  (def.is_array() && v.is_array()) || (def.is_object() && v.is_object());
  CHECK(ok, src, ": key '", key, "' must be ", kind_of(def), ", got ", kind_of(v), " (", v.dump(), ")");
  // a list whose default has elements: each element of the same kind as the first default one
  if (def.is_array() && !def.empty())
    for (size_t i = 0; i < v.size(); i++) check_type(key + "[" + std::to_string(i) + "]", def[0], v[i], src);
}

// Defaults under the user's values; unknown keys are errors naming the key.
json merge(const json& def, const json& user, const std::string& prefix, const std::string& src) {
  json out = def;
  for (auto it = user.begin(); it != user.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    CHECK(def.contains(it.key()), src, ": unknown config key '", key, "'");
    const json& d = def[it.key()];
    check_type(key, d, it.value(), src);
    const bool free_map = key == "model.init" || key == "data" || d.is_null();  // checked by their readers
    out[it.key()] = d.is_object() && !free_map ? merge(d, it.value(), key, src) : it.value();
  }
  return out;
}

void set_dotted(json& root, const std::string& key, const json& v) {
  json* cur = &root;
  size_t start = 0;
  for (size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1) {
    json& next = (*cur)[key.substr(start, dot - start)];
    if (!next.is_object()) next = json::object();
    cur = &next;
  }
  (*cur)[key.substr(start)] = v;
}

}  // namespace

int64_t TrainConfig::seq_len_at(int64_t step) const {
  for (const auto& s : curriculum)
    if (step < s.until_step) return s.seq_len;
  return seq_len;
}

int64_t TrainConfig::grad_accum_at(int64_t step) const {
  for (const auto& s : curriculum)
    if (step < s.until_step) return s.grad_accum > 0 ? s.grad_accum : grad_accum;
  return grad_accum;
}

double TrainConfig::lr_scale_at(int64_t step) const {
  for (const auto& s : curriculum)
    if (step < s.until_step) return s.lr_scale;
  return 1.0;
}

int64_t TrainConfig::batch_size_at(int64_t step) const {
  for (const auto& s : curriculum)
    if (step < s.until_step) return s.batch_size > 0 ? s.batch_size : batch_size;
  return batch_size;
}

TrainConfig train_config_from_json(json user, const std::string& src) {
  CHECK(user.is_object(), src, ": the config must be a mapping of keys to values");
  TrainConfig c;
  c.raw = merge(schema(), user, "", src);
  const json& r = c.raw;
  c.model_path = r["model"]["path"];
  c.model_init = r["model"]["init"];
  CHECK(c.model_path.empty() != c.model_init.is_null(), src,
        ": set exactly one of model.path and model.init");
  CHECK(c.model_init.is_null() || c.model_init.is_object(), src,
        ": model.init must be a mapping of HF config fields");
  c.model_override = r["model"]["override"];
  CHECK(c.model_override.is_null() || c.model_override.is_object(), src,
        ": model.override must be a mapping of HF config fields (they replace the model's own)");
  c.data = r["data"];
  for (const char* k : {"seq_len", "batch_size", "grad_accum", "steps"}) {
    CHECK(r[k].get<int64_t>() >= 1, src, ": key '", k, "' must be >= 1, got ", r[k].dump());
  }
  // positions are int32; a batch of more than 2^40 tokens is a typo, not a run
  CHECK(r["seq_len"].get<int64_t>() <= INT32_MAX, src, ": key 'seq_len' ", r["seq_len"].dump(),
        " is absurd (limit ", INT32_MAX, ")");
  CHECK(r["batch_size"].get<int64_t>() <= (int64_t(1) << 40) / r["seq_len"].get<int64_t>(), src,
        ": batch_size * seq_len is absurd (more than 2^40 tokens)");
  for (const char* k : {"warmup_steps", "save_every", "stop_after"})
    CHECK(r[k].get<int64_t>() >= 0, src, ": key '", k, "' must be >= 0, got ", r[k].dump());
  for (const char* k : {"lr", "min_lr", "weight_decay", "grad_clip"})
    CHECK(r[k].get<double>() >= 0 && r[k].get<double>() <= FLT_MAX, src, ": key '", k,
          "' must be >= 0 and fit a float, got ", r[k].dump());
  for (const char* k : {"beta1", "beta2"})
    CHECK(r[k].get<double>() >= 0 && r[k].get<double>() < 1, src, ": key '", k, "' must be in [0, 1), got ",
          r[k].dump());
  c.seq_len = r["seq_len"], c.batch_size = r["batch_size"], c.grad_accum = r["grad_accum"],
  c.steps = r["steps"];
  c.lr = r["lr"], c.min_lr = r["min_lr"], c.weight_decay = r["weight_decay"], c.grad_clip = r["grad_clip"];
  c.beta1 = r["beta1"], c.beta2 = r["beta2"];
  c.warmup_steps = r["warmup_steps"], c.seed = r["seed"], c.save_every = r["save_every"];
  c.decay_steps = r["decay_steps"];
  CHECK(c.decay_steps >= 0, src, ": key 'decay_steps' must be >= 0 (0: decay over all steps), got ",
        c.decay_steps);
  c.stop_after = r["stop_after"];
  c.keep_last = r["keep_last"], c.log_every = r["log_every"], c.max_bad_steps = r["max_bad_steps"];
  c.grace_seconds = r["grace_seconds"], c.watchdog_seconds = r["watchdog_seconds"];
  CHECK(c.grace_seconds > 0 && c.watchdog_seconds >= 0, src,
        ": need grace_seconds > 0 and watchdog_seconds >= 0 (0: no watchdog)");
  c.on_checkpoint_error = r["on_checkpoint_error"];
  CHECK(c.on_checkpoint_error == "stop" || c.on_checkpoint_error == "continue", src,
        ": key 'on_checkpoint_error' must be stop or continue, got '", c.on_checkpoint_error, "'");
  c.out_dir = r["out_dir"], c.resume = r["resume"], c.device_mem = r["device_mem"],
  c.host_mem = r["host_mem"];
  c.device = r["device"], c.dtype = r["dtype"], c.comm = r["comm"];
  CHECK(c.comm == "auto" || c.comm == "mpi" || c.comm == "nccl", src,
        ": key 'comm' must be auto, mpi or nccl, got '", c.comm, "'");
  c.eval = r["eval"];
  // the plan keys: the same words as the CLI flags; tiles and chunks take a count or "auto"
  for (const char* k : {"recompute", "offload", "offload_dir", "offload_model", "offload_optimizer",
                        "kv_dtype", "kv_grad_dtype", "mlp_tiles", "loss_tiles", "chunk_mode", "chunk_size",
                        "chunk_budget", "device_mem", "host_mem"}) {
    const json& v = r[k];
    if (v.is_null()) continue;
    CHECK(v.is_string() || v.is_number_integer(), src, ": key '", k, "' must be a string or an integer, got ",
          v.dump());
    try {
      set_plan_key(c.plan, k, v.is_string() ? v.get<std::string>() : std::to_string(v.get<int64_t>()));
    } catch (const Error& e) {
      FAIL(src, ": key '", k, "': ", e.what());
    }
  }
  // eval.* as the trainer reads it after training: lengths integers, depths in [0, 1], samples >= 1
  for (const json& n : r["eval"]["lengths"])
    CHECK(n.is_number_integer() && n.get<int64_t>() >= 1 && n.get<int64_t>() <= INT32_MAX, src,
          ": key 'eval.lengths' must hold token counts in [1, ", INT32_MAX, "], got ", n.dump());
  for (const json& d : r["eval"]["depths"])
    CHECK(d.get<double>() >= 0 && d.get<double>() <= 1, src,
          ": key 'eval.depths' must hold fractions in [0, 1], got ", d.dump());
  CHECK(r["eval"]["samples"].get<int64_t>() >= 1, src, ": key 'eval.samples' must be >= 1, got ",
        r["eval"]["samples"].dump());
  c.plan.lora.rank = r["lora"]["rank"], c.plan.lora.alpha = r["lora"]["alpha"];
  c.plan.lora.targets = r["lora"]["targets"].get<std::vector<std::string>>();
  try {
    validate_lora(c.plan.lora);
  } catch (const Error& e) {
    FAIL(src, ": key 'lora': ", e.what());
  }
  CHECK(r["plan"] == "manual" || r["plan"] == "auto", src, ": key 'plan' must be manual or auto, got ",
        r["plan"].dump());
  c.plan_auto = r["plan"] == "auto";
  c.cp_kind = r["cp_kind"];
  c.zero = r["zero"];
  c.cp_ulysses = r["cp_ulysses"];
  c.dp = r["dp"];
  CHECK(c.dp >= 1, src, ": key 'dp' must be >= 1, got ", c.dp);
  CHECK(c.zero >= 0 && c.zero <= 3, src, ": key 'zero' must be 0, 1, 2 or 3, got ", c.zero);
  try {
    parse_cp_kind(c.cp_kind);
  } catch (const Error& e) {
    FAIL(src, ": key 'cp_kind': ", e.what());
  }
  c.raw["mlp_tiles"] = c.plan.mlp_tiles == 0 ? json("auto") : json(c.plan.mlp_tiles);
  c.raw["loss_tiles"] = c.plan.loss_tiles == 0 ? json("auto") : json(c.plan.loss_tiles);
  if (c.plan.chunked()) {
    c.raw["chunk_size"] = c.plan.chunk_size == 0 ? json("auto") : json(c.plan.chunk_size);
    c.raw["chunk_budget"] = c.plan.chunk_budget == 0 ? json("auto") : json(c.plan.chunk_budget);
  }
  CHECK(c.lr > 0 && c.min_lr >= 0 && c.min_lr <= c.lr, src, ": need 0 <= min_lr <= lr and lr > 0");
  CHECK(c.keep_last >= 1, src, ": keep_last must be >= 1");
  for (const json& st : r["curriculum"]) {
    const char* want =
        ": each curriculum stage must be {until_step: INT, seq_len: INT[, batch_size: INT]"
        "[, grad_accum: INT][, lr_scale: NUMBER]}, got ";
    CHECK(st.is_object() && st.contains("until_step") && st.contains("seq_len"), src, want, st.dump());
    CurriculumStage cs;
    for (auto it = st.begin(); it != st.end(); ++it) {
      const std::string& k = it.key();
      const bool is_int = it.value().is_number_integer();
      CHECK((k == "lr_scale" && it.value().is_number()) ||
                (is_int && (k == "until_step" || k == "seq_len" || k == "batch_size" || k == "grad_accum")),
            src, want, st.dump());
      if (k == "until_step") cs.until_step = it.value();
      if (k == "seq_len") cs.seq_len = it.value();
      if (k == "batch_size") cs.batch_size = it.value();
      if (k == "grad_accum") cs.grad_accum = it.value();
      if (k == "lr_scale") cs.lr_scale = it.value();
    }
    CHECK(cs.seq_len >= 1 && cs.seq_len <= INT32_MAX, src, ": curriculum seq_len must be in [1, ", INT32_MAX,
          "], got ", cs.seq_len);
    CHECK(std::max<int64_t>(cs.batch_size, 1) <= (int64_t(1) << 40) / cs.seq_len, src,
          ": curriculum batch_size * seq_len is absurd (more than 2^40 tokens)");
    CHECK(!st.contains("batch_size") || cs.batch_size >= 1, src, ": curriculum batch_size must be >= 1");
    CHECK(!st.contains("grad_accum") || cs.grad_accum >= 1, src, ": curriculum grad_accum must be >= 1");
    CHECK(cs.lr_scale > 0 && cs.lr_scale <= FLT_MAX, src,
          ": curriculum lr_scale must be > 0 and fit a float");
    c.curriculum.push_back(cs);
  }
  return c;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  json user;
  try {
    user = yaml_to_json(YAML::LoadFile(path), path);
  } catch (const YAML::BadFile&) {
    FAIL(path, ": cannot read the config file");
  } catch (const YAML::Exception& e) {
    FAIL(path, ": not valid YAML: ", e.msg, " at line ", e.mark.line + 1);
  }
  if (user.is_null()) user = json::object();
  CHECK(user.is_object(), path, ": the config must be a mapping of keys to values, got ", kind_of(user));
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    CHECK(eq != std::string::npos && eq > 0, "override '", o, "' must look like key=value");
    utf8(o, "override");
    json v;
    try {
      v = yaml_to_json(YAML::Load(o.substr(eq + 1)), "override '" + o + "'");
    } catch (const YAML::Exception& e) {
      FAIL("override '", o, "': cannot read the value: ", e.msg);
    }
    set_dotted(user, o.substr(0, eq), v);
  }
  return train_config_from_json(user, path);
}

std::string to_yaml(const json& j) {
  YAML::Emitter out;
  std::function<void(const json&)> emit = [&](const json& v) {
    if (v.is_object()) {
      out << YAML::BeginMap;
      for (auto it = v.begin(); it != v.end(); ++it)
        out << YAML::Key << it.key() << YAML::Value, emit(it.value());
      out << YAML::EndMap;
    } else if (v.is_array()) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& e : v) emit(e);
      out << YAML::EndSeq;
    } else if (v.is_string()) {
      out << YAML::DoubleQuoted << v.get<std::string>();
    } else if (v.is_null()) {
      out << YAML::Null;
    } else {
      out << v.dump();
    }
  };
  emit(j);
  return std::string(out.c_str()) + "\n";
}

}  // namespace longctx

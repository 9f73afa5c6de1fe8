// Training data: batches of (B, T) tokens with next-token labels, from token
// files (.npy, llm.c .bin shards), JSONL text, or the built-in passkey task.
// Packed documents get per-document positions and document ids so that
// attention stays inside each document (document-causal).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace longctx {

struct Batch {  // B rows of T tokens, row-major
  int64_t B = 0, T = 0;
  std::vector<int32_t> inputs, labels;  // (B, T); labels: the next token or kIgnoreIndex (-100)
  std::vector<int32_t> positions;       // (B, T) rope position, 0 at each document start and each row start
  std::vector<int32_t> doc_ids;         // (B, T) tokens attend only within equal ids (and causally)
  int64_t label_count() const;          // labels that are not kIgnoreIndex
};

struct DataConfig {
  std::string kind = "tokens";     // "tokens" (.npy/.bin files), "jsonl", "passkey"
  std::vector<std::string> paths;  // files; a directory means all *.bin/*.npy (or *.jsonl) in it, sorted
  std::string tokenizer;           // tokenizer.json for jsonl / passkey; empty: the byte tokenizer
  bool pack = true;                // documents get their own positions and attention
  int32_t eos_id = -1;             // document separator in token streams (-1: none); jsonl: the tokenizer's
  int64_t passkey_digits = 5;
  double depth_min = 0.0, depth_max = 1.0;  // needle depth range, fractions of the filler
  // "answer": the loss is on the answer tokens only; "all": on every token,
  // which adds next-token prediction on the filler (it teaches copying sooner).
  std::string passkey_loss = "answer";
  // jsonl "messages" records: the chat template that renders them (chatml,
  // llama3, plain); "": such records are refused. Prompt/completion records
  // and messages train on the completion / assistant tokens only.
  std::string chat_template;
  // > 0: each row packs several samples (own positions and attention) with
  // lengths log-uniform in [passkey_min_len, row length], so every step
  // also trains the lengths below the current one.
  int64_t passkey_min_len = 0;
  // > span of a sample: its positions jump once, by a random skip, somewhere
  // in the filler between the needle and the question, so that short
  // samples train question-to-needle distances up to this span (position
  // skipping as in PoSE; the evaluated samples keep contiguous positions).
  int64_t passkey_position_span = 0;
};

// data.* of the train config: kind, path (a string or a list), tokenizer, pack,
// eos_id, passkey_digits, depth_min, depth_max. Unknown keys are errors.
DataConfig data_config_from_json(const nlohmann::json& j);

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Fills the next batch of (B, T); T may change between calls (curriculum).
  // Deterministic given the seed and state.
  virtual void next(Batch& b, int64_t B, int64_t T) = 0;
  // Everything needed to continue exactly: position, epoch, sample counter.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& s) = 0;
  // Max token id + 1 that can appear (for checking against the model).
  virtual int64_t vocab_needed() const = 0;
};

// model_vocab > 0: a token id >= model_vocab is an error naming the file and
// offset (token files) or the tokenizer (jsonl, passkey). <= 0: unchecked.
std::unique_ptr<DataSource> make_data_source(const DataConfig& c, uint64_t seed, int64_t model_vocab);

// The files a config names: directories expanded to their data files, sorted.
std::vector<std::string> expand_data_paths(const std::vector<std::string>& paths, const std::string& kind);

}  // namespace longctx

// One JSONL line as a training document: its token ids and, per token,
// whether the loss counts it. Three record shapes:
//   {"text": "..."}                           every token counts
//   {"prompt": "...", "completion": "..."}    only the completion's tokens (and the eos after them)
//   {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
//                                             rendered by a chat template; only the assistant
//                                             replies (with their end marker) count
// Prompt and completion are tokenised separately (the boundary is exact);
// special tokens written in a template become their ids as in the text.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace longctx {

class Tokenizer;

struct JsonlDoc {
  std::vector<int32_t> ids;   // the document, eos last
  std::vector<uint8_t> loss;  // 1: predicting this token counts toward the loss
};

// "chatml" (<|im_start|>role\ncontent<|im_end|>\n; Qwen), "llama3"
// (<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>) or "plain"
// (Role: content\n\n). Throws naming the template when unknown.
void check_chat_template(const std::string& name);

// `where` names the line in errors ("jsonl FILE:LINE"); `tmpl` is the chat
// template for messages ("" : messages are refused, naming data.template).
JsonlDoc jsonl_doc(const nlohmann::json& record, const Tokenizer& tok, int32_t eos, const std::string& tmpl,
                   const std::string& where);

}  // namespace longctx

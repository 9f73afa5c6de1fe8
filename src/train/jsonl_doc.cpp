#include "train/jsonl_doc.h"

#include "core/check.h"
#include "io/tokenizer.h"

namespace longctx {

namespace {

using json = nlohmann::json;

// The text before and after a message's content in a template.
struct Frame {
  std::string open, close;
};

Frame frame(const std::string& tmpl, const std::string& role) {
  if (tmpl == "chatml") return {"<|im_start|>" + role + "\n", "<|im_end|>\n"};
  if (tmpl == "llama3") return {"<|start_header_id|>" + role + "<|end_header_id|>\n\n", "<|eot_id|>"};
  std::string r = role;  // plain
  r[0] = char(std::toupper(static_cast<unsigned char>(r[0])));
  return {r + ": ", "\n\n"};
}

// The end marker that closes a reply (counted with it: the model learns to stop).
std::string reply_end(const std::string& tmpl) {
  return tmpl == "chatml" ? "<|im_end|>" : tmpl == "llama3" ? "<|eot_id|>" : "";
}

const std::string& string_field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) FAIL(where, ": expected a string field \"", key, "\"");
  return it->get_ref<const std::string&>();
}

class Builder {
 public:
  Builder(const Tokenizer& tok) : tok_(tok) {}
  void add(const std::string& text, bool loss) {
    if (text.empty()) return;
    const std::vector<int32_t> ids = tok_.encode(text);
    doc.ids.insert(doc.ids.end(), ids.begin(), ids.end());
    doc.loss.insert(doc.loss.end(), ids.size(), uint8_t(loss));
  }
  void add_id(int32_t id, bool loss) {
    doc.ids.push_back(id);
    doc.loss.push_back(uint8_t(loss));
  }
  JsonlDoc doc;

 private:
  const Tokenizer& tok_;
};

}  // namespace

void check_chat_template(const std::string& name) {
  CHECK(name.empty() || name == "chatml" || name == "llama3" || name == "plain", "data.template '", name,
        "' is not a chat template longctx knows (chatml, llama3, plain)");
}

JsonlDoc jsonl_doc(const json& j, const Tokenizer& tok, int32_t eos, const std::string& tmpl,
                   const std::string& where) {
  Builder b(tok);
  const bool obj = j.is_object();
  if (obj && j.contains("text")) {
    b.add(string_field(j, "text", where), true);
    b.add_id(eos, true);
  } else if (obj && (j.contains("prompt") || j.contains("completion"))) {
    b.add(string_field(j, "prompt", where), false);
    b.add(string_field(j, "completion", where), true);
    b.add_id(eos, true);
  } else if (obj && j.contains("messages")) {
    CHECK(!tmpl.empty(), where,
          ": a \"messages\" record needs a chat template: set data.template (chatml, llama3 or plain)");
    const json& msgs = j["messages"];
    CHECK(msgs.is_array() && !msgs.empty(), where, ": \"messages\" must be a non-empty list");
    for (const json& m : msgs) {
      CHECK(m.is_object(), where, ": each message must be an object with \"role\" and \"content\"");
      const std::string& role = string_field(m, "role", where);
      const std::string& content = string_field(m, "content", where);
      CHECK(role == "system" || role == "user" || role == "assistant", where, ": message role '", role,
            "' is not system, user or assistant");
      const Frame f = frame(tmpl, role);
      const bool reply = role == "assistant";
      b.add(f.open, false);
      b.add(content, reply);
      const std::string end = reply ? reply_end(tmpl) : "";
      b.add(end, reply);                         // the end marker of a reply counts
      b.add(f.close.substr(end.size()), false);  // what follows it does not
    }
    b.add_id(eos, false);  // the separator: the template's end marker already taught the stop
  } else {
    FAIL(where,
         ": expected an object with a string field \"text\", \"prompt\" and \"completion\", or \"messages\"");
  }
  return std::move(b.doc);
}

}  // namespace longctx

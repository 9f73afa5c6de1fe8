#include "core/check.h"

#include <cstring>

namespace longctx {

void fail_at(const char* file, int line, const std::string& msg) {
  const char* base = std::strstr(file, "src/");
  if (!base) base = std::strstr(file, "apps/");
  throw Error(str_cat(msg, " [", base ? base : file, ":", line, "]"));
}

}  // namespace longctx

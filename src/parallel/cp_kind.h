// The context-parallel layouts, named as on the command line.
#pragma once
#include <cstdint>
#include <string>

namespace longctx {

enum class CpKind : uint8_t { ulysses, ring, zigzag, upipe, hybrid };
CpKind parse_cp_kind(const std::string& s);
const char* cp_kind_name(CpKind k);

}  // namespace longctx

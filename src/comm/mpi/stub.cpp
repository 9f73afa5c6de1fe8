#include "comm/mpi/mpi_info.h"

namespace longctx {
std::string mpi_library_version() { return ""; }
}  // namespace longctx

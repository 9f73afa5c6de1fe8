#include "comm/mpi/mpi_info.h"

namespace longctx {
std::string mpi_library_version() { return ""; }
}  // namespace longctx

#include "comm/comm.h"
#include "core/check.h"

namespace longctx {
std::unique_ptr<Comm> make_mpi_comm() {
  FAIL(
      "this build has no MPI (install libopenmpi-dev and rebuild) but the process was started with several "
      "ranks");
}
int node_ranks() { return 1; }
int node_rank() { return 0; }
}  // namespace longctx

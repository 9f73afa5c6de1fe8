// No NCCL in this build (CUDA, NCCL or MPI missing): make_nccl_comm says so.
#include "comm/comm.h"
#include "core/check.h"

namespace longctx {
std::unique_ptr<Comm> make_nccl_comm() {
  FAIL("this build has no NCCL (it needs the CUDA toolkit with NCCL and an MPI library)");
}
bool nccl_built() { return false; }
}  // namespace longctx

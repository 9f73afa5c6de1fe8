// Which transport carries device buffers between ranks (make_device_comm in comm.h).
#include "comm/comm.h"
#include "core/check.h"
#include "core/memory.h"
#include "kernels/cuda/cuda_info.h"

namespace longctx {

std::unique_ptr<Comm> make_device_comm(Comm& world, Memory& mem, bool gpu, const std::string& choice) {
  CHECK(choice == "auto" || choice == "mpi" || choice == "nccl", "--comm ", choice,
        ": expected auto, mpi or nccl");
  const bool device_memory = !mem.host_accessible(Tier::device);
  CHECK(choice != "nccl" || gpu, "--comm nccl needs --device cuda (NCCL moves GPU memory)");
  if (!device_memory || std::string(world.kind()) == "local") return nullptr;
  bool nccl = choice == "nccl";
  if (choice == "auto" && gpu && nccl_built()) {
    std::string why;
    const int gpus = int(cuda_devices(&why).size());
    nccl = node_ranks() <= gpus;  // NCCL refuses two ranks on one GPU
  }
  CHECK(!nccl || nccl_built(),
        "--comm nccl: ", "this build has no NCCL (it needs the CUDA toolkit with NCCL ",
        "and an MPI library)");
  if (nccl) return make_nccl_comm();
  return make_staged_comm(world, mem);
}

}  // namespace longctx

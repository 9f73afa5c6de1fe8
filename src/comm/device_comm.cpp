// Which transport carries device buffers between ranks (make_device_comm in comm.h), and which ranks share
// a GPU.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <vector>

#include "comm/comm.h"
#include "core/check.h"
#include "core/memory.h"
#include "kernels/cuda/cuda_info.h"

namespace longctx {

int ranks_sharing_gpu(Comm& world) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::string id = cuda_device_pci_id();
  // (host, GPU) as two hashes per rank
  const int32_t mine[2] = {int32_t(std::hash<std::string>{}(host)), int32_t(std::hash<std::string>{}(id))};
  std::vector<int32_t> all(size_t(2 * world.size()));
  world.all_gather(mine, all.data(), 2);
  std::map<std::pair<int32_t, int32_t>, int> count;
  int most = 1;
  for (int r = 0; r < world.size(); r++)
    most = std::max(most, ++count[{all[size_t(2 * r)], all[size_t(2 * r + 1)]}]);
  return most;
}

std::unique_ptr<Comm> make_device_comm(Comm& world, Memory& mem, bool gpu, const std::string& choice) {
  CHECK(choice == "auto" || choice == "mpi" || choice == "nccl", "--comm ", choice,
        ": expected auto, mpi or nccl");
  if (std::string(world.kind()) == "local") return nullptr;  // one rank: nothing to carry
  CHECK(choice != "nccl" || gpu, "--comm nccl needs --device cuda (NCCL moves GPU memory)");
  if (mem.host_accessible(Tier::device)) return nullptr;  // host buffers: the world as it is
  CHECK(choice != "nccl" || nccl_built(), "--comm nccl: this build has no NCCL (it needs the CUDA toolkit ",
        "with NCCL and an MPI library)");
  bool nccl = choice == "nccl" || (choice == "auto" && gpu && nccl_built());
  // NCCL refuses two ranks on one GPU (unless NCCL_HOSTID makes them other hosts, for tests); every rank
  // gathers the same answer, so all of them take the same transport
  if (nccl && !std::getenv("NCCL_HOSTID")) {
    const int sharing = ranks_sharing_gpu(world);
    CHECK(sharing == 1 || choice != "nccl", "--comm nccl: ", sharing, " ranks share one GPU, which NCCL ",
          "refuses; use --comm mpi (staged through host memory) or a GPU per rank");
    nccl = sharing == 1;
  }
  if (nccl) return make_nccl_comm();
  return make_staged_comm(world, mem);
}

}  // namespace longctx

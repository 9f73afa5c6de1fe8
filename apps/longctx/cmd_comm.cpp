// `longctx comm-check [--nccl]`: every collective of the ranks' Comm on known
// data, checked on every rank. Under mpirun it checks MpiComm; with --nccl,
// NcclComm on device buffers (one GPU per rank).
#include <cstdio>
#include <memory>

#include "comm/comm_check.h"
#include "commands.h"
#include "ranks.h"

namespace longctx::cli {

Run add_comm_check(CLI::App& app) {
  auto nccl = std::make_shared<bool>(false);
  app.add_flag("--nccl", *nccl, "check NcclComm on device buffers (one GPU per rank) instead of MPI");
  return [nccl] {
    Comm& w = world();
    std::unique_ptr<Comm> nc;
    if (*nccl) {
      set_activity("starting NCCL");
      nc = make_nccl_comm();
    }
    set_activity("checking the collectives");
    const std::vector<std::string> lines = comm_check(nc ? *nc : w, *nccl);
    double failed = 0;
    for (const std::string& l : lines) failed += l.rfind("FAIL", 0) == 0;
    w.all_reduce_sum(&failed, 1);       // over MPI (host), whatever was checked
    for (const std::string& l : lines)  // rank 0 prints every line, the others their failures
      if (is_root() || l.rfind("FAIL", 0) == 0)
        std::printf("%s%s\n", is_root() ? "" : ("rank " + std::to_string(w.rank()) + ": ").c_str(),
                    l.c_str());
    if (is_root())
      std::printf("%zu checks on each of %d ranks, %d failed\n", lines.size(), w.size(), int(failed));
    return failed > 0 ? 1 : 0;
  };
}

}  // namespace longctx::cli

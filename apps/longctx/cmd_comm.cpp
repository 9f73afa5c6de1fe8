// `longctx comm-check [--nccl]`: every collective of the ranks' Comm on known
// data, checked on every rank. Under mpirun it checks MpiComm; with --nccl,
// NcclComm on device buffers (one GPU per rank).
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "comm/comm_check.h"
#include "comm/watchdog.h"
#include "commands.h"
#include "ranks.h"

namespace longctx::cli {

Run add_comm_check(CLI::App& app) {
  struct Opts {
    bool nccl = false;
    double watchdog = -1;
    int hang_rank = -1;
  };
  auto o = std::make_shared<Opts>();
  app.add_flag("--nccl", o->nccl, "check NcclComm on device buffers (one GPU per rank) instead of MPI");
  app.add_option("--watchdog", o->watchdog,
                 "seconds a collective may wait before the job is ended (default: LONGCTX_WATCHDOG or 600)");
  app.add_option("--hang-rank", o->hang_rank,
                 "test the watchdog: this rank hangs (sleeps) before the checks while the others wait");
  return [o] {
    if (o->watchdog >= 0) set_collective_watchdog(o->watchdog);
    Comm& w = world();
    if (w.rank() == o->hang_rank) {
      set_activity("hanging on purpose (--hang-rank)");
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    const bool nccl = o->nccl;
    std::unique_ptr<Comm> nc;
    if (nccl) {
      set_activity("starting NCCL");
      nc = make_nccl_comm();
    }
    set_activity("checking the collectives");
    const std::vector<std::string> lines = comm_check(nc ? *nc : w, nccl);
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

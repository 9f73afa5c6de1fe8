// `longctx comm-check [--nccl | --staged]`: every collective of the ranks' Comm on known
// data, checked on every rank. Under mpirun it checks MpiComm; with --nccl,
// NcclComm on device buffers (one GPU per rank); with --staged, MPI staged
// through pinned host buffers (on the GPU when there is one, else on
// cpu-staged memory).
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "comm/comm_check.h"
#include "comm/watchdog.h"
#include "commands.h"
#include "core/check.h"
#include "kernels/cuda/cuda_info.h"
#include "ops/backend.h"
#include "ranks.h"

namespace longctx::cli {

Run add_comm_check(CLI::App& app) {
  struct Opts {
    bool nccl = false, staged = false, bandwidth = false;
    int64_t mib = 256;
    double watchdog = -1;
    int hang_rank = -1;
  };
  auto o = std::make_shared<Opts>();
  app.add_flag("--nccl", o->nccl, "check NcclComm on device buffers (one GPU per rank) instead of MPI");
  app.add_flag("--staged", o->staged,
               "check MPI staged through pinned host memory (--comm mpi) on device buffers: GPU memory when "
               "a GPU is there, else cpu-staged memory");
  app.add_flag("--bandwidth", o->bandwidth,
               "also measure the collectives' bus bandwidth (GB/s per rank's link: what plan --ranks "
               "--intra-bw / --inter-bw take) on --mib MiB per rank");
  app.add_option("--mib", o->mib, "--bandwidth: MiB per rank (default 256)");
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
    CHECK(!(o->nccl && o->staged), "comm-check: --nccl or --staged, not both");
    const bool nccl = o->nccl;
    Memory mem;  // --staged: device and pinned host memory for the staging (outlives nc)
    Context ctx;
    std::unique_ptr<Comm> nc;
    bool gpu = false;
    if (nccl) {
      set_activity("starting NCCL");
      nc = make_nccl_comm();
    } else if (o->staged) {
      std::string why;
      gpu = cuda_built() && !cuda_devices(&why).empty();
      setup_device(ctx, mem, gpu ? "cuda" : "cpu-staged");
      nc = make_staged_comm(w, mem);
    }
    set_activity("checking the collectives");
    const std::vector<std::string> lines = comm_check(nc ? *nc : w, nccl || gpu, nccl);
    double failed = 0;
    for (const std::string& l : lines) failed += l.rfind("FAIL", 0) == 0;
    w.all_reduce_sum(&failed, 1);       // over MPI (host), whatever was checked
    for (const std::string& l : lines)  // rank 0 prints every line, the others their failures
      if (is_root() || l.rfind("FAIL", 0) == 0)
        std::printf("%s%s\n", is_root() ? "" : ("rank " + std::to_string(w.rank()) + ": ").c_str(),
                    l.c_str());
    if (is_root())
      std::printf("%zu checks on each of %d ranks, %d failed\n", lines.size(), w.size(), int(failed));
    if (o->bandwidth && failed == 0 && w.size() > 1) {
      CHECK(o->mib > 0, "--mib ", o->mib, ": expected a positive size");
      set_activity("measuring bandwidth");
      const CommBandwidth b = comm_bandwidth(nc ? *nc : w, nccl || gpu, o->mib << 20);
      if (is_root())
        std::printf(
            "bandwidth (%s, %d ranks, %lld MiB per rank, bus GB/s): all_reduce %.2f, all_to_all %.2f, "
            "exchange %.2f\n",
            (nc ? *nc : w).kind(), w.size(), (long long)o->mib, b.all_reduce_gbps, b.all_to_all_gbps,
            b.exchange_gbps);
    }
    return failed > 0 ? 1 : 0;
  };
}

}  // namespace longctx::cli

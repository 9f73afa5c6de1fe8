// A self-check of a Comm: every collective on known data, the results checked
// on every rank. With `device` the buffers live in GPU memory, as NcclComm
// needs; `longctx comm-check [--nccl | --staged]` runs it under mpirun, so a machine with
// GPUs verifies NcclComm in one command.
#pragma once
#include <string>
#include <vector>

#include "comm/comm.h"

namespace longctx {

// One line per check, each starting "PASS " or "FAIL " (this rank's view). The double and int32 buffers are
// in GPU memory too with `scalars_on_device` (NCCL), on the host otherwise (a staged Comm's host path).
std::vector<std::string> comm_check(Comm& comm, bool device, bool scalars_on_device = true);

// Bandwidth of the collectives the step uses, on `bytes` per rank (GPU memory with `device`): all-reduce,
// all-to-all and the ring's exchange, each the median of three timed runs after one warm-up, as bus GB/s
// (NCCL-tests' convention: what one rank's link carries), which `plan --ranks --intra-bw/--inter-bw` take.
// Collective; every rank gets the same numbers (rank 0's clock, broadcast by an all-reduce of the maxima).
struct CommBandwidth {
  double all_reduce_gbps = 0, all_to_all_gbps = 0, exchange_gbps = 0;
};
CommBandwidth comm_bandwidth(Comm& comm, bool device, int64_t bytes);

}  // namespace longctx

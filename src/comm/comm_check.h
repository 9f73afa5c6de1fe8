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

}  // namespace longctx

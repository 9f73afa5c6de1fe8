// A self-check of a Comm: every collective on known data, the results checked
// on every rank. With `device` the buffers live in GPU memory, as NcclComm
// needs; `longctx comm-check [--nccl]` runs it under mpirun, so a machine with
// GPUs verifies NcclComm in one command.
#pragma once
#include <string>
#include <vector>

#include "comm/comm.h"

namespace longctx {

// One line per check, each starting "PASS " or "FAIL " (this rank's view).
std::vector<std::string> comm_check(Comm& comm, bool device);

}  // namespace longctx

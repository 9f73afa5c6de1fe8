// The job's ranks as the CLI sees them: the world Comm (MPI when started by
// mpirun/srun with several ranks, else one local rank) and what this rank is
// doing, so that a failure on one rank ends the job naming both.
#pragma once
#include <string>

#include "comm/comm.h"

namespace longctx::cli {

Comm& world();
bool is_root();
void set_activity(const std::string& what);
const std::string& activity();

}  // namespace longctx::cli

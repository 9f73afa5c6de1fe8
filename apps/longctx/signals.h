// SIGTERM, SIGINT and SIGUSR1 during `train`: the first asks the run to stop at its
// next safe point and write the checkpoint of its last completed step; if
// that takes longer than the grace period the process ends without it (the
// checkpoints on disk stay complete: a partial one is never taken for one).
// A second SIGINT ends the process at once. Under mpirun send SIGUSR1 to
// mpirun (it forwards that one to every rank; SIGTERM it turns into a kill);
// cluster schedulers send SIGTERM to every rank themselves.
#pragma once

namespace longctx::cli {

void install_stop_signals(double grace_seconds);

}  // namespace longctx::cli

// SIGTERM and SIGINT during `train`: the first asks the run to stop at its
// next safe point and write the checkpoint of its last completed step; if
// that takes longer than the grace period the process ends without it (the
// checkpoints on disk stay complete: a partial one is never taken for one).
// A second SIGINT ends the process at once.
#pragma once

namespace longctx::cli {

void install_stop_signals(double grace_seconds);

}  // namespace longctx::cli

// Progress of a long run: a live line on a terminal, one plain line per step
// on a pipe.
#pragma once
#include <cstdint>
#include <vector>

namespace longctx {

// The ETA is the time per unit of work so far times the work left, so that
// a curriculum's longer later steps are foreseen: work[s] is step s's cost
// in any unit (FLOPs); empty: every step costs the same.
class Progress {
 public:
  Progress(int64_t total, bool tty, std::vector<double> work = {});
  void update(int64_t step, double loss, double tok_per_s, int64_t device_bytes, double step_seconds);
  void finish();
  double eta_seconds(int64_t step) const;  // after `step` steps (1-based), from what ran so far

 private:
  int64_t total_;
  std::vector<double> left_;       // left_[s]: the work of steps s .. total-1
  double seconds_ = 0, done_ = 0;  // of the steps this process ran: the ETA's basis
  bool tty_;
};

// sgemm GFLOP/s of this machine, measured in a few milliseconds (for MFU).
double measure_peak_gflops();

}  // namespace longctx

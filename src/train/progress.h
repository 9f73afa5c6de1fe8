// Progress of a long run: a live line on a terminal, one plain line per step
// on a pipe.
#pragma once
#include <cstdint>

namespace longctx {

class Progress {
 public:
  Progress(int64_t total, bool tty) : total_(total), tty_(tty) {}
  void update(int64_t step, double loss, double tok_per_s, int64_t device_bytes, double step_seconds);
  void finish();

 private:
  int64_t total_, count_ = 0;
  double seconds_ = 0;  // of the steps this process ran: the ETA's basis
  bool tty_;
};

// sgemm GFLOP/s of this machine, measured in a few milliseconds (for MFU).
double measure_peak_gflops();

}  // namespace longctx

// The collective watchdog: a rank that hangs (in a collective, or in compute
// while the others wait in one) must not hold a cluster for hours. Each
// blocking collective of a Comm runs under a WatchScope; when one has waited
// longer than the limit, the watchdog thread ends the whole job through the
// Comm's abort(), naming the rank, the collective and how long it waited.
#pragma once
#include <cstdint>

namespace longctx {

class Comm;

// Seconds a collective may wait (0: no watchdog). Default: LONGCTX_WATCHDOG
// from the environment, else 600 (ten minutes: longer than any healthy
// collective, short enough that a hung job is not left for hours).
void set_collective_watchdog(double seconds);
double collective_watchdog();

// One blocking collective of `comm`, in flight while this lives. Collectives
// are issued from one thread, so one is watched at a time.
class WatchScope {
 public:
  WatchScope(Comm* comm, const char* what, int64_t n);
  ~WatchScope();
  WatchScope(const WatchScope&) = delete;
  WatchScope& operator=(const WatchScope&) = delete;
};

}  // namespace longctx

#include "comm/watchdog.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/comm.h"
#include "core/check.h"

namespace longctx {

namespace {

using Clock = std::chrono::steady_clock;

double env_limit() {
  const char* e = std::getenv("LONGCTX_WATCHDOG");
  if (!e || !*e) return 600;
  char* end = nullptr;
  const double s = std::strtod(e, &end);
  CHECK(end && *end == '\0' && s >= 0, "LONGCTX_WATCHDOG must be a number of seconds >= 0, got '", e, "'");
  return s;
}

// What is in flight; written by the collective's thread, read by the watchdog.
struct InFlight {
  std::atomic<double> limit{-1};  // < 0: not read from the environment yet
  std::atomic<Comm*> comm{nullptr};
  std::atomic<const char*> what{nullptr};
  std::atomic<int64_t> n{0}, seq{0};
  std::atomic<int64_t> since_ns{0};
  std::atomic<bool> thread_started{false};
};
InFlight& in_flight() {
  static InFlight* f = new InFlight;  // never destroyed: the watchdog thread may outlive main
  return *f;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void watch() {
  InFlight& f = in_flight();
  for (;;) {
    const double limit = f.limit.load();
    std::this_thread::sleep_for(std::chrono::duration<double>(limit > 0 ? std::min(1.0, limit / 20) : 1.0));
    Comm* c = f.comm.load();
    if (limit <= 0 || !c) continue;
    const int64_t seq = f.seq.load();
    const double waited = double(now_ns() - f.since_ns.load()) * 1e-9;
    // the same collective still in flight (seq unchanged) and past the limit
    if (waited > limit && f.comm.load() == c && f.seq.load() == seq) {
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "watchdog: waited %.1f s in %s (%lld elements, collective #%lld), more than the %g s "
                    "allowed (watchdog_seconds, LONGCTX_WATCHDOG): another rank is hung or gone; ending the "
                    "job",
                    waited, f.what.load(), (long long)f.n.load(), (long long)seq, limit);
      c->abort(msg);
    }
  }
}

}  // namespace

void set_collective_watchdog(double seconds) {
  CHECK(seconds >= 0, "the collective watchdog needs seconds >= 0 (0: off), got ", seconds);
  in_flight().limit.store(seconds);
}

double collective_watchdog() {
  InFlight& f = in_flight();
  if (f.limit.load() < 0) f.limit.store(env_limit());
  return f.limit.load();
}

WatchScope::WatchScope(Comm* comm, const char* what, int64_t n) {
  InFlight& f = in_flight();
  if (collective_watchdog() > 0 && !f.thread_started.exchange(true)) std::thread(watch).detach();
  f.what.store(what), f.n.store(n), f.since_ns.store(now_ns());
  f.seq.fetch_add(1);
  f.comm.store(comm);
}

WatchScope::~WatchScope() { in_flight().comm.store(nullptr); }

}  // namespace longctx

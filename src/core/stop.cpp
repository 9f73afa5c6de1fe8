#include "core/stop.h"

#include <atomic>

namespace longctx {

namespace {
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag is set from a signal handler");
}  // namespace

int stop_requested() { return g_stop.load(std::memory_order_relaxed); }
void request_stop(int sig) { g_stop.store(sig == 0 ? -1 : sig, std::memory_order_relaxed); }
void clear_stop_request() { g_stop.store(0, std::memory_order_relaxed); }

void throw_if_stop_requested() {
  if (stop_requested() != 0) throw StepAbandoned();
}

}  // namespace longctx

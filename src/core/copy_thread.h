// One background thread that runs copies (host memcpy, file reads and
// writes) in the order they were submitted, so that moving saved state
// between tiers overlaps with compute. A copy's exception reaches wait().
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace longctx {

class CopyThread {
 public:
  CopyThread();
  ~CopyThread();  // finishes the queued copies first
  CopyThread(const CopyThread&) = delete;
  CopyThread& operator=(const CopyThread&) = delete;

  // Queues fn; returns its ticket (increasing from 1).
  uint64_t submit(std::function<void()> fn);
  // Blocks until every copy up to `ticket` is done; rethrows the first error.
  void wait(uint64_t ticket);
  void wait_all() { wait(submitted_); }

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  uint64_t submitted_ = 0, done_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace longctx

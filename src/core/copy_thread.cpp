#include "core/copy_thread.h"

namespace longctx {

CopyThread::CopyThread() : thread_([this] { loop(); }) {}

CopyThread::~CopyThread() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t CopyThread::submit(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(mu_);
  queue_.push_back(std::move(fn));
  cv_.notify_all();
  return ++submitted_;
}

void CopyThread::wait(uint64_t ticket) {
  std::unique_lock<std::mutex> g(mu_);
  cv_.wait(g, [&] { return done_ >= ticket || error_; });
  if (error_) std::rethrow_exception(error_);
}

void CopyThread::loop() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    cv_.wait(g, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    std::function<void()> fn = std::move(queue_.front());
    queue_.pop_front();
    g.unlock();
    std::exception_ptr err;
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
    g.lock();
    if (err && !error_) error_ = err;
    done_++;
    cv_.notify_all();
  }
}

}  // namespace longctx

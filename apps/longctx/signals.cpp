#include "signals.h"

#include <semaphore.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/stop.h"

namespace longctx::cli {

namespace {

sem_t g_wake;  // posted by the handler (sem_post is async-signal-safe)

void write_err(const char* s) {
  const ssize_t r = ::write(2, s, std::strlen(s));
  (void)r;
}

void on_signal(int sig) {
  if (stop_requested() != 0) {
    if (sig == SIGINT) {
      write_err("\nlongctx: second interrupt: exiting now, without a checkpoint\n");
      ::_exit(130);
    }
    return;  // a repeated SIGTERM: the stop is under way already
  }
  request_stop(sig);
  sem_post(&g_wake);
}

}  // namespace

void install_stop_signals(double grace_seconds) {
  static bool installed = false;
  if (installed) return;
  installed = true;
  sem_init(&g_wake, 0, 0);
  // The grace timer: the process must end within grace_seconds of the request.
  // A clean stop returns from main before it fires; this thread never blocks exit.
  std::thread([grace_seconds] {
    while (sem_wait(&g_wake) != 0) {
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(grace_seconds));
    std::fprintf(stderr,
                 "longctx: the stop did not finish within the grace period of %g s (grace_seconds); exiting "
                 "without a new checkpoint (the complete ones on disk are intact)\n",
                 grace_seconds);
    std::fflush(stderr);
    ::_exit(128 + stop_requested());
  }).detach();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  // SIGUSR1 too: mpirun forwards it to every rank (it does not forward SIGTERM,
  // it ends the job), and Slurm sends it ahead of the time limit with --signal=USR1@SECONDS
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

}  // namespace longctx::cli

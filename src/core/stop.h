// Requests to stop a long run cleanly (a preempted cluster job gets SIGTERM,
// a user presses Ctrl-C): the signal handler only records the request; the
// training loop reads it where it can stop without losing anything, and
// throws StepAbandoned from inside a step (between units) on one rank.
#pragma once
#include <exception>

namespace longctx {

// 0 when no stop was asked for, else the signal (or any code) that asked.
int stop_requested();
// Async-signal-safe: what a handler calls (tests call it directly).
void request_stop(int sig);
// Back to "no request" (tests, and a process that trains again after a stop).
void clear_stop_request();

// Thrown at a point inside a step where it can be given up: the weights and
// the optimizer's state are untouched until the update, so the step is redone
// on resume.
struct StepAbandoned : std::exception {
  const char* what() const noexcept override { return "the step in flight was abandoned (stop requested)"; }
};
// Throws StepAbandoned when a stop was asked for.
void throw_if_stop_requested();

}  // namespace longctx

// Errors: CHECK and FAIL throw longctx::Error carrying file:line and the
// failing expression. Library code never exits; the CLI catches and prints.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace longctx {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

inline std::string check_message(const char* expr) { return str_cat("check failed: ", expr); }
template <class... Args>
std::string check_message(const char*, const Args&... args) {
  return str_cat(args...);
}

[[noreturn]] void fail_at(const char* file, int line, const std::string& msg);

}  // namespace longctx

// GoogleTest defines FAIL() too; ours wins, tests use GTEST_FAIL().
#ifdef FAIL
#undef FAIL
#endif
// FAIL("msg", value, ...): throw with the message and where it was thrown.
#define FAIL(...) ::longctx::fail_at(__FILE__, __LINE__, ::longctx::str_cat(__VA_ARGS__))

// CHECK(cond, "msg", ...): throw with the message when cond is false; with no
// message, the failing expression is the message.
#define CHECK(cond, ...)                                                                                  \
  do {                                                                                                    \
    if (!(cond))                                                                                          \
      ::longctx::fail_at(__FILE__, __LINE__, ::longctx::check_message(#cond __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

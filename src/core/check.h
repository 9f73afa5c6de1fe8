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

template <class... Args> std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void fail_at(const char* file, int line, const std::string& msg);

}  // namespace longctx

// GoogleTest defines FAIL() too; ours wins, tests use GTEST_FAIL().
#ifdef FAIL
#undef FAIL
#endif
// FAIL("msg", value, ...): throw with the message and where it was thrown.
#define FAIL(...) ::longctx::fail_at(__FILE__, __LINE__, ::longctx::str_cat(__VA_ARGS__))

// CHECK(cond, "msg", ...): throw naming the expression when cond is false.
#define CHECK(cond, ...)                                                                 \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::longctx::fail_at(__FILE__, __LINE__,                                             \
                         ::longctx::str_cat(__VA_ARGS__ __VA_OPT__(, ) " (check failed: " #cond ")")); \
  } while (0)

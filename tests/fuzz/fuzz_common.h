// Shared by the libFuzzer targets in tests/fuzz: a scratch directory per
// process (on /dev/shm when there is one: each input is written to a file,
// because the parsers read files), and the contract every target checks.
//
// The contract: a parser handed any bytes either succeeds or throws
// longctx::Error whose message names the file. Everything else is a finding:
// a crash, a sanitizer report, a leak, a timeout, an allocation sized by the
// input (libFuzzer's -malloc_limit_mb / -rss_limit_mb), and any other
// exception escaping the parser (a raw nlohmann or yaml-cpp error, or
// std::bad_alloc), which report() turns into an abort with the message.
#pragma once
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "core/check.h"

namespace fs = std::filesystem;

namespace longctx::fuzz {

// Removed when the process exits normally (libFuzzer's -max_total_time and
// -runs end with exit()); a crashing run leaves it behind for inspection.
class Scratch {
 public:
  Scratch() {
    struct stat st {};
    std::string base = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    std::string tmpl = base + "/longctx_fuzz_XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror("longctx fuzz: mkdtemp");
      std::abort();
    }
    dir_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

inline const std::string& scratch_dir() {
  static const Scratch s;
  return s.dir();
}

// dir/name under the scratch directory (dir created as needed).
inline std::string scratch_path(const std::string& name) {
  const fs::path p = fs::path(scratch_dir()) / name;
  fs::create_directories(p.parent_path());
  return p.string();
}

inline void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "longctx fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Writes `bytes` to the scratch file `name` and returns its path.
inline std::string scratch_file(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_path(name);
  write_bytes(path, bytes);
  return path;
}

[[noreturn]] inline void report(const char* what, const std::string& detail) {
  std::fprintf(stderr, "\n==longctx fuzz== FINDING: %s\n  %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// Runs f; returns true when it succeeded, false when it threw longctx::Error
// naming `needle` (the file, or the source name the caller gave the parser).
template <class F>
bool clean(const std::string& needle, F&& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    const std::string m = e.what();
    if (m.empty()) report("empty error message", "");
    if (!needle.empty() && m.find(needle) == std::string::npos)
      report("the error message does not name the file", "'" + needle + "' not in: " + m);
    return false;
  } catch (const std::bad_alloc& e) {
    report("std::bad_alloc: an allocation sized by the input", e.what());
  } catch (const std::exception& e) {
    report("an exception other than longctx::Error escaped the parser",
           std::string(typeid(e).name()) + ": " + e.what());
  }
}

// Splits the input at the first NUL byte: (before, after); after is empty
// (and has_rest false) when there is none.
struct Split {
  std::string_view head, rest;
  bool has_rest = false;
};
inline Split split_at_nul(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t z = all.find('\0');
  if (z == std::string_view::npos) return {all, {}, false};
  return {all.substr(0, z), all.substr(z + 1), true};
}

inline std::vector<std::string_view> lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const size_t nl = s.find('\n');
    out.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace longctx::fuzz

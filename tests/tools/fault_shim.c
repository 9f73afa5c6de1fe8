// LD_PRELOAD shim for the fault tests (tests/train/test_faults.py): real
// system-call failures on chosen files, so that the engine's own error paths
// run, with no test hook inside the engine.
//
//   FAULT_PATH=<prefix>     the files affected: those whose path starts with it
//   FAULT_WRITE_BYTES=<n>   after n bytes written to them in all: ENOSPC (the disk is full)
//   FAULT_READ_BYTES=<n>    after n bytes read from them in all: EIO (the disk went bad)
//   FAULT_OPEN=<n>          after n opens of them: ENOENT (the file is gone)
//   FAULT_WRITE_DELAY_MS=<n> each write to them first sleeps n ms (a slow disk)
//   FAULT_LOG=1             each affected call on stderr
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static atomic_llong written, readb, opens;

static const char* prefix(void) {
  const char* p = getenv("FAULT_PATH");
  return p && *p ? p : NULL;
}

static long long limit(const char* name) {
  const char* v = getenv(name);
  return v && *v ? atoll(v) : -1;
}

static int matches(const char* path) {
  const char* p = prefix();
  return p && path && strncmp(path, p, strlen(p)) == 0;
}

static int fd_matches(int fd) {
  if (!prefix() || fd < 0) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = 0;
  return matches(path);
}

static void log_call(const char* what, const char* detail) {
  if (getenv("FAULT_LOG")) fprintf(stderr, "fault_shim: %s %s\n", what, detail);
}

static void slow_down(void) {
  const long long ms = limit("FAULT_WRITE_DELAY_MS");
  if (ms <= 0) return;
  struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
}

// How many of n bytes may move before the budget runs out; -1: none (fail).
static ssize_t allowed(atomic_llong* used, const char* budget, size_t n) {
  const long long lim = limit(budget);
  if (lim < 0) return (ssize_t)n;
  const long long before = atomic_fetch_add(used, (long long)n);
  if (before >= lim) return -1;
  return (ssize_t)(before + (long long)n <= lim ? (long long)n : lim - before);
}

#define REAL(name, type) ((type)dlsym(RTLD_NEXT, name))

ssize_t write(int fd, const void* buf, size_t n) {
  ssize_t (*real)(int, const void*, size_t) = REAL("write", ssize_t(*)(int, const void*, size_t));
  if (n && fd_matches(fd)) {
    slow_down();
    const ssize_t ok = allowed(&written, "FAULT_WRITE_BYTES", n);
    if (ok < 0) {
      log_call("write", "ENOSPC");
      errno = ENOSPC;
      return -1;
    }
    n = (size_t)ok;
  }
  return real(fd, buf, n);
}

static ssize_t do_pwrite(const char* name, int fd, const void* buf, size_t n, off_t off) {
  ssize_t (*real)(int, const void*, size_t, off_t) = REAL(name, ssize_t(*)(int, const void*, size_t, off_t));
  if (n && fd_matches(fd)) {
    slow_down();
    const ssize_t ok = allowed(&written, "FAULT_WRITE_BYTES", n);
    if (ok < 0) {
      log_call(name, "ENOSPC");
      errno = ENOSPC;
      return -1;
    }
    n = (size_t)ok;
  }
  return real(fd, buf, n, off);
}
ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) { return do_pwrite("pwrite", fd, buf, n, off); }
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) { return do_pwrite("pwrite64", fd, buf, n, off); }

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  ssize_t (*real)(int, const struct iovec*, int) = REAL("writev", ssize_t(*)(int, const struct iovec*, int));
  if (fd_matches(fd)) {  // one buffer at a time keeps the byte budget exact
    ssize_t done = 0;
    for (int i = 0; i < cnt; i++) {
      const ssize_t w = write(fd, iov[i].iov_base, iov[i].iov_len);
      if (w < 0) return done > 0 ? done : -1;
      done += w;
      if ((size_t)w < iov[i].iov_len) break;
    }
    return done;
  }
  return real(fd, iov, cnt);
}

// Reserving blocks takes from the same budget as writing them.
int fallocate(int fd, int mode, off_t off, off_t len) {
  int (*real)(int, int, off_t, off_t) = REAL("fallocate", int (*)(int, int, off_t, off_t));
  if (len > 0 && fd_matches(fd) && allowed(&written, "FAULT_WRITE_BYTES", (size_t)len) != (ssize_t)len) {
    log_call("fallocate", "ENOSPC");
    errno = ENOSPC;
    return -1;
  }
  return real(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }

static ssize_t fail_read(const char* name) {
  log_call(name, "EIO");
  errno = EIO;
  return -1;
}

ssize_t read(int fd, void* buf, size_t n) {
  ssize_t (*real)(int, void*, size_t) = REAL("read", ssize_t(*)(int, void*, size_t));
  if (n && fd_matches(fd)) {
    const ssize_t ok = allowed(&readb, "FAULT_READ_BYTES", n);
    if (ok < 0) return fail_read("read");
    n = (size_t)ok;
  }
  return real(fd, buf, n);
}

static ssize_t do_pread(const char* name, int fd, void* buf, size_t n, off_t off) {
  ssize_t (*real)(int, void*, size_t, off_t) = REAL(name, ssize_t(*)(int, void*, size_t, off_t));
  if (n && fd_matches(fd)) {
    const ssize_t ok = allowed(&readb, "FAULT_READ_BYTES", n);
    if (ok < 0) return fail_read(name);
    n = (size_t)ok;
  }
  return real(fd, buf, n, off);
}
ssize_t pread(int fd, void* buf, size_t n, off_t off) { return do_pread("pread", fd, buf, n, off); }
ssize_t pread64(int fd, void* buf, size_t n, off_t off) { return do_pread("pread64", fd, buf, n, off); }

// 1: this open of `path` is refused (the file is gone)
static int open_refused(const char* path) {
  if (!matches(path)) return 0;
  const long long lim = limit("FAULT_OPEN");
  if (lim < 0) return 0;
  if (atomic_fetch_add(&opens, 1) < lim) return 0;
  log_call("open ENOENT", path);
  errno = ENOENT;
  return 1;
}

// the mode argument of open(2), present only when a file may be created
#define MODE_ARG(flags, mode)                 \
  mode_t mode = 0;                            \
  if ((flags) & (O_CREAT | __O_TMPFILE)) {    \
    va_list ap;                               \
    va_start(ap, flags);                      \
    mode = va_arg(ap, mode_t);                \
    va_end(ap);                               \
  }

int open(const char* path, int flags, ...) {
  MODE_ARG(flags, mode);
  if (open_refused(path)) return -1;
  return REAL("open", int (*)(const char*, int, ...))(path, flags, mode);
}
int open64(const char* path, int flags, ...) {
  MODE_ARG(flags, mode);
  if (open_refused(path)) return -1;
  return REAL("open64", int (*)(const char*, int, ...))(path, flags, mode);
}
int openat(int dir, const char* path, int flags, ...) {
  MODE_ARG(flags, mode);
  if (open_refused(path)) return -1;
  return REAL("openat", int (*)(int, const char*, int, ...))(dir, path, flags, mode);
}
int openat64(int dir, const char* path, int flags, ...) {
  MODE_ARG(flags, mode);
  if (open_refused(path)) return -1;
  return REAL("openat64", int (*)(int, const char*, int, ...))(dir, path, flags, mode);
}

FILE* fopen(const char* path, const char* mode) {
  if (open_refused(path)) return NULL;
  return REAL("fopen", FILE* (*)(const char*, const char*))(path, mode);
}
FILE* fopen64(const char* path, const char* mode) {
  if (open_refused(path)) return NULL;
  return REAL("fopen64", FILE* (*)(const char*, const char*))(path, mode);
}

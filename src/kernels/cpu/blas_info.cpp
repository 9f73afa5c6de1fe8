#include "kernels/cpu/blas_info.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace longctx {

std::string blas_corename() {
  const char* s = openblas_get_corename();
  return s ? s : "unknown";
}

std::string blas_config() {
  const char* s = openblas_get_config();
  return s ? s : "unknown";
}

std::string cpu_features() {
  std::string f;
  auto add = [&](bool on, const char* name) {
    if (on) f += f.empty() ? name : std::string(" ") + name;
  };
  __builtin_cpu_init();
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512dq"), "avx512dq");
  add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
  return f;
}

std::string best_blas_coretype() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (!avx512) return "";
  const std::string core = blas_corename();
  for (const char* good : {"SkylakeX", "Cooperlake", "SapphireRapids"})
    if (strcasecmp(core.c_str(), good) == 0) return "";
  return "SkylakeX";
}

void ensure_best_blas_kernels(char** argv) {
  const char* opt = std::getenv("LONGCTX_BLAS_AUTO");
  if ((opt && std::strcmp(opt, "0") == 0) || std::getenv("OPENBLAS_CORETYPE")) return;
  const std::string want = best_blas_coretype();
  if (want.empty()) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then keep the kernels we have
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace longctx

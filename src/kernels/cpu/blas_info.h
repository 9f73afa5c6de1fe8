// Which BLAS and which of its kernels run, and making sure they are the
// fastest the CPU has.
#pragma once
#include <string>

namespace longctx {

std::string blas_corename();  // e.g. "Haswell", "SkylakeX"
std::string blas_config();    // build string of the library
std::string cpu_features();   // "avx2 fma avx512f ..." as the CPU reports
// The best OpenBLAS core type for this CPU, or "" if the library's own
// choice is already the best.
std::string best_blas_coretype();
// Debian's OpenBLAS picks Haswell kernels on recent AMD cores that have
// AVX-512. It reads OPENBLAS_CORETYPE only when it loads, so when a better
// core type exists this sets it and re-executes the program (once; set
// LONGCTX_BLAS_AUTO=0 to opt out). Returns only when no re-exec happened.
void ensure_best_blas_kernels(char** argv);

}  // namespace longctx

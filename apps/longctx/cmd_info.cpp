// longctx info: what this build and this machine have.
#include <omp.h>

#include <cstdio>
#include <cstdlib>

#include "comm/comm.h"
#include "comm/mpi/mpi_info.h"
#include "commands.h"
#include "kernels/cpu/blas_info.h"
#include "kernels/cuda/cuda_info.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"

namespace longctx::cli {

Run add_info(CLI::App& app) {
  return [] {
    std::printf("longctx %s\n", LONGCTX_VERSION);
    std::printf("backends: cpu%s\n", cuda_built() ? " cuda" : "");
    const char* forced = std::getenv("OPENBLAS_CORETYPE");
    std::printf("blas: OpenBLAS, kernels %s%s\n", blas_corename().c_str(),
                forced ? (std::string(" (OPENBLAS_CORETYPE=") + forced + ")").c_str() : "");
    std::printf("blas build: %s\n", blas_config().c_str());
    std::printf("cpu features: %s\n", cpu_features().c_str());
    std::printf("openmp threads: %d\n", omp_get_max_threads());
    const std::string mpi = mpi_library_version();
    std::printf("mpi: %s\n", mpi.empty() ? "not built" : mpi.c_str());
    std::printf("nccl: %s\n", nccl_built() ? "built (device buffers; needs a GPU per rank)" : "not built");
    std::string why;
    const auto devs = cuda_devices(&why);
    if (cuda_built()) std::printf("cudnn attention: %s\n", cuda::cudnn_attention_versions().c_str());
    if (devs.empty()) std::printf("cuda devices: none (%s)\n", why.c_str());
    for (size_t i = 0; i < devs.size(); i++)
      std::printf("cuda device %zu: %s, sm_%d%d, %d SMs, %.1f GiB\n", i, devs[i].name.c_str(),
                  devs[i].cc_major, devs[i].cc_minor, devs[i].sm_count,
                  double(devs[i].total_bytes) / (1 << 30));
    return 0;
  };
}

}  // namespace longctx::cli

// One rank: every collective is a copy (or nothing).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "comm/comm.h"
#include "core/check.h"

namespace longctx {

namespace {

class LocalComm : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* kind() const override { return "local"; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_sum(double*, int64_t) override {}
  void all_reduce_max(double*, int64_t) override {}
  void all_to_all(const float* send, float* recv, int64_t n) override { copy(send, recv, n); }
  void all_gather(const float* send, float* recv, int64_t n) override { copy(send, recv, n); }
  void all_gather(const double* send, double* recv, int64_t n) override { copy(send, recv, n); }
  void all_gather(const int32_t* send, int32_t* recv, int64_t n) override { copy(send, recv, n); }
  void exchange_start(const float* send, int, float* recv, int, int64_t n) override { copy(send, recv, n); }
  void exchange_wait() override {}
  void reduce_scatter_sum(float*, int64_t) override {}
  void all_gather_parts(float*, int64_t) override {}
  void barrier() override {}
  std::unique_ptr<Comm> split(int, int) override { return std::make_unique<LocalComm>(); }
  [[noreturn]] void abort(const std::string& why) override {
    throw Error(why);
  }  // one rank: the caller's catch

 private:
  template <class T>
  static void copy(const T* s, T* d, int64_t n) {
    if (s != d && n > 0) std::memcpy(d, s, size_t(n) * sizeof(T));
  }
};

}  // namespace

std::unique_ptr<Comm> make_local_comm() { return std::make_unique<LocalComm>(); }

bool launched_with_ranks() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS", "MPI_LOCALNRANKS"})
    if (const char* s = std::getenv(v); s && std::atoi(s) > 1) return true;
  return false;
}

}  // namespace longctx

// NcclComm: the same collectives on device buffers, over NCCL, bootstrapped
// over MPI (rank 0's ncclUniqueId is broadcast). Every call is issued on one
// CUDA stream and completes before it returns, except exchange_start, which
// exchange_wait finishes. Built when CUDA, NCCL and MPI are; not exercised on
// this project's CPU machines (no GPU): compile-checked only.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "comm/comm.h"
#include "core/check.h"

namespace longctx {

namespace {

void nccl_ok(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) FAIL("NCCL ", what, " failed: ", ncclGetErrorString(rc));
}
void cuda_ok(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) FAIL("CUDA ", what, " failed: ", cudaGetErrorString(rc));
}

class NcclComm : public Comm {
 public:
  NcclComm() {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) MPI_Init(nullptr, nullptr);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    int devices = 0;
    cuda_ok(cudaGetDeviceCount(&devices), "device count");
    CHECK(devices > 0, "NCCL: no CUDA device on rank ", rank_);
    cuda_ok(cudaSetDevice(rank_ % devices), "set device");
    ncclUniqueId id;
    if (rank_ == 0) nccl_ok(ncclGetUniqueId(&id), "get unique id");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_ok(ncclCommInitRank(&comm_, size_, id, rank_), "comm init");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream create");
  }
  NcclComm(ncclComm_t c, int rank, int size) : comm_(c), rank_(rank), size_(size) {
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream create");
  }
  ~NcclComm() override {
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "nccl"; }
  void all_reduce_sum(float* b, int64_t n) override { reduce(b, n, ncclFloat, ncclSum); }
  void all_reduce_sum(double* b, int64_t n) override { reduce(b, n, ncclDouble, ncclSum); }
  void all_reduce_max(double* b, int64_t n) override { reduce(b, n, ncclDouble, ncclMax); }
  void all_to_all(const float* s, float* r, int64_t n) override {
    nccl_ok(ncclGroupStart(), "group start");
    for (int p = 0; p < size_; p++) {
      nccl_ok(ncclSend(s + p * n, size_t(n), ncclFloat, p, comm_, stream_), "send");
      nccl_ok(ncclRecv(r + p * n, size_t(n), ncclFloat, p, comm_, stream_), "recv");
    }
    nccl_ok(ncclGroupEnd(), "group end");
    sync();
  }
  void all_gather(const float* s, float* r, int64_t n) override { gather(s, r, n, ncclFloat); }
  void all_gather(const double* s, double* r, int64_t n) override { gather(s, r, n, ncclDouble); }
  void all_gather(const int32_t* s, int32_t* r, int64_t n) override { gather(s, r, n, ncclInt32); }
  void exchange_start(const float* s, int dst, float* r, int src, int64_t n) override {
    nccl_ok(ncclGroupStart(), "group start");
    nccl_ok(ncclSend(s, size_t(n), ncclFloat, dst, comm_, stream_), "send");
    nccl_ok(ncclRecv(r, size_t(n), ncclFloat, src, comm_, stream_), "recv");
    nccl_ok(ncclGroupEnd(), "group end");
  }
  void exchange_wait() override { sync(); }
  void reduce_scatter_sum(float* b, int64_t n) override {  // part p reduced onto rank p
    each_part(b, n, [&](int p, float* x, size_t len) {
      nccl_ok(ncclReduce(x, x, len, ncclFloat, ncclSum, p, comm_, stream_), "reduce");
    });
  }
  void all_gather_parts(float* b, int64_t n) override {  // part p broadcast from rank p
    each_part(b, n, [&](int p, float* x, size_t len) {
      nccl_ok(ncclBroadcast(x, x, len, ncclFloat, p, comm_, stream_), "broadcast");
    });
  }
  void barrier() override {
    float* d = nullptr;
    cuda_ok(cudaMalloc(&d, sizeof(float)), "malloc");
    reduce(d, 1, ncclFloat, ncclSum);
    cudaFree(d);
  }
  std::unique_ptr<Comm> split(int color, int key) override {
    ncclComm_t sub = nullptr;
    nccl_ok(ncclCommSplit(comm_, color, key, &sub, nullptr), "comm split");
    int r = 0, s = 1;
    nccl_ok(ncclCommUserRank(sub, &r), "user rank");
    nccl_ok(ncclCommCount(sub, &s), "count");
    return std::make_unique<NcclComm>(sub, r, s);
  }
  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "longctx: error: rank %d of %d: %s\n", rank_, size_, why.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  // op(p, part p of b, its length) for every non-empty part, as one NCCL group; then waits
  template <class Op>
  void each_part(float* b, int64_t n, Op op) {
    nccl_ok(ncclGroupStart(), "group start");
    for (int p = 0; p < size_; p++) {
      const CommPart q = comm_part(n, size_, p);
      if (q.n > 0) op(p, b + q.lo, size_t(q.n));
    }
    nccl_ok(ncclGroupEnd(), "group end");
    sync();
  }
  void sync() { cuda_ok(cudaStreamSynchronize(stream_), "stream synchronize"); }
  void reduce(void* b, int64_t n, ncclDataType_t t, ncclRedOp_t op) {
    nccl_ok(ncclAllReduce(b, b, size_t(n), t, op, comm_, stream_), "all-reduce");
    sync();
  }
  void gather(const void* s, void* r, int64_t n, ncclDataType_t t) {
    nccl_ok(ncclAllGather(s, r, size_t(n), t, comm_, stream_), "all-gather");
    sync();
  }
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm() { return std::make_unique<NcclComm>(); }
bool nccl_built() { return true; }

}  // namespace longctx

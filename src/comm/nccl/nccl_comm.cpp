// NcclComm: the collectives over NCCL on device buffers, bootstrapped over MPI (rank 0's ncclUniqueId is
// broadcast). Stream-aware: a collective is enqueued on the communicator's own stream after an event on the
// compute stream (set_stream; the default stream unless set), and the compute stream waits for it with
// another event, so no host code waits; the ring's exchange runs on that stream while the compute goes on,
// and exchange_wait only makes the compute stream wait. Buffers in host memory (label counts, norms, pinned
// or pageable) travel over MPI instead: each call looks at where its pointers are. Built when CUDA, NCCL and
// MPI are; compile-checked only on this project's CPU machines.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>

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

// Whether the GPU holds these bytes (device or managed memory); host memory, pinned or not, is not.
bool on_gpu(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();  // pageable memory on old runtimes: an error that says "host"
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

class NcclComm : public Comm {
 public:
  NcclComm() : host_(make_mpi_comm()) {
    rank_ = host_->rank(), size_ = host_->size();
    int devices = 0;
    cuda_ok(cudaGetDeviceCount(&devices), "device count");
    CHECK(devices > 0, "NCCL: no CUDA device on rank ", rank_);
    cuda_ok(cudaSetDevice(node_rank() % devices), "set device");
    // (NCCL_HOSTID set per rank makes each rank another host to NCCL: unsupported, but how one GPU can
    // test several NCCL ranks)
    if (!std::getenv("NCCL_HOSTID")) {
      const int sharing = ranks_sharing_gpu(*host_);
      CHECK(sharing == 1, "NCCL: ", sharing, " ranks share one GPU; NCCL needs one GPU per rank (use --comm ",
            "mpi, which stages through host memory)");
    }
    ncclUniqueId id;
    if (rank_ == 0) nccl_ok(ncclGetUniqueId(&id), "get unique id");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_ok(ncclCommInitRank(&comm_, size_, id, rank_), "comm init");
    make_stream();
  }
  NcclComm(ncclComm_t c, std::unique_ptr<Comm> host, int rank, int size, void* compute)
      : host_(std::move(host)),
        comm_(c),
        rank_(rank),
        size_(size),
        compute_(static_cast<cudaStream_t>(compute)) {
    make_stream();
  }
  ~NcclComm() override {
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "nccl"; }
  void set_stream(void* s) override { compute_ = static_cast<cudaStream_t>(s); }
  void all_reduce_sum(float* b, int64_t n) override {
    if (!on_gpu(b)) return host_->all_reduce_sum(b, n);
    reduce(b, n, ncclFloat, ncclSum);
  }
  void all_reduce_sum(double* b, int64_t n) override {
    if (!on_gpu(b)) return host_->all_reduce_sum(b, n);
    reduce(b, n, ncclDouble, ncclSum);
  }
  void all_reduce_max(double* b, int64_t n) override {
    if (!on_gpu(b)) return host_->all_reduce_max(b, n);
    reduce(b, n, ncclDouble, ncclMax);
  }
  void all_to_all(const float* s, float* r, int64_t n) override {
    if (!on_gpu(s)) return host_->all_to_all(s, r, n);
    begin();
    nccl_ok(ncclGroupStart(), "group start");
    for (int p = 0; p < size_; p++) {
      nccl_ok(ncclSend(s + p * n, size_t(n), ncclFloat, p, comm_, stream_), "send");
      nccl_ok(ncclRecv(r + p * n, size_t(n), ncclFloat, p, comm_, stream_), "recv");
    }
    nccl_ok(ncclGroupEnd(), "group end");
    end();
  }
  void all_gather(const float* s, float* r, int64_t n) override {
    if (!on_gpu(s)) return host_->all_gather(s, r, n);
    gather(s, r, n, ncclFloat);
  }
  void all_gather(const double* s, double* r, int64_t n) override {
    if (!on_gpu(s)) return host_->all_gather(s, r, n);
    gather(s, r, n, ncclDouble);
  }
  void all_gather(const int32_t* s, int32_t* r, int64_t n) override {
    if (!on_gpu(s)) return host_->all_gather(s, r, n);
    gather(s, r, n, ncclInt32);
  }
  void exchange_start(const float* s, int dst, float* r, int src, int64_t n) override {
    if (!on_gpu(s)) {
      host_pending_ = true;
      return host_->exchange_start(s, dst, r, src, n);
    }
    begin();  // the bytes to send (and the buffer received into) are the compute's up to now
    nccl_ok(ncclGroupStart(), "group start");
    nccl_ok(ncclSend(s, size_t(n), ncclFloat, dst, comm_, stream_), "send");
    nccl_ok(ncclRecv(r, size_t(n), ncclFloat, src, comm_, stream_), "recv");
    nccl_ok(ncclGroupEnd(), "group end");
    device_pending_ = true;
  }
  void exchange_wait() override {
    if (host_pending_) host_->exchange_wait();
    if (device_pending_) end();  // the compute stream waits; the host does not
    host_pending_ = device_pending_ = false;
  }
  void reduce_scatter_sum(float* b, int64_t n) override {  // part p reduced onto rank p
    if (!on_gpu(b)) return host_->reduce_scatter_sum(b, n);
    each_part(b, n, [&](int p, float* x, size_t len) {
      nccl_ok(ncclReduce(x, x, len, ncclFloat, ncclSum, p, comm_, stream_), "reduce");
    });
  }
  void all_gather_parts(float* b, int64_t n) override {  // part p broadcast from rank p
    if (!on_gpu(b)) return host_->all_gather_parts(b, n);
    each_part(b, n, [&](int p, float* x, size_t len) {
      nccl_ok(ncclBroadcast(x, x, len, ncclFloat, p, comm_, stream_), "broadcast");
    });
  }
  void barrier() override {
    cuda_ok(cudaStreamSynchronize(compute_), "compute stream synchronize");
    cuda_ok(cudaStreamSynchronize(stream_), "stream synchronize");
    host_->barrier();
  }
  std::unique_ptr<Comm> split(int color, int key) override {
    ncclComm_t sub = nullptr;
    nccl_ok(ncclCommSplit(comm_, color, key, &sub, nullptr), "comm split");
    int r = 0, s = 1;
    nccl_ok(ncclCommUserRank(sub, &r), "user rank");
    nccl_ok(ncclCommCount(sub, &s), "count");
    return std::make_unique<NcclComm>(sub, host_->split(color, key), r, s, compute_);
  }
  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "longctx: error: rank %d of %d: %s\n", rank_, size_, why.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  void make_stream() {
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream create");
    cuda_ok(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "event create");
    cuda_ok(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "event create");
  }
  // the communication stream waits for the compute enqueued so far...
  void begin() {
    cuda_ok(cudaEventRecord(ready_, compute_), "event record");
    cuda_ok(cudaStreamWaitEvent(stream_, ready_, 0), "stream wait");
  }
  // ...and the compute enqueued from now on waits for the communication
  void end() {
    cuda_ok(cudaEventRecord(done_, stream_), "event record");
    cuda_ok(cudaStreamWaitEvent(compute_, done_, 0), "stream wait");
  }
  // op(p, part p of b, its length) for every non-empty part, as one NCCL group
  template <class Op>
  void each_part(float* b, int64_t n, Op op) {
    begin();
    nccl_ok(ncclGroupStart(), "group start");
    for (int p = 0; p < size_; p++) {
      const CommPart q = comm_part(n, size_, p);
      if (q.n > 0) op(p, b + q.lo, size_t(q.n));
    }
    nccl_ok(ncclGroupEnd(), "group end");
    end();
  }
  void reduce(void* b, int64_t n, ncclDataType_t t, ncclRedOp_t op) {
    begin();
    nccl_ok(ncclAllReduce(b, b, size_t(n), t, op, comm_, stream_), "all-reduce");
    end();
  }
  void gather(const void* s, void* r, int64_t n, ncclDataType_t t) {
    begin();
    nccl_ok(ncclAllGather(s, r, size_t(n), t, comm_, stream_), "all-gather");
    end();
  }
  std::unique_ptr<Comm> host_;  // MPI: bootstrap, host buffers, barriers
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  cudaStream_t compute_ = nullptr;  // the stream the engine's kernels run on (the default stream)
  cudaStream_t stream_ = nullptr;   // this communicator's
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  bool host_pending_ = false, device_pending_ = false;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm() { return std::make_unique<NcclComm>(); }
bool nccl_built() { return true; }

}  // namespace longctx

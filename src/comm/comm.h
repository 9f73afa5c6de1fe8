// Comm: the collectives the engine uses, on host buffers (MpiComm, LocalComm)
// or device buffers (NcclComm, built with CUDA). Model code never sees MPI.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace longctx {

class Memory;

// Part p of n elements cut over P ranks, as reduce_scatter_sum and
// all_gather_parts cut them (and ZeRO's ShardMap): ceil(n / P) each, the last
// ones shorter or empty.
struct CommPart {
  int64_t lo = 0, n = 0;
};
inline CommPart comm_part(int64_t n, int P, int p) {
  const int64_t per = (n + P - 1) / P, lo = n < p * per ? n : p * per;
  return {lo, (n < lo + per ? n : lo + per) - lo};
}

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* kind() const = 0;
  // The stream the compute that fills and reads device buffers runs on (null: the default stream). A Comm on
  // device buffers (NCCL) orders each collective after the work enqueued there so far, and the work enqueued
  // after it after the collective, without the host waiting. Host comms ignore it.
  virtual void set_stream(void* stream) { (void)stream; }
  // In place, over every rank.
  virtual void all_reduce_sum(float* buf, int64_t n) = 0;
  virtual void all_reduce_sum(double* buf, int64_t n) = 0;
  virtual void all_reduce_max(double* buf, int64_t n) = 0;
  // send holds size() blocks of n each; block d goes to rank d, whose recv
  // gets it as block rank().
  virtual void all_to_all(const float* send, float* recv, int64_t n) = 0;
  // recv (size() * n) = every rank's send (n), in rank order.
  virtual void all_gather(const float* send, float* recv, int64_t n) = 0;
  virtual void all_gather(const double* send, double* recv, int64_t n) = 0;
  virtual void all_gather(const int32_t* send, int32_t* recv, int64_t n) = 0;
  // Non-blocking: send n floats to dst while receiving n from src (ring
  // steps); exchange_wait() finishes every exchange started so far.
  virtual void exchange_start(const float* send, int dst, float* recv, int src, int64_t n) = 0;
  virtual void exchange_wait() = 0;
  // In place on n floats cut into size() contiguous parts ((n + size() - 1) /
  // size() each, the last shorter): reduce-scatter leaves the sum of part
  // rank() in place (other parts undefined); all-gather fills every part from its owner.
  virtual void reduce_scatter_sum(float* buf, int64_t n) = 0;
  virtual void all_gather_parts(float* buf, int64_t n) = 0;
  virtual void barrier() = 0;
  // The ranks of this Comm with the same color, ordered by key (MPI_Comm_split).
  virtual std::unique_ptr<Comm> split(int color, int key) = 0;
  // Ends every rank of the job, this one naming why; never returns.
  [[noreturn]] virtual void abort(const std::string& why) = 0;
};

std::unique_ptr<Comm> make_local_comm();
// The job's MPI world (MPI_Init on first use). Throws when built without MPI.
std::unique_ptr<Comm> make_mpi_comm();
// The ranks over NCCL on device buffers, bootstrapped over MPI; throws when not built.
std::unique_ptr<Comm> make_nccl_comm();
bool nccl_built();
// Collectives on `mem`'s device buffers over `inner`, a Comm on host pointers (MPI): every float buffer is
// copied through pinned staging buffers in the host tier (Tag::comm; a sum `slice` floats at a time), host
// scalars (double, int32) pass straight through. For ranks that share a GPU, or a cluster without NCCL.
// `inner` must outlive it; its splits are staged too.
std::unique_ptr<Comm> make_staged_comm(Comm& inner, Memory& mem, int64_t slice = int64_t(1) << 24);
// The Comm that a step's collectives on `mem`'s buffers take over the ranks of `world` (host pointers: MPI or
// local): null when `world` serves as it is (the device tier is host memory, or one local rank). Otherwise
// `choice` says: "nccl" (NcclComm, one GPU per rank), "mpi" (world staged through pinned host buffers),
// "auto" (nccl when NCCL is built, the device is a real GPU and this node has a GPU per rank; else mpi).
// `gpu` tells a real GPU from cpu-staged device memory. Call it on every rank (collective).
std::unique_ptr<Comm> make_device_comm(Comm& world, Memory& mem, bool gpu, const std::string& choice);
// The most ranks of `world` that compute on one GPU (the same host and PCI bus id), the same number on every
// rank: 1 when every rank has its own. Collective; call once this rank's GPU is selected (select_gpu).
int ranks_sharing_gpu(Comm& world);
// The ranks of this node and this process's index among them (MPI_Comm_split_type over the world when MPI
// runs; else 1 and 0): which GPU a rank takes.
int node_ranks();
int node_rank();
// True when this process was started by mpirun / srun with more than one rank.
bool launched_with_ranks();

}  // namespace longctx

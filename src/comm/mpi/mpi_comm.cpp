// MpiComm: the MPI world on host buffers. Errors of the MPI library come back
// as codes (MPI_ERRORS_RETURN) and are thrown naming the collective.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "comm/watchdog.h"
#include "core/check.h"

namespace longctx {

namespace {

void ok(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  FAIL("MPI ", what, " failed: ", std::string(buf, size_t(len)));
}

int count(int64_t n, const char* what) {
  CHECK(n >= 0 && n <= INT_MAX, "MPI ", what, ": ", n, " elements do not fit one call");
  return int(n);
}

class MpiComm : public Comm {
 public:
  MpiComm() {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      ok(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
      std::atexit([] {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
      });
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  explicit MpiComm(MPI_Comm sub) : comm_(sub) {  // a sub-communicator made by split()
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiComm() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (comm_ != MPI_COMM_WORLD && !fin) MPI_Comm_free(&comm_);
  }
  std::unique_ptr<Comm> split(int color, int key) override {
    WatchScope w(this, "comm_split", 0);
    MPI_Comm sub;
    ok(MPI_Comm_split(comm_, color, key, &sub), "comm_split");
    return std::make_unique<MpiComm>(sub);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* kind() const override { return "mpi"; }
  void all_reduce_sum(float* b, int64_t n) override {
    WatchScope w(this, "allreduce (sum, float)", n);
    ok(MPI_Allreduce(MPI_IN_PLACE, b, count(n, "allreduce"), MPI_FLOAT, MPI_SUM, comm_), "allreduce");
  }
  void all_reduce_sum(double* b, int64_t n) override {
    WatchScope w(this, "allreduce (sum, double)", n);
    ok(MPI_Allreduce(MPI_IN_PLACE, b, count(n, "allreduce"), MPI_DOUBLE, MPI_SUM, comm_), "allreduce");
  }
  void all_reduce_max(double* b, int64_t n) override {
    WatchScope w(this, "allreduce (max, double)", n);
    ok(MPI_Allreduce(MPI_IN_PLACE, b, count(n, "allreduce"), MPI_DOUBLE, MPI_MAX, comm_), "allreduce");
  }
  void all_to_all(const float* s, float* r, int64_t n) override {
    WatchScope w(this, "alltoall", n);
    ok(MPI_Alltoall(s, count(n, "alltoall"), MPI_FLOAT, r, int(n), MPI_FLOAT, comm_), "alltoall");
  }
  void all_gather(const float* s, float* r, int64_t n) override {
    WatchScope w(this, "allgather (float)", n);
    ok(MPI_Allgather(s, count(n, "allgather"), MPI_FLOAT, r, int(n), MPI_FLOAT, comm_), "allgather");
  }
  void all_gather(const double* s, double* r, int64_t n) override {
    WatchScope w(this, "allgather (double)", n);
    ok(MPI_Allgather(s, count(n, "allgather"), MPI_DOUBLE, r, int(n), MPI_DOUBLE, comm_), "allgather");
  }
  void all_gather(const int32_t* s, int32_t* r, int64_t n) override {
    WatchScope w(this, "allgather (int32)", n);
    ok(MPI_Allgather(s, count(n, "allgather"), MPI_INT, r, int(n), MPI_INT, comm_), "allgather");
  }
  void exchange_start(const float* s, int dst, float* r, int src, int64_t n) override {
    const int tag = 7 + int(req_.size());  // in-flight exchanges match by order
    req_.resize(req_.size() + 2);
    ok(MPI_Irecv(r, count(n, "irecv"), MPI_FLOAT, src, tag, comm_, &req_[req_.size() - 2]), "irecv");
    ok(MPI_Isend(s, count(n, "isend"), MPI_FLOAT, dst, tag, comm_, &req_.back()), "isend");
  }
  void exchange_wait() override {
    if (req_.empty()) return;
    WatchScope w(this, "waitall (ring exchange)", int64_t(req_.size()));
    const int rc = MPI_Waitall(int(req_.size()), req_.data(), MPI_STATUSES_IGNORE);
    req_.clear();
    ok(rc, "waitall");
  }
  void reduce_scatter_sum(float* b, int64_t n) override {
    WatchScope w(this, "reduce_scatter", n);
    std::vector<int> counts, displs;
    parts(n, counts, displs);
    std::vector<float> mine(size_t(std::max(counts[size_t(rank_)], 1)));
    ok(MPI_Reduce_scatter(b, mine.data(), counts.data(), MPI_FLOAT, MPI_SUM, comm_), "reduce_scatter");
    std::copy(mine.begin(), mine.begin() + counts[size_t(rank_)], b + displs[size_t(rank_)]);
  }
  void all_gather_parts(float* b, int64_t n) override {
    WatchScope w(this, "allgatherv", n);
    std::vector<int> counts, displs;
    parts(n, counts, displs);
    ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, b, counts.data(), displs.data(), MPI_FLOAT, comm_),
       "allgatherv");
  }
  void barrier() override {
    WatchScope w(this, "barrier", 0);
    ok(MPI_Barrier(comm_), "barrier");
  }
  [[noreturn]] void abort(const std::string& why) override {
    std::fprintf(stderr, "longctx: error: rank %d of %d: %s\n", rank_, size_, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  MPI_Comm comm_ = MPI_COMM_WORLD;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> req_;
  void parts(int64_t n, std::vector<int>& counts, std::vector<int>& displs) const {
    for (int r = 0; r < size_; r++) {
      const CommPart q = comm_part(n, size_, r);
      counts.push_back(count(q.n, "parts")), displs.push_back(count(q.lo, "parts"));
    }
  }
};

}  // namespace

namespace {
std::pair<int, int> node_place() {  // (this node's ranks, this rank among them), asked once MPI runs
  static std::pair<int, int> place{0, 0};
  if (place.first > 0) return place;
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) return {1, 0};  // not started by mpirun (or over): a node of one
  MPI_Comm node;
  ok(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "comm_split_type");
  MPI_Comm_size(node, &place.first);
  MPI_Comm_rank(node, &place.second);
  MPI_Comm_free(&node);
  return place;
}
}  // namespace

std::unique_ptr<Comm> make_mpi_comm() {
  auto c = std::make_unique<MpiComm>();
  node_place();  // (collective: here, where every rank comes, not later where only some might)
  return c;
}

int node_ranks() { return node_place().first; }
int node_rank() { return node_place().second; }

}  // namespace longctx

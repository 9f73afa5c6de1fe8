#include "comm/comm_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/cuda/cuda_info.h"

namespace longctx {

namespace {

// n elements on the host, mirrored on the device when asked; p() is what the
// Comm is given.
template <class T>
class Buf {
 public:
  Buf(int64_t n, bool device) : h(size_t(n)), dev_(device) {
    if (dev_) d_ = static_cast<T*>(cuda_malloc(bytes()));
  }
  ~Buf() {
    if (d_) cuda_free(d_);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  T* p() {
    if (dev_) cuda_to_device(d_, h.data(), bytes());
    return dev_ ? d_ : h.data();
  }
  void pull() {
    if (dev_) cuda_to_host(h.data(), d_, bytes());
  }
  std::vector<T> h;

 private:
  size_t bytes() const { return std::max<size_t>(h.size(), 1) * sizeof(T); }
  bool dev_;
  T* d_ = nullptr;
};

struct Checker {
  std::vector<std::string> lines;
  void expect(const std::string& what, bool ok, const std::string& detail = "") {
    lines.push_back((ok ? "PASS " : "FAIL ") + what + (ok || detail.empty() ? "" : ": " + detail));
  }
};

template <class T>
std::string first_bad(const std::vector<T>& got, const std::vector<T>& want) {
  for (size_t i = 0; i < got.size(); i++)
    if (std::abs(double(got[i]) - double(want[i])) > 1e-6 * (1 + std::abs(double(want[i]))))
      return "element " + std::to_string(i) + ": " + std::to_string(double(got[i])) + ", expected " +
             std::to_string(double(want[i]));
  return "";
}

void check_comm(Comm& comm, bool device, bool scalars, Checker& c, const std::string& tag) {
  const int P = comm.size(), r = comm.rank();
  const int64_t n = 1001;  // does not divide by 2 or 4: parts of unequal length
  {
    Buf<float> b(n, device);
    std::vector<float> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++)
      b.h[size_t(i)] = float(r) + 0.5f * float(i),
      want[size_t(i)] = float(P * (P - 1) / 2) + 0.5f * float(P * i);
    comm.all_reduce_sum(b.p(), n);
    b.pull();
    const std::string bad = first_bad(b.h, want);
    c.expect(tag + "all_reduce_sum (float)", bad.empty(), bad);
  }
  {
    Buf<double> s(n, scalars), m(n, scalars);
    std::vector<double> ws(static_cast<size_t>(n)), wm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) {
      s.h[size_t(i)] = 1e-3 * double(r + 1) * double(i),
      ws[size_t(i)] = 1e-3 * double(P * (P + 1) / 2) * double(i);
      m.h[size_t(i)] = double(10 * r - i), wm[size_t(i)] = double(10 * (P - 1) - i);
    }
    comm.all_reduce_sum(s.p(), n);
    comm.all_reduce_max(m.p(), n);
    s.pull(), m.pull();
    std::string bad = first_bad(s.h, ws);
    c.expect(tag + "all_reduce_sum (double)", bad.empty(), bad);
    bad = first_bad(m.h, wm);
    c.expect(tag + "all_reduce_max (double)", bad.empty(), bad);
  }
  {
    const int64_t k = 7;  // per block
    Buf<float> s(P * k, device), rv(P * k, device);
    std::vector<float> want(static_cast<size_t>(P * k));
    for (int d = 0; d < P; d++)
      for (int64_t i = 0; i < k; i++) {
        s.h[size_t(d * k + i)] = float(1000 * r + 10 * d + i);
        want[size_t(d * k + i)] = float(1000 * d + 10 * r + i);  // block d comes from rank d
      }
    comm.all_to_all(s.p(), rv.p(), k);
    rv.pull();
    const std::string bad = first_bad(rv.h, want);
    c.expect(tag + "all_to_all", bad.empty(), bad);
  }
  {
    const int64_t k = 5;
    Buf<float> sf(k, device), rf(P * k, device);
    Buf<double> sd(k, scalars), rd(P * k, scalars);
    Buf<int32_t> si(k, scalars), ri(P * k, scalars);
    std::vector<float> wf(static_cast<size_t>(P * k));
    std::vector<double> wd(static_cast<size_t>(P * k));
    std::vector<int32_t> wi(static_cast<size_t>(P * k));
    for (int64_t i = 0; i < k; i++)
      sf.h[size_t(i)] = float(100 * r + i), sd.h[size_t(i)] = 0.25 * double(100 * r + i),
      si.h[size_t(i)] = int32_t(-100 * r - i);
    for (int s = 0; s < P; s++)
      for (int64_t i = 0; i < k; i++)
        wf[size_t(s * k + i)] = float(100 * s + i), wd[size_t(s * k + i)] = 0.25 * double(100 * s + i),
                          wi[size_t(s * k + i)] = int32_t(-100 * s - i);
    comm.all_gather(sf.p(), rf.p(), k);
    comm.all_gather(sd.p(), rd.p(), k);
    comm.all_gather(si.p(), ri.p(), k);
    rf.pull(), rd.pull(), ri.pull();
    std::string bad = first_bad(rf.h, wf) + first_bad(rd.h, wd) + first_bad(ri.h, wi);
    c.expect(tag + "all_gather (float, double, int32)", bad.empty(), bad);
  }
  {
    const int64_t k = 9;
    Buf<float> s(k, device), rv(k, device);
    std::vector<float> want(static_cast<size_t>(k));
    const int dst = (r + 1) % P, src = (r + P - 1) % P;
    for (int64_t i = 0; i < k; i++)
      s.h[size_t(i)] = float(1000 * r + i), want[size_t(i)] = float(1000 * src + i);
    comm.exchange_start(s.p(), dst, rv.p(), src, k);
    comm.exchange_wait();
    rv.pull();
    const std::string bad = first_bad(rv.h, want);
    c.expect(tag + "exchange_start / exchange_wait (ring step)", bad.empty(), bad);
  }
  {
    const CommPart part = comm_part(n, P, r);
    const int64_t lo = part.lo, hi = part.lo + part.n;
    Buf<float> b(n, device);
    for (int64_t i = 0; i < n; i++) b.h[size_t(i)] = float(r + 1) * float(i % 97);
    comm.reduce_scatter_sum(b.p(), n);
    b.pull();
    std::vector<float> got(b.h.begin() + lo, b.h.begin() + hi), want;
    for (int64_t i = lo; i < hi; i++) want.push_back(float(P * (P + 1) / 2) * float(i % 97));
    std::string bad = first_bad(got, want);
    c.expect(tag + "reduce_scatter_sum (this rank's part)", bad.empty(), bad);
    for (int64_t i = 0; i < n; i++) b.h[size_t(i)] = i >= lo && i < hi ? 2.f * float(i) : -1.f;
    comm.all_gather_parts(b.p(), n);
    b.pull();
    std::vector<float> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) all[size_t(i)] = 2.f * float(i);
    bad = first_bad(b.h, all);
    c.expect(tag + "all_gather_parts", bad.empty(), bad);
  }
  comm.barrier();
  c.expect(tag + "barrier", true);
}

}  // namespace

CommBandwidth comm_bandwidth(Comm& comm, bool device, int64_t bytes) {
  const int P = comm.size();
  const int64_t n = std::max<int64_t>(bytes / 4 / P * P, P);  // floats, a multiple of the ranks
  Buf<float> a(n, device), b(n, device);
  float *pa = a.p(), *pb = b.p();
  // seconds of op, the slowest rank's, median of three after a warm-up (barriers: NCCL's wait for its stream)
  auto time = [&](auto op) {
    std::vector<double> s;
    for (int i = 0; i < 4; i++) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      op();
      comm.barrier();
      double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      comm.all_reduce_max(&t, 1);
      if (i > 0) s.push_back(t);
    }
    std::sort(s.begin(), s.end());
    return s[1];
  };
  const double B = double(n) * 4, f = double(P - 1) / double(P);
  CommBandwidth r;
  r.all_reduce_gbps = 2 * f * B / time([&] { comm.all_reduce_sum(pa, n); }) / 1e9;
  r.all_to_all_gbps = f * B / time([&] { comm.all_to_all(pa, pb, n / P); }) / 1e9;
  r.exchange_gbps = B / time([&] {
                      comm.exchange_start(pa, (comm.rank() + 1) % P, pb, (comm.rank() + P - 1) % P, n);
                      comm.exchange_wait();
                    }) /
                    1e9;
  return r;
}

std::vector<std::string> comm_check(Comm& comm, bool device, bool scalars_on_device) {
  Checker c;
  const std::string kind = comm.kind();
  check_comm(comm, device, scalars_on_device, c, kind + " x" + std::to_string(comm.size()) + ": ");
  if (comm.size() > 1) {  // sub-communicators: even and odd ranks
    std::unique_ptr<Comm> sub = comm.split(comm.rank() % 2, comm.rank());
    c.expect(kind + " split: rank " + std::to_string(comm.rank()) + " is rank " +
                 std::to_string(sub->rank()) + " of " + std::to_string(sub->size()),
             sub->rank() == comm.rank() / 2 && sub->size() == (comm.size() + 1 - comm.rank() % 2) / 2);
    check_comm(*sub, device, scalars_on_device, c, kind + " split x" + std::to_string(sub->size()) + ": ");
  }
  return c.lines;
}

}  // namespace longctx

#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/copy_thread.h"
#include "core/disk_file.h"
#include "core/memory.h"
#include "harness.h"

namespace longctx::test {
namespace {

TEST(Core, ParseBytes) {
  EXPECT_EQ(parse_bytes("2GiB"), int64_t(2) << 30);
  EXPECT_EQ(parse_bytes("512MiB"), int64_t(512) << 20);
  EXPECT_EQ(parse_bytes("1.5GB"), int64_t(1500000000));
  EXPECT_EQ(parse_bytes("4096"), 4096);
  EXPECT_THROW(parse_bytes("lots"), Error);
  EXPECT_THROW(parse_bytes("3 parsecs"), Error);
}

TEST(Core, CheckCarriesFileAndLine) {
  try {
    CHECK(1 + 1 == 3, "arithmetic is ", "broken");
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("arithmetic is broken"), std::string::npos) << m;
    EXPECT_NE(m.find("test_core.cpp:"), std::string::npos) << m;
    EXPECT_EQ(m.find("1 + 1 == 3"), std::string::npos) << m;  // the message says it
  }
}

TEST(Core, TensorSliceAndView) {
  std::vector<float> v(24);
  Tensor t(v.data(), {4, 3, 2});
  Tensor s = t.slice0(1, 2);
  EXPECT_EQ(s.as<float>(), v.data() + 6);
  EXPECT_EQ(s.shape, Shape({2, 3, 2}));
  EXPECT_EQ(t.view({12, 2}).numel(), 24);
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(t.slice0(3, 2), Error);
}

TEST(Core, HalfConversionsRoundToNearestEven) {
  for (float f : {0.f, 1.f, -2.5f, 3.14159f, 65504.f, 6.1e-5f, 1e-7f, -0.f}) {
    EXPECT_NEAR(f16_to_f32(f32_to_f16(f)), f, std::abs(f) * 1e-3 + 6e-8) << f;
    EXPECT_NEAR(bf16_to_f32(f32_to_bf16(f)), f, std::abs(f) * 8e-3) << f;
  }
  EXPECT_EQ(f32_to_bf16(1.f), 0x3f80);
  EXPECT_EQ(f32_to_f16(1.f), 0x3c00);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(Core, TrackerCountsPerTierAndTag) {
  Memory mem;
  {
    Buffer a(mem, Tier::device, Tag::weights, {100});
    Buffer b(mem, Tier::host, Tag::checkpoint, {50});
    DiskFile d("", 4000, mem, Tag::checkpoint);  // the disk tier is a file, written and read in ranges
    const float x[2] = {1.f, 2.f};
    float y[2] = {0, 0};
    d.write(3992, x, 8);
    d.read(3992, y, 8);
    EXPECT_EQ(y[1], 2.f);
    d.zero();
    d.read(3992, y, 8);
    EXPECT_EQ(y[0], 0.f);
    EXPECT_THROW(d.read(3996, y, 8), Error) << "a read past the end is refused";
    EXPECT_THROW(Buffer(mem, Tier::disk, Tag::checkpoint, {10}), Error) << "no Buffers on the disk tier";
    EXPECT_EQ(mem.tracker().tier(Tier::device).current, 400);
    EXPECT_EQ(mem.tracker().tag(Tier::disk, Tag::checkpoint).current, 4000);
  }
  EXPECT_EQ(mem.tracker().tier(Tier::disk).current, 0);
  EXPECT_EQ(mem.tracker().tier(Tier::device).current, 0);
  EXPECT_EQ(mem.tracker().tier(Tier::device).peak, 400);
  EXPECT_EQ(mem.tracker().tier(Tier::host).peak, 200);
}

// The copy thread's hand-offs (run under ThreadSanitizer by scripts/sanitize.sh thread): what a copy wrote is
// visible after wait() on its ticket, copies run in order on a thread of their own, and the destructor
// finishes the queue first.
TEST(Core, CopyThreadRunsCopiesInOrderAndHandsTheirResultsOver) {
  std::vector<int> dst(64, -1), order;
  const std::thread::id main_id = std::this_thread::get_id();
  bool other_thread = true;
  {
    CopyThread ct;
    uint64_t last = 0;
    for (int i = 0; i < 64; i++)
      last = ct.submit([&, i] {
        dst[size_t(i)] = i;
        order.push_back(i);
        other_thread = other_thread && std::this_thread::get_id() != main_id;
      });
    EXPECT_EQ(last, 64u);
    ct.wait(32);
    for (int i = 0; i < 32; i++) EXPECT_EQ(dst[size_t(i)], i);
    ct.wait_all();
    for (int i = 0; i < 64; i++) EXPECT_EQ(order[size_t(i)], i);
    // the compute thread reuses a slot once its copy is done, as SavedStore and KvPages do
    for (int round = 0; round < 8; round++) {
      const uint64_t t = ct.submit([&] {
        for (int& x : dst) x += 1;
      });
      ct.wait(t);
      for (int& x : dst) x *= 2;
    }
    for (int i = 0; i < 100; i++) ct.submit([&] { order.push_back(-1); });
  }  // the destructor runs the 100 queued copies before the thread ends
  EXPECT_EQ(order.size(), 164u);
  EXPECT_TRUE(other_thread);
  int expect = 5;
  for (int round = 0; round < 8; round++) expect = (expect + 1) * 2;
  EXPECT_EQ(dst[5], expect);
}

TEST(Core, CopyThreadRethrowsTheFirstErrorAtWait) {
  int first = 0,
      last = 0;  // declared first: they outlive the copy thread, which runs the queue out at its end
  CopyThread ct;
  ct.submit([&] { first++; });
  const uint64_t bad = ct.submit([] { throw std::runtime_error("disk full"); });
  ct.submit([] { throw std::runtime_error("second"); });
  const uint64_t after = ct.submit([&] { last++; });
  try {
    ct.wait(bad);
    ADD_FAILURE() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "disk full");
  }
  EXPECT_EQ(first, 1) << "the copies before the error ran, and their writes are visible";
  EXPECT_THROW(ct.wait(after), std::runtime_error) << "the error stays";
  EXPECT_THROW(ct.wait_all(), std::runtime_error);
}

}  // namespace
}  // namespace longctx::test

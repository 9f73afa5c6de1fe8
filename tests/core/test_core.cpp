#include <cmath>

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

}  // namespace
}  // namespace longctx::test

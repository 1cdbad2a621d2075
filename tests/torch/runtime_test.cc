// common/torch/runtime.h: device parsing and the per-device defaults.
#include "common/torch/runtime.h"

#include "gtest/gtest.h"

namespace cellflux {
namespace {

TEST(RuntimeTest, DefaultMaxBatchByDevice) {
  EXPECT_EQ(DefaultMaxBatch(c10::Device(c10::kCPU)), 16);
  EXPECT_EQ(DefaultMaxBatch(c10::Device(c10::kCUDA, 0)), 64);
  EXPECT_EQ(DefaultMaxBatch(c10::Device(c10::kCUDA, 3)), 64);
}

TEST(RuntimeTest, ParseDevice) {
  auto cpu = ParseDevice("cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE(cpu->is_cpu());
  auto automatic = ParseDevice("auto");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ(automatic->is_cuda(), GetRuntimeInfo().cuda_available);
  auto bad = ParseDevice("tpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'tpu'"), std::string::npos) << bad.status();
  EXPECT_FALSE(ParseDevice("cuda:x").ok());
}

}  // namespace
}  // namespace cellflux

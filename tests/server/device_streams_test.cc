// DeviceStreams (server/device_streams.h) driven through a fake device: a c10 device-guard
// implementation registered for PrivateUse1 that keeps per-thread current streams, hands out pool
// streams and logs every record / block / synchronize / allocator hint. The CPU LibTorch has no
// device with streams, so this is how the CPU build checks which stream each call runs on and the
// order of the hand-offs that ModelBackend relies on with CUDA.
#include "server/device_streams.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace cellflux::server {
namespace {

constexpr c10::DeviceType kFake = c10::DeviceType::PrivateUse1;
const c10::Device kFakeDevice(kFake, 0);

// What the fake device saw, in order ("record e1 on s0", "block s1 on e1", "sync s1", ...).
struct FakeDeviceLog {
  absl::Mutex mu;
  std::vector<std::string> lines ABSL_GUARDED_BY(mu);
  int64_t next_pool_stream ABSL_GUARDED_BY(mu) = 1;  // stream 0 is the default stream
  intptr_t next_event ABSL_GUARDED_BY(mu) = 1;

  void Add(std::string line) {
    absl::MutexLock lock(&mu);
    lines.push_back(std::move(line));
  }
  std::vector<std::string> Take() {
    absl::MutexLock lock(&mu);
    std::vector<std::string> out = std::move(lines);
    lines.clear();
    return out;
  }
};
FakeDeviceLog& Log() {
  static FakeDeviceLog* log = new FakeDeviceLog();
  return *log;
}

thread_local c10::StreamId current_stream = 0;

c10::Stream FakeStream(c10::StreamId id) {
  return c10::Stream(c10::Stream::UNSAFE, kFakeDevice, id);
}

class FakeStreamsGuardImpl final : public c10::impl::DeviceGuardImplInterface {
 public:
  c10::DeviceType type() const override { return kFake; }
  c10::Device exchangeDevice(c10::Device) const override { return kFakeDevice; }
  c10::Device getDevice() const override { return kFakeDevice; }
  void setDevice(c10::Device) const override {}
  void uncheckedSetDevice(c10::Device) const noexcept override {}
  c10::Stream getStream(c10::Device) const noexcept override { return FakeStream(current_stream); }
  c10::Stream getDefaultStream(c10::Device) const override { return FakeStream(0); }
  c10::Stream getStreamFromGlobalPool(c10::Device, bool) const override {
    absl::MutexLock lock(&Log().mu);
    return FakeStream(Log().next_pool_stream++);
  }
  c10::Stream exchangeStream(c10::Stream s) const noexcept override {
    const c10::StreamId old = current_stream;
    current_stream = s.id();
    return FakeStream(old);
  }
  void record(void** event, const c10::Stream& stream, const c10::DeviceIndex,
              const c10::EventFlag) const override {
    if (*event == nullptr) {
      absl::MutexLock lock(&Log().mu);
      *event = reinterpret_cast<void*>(Log().next_event++);
    }
    Log().Add(absl::StrCat("record e", reinterpret_cast<intptr_t>(*event), " on s", stream.id()));
  }
  void block(void* event, const c10::Stream& stream) const override {
    Log().Add(absl::StrCat("block s", stream.id(), " on e", reinterpret_cast<intptr_t>(event)));
  }
  bool queryEvent(void*) const override { return true; }
  void destroyEvent(void*, const c10::DeviceIndex) const noexcept override {}
  c10::DeviceIndex deviceCount() const noexcept override { return 1; }
  void synchronizeStream(const c10::Stream& stream) const override {
    Log().Add(absl::StrCat("sync s", stream.id()));
  }
  void recordDataPtrOnStream(const c10::DataPtr& ptr, const c10::Stream& stream) const override {
    Log().Add(absl::StrCat("use ", reinterpret_cast<uintptr_t>(ptr.get()), " on s", stream.id()));
  }
};
C10_REGISTER_GUARD_IMPL(PrivateUse1, FakeStreamsGuardImpl);

c10::StreamId CurrentStream() {
  return c10::impl::VirtualGuardImpl(kFake).getStream(kFakeDevice).id();
}

class DeviceStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override { Log().Take(); }
};

// Disabled (the CPU device, whose guard has no streams: any stream call would throw), nothing is
// touched and every call passes.
TEST_F(DeviceStreamsTest, DisabledStreamsDoNothing) {
  DeviceStreams streams(c10::Device(c10::kCPU), /*enabled=*/false);
  DeviceStreams::CodecScope scope(streams);
  EXPECT_FALSE(scope.stream().has_value());
  streams.HandOff();
  streams.WaitForHandOff(scope);
  streams.HandToStep(scope, {torch::ones({2})});
  streams.SynchronizeStep();
  EXPECT_THAT(Log().Take(), ::testing::IsEmpty());
}

// A codec scope puts its thread on that thread's own codec stream and restores the default; the
// thread keeps its stream across scopes, another thread gets another one.
TEST_F(DeviceStreamsTest, EachCodecThreadRunsOnItsOwnStream) {
  DeviceStreams streams(kFakeDevice, /*enabled=*/true);
  ASSERT_EQ(CurrentStream(), 0);
  c10::StreamId first = -1, again = -1, other = -1;
  {
    DeviceStreams::CodecScope scope(streams);
    ASSERT_TRUE(scope.stream().has_value());
    first = scope.stream()->id();
    EXPECT_EQ(CurrentStream(), first);
  }
  EXPECT_EQ(CurrentStream(), 0);
  {
    DeviceStreams::CodecScope scope(streams);
    again = scope.stream()->id();
  }
  std::thread([&] {
    DeviceStreams::CodecScope scope(streams);
    other = scope.stream()->id();
    EXPECT_EQ(CurrentStream(), other);
  }).join();
  EXPECT_NE(first, 0);
  EXPECT_EQ(again, first);
  EXPECT_NE(other, first);
  EXPECT_NE(other, 0);
}

// step → decode: the codec stream waits on the newest event the step stream recorded at a hand-off
// (none before the first); encode → step: the codec thread waits for its stream and the defined
// outputs' memory is marked as used by the step stream.
TEST_F(DeviceStreamsTest, HandOffsOrderTheStreams) {
  DeviceStreams streams(kFakeDevice, /*enabled=*/true);
  torch::Tensor latent = torch::ones({1, 4});
  const uintptr_t latent_ptr = reinterpret_cast<uintptr_t>(latent.storage().data());
  std::string codec;
  std::thread codec_thread([&] {
    DeviceStreams::CodecScope scope(streams);
    codec = absl::StrCat("s", scope.stream()->id());
    streams.WaitForHandOff(scope);  // nothing handed off yet: no wait
  });
  codec_thread.join();
  streams.HandOff();  // the test thread plays the step loop: its current stream is s0
  streams.HandOff();
  std::thread([&] {
    DeviceStreams::CodecScope scope(streams);
    streams.WaitForHandOff(scope);
    streams.HandToStep(scope, {latent, torch::Tensor()});
  }).join();
  streams.SynchronizeStep();
  const std::vector<std::string> log = Log().Take();
  ASSERT_EQ(log.size(), 6u) << ::testing::PrintToString(log);
  // Two hand-offs: two events on the step stream; the codec stream waits on the newer.
  EXPECT_THAT(log[0], ::testing::MatchesRegex("record e[0-9]+ on s0"));
  EXPECT_THAT(log[1], ::testing::MatchesRegex("record e[0-9]+ on s0"));
  EXPECT_NE(log[0].substr(0, log[0].find(" on")), log[1].substr(0, log[1].find(" on")));
  const std::string newest = log[1].substr(std::string("record ").size(),
                                           log[1].find(" on") - std::string("record ").size());
  EXPECT_THAT(log[2], ::testing::MatchesRegex("block s[1-9][0-9]* on " + newest));
  EXPECT_EQ(log[3].substr(0, 5), "sync ");
  EXPECT_EQ(log[3].substr(5), log[2].substr(6, log[2].find(" on") - 6));  // its own stream
  EXPECT_EQ(log[4], absl::StrCat("use ", latent_ptr, " on s0"));
  EXPECT_EQ(log[5], "sync s0");
  EXPECT_NE(codec, "s0");
}

}  // namespace
}  // namespace cellflux::server

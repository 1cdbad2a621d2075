// The codec stage's own device streams. On CUDA, ModelBackend runs every Encode and Decode on a
// stream of the calling codec thread's own, so the VAE and gene-autoencoder kernels run beside
// the step loop's velocity forwards instead of queuing behind them on the device's one default
// stream. The step loop (Step, and the scheduler's own tensor ops such as Heun's average) stays
// on the default stream: its thread never changes its current stream.
//
//   DeviceStreams streams(device, /*enabled=*/device.is_cuda());
//   // a codec call (any codec thread, or the step loop lending a hand):
//   {
//     DeviceStreams::CodecScope scope(streams);  // this thread's current stream = its codec stream
//     streams.WaitForHandOff(scope);             // Decode: after the step stream's handed-off writes
//     ... the VAE / gene autoencoder ...
//     streams.HandToStep(scope, {z.image, z.gene});  // Encode: z is written, the step stream may read it
//   }
//   streams.HandOff();  // step loop thread, after the last op that wrote the rows it retires
//
// Where a latent crosses between the streams, the order is made explicit:
//  * encode → step: HandToStep blocks the codec thread until its stream has written z (the step
//    loop may read z as soon as Encode returns), and tells the caching allocator that the step
//    stream uses z's memory, so a later encode cannot reuse that memory while a forward that
//    reads z is still queued.
//  * step → decode: HandOff records an event on the calling thread's current stream (the step
//    stream) after the last op that wrote the rows being retired; WaitForHandOff makes the codec
//    stream wait, on the device, for the newest such event. A row is retired (and handed off)
//    before its Decode is called, so the newest event is at or after the row's last write. The
//    memory of a decoded row is freed after Decode's copy to the host, which waits for the codec
//    stream, so the allocator needs no hint there.
//  * Bank latents and the weights are written on the default stream at load time;
//    SynchronizeStep() (LoadModelBackend, before the warm-up) waits for them before the first
//    codec call.
//
// Disabled (CPU, or enabled = false), every call is a no-op and no c10 stream API is touched.
// Written against c10's device-generic stream API (c10::impl::VirtualGuardImpl, c10::Event,
// c10::StreamGuard), the same in LibTorch 1.13 and 2.x, so the CPU build compiles it and the
// tests drive it through a fake device (tests/server/device_streams_test.cc).
//
// Thread-safety: every method is thread-safe; a CodecScope belongs to the thread that made it.
#ifndef CELLFLUX_SERVER_DEVICE_STREAMS_H_
#define CELLFLUX_SERVER_DEVICE_STREAMS_H_

#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>

#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace at {
class Tensor;
}

namespace cellflux::server {

class DeviceStreams {
 public:
  DeviceStreams(c10::Device device, bool enabled);
  DeviceStreams(const DeviceStreams&) = delete;
  DeviceStreams& operator=(const DeviceStreams&) = delete;

  bool enabled() const { return enabled_; }

  // While alive, the calling thread's current stream on the device is that thread's codec stream
  // (taken from the device's stream pool on the thread's first scope, then kept). Not nestable.
  class CodecScope {
   public:
    explicit CodecScope(DeviceStreams& streams);
    CodecScope(const CodecScope&) = delete;
    CodecScope& operator=(const CodecScope&) = delete;
    // Disabled streams: nullopt.
    const std::optional<c10::Stream>& stream() const { return stream_; }

   private:
    std::optional<c10::Stream> stream_;
    std::optional<c10::StreamGuard> guard_;
  };

  // Step loop thread, after the last op that wrote rows about to be decoded.
  void HandOff();
  // Codec call, before reading handed-off rows: the scope's stream waits for the newest HandOff.
  void WaitForHandOff(const CodecScope& scope);
  // Codec call, after the last op that wrote `tensors` (undefined ones are skipped): blocks until
  // the scope's stream has run them and records their memory as used by the step stream.
  void HandToStep(const CodecScope& scope, const std::vector<at::Tensor>& tensors);
  // Blocks until the step (default) stream has run everything queued on it so far.
  void SynchronizeStep();

 private:
  c10::Stream CodecStreamOfThisThread();

  const c10::Device device_;
  const bool enabled_;
  absl::Mutex mu_;
  std::map<std::thread::id, c10::Stream> codec_streams_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const c10::Event> hand_off_ ABSL_GUARDED_BY(mu_);  // newest; never re-recorded
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_DEVICE_STREAMS_H_

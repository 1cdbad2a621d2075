#include "server/device_streams.h"

#include <ATen/core/Tensor.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <utility>

namespace cellflux::server {

DeviceStreams::DeviceStreams(c10::Device device, bool enabled)
    : device_(device), enabled_(enabled) {}

c10::Stream DeviceStreams::CodecStreamOfThisThread() {
  absl::MutexLock lock(&mu_);
  auto it = codec_streams_.find(std::this_thread::get_id());
  if (it == codec_streams_.end()) {
    const c10::impl::VirtualGuardImpl impl(device_.type());
    it = codec_streams_.emplace(std::this_thread::get_id(), impl.getStreamFromGlobalPool(device_))
             .first;
  }
  return it->second;
}

DeviceStreams::CodecScope::CodecScope(DeviceStreams& streams) {
  if (!streams.enabled()) return;
  stream_ = streams.CodecStreamOfThisThread();
  guard_.emplace(*stream_);
}

void DeviceStreams::HandOff() {
  if (!enabled_) return;
  const c10::impl::VirtualGuardImpl impl(device_.type());
  auto event = std::make_shared<c10::Event>(device_.type());
  event->record(impl.getStream(device_));  // the calling (step loop) thread's current stream
  absl::MutexLock lock(&mu_);
  hand_off_ = std::move(event);
}

void DeviceStreams::WaitForHandOff(const CodecScope& scope) {
  if (!scope.stream()) return;  // disabled
  std::shared_ptr<const c10::Event> event;
  {
    absl::MutexLock lock(&mu_);
    event = hand_off_;
  }
  if (event != nullptr) event->block(*scope.stream());
}

void DeviceStreams::HandToStep(const CodecScope& scope, const std::vector<at::Tensor>& tensors) {
  if (!scope.stream()) return;  // disabled
  const c10::impl::VirtualGuardImpl impl(device_.type());
  impl.synchronizeStream(*scope.stream());
  const c10::Stream step = impl.getDefaultStream(device_);
  for (const at::Tensor& t : tensors) {
    if (t.defined()) impl.recordDataPtrOnStream(t.storage().data_ptr(), step);
  }
}

void DeviceStreams::SynchronizeStep() {
  if (!enabled_) return;
  const c10::impl::VirtualGuardImpl impl(device_.type());
  impl.synchronizeStream(impl.getDefaultStream(device_));
}

}  // namespace cellflux::server

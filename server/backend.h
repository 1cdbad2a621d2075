// The model as the scheduler sees it: encode controls into source latents, advance a batch of
// rows by one guided Euler step, decode finished rows. One implementation runs the real
// CellFluxModel (model_backend.h); tests use a small fake with the same contract. Heun is the
// scheduler's business (two Euler steps and an average, common/flow/sampler.h): a backend only
// ever advances rows by one Euler step from the (z, t) it is given.
//
// Contract every implementation keeps:
//  * Row-wise: row i of every output depends only on row i of the inputs (its latent, t, dt,
//    guidance, label, seed), never on which other rows share the call or on the row's position.
//    This is what makes a request's output identical whether it runs alone or batched.
//  * Randomness only in Encode, from a generator seeded by each row's seed (never a global RNG).
//  * Errors come back as absl::Status (LibTorch exceptions converted with TorchCall:
//    out-of-memory → RESOURCE_EXHAUSTED, anything else → INTERNAL). Nothing throws.
//
// Concurrency: which calls the scheduler may make at the same time (scheduler.h; the tests' fake
// backend fails a test on any other overlap):
//  * info(), DeviceMemoryBytes(), BankControlInput(), RegisterStructure(): any thread, any time
//    (RegisterStructure may overlap a Step: a Step running meanwhile keeps the rows it started
//    with, and the structure cache never overwrites a slot a request in flight still uses).
//  * Step: only on the step loop's thread ("cf-batch"), so never two at once.
//  * Encode and Decode: on a codec worker ("cf-codec") or on the step loop's thread between two
//    Steps (lending the codec stage a hand). They overlap each other and a running Step: at most
//    codec_threads + 1 Encode/Decode calls at once, at most codec_threads while a Step runs.
//  * HandOffForDecode: only on the step loop's thread, after the Step (and the scheduler's own ops)
//    that wrote the rows it retires, before their Decode is called.
//  * No call begins after Scheduler::Stop() has returned.
//  * Every calling thread has c10::InferenceMode set. Each call may block as long as the model
//  runs.
// So Encode, Step and Decode must not share mutable state except behind the implementation's
// own locks (the model's weights are only read).
//
// Device streams: the latents Encode returns and Step takes live on the backend's device. A
// backend may run Encode/Decode on device streams other than the step loop's, provided Encode's
// result may be read by the step loop as soon as Encode returns and Decode waits for the writes
// handed off before it (ModelBackend on CUDA, device_streams.h).
#ifndef CELLFLUX_SERVER_BACKEND_H_
#define CELLFLUX_SERVER_BACKEND_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flow/joint_latent.h"
#include "server/model_info.h"

namespace cellflux::server {

// One control and the seeds of the rows to draw from it (one row per seed, in order).
struct EncodeItem {
  std::shared_ptr<const ControlInput> control;
  std::vector<uint64_t> seeds;
};

// A batch of N rows to advance by one step: z ← z + dt·v_guided(z, t). z is on the backend's
// device (as Encode/Step returned it); the per-row scalars are CPU tensors the backend moves.
struct StepBatch {
  JointLatent z;           // image [N, C, h, w], gene [N, Lg] (undefined for image-only)
  torch::Tensor t;         // [N] float32 CPU: each row's current time i/num_steps
  torch::Tensor dt;        // [N] float32 CPU: each row's step 1/num_steps
  torch::Tensor guidance;  // [N] float32 CPU: α per row (1 = conditional only)
  torch::Tensor labels;    // [N] int64 CPU: perturbation row per row
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Request-facing facts about the model. Immutable; any thread.
  virtual const ModelInfo& info() const = 0;

  // Source latents z_0 for Σ seeds rows, item by item and seed by seed in order.
  virtual absl::StatusOr<JointLatent> Encode(const std::vector<EncodeItem>& items) = 0;

  // The rows advanced by one guided Euler step (same shapes as batch.z).
  virtual absl::StatusOr<JointLatent> Step(const StepBatch& batch) = 0;

  // Decodes N finished rows into N samples in the request scale (12-bit pixels, raw expression).
  // The rows were handed off (HandOffForDecode) after their last write.
  virtual absl::StatusOr<std::vector<SampleOutput>> Decode(const JointLatent& z) = 0;

  // Called on the step loop's thread after the last operation that wrote the rows it is about to
  // retire for decoding (their last Step and, for Heun rows, the scheduler's average), before
  // they reach Decode. A backend whose Decode runs on a device stream of its own (ModelBackend
  // on CUDA, device_streams.h) records here what Decode must wait for. Default: nothing. An error
  // fails the tasks of those rows (they are not decoded).
  virtual absl::Status HandOffForDecode() { return absl::OkStatus(); }

  // Bytes the device's caching allocator holds for this process (cellflux_gpu_memory_bytes); 0 on
  // CPU and for backends that do not know. Any thread.
  virtual int64_t DeviceMemoryBytes() const { return 0; }

  // The inputs of bank control `key` (its centre-cropped pixels and expression), for
  // options.return_control. Any thread. UNIMPLEMENTED for backends without a bank.
  virtual absl::StatusOr<ControlInput> BankControlInput(const ControlKey& key) const {
    return absl::UnimplementedError("this backend has no control bank");
  }

  // Structure models (info().uses_structure()): conditions label V + 1 + slot (V = the vocabulary
  // size) from now on on the Morgan fingerprint `bits` (set-bit indices < fingerprint_bits) at
  // `dose_um` (0 = unknown) and returns that label. slot ≤ the slots registered so far (equal
  // appends one, smaller overwrites). Called by the structure cache (structure_cache.h), which
  // hands out slots. UNIMPLEMENTED for backends without a structure encoder.
  virtual absl::StatusOr<int64_t> RegisterStructure(int64_t slot, const std::vector<int>& bits,
                                                    double dose_um) {
    return absl::UnimplementedError("this model has no structure encoder");
  }
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_BACKEND_H_

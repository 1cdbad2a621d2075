// Backend over the real CellFluxModel (common/models/cellflux_model.h), loaded from a checkpoint
// directory (DESIGN.md §3), with an optional control bank.
//
//   ModelBackendOptions o;  o.checkpoint_dir = "ckpt/latest";  o.device = "cuda:0";
//   absl::StatusOr<std::shared_ptr<Backend>> b = LoadModelBackend(o);   // loads + warms up
//
// Encode: images → NormalizeImages → EncodeImages (posterior) and expression → EncodeExpression,
// once per distinct control, then DrawSource with one seed per row (the only randomness, drawn
// on the CPU from per-row generators). Step: GuidedVelocity (cond + uncond rows in one forward,
// α = 1 rows skip the uncond half) + EulerStep. Decode: Decode → DenormalizeImages → uint16.
// With controls_dir, every DMSO site of that prepared dataset (control_bank.h) is encoded at
// load time and only its posterior and gene latent are kept, on the device.
//
// Determinism: per-row randomness never depends on batch position, and a row gives the same bits
// whatever it is batched with. LibTorch's CPU conv and OpenBLAS choose kernels by batch size, so
// the VAE and the gene autoencoder run one sample per call (fixed shapes); the SiT's GEMMs have
// M = rows × tokens ≥ the sizes where the kernel choice settles (tested down to one row).
// CUDA libraries choose kernels by shape too: re-run the row-wise test on a GPU build.
//
// Streams (CUDA): Encode and Decode run on the calling codec thread's own stream, Step on the
// default stream; device_streams.h orders the two where a latent crosses (HandOffForDecode).
#ifndef CELLFLUX_SERVER_MODEL_BACKEND_H_
#define CELLFLUX_SERVER_MODEL_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/backend.h"

namespace cellflux::server {

struct ModelBackendOptions {
  std::string checkpoint_dir;  // a checkpoint directory, or a root whose `latest` names one
  std::string controls_dir;    // prepared dataset dir with controls_cp.csv; empty = no bank
  int64_t max_controls = 0;    // bank size cap: the first N (plate, well, site) keys; 0 = all
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N", "auto"
  bool warm_up = true;         // run one 2-step sample before returning
};

// NOT_FOUND / INVALID_ARGUMENT from the checkpoint reader (naming file and tensor),
// FAILED_PRECONDITION for a device that is not there, RESOURCE_EXHAUSTED when it does not fit.
absl::StatusOr<std::shared_ptr<Backend>> LoadModelBackend(const ModelBackendOptions& options);

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_MODEL_BACKEND_H_

// Request validation: a cellflux.v1 request + the serving model's ModelInfo → either a plain,
// checked request the scheduler can run, or an absl::Status a person can act on.
//
// Predict, in this order (the first problem found is reported):
//   perturbation_id,  both set, or neither set                     INVALID_ARGUMENT
//   smiles
//   smiles            smiles to a model without a structure encoder FAILED_PRECONDITION
//                     (ModelInfo::condition "id")
//                     smiles longer than kMaxSmilesLength           INVALID_ARGUMENT
//   dose_um           not finite or < 0 (smiles); ≠ 0 with perturbation_id
//                                                                  INVALID_ARGUMENT
//   perturbation_id   not in the vocabulary                        INVALID_ARGUMENT
//   options           num_steps ∉ [1, max_steps], num_samples ∉ [1, max_samples],
//                     guidance_scale not finite or ∉ [0, max_guidance_scale], unknown
//                     output_encoding, priority or sampler          INVALID_ARGUMENT
//   request_id        longer than 128 characters                   INVALID_ARGUMENT
//   control           neither ref nor data                         INVALID_ARGUMENT
//   control.ref       empty plate/well, negative site               INVALID_ARGUMENT
//                     (plate, well, site) not in the bank           NOT_FOUND
//   control.data      image missing; height/width < image_size or > kMaxImageSide; channel
//                     count; channel names not a permutation of the model's (a permutation is
//                     reordered); bit_depth not 0/12/16; per channel: encoding unset, RAW
//                     byte count, PNG/TIFF signature, header size, undecodable bytes, a pixel
//                     above 4095 when bit_depth is 12             INVALID_ARGUMENT
//                     expression: missing for a gene model / present for an image-only one;
//                     length ≠ number of genes; NaN/Inf (names the gene); gene_ids with the
//                     wrong length, unknown or duplicate ids (a permutation is reordered);
//                     a value more than kMaxExpressionZ training standard deviations from its
//                     gene's training mean (names the gene; needs ModelInfo.gene_mean/std)
//                                                                  INVALID_ARGUMENT
//   smiles            (last, so a bad request costs no parse) resolved through the structure
//                     cache (structure_cache.h): unparsable         INVALID_ARGUMENT (names the
//                     SMILES and RDKit's reason); every cache entry held by requests in flight
//                                                                  RESOURCE_EXHAUSTED
// Images larger than image_size are centre-cropped (offset ⌊(H−S)/2⌋, ⌊(W−S)/2⌋). 16-bit images
// (bit_depth 16) are rescaled to the model's 12-bit scale: RescaleTo12Bit below. Decoding holds
// one full-size channel at a time (its decoded plane and a copy, ≤ 2 × 128 MiB); after a large
// image the freed pages are returned to the kernel (malloc_trim), so a request's decode memory is
// not kept.
//
// LibTorch-free and allocation-bounded (see image_codec.h), so it is safe on any bytes; the
// fuzz test feeds it random and mutated requests.
#ifndef CELLFLUX_SERVER_VALIDATE_H_
#define CELLFLUX_SERVER_VALIDATE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.pb.h"
#include "server/model_info.h"
#include "server/structure_resolver.h"

namespace cellflux::server {

// Largest pixel value of 12-bit data, the model's scale.
inline constexpr int kMaxValue12Bit = 4095;

// A 16-bit value (0..65535) in the 12-bit scale: round(v · 4095 / 65535).
constexpr uint16_t RescaleTo12Bit(uint16_t v) {
  return static_cast<uint16_t>((uint32_t{v} * 4095u + 32767u) / 65535u);
}

// Largest accepted |z| of a control expression value after the model's standardization,
// z = (x − gene_mean) / gene_std. Real L1000 profiles stay within a few tens; values far beyond
// drive the model outside anything it was trained on (1e30 made NaN outputs).
inline constexpr double kMaxExpressionZ = 100;

// Echoed request text in error messages is cut to this many characters + "…", so a huge field
// cannot make the error itself too large to send (gRPC then reports RESOURCE_EXHAUSTED instead).
inline constexpr size_t kMaxEchoedChars = 64;
// Longest accepted PredictRequest.smiles (bytes): far above any drug-like compound's SMILES, and
// it bounds what RDKit is asked to parse.
inline constexpr size_t kMaxSmilesLength = 4096;
// `text` cut to kMaxEchoedChars characters (whole UTF-8 sequences) followed by "…" when longer.
std::string Echo(const std::string& text);

struct ValidatedPredict {
  std::string perturbation_id;  // empty for a smiles request
  std::string smiles;           // the request's smiles, as sent; empty for a perturbation_id
  int64_t label = 0;
  // smiles requests: the compound as resolved (canonical SMILES, nearest training compound). It
  // pins the label's slot in the structure cache while any copy is alive: keep it until the
  // request is answered.
  std::shared_ptr<const ResolvedStructure> structure;
  std::shared_ptr<const ControlInput> control;
  int num_steps = 0;
  double guidance = 1.0;
  uint64_t seed = 0;  // the request's seed, or `random_seed` when unset
  int num_samples = 1;
  v1::Encoding output_encoding = v1::RAW_U16_LE;
  bool return_control = false;              // options.return_control
  v1::Priority priority = v1::INTERACTIVE;  // options.priority (unspecified → INTERACTIVE)
  v1::Sampler sampler = v1::EULER;          // options.sampler (unspecified → EULER)
};

// `random_seed` is used when options.seed is unset (the caller draws it). `structures` resolves
// smiles requests: the serving model's StructureCache (null for a model without a structure
// encoder; a smiles request to a structure model without one is FAILED_PRECONDITION).
absl::StatusOr<ValidatedPredict> ValidatePredict(const v1::PredictRequest& request,
                                                 const ModelInfo& info, uint64_t random_seed,
                                                 StructureResolver* structures = nullptr);

// ListPerturbations paging. Tokens are opaque to clients: "<model_id>@<offset>".
struct Page {
  int64_t offset = 0;
  int64_t size = 0;  // entries to return (already clipped to the vocabulary)
};
absl::StatusOr<Page> ValidatePageRequest(const v1::ListPerturbationsRequest& request,
                                         const ModelInfo& info);
std::string MakePageToken(const ModelInfo& info, int64_t offset);

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_VALIDATE_H_

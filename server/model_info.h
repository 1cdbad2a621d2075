// What the server knows about a loaded model without touching LibTorch: the request-facing facts
// (channels, image size, genes, vocabulary, sampling defaults and limits, control bank keys) and
// the plain data a validated request and a generated sample are made of.
//
// These are the types validate.h produces and service.h turns into protos; backend.h consumes
// them. Immutable once built: a ModelInfo is shared read-only by every thread.
#ifndef CELLFLUX_SERVER_MODEL_INFO_H_
#define CELLFLUX_SERVER_MODEL_INFO_H_

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace cellflux::server {

// A control well of the bank. `well` is lower case ("a01"); site is 1-based.
struct ControlKey {
  std::string plate;
  std::string well;
  int site = 1;

  bool operator<(const ControlKey& o) const {
    return std::tie(plate, well, site) < std::tie(o.plate, o.well, o.site);
  }
  bool operator==(const ControlKey& o) const {
    return plate == o.plate && well == o.well && site == o.site;
  }
};

// One vocabulary row (its index is the label the velocity network takes).
struct PerturbationEntry {
  std::string id;    // Broad ID
  double dose = 0;   // µM, 0 if unknown
  std::string name;  // compound name or SMILES, may be empty
  // Structure models only (ModelInfo::uses_structure): RDKit's canonical SMILES of the parent
  // ("" when the vocabulary has no usable SMILES) and the Morgan fingerprint the model holds for
  // this row (set-bit indices, ascending; empty = no structure).
  std::string canonical_smiles;
  std::vector<int> bits;
};

// Defaults applied to unset PredictOptions, and the inclusive limits.
struct SamplingPolicy {
  int num_steps = 50;
  double guidance_scale = 1.2;
  int num_samples = 1;
  int max_steps = 1000;
  int max_samples = 16;
  double max_guidance_scale = 20.0;
};

struct ModelInfo {
  std::string model_id;                    // checkpoint name
  int64_t step = 0;                        // training step of the checkpoint
  std::vector<std::string> channel_names;  // image channel order, e.g. DNA RNA ER AGP Mito
  int image_size = 0;                      // model input height = width, pixels
  std::vector<std::string> gene_ids;       // expression order; empty = image-only model
  // Per-gene training statistics the model standardizes expression with (z = (x − mean) / std),
  // gene_ids order; empty when unknown (then validation skips the range check).
  std::vector<float> gene_mean;
  std::vector<float> gene_std;
  std::vector<PerturbationEntry> perturbations;  // row i = label i
  SamplingPolicy sampling;
  std::vector<ControlKey> controls;  // the control bank, sorted
  // What the velocity network conditions on (SiTConfig::condition): "id", "structure" or
  // "id+structure". Structure models accept PredictRequest.smiles.
  std::string condition = "id";
  int fingerprint_bits = 2048;  // structure models: Morgan fingerprint length (bits)
  bool uses_structure() const { return condition != "id"; }

  // Label of `id` in the vocabulary, or nullopt. Needs BuildIndex() after `perturbations` is
  // filled.
  std::optional<int64_t> LabelOf(const std::string& id) const;
  // The null (unconditional) label = number of perturbations.
  int64_t null_label() const { return static_cast<int64_t>(perturbations.size()); }
  // Fills the id → label map (first occurrence wins) and sorts `controls`.
  void BuildIndex();

 private:
  std::unordered_map<std::string, int64_t> label_of_;
};

// The control a request starts from: a bank key, or the pixels + expression it carried.
struct ControlInput {
  std::optional<ControlKey> bank_key;  // set ⇒ pixels/expression are empty
  std::vector<uint16_t> pixels;        // [C, S, S] raw 12-bit values, model channel order, cropped
  std::vector<float> expression;       // [G] raw, model gene order; empty for image-only models
};

// One generated sample, back in the request's scale.
struct SampleOutput {
  std::vector<uint16_t> pixels;   // [C, S, S] raw 12-bit values
  std::vector<float> expression;  // [G] raw, model gene order; empty for image-only models
  // False when the model produced NaN/Inf for this sample (image or expression): the values above
  // are meaningless and the request fails with INTERNAL instead of returning them.
  bool finite = true;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_MODEL_INFO_H_

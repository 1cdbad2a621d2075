#include "server/validate.h"

#include <algorithm>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cmath>
#include <unordered_map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/util/status_macros.h"
#include "server/image_codec.h"

namespace cellflux::server {
namespace {

constexpr size_t kMaxRequestIdLength = 128;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status ValidateOptions(const v1::PredictOptions& o, const SamplingPolicy& p,
                             ValidatedPredict* out) {
  out->num_steps = o.has_num_steps() ? o.num_steps() : p.num_steps;
  if (out->num_steps < 1 || out->num_steps > p.max_steps) {
    return Invalid(absl::StrFormat("options.num_steps must be in [1, %d], got %d", p.max_steps,
                                   out->num_steps));
  }
  out->num_samples = o.has_num_samples() ? o.num_samples() : p.num_samples;
  if (out->num_samples < 1 || out->num_samples > p.max_samples) {
    return Invalid(absl::StrFormat("options.num_samples must be in [1, %d], got %d", p.max_samples,
                                   out->num_samples));
  }
  out->guidance = o.has_guidance_scale() ? o.guidance_scale() : p.guidance_scale;
  if (!std::isfinite(out->guidance) || out->guidance < 0 || out->guidance > p.max_guidance_scale) {
    return Invalid(absl::StrFormat("options.guidance_scale must be in [0, %g], got %g",
                                   p.max_guidance_scale, out->guidance));
  }
  out->return_control = o.has_return_control() && o.return_control();
  if (o.has_output_encoding()) {
    if (!v1::Encoding_IsValid(o.output_encoding())) {
      return Invalid(absl::StrCat("options.output_encoding: unknown value ",
                                  static_cast<int>(o.output_encoding())));
    }
    if (o.output_encoding() != v1::ENCODING_UNSPECIFIED) out->output_encoding = o.output_encoding();
  }
  if (o.has_priority()) {
    if (!v1::Priority_IsValid(o.priority())) {
      return Invalid(
          absl::StrCat("options.priority: unknown value ", static_cast<int>(o.priority())));
    }
    if (o.priority() != v1::PRIORITY_UNSPECIFIED) out->priority = o.priority();
  }
  if (o.has_sampler()) {
    if (!v1::Sampler_IsValid(o.sampler())) {
      return Invalid(
          absl::StrCat("options.sampler: unknown value ", static_cast<int>(o.sampler())));
    }
    if (o.sampler() != v1::SAMPLER_UNSPECIFIED) out->sampler = o.sampler();
  }
  return absl::OkStatus();
}

absl::StatusOr<ControlKey> ResolveRef(const v1::ControlRef& ref, const ModelInfo& info) {
  if (ref.plate().empty() || ref.well().empty()) {
    return Invalid("control.ref needs plate and well (e.g. plate \"24277\", well \"a01\")");
  }
  if (ref.site() < 0)
    return Invalid(absl::StrCat("control.ref.site must be ≥ 0, got ", ref.site()));
  ControlKey key{ref.plate(), absl::AsciiStrToLower(ref.well()), ref.site()};
  const auto& bank = info.controls;  // sorted
  auto it = std::lower_bound(bank.begin(), bank.end(), ControlKey{key.plate, key.well, 0});
  for (; it != bank.end() && it->plate == key.plate && it->well == key.well; ++it) {
    if (key.site == 0 || it->site == key.site) return *it;  // site 0: the lowest site
  }
  if (bank.empty()) {
    return absl::NotFoundError(
        "this server has no control bank (start it with --controls); send control.data instead");
  }
  return absl::NotFoundError(absl::StrFormat(
      "control plate \"%s\" well \"%s\"%s is not in the control bank (%d controls loaded)",
      Echo(key.plate), Echo(key.well), key.site == 0 ? "" : absl::StrCat(" site ", key.site),
      bank.size()));
}

// Channel order of the request → model order; a permutation of the model's names (any case).
absl::StatusOr<std::vector<int>> ChannelOrder(const v1::Image& image, const ModelInfo& info) {
  const size_t c = info.channel_names.size();
  if (static_cast<size_t>(image.channels_size()) != c) {
    return Invalid(absl::StrFormat("control.data.image has %d channels, the model needs %d (%s)",
                                   image.channels_size(), c,
                                   absl::StrJoin(info.channel_names, ", ")));
  }
  std::vector<int> source(c, -1);  // model channel → request index
  for (int i = 0; i < image.channels_size(); ++i) {
    const std::string name = absl::AsciiStrToLower(image.channels(i).name());
    size_t m = 0;
    while (m < c && absl::AsciiStrToLower(info.channel_names[m]) != name) ++m;
    if (m == c) {
      return Invalid(
          absl::StrFormat("control.data.image channel %d is named \"%s\"; expected one of %s", i,
                          Echo(image.channels(i).name()), absl::StrJoin(info.channel_names, ", ")));
    }
    if (source[m] != -1) {
      return Invalid(absl::StrFormat("control.data.image has channel \"%s\" twice (%d and %d)",
                                     info.channel_names[m], source[m], i));
    }
    source[m] = i;
  }
  return source;
}

// 12-bit data must not exceed 4095: such a pixel means the data is really 16-bit (or corrupt),
// and clamping it would silently change the prediction. 16-bit data cannot exceed its range.
absl::Status CheckPixelRange(const std::vector<uint16_t>& plane, int width, int bit_depth,
                             const std::string& label) {
  if (bit_depth != 12) return absl::OkStatus();
  const auto it =
      std::find_if(plane.begin(), plane.end(), [](uint16_t v) { return v > kMaxValue12Bit; });
  if (it == plane.end()) return absl::OkStatus();
  const int64_t i = it - plane.begin();
  return Invalid(absl::StrFormat(
      "%s: pixel (row %d, column %d) is %d, above %d, the largest 12-bit value; set "
      "control.data.image.bit_depth = 16 if the camera writes 16-bit values",
      label, i / width, i % width, *it, kMaxValue12Bit));
}

absl::StatusOr<std::vector<uint16_t>> DecodeImage(const v1::Image& image, const ModelInfo& info) {
  const int s = info.image_size;
  const int h = image.height(), w = image.width();
  if (h < s || w < s) {
    return Invalid(absl::StrFormat(
        "control.data.image is %d×%d (height×width); the model needs at least %d×%d "
        "(larger images are centre-cropped)",
        h, w, s, s));
  }
  if (h > kMaxImageSide || w > kMaxImageSide) {
    return Invalid(absl::StrFormat("control.data.image is %d×%d; the largest accepted side is %d",
                                   h, w, kMaxImageSide));
  }
  const int bit_depth = image.bit_depth() == 0 ? 12 : image.bit_depth();
  if (bit_depth != 12 && bit_depth != 16) {
    return Invalid(absl::StrFormat(
        "control.data.image.bit_depth is %d; expected 12 (values 0..4095, the default) or 16 "
        "(values 0..65535, rescaled to 12 bits)",
        image.bit_depth()));
  }
  CF_ASSIGN_OR_RETURN(std::vector<int> order, ChannelOrder(image, info));
  const int y0 = (h - s) / 2, x0 = (w - s) / 2;
  std::vector<uint16_t> pixels(order.size() * s * s);
  for (size_t m = 0; m < order.size(); ++m) {
    const v1::Channel& ch = image.channels(order[m]);
    const std::string label =
        absl::StrFormat("control.data.image channel %d (%s)", order[m], info.channel_names[m]);
    CF_ASSIGN_OR_RETURN(std::vector<uint16_t> plane, DecodeChannel(ch, h, w, label));
    CF_RETURN_IF_ERROR(CheckPixelRange(plane, w, bit_depth, label));
    uint16_t* dst = pixels.data() + m * s * s;
    for (int y = 0; y < s; ++y) {
      std::copy_n(plane.data() + int64_t{y0 + y} * w + x0, s, dst + int64_t{y} * s);
    }
  }
  if (bit_depth == 16) {
    for (uint16_t& v : pixels) v = RescaleTo12Bit(v);
  }
  return pixels;
}

absl::StatusOr<std::vector<float>> CheckExpression(const v1::ControlData& data,
                                                   const ModelInfo& info) {
  const size_t g = info.gene_ids.size();
  const v1::Expression& e = data.expression();
  if (g == 0) {
    if (data.has_expression() && (e.values_size() > 0 || e.gene_ids_size() > 0)) {
      return Invalid("this model is image-only (no gene branch); omit control.data.expression");
    }
    return std::vector<float>();
  }
  if (!data.has_expression() || e.values_size() == 0) {
    return Invalid(absl::StrFormat(
        "control.data.expression is required: %d L1000 values in GetModelInfo.gene_ids order", g));
  }
  if (static_cast<size_t>(e.values_size()) != g) {
    return Invalid(absl::StrFormat("control.data.expression has %d values, the model needs %d",
                                   e.values_size(), g));
  }
  std::vector<float> values(g);
  if (e.gene_ids_size() == 0) {
    std::copy(e.values().begin(), e.values().end(), values.begin());
  } else {
    if (static_cast<size_t>(e.gene_ids_size()) != g) {
      return Invalid(absl::StrFormat(
          "control.data.expression has %d gene_ids for %d values; give one id per value",
          e.gene_ids_size(), e.values_size()));
    }
    std::unordered_map<std::string, size_t> model_index;
    for (size_t i = 0; i < g; ++i) model_index.emplace(info.gene_ids[i], i);
    std::vector<bool> seen(g, false);
    for (size_t i = 0; i < g; ++i) {
      auto it = model_index.find(e.gene_ids(i));
      if (it == model_index.end()) {
        return Invalid(absl::StrFormat(
            "control.data.expression.gene_ids[%d] = \"%s\" is not one of the model's genes "
            "(GetModelInfo.gene_ids)",
            i, Echo(e.gene_ids(i))));
      }
      if (seen[it->second]) {
        return Invalid(absl::StrFormat("control.data.expression.gene_ids has \"%s\" twice",
                                       Echo(e.gene_ids(i))));
      }
      seen[it->second] = true;
      values[it->second] = e.values(i);
    }
  }
  for (size_t i = 0; i < g; ++i) {
    if (!std::isfinite(values[i])) {
      return Invalid(
          absl::StrFormat("control.data.expression: gene %s is %g; values must be finite",
                          info.gene_ids[i], values[i]));
    }
  }
  return values;
}

// Full-size planes decoded for a large image (up to 5 × 8192² × 2 bytes) go back to the heap,
// which the server's allocator tuning (common/util/allocator.h: trim threshold 1 GiB) would keep
// for good: ~400 MiB held after one such request. Hand the free pages back to the kernel.
void ReleaseDecodeMemory(const v1::Image& image) {
  constexpr int64_t kTrimAboveBytes = int64_t{32} << 20;
  const int64_t plane_bytes = int64_t{2} * image.height() * image.width();
  if (plane_bytes * image.channels_size() < kTrimAboveBytes) return;
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// Standardized range check (kMaxExpressionZ), in model gene order; separate from CheckExpression
// so that it runs only on values already known to be finite.
absl::Status CheckExpressionRange(const std::vector<float>& values, const ModelInfo& info) {
  if (info.gene_mean.size() != values.size() || info.gene_std.size() != values.size()) {
    return absl::OkStatus();  // statistics unknown (e.g. a test backend)
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const double z = (double{values[i]} - info.gene_mean[i]) / info.gene_std[i];
    if (!(std::abs(z) <= kMaxExpressionZ)) {
      return Invalid(absl::StrFormat(
          "control.data.expression: gene %s is %g, %.3g training standard deviations from its "
          "mean %g (std %g); at most %g are accepted",
          info.gene_ids[i], values[i], z, info.gene_mean[i], info.gene_std[i], kMaxExpressionZ));
    }
  }
  return absl::OkStatus();
}

// Which compound: exactly one of perturbation_id and smiles, smiles only for structure models,
// and a dose only beside smiles.
absl::Status CheckPerturbation(const v1::PredictRequest& request, const ModelInfo& info) {
  const bool by_id = !request.perturbation_id().empty();
  const bool by_smiles = !request.smiles().empty();
  if (by_id && by_smiles) {
    return Invalid(absl::StrFormat(
        "set exactly one of perturbation_id and smiles, not both (got perturbation_id \"%s\" and "
        "smiles \"%s\")",
        Echo(request.perturbation_id()), Echo(request.smiles())));
  }
  if (!by_id && !by_smiles) {
    return Invalid(
        info.uses_structure()
            ? "perturbation_id or smiles is required (a Broad ID from ListPerturbations, or a "
              "compound's SMILES)"
            : "perturbation_id is required (a Broad ID from ListPerturbations; smiles is not "
              "set either)");
  }
  const double dose = request.dose_um();
  if (by_id) {
    if (dose != 0) {
      return Invalid(absl::StrFormat(
          "dose_um applies to smiles requests only (a vocabulary perturbation_id has its own "
          "dose); got dose_um %g with perturbation_id \"%s\"",
          dose, Echo(request.perturbation_id())));
    }
    return absl::OkStatus();
  }
  if (!info.uses_structure()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "smiles: model %s conditions on perturbation IDs only (GetModelInfo.condition \"%s\"); "
        "send a perturbation_id from ListPerturbations, or serve a structure model",
        info.model_id, info.condition));
  }
  if (request.smiles().size() > kMaxSmilesLength) {
    return Invalid(absl::StrFormat("smiles is %d bytes; at most %d are accepted",
                                   request.smiles().size(), kMaxSmilesLength));
  }
  if (!std::isfinite(dose) || dose < 0) {
    return Invalid(
        absl::StrFormat("dose_um must be a finite dose in µM > 0 (or 0 = unknown), got %g", dose));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Echo(const std::string& text) {
  if (text.size() <= kMaxEchoedChars) return text;
  size_t cut = 0, chars = 0;
  while (cut < text.size() && chars < kMaxEchoedChars) {
    ++cut;
    while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
    ++chars;
  }
  if (cut >= text.size()) return text;
  return absl::StrCat(text.substr(0, cut), "…");
}

absl::StatusOr<ValidatedPredict> ValidatePredict(const v1::PredictRequest& request,
                                                 const ModelInfo& info, uint64_t random_seed,
                                                 StructureResolver* structures) {
  ValidatedPredict out;
  CF_RETURN_IF_ERROR(CheckPerturbation(request, info));
  if (!request.perturbation_id().empty()) {
    std::optional<int64_t> label = info.LabelOf(request.perturbation_id());
    if (!label) {
      return Invalid(absl::StrFormat(
          "perturbation_id \"%s\" is not in the model's vocabulary (%d perturbations; see "
          "ListPerturbations)",
          Echo(request.perturbation_id()), info.perturbations.size()));
    }
    out.perturbation_id = request.perturbation_id();
    out.label = *label;
  }
  CF_RETURN_IF_ERROR(ValidateOptions(request.options(), info.sampling, &out));
  out.seed = request.options().has_seed() ? request.options().seed() : random_seed;
  if (request.request_id().size() > kMaxRequestIdLength) {
    return Invalid(absl::StrFormat("request_id is %d characters; at most %d",
                                   request.request_id().size(), kMaxRequestIdLength));
  }
  auto control = std::make_shared<ControlInput>();
  switch (request.control_case()) {
    case v1::PredictRequest::kRef: {
      CF_ASSIGN_OR_RETURN(ControlKey key, ResolveRef(request.ref(), info));
      control->bank_key = std::move(key);
      break;
    }
    case v1::PredictRequest::kData: {
      if (!request.data().has_image()) {
        return Invalid("control.data.image is required");
      }
      absl::StatusOr<std::vector<uint16_t>> pixels = DecodeImage(request.data().image(), info);
      ReleaseDecodeMemory(request.data().image());
      if (!pixels.ok()) return pixels.status();
      control->pixels = *std::move(pixels);
      CF_ASSIGN_OR_RETURN(control->expression, CheckExpression(request.data(), info));
      CF_RETURN_IF_ERROR(CheckExpressionRange(control->expression, info));
      break;
    }
    default:
      return Invalid("control is required: set control.ref (a bank well) or control.data");
  }
  out.control = std::move(control);
  if (!request.smiles().empty()) {
    if (structures == nullptr) {
      return absl::FailedPreconditionError(
          "smiles: this server has no structure cache for the serving model");
    }
    CF_ASSIGN_OR_RETURN(out.structure, structures->Resolve(request.smiles(), request.dose_um()));
    out.smiles = request.smiles();
    out.label = out.structure->label;
  }
  return out;
}

absl::StatusOr<Page> ValidatePageRequest(const v1::ListPerturbationsRequest& request,
                                         const ModelInfo& info) {
  if (request.page_size() < 0) {
    return Invalid(absl::StrCat("page_size must be ≥ 0, got ", request.page_size()));
  }
  const int64_t total = static_cast<int64_t>(info.perturbations.size());
  Page page;
  if (!request.page_token().empty()) {
    const std::string& token = request.page_token();
    const size_t at = token.rfind('@');
    int64_t offset = -1;
    if (at == std::string::npos || token.substr(0, at) != info.model_id ||
        !absl::SimpleAtoi(token.substr(at + 1), &offset) || offset < 0 || offset > total) {
      return Invalid(
          "page_token is malformed or from another model version; restart from the first page");
    }
    page.offset = offset;
  }
  int64_t size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  size = std::min<int64_t>(size, kMaxPageSize);
  page.size = std::min(size, total - page.offset);
  return page;
}

std::string MakePageToken(const ModelInfo& info, int64_t offset) {
  return absl::StrCat(info.model_id, "@", offset);
}

}  // namespace cellflux::server

#include <google/protobuf/stubs/logging.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "cellflux/v1/cellflux.pb.h"
#include "server/validate.h"
#include "tests/fuzz/request_fuzz.h"

namespace cellflux::fuzz {

const server::ModelInfo& FuzzModelInfo() {
  static const server::ModelInfo* info = [] {
    auto* m = new server::ModelInfo();
    m->model_id = "fuzz@step1";
    m->channel_names = {"DNA", "RNA", "ER", "AGP", "Mito"};
    m->image_size = 8;
    m->gene_ids = {"g0_at", "g1_at", "g2_at", "g3_at"};
    m->gene_mean = {0, 1, -2, 5};
    m->gene_std = {1, 0.5f, 2, 1e-3f};
    for (int i = 0; i < 6; ++i) m->perturbations.push_back({absl::StrCat("BRD-F", i), 1.0, ""});
    m->sampling.max_steps = 100;
    m->sampling.max_samples = 8;
    m->controls = {{"P1", "a01", 1}, {"P1", "a01", 2}};
    m->BuildIndex();
    return m;
  }();
  return *info;
}

std::string ValidRequestBytes(bool bank) {
  const server::ModelInfo& info = FuzzModelInfo();
  v1::PredictRequest r;
  r.set_perturbation_id(info.perturbations[2].id);
  r.set_request_id("fuzz-1");
  r.mutable_options()->set_seed(7);
  r.mutable_options()->set_num_samples(2);
  r.mutable_options()->set_num_steps(4);
  if (bank) {
    r.mutable_ref()->set_plate("P1");
    r.mutable_ref()->set_well("A01");
  } else {
    v1::Image* image = r.mutable_data()->mutable_image();
    image->set_height(8);
    image->set_width(8);
    for (const std::string& name : info.channel_names) {
      v1::Channel* c = image->add_channels();
      c->set_name(name);
      c->set_encoding(v1::RAW_U16_LE);
      c->set_data(std::string(2 * 8 * 8, '\x01'));
    }
    for (size_t g = 0; g < info.gene_ids.size(); ++g) {
      r.mutable_data()->mutable_expression()->add_values(info.gene_mean[g]);
    }
  }
  return r.SerializeAsString();
}

absl::Status FuzzPredictRequest(absl::string_view bytes) {
  // Mutated strings are often invalid UTF-8, which protobuf reports on stderr for each input.
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  v1::PredictRequest request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError("not a PredictRequest");
  }
  const server::ModelInfo& info = FuzzModelInfo();
  absl::StatusOr<server::ValidatedPredict> v = server::ValidatePredict(request, info, 99);
  if (!v.ok()) {
    const absl::StatusCode code = v.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) {
      return absl::InternalError(absl::StrCat("unexpected code: ", v.status().ToString()));
    }
    if (v.status().message().size() > kMaxMessageChars) {
      return absl::InternalError(absl::StrCat("error message of ", v.status().message().size(),
                                              " characters (echoed input not capped)"));
    }
    return v.status();
  }
  const server::SamplingPolicy& p = info.sampling;
  if (v->num_steps < 1 || v->num_steps > p.max_steps || v->num_samples < 1 ||
      v->num_samples > p.max_samples || !std::isfinite(v->guidance) || v->guidance < 0 ||
      v->guidance > p.max_guidance_scale) {
    return absl::InternalError("accepted options outside the limits");
  }
  if (info.LabelOf(v->perturbation_id) != v->label) {
    return absl::InternalError("label does not match the perturbation id");
  }
  const server::ControlInput& c = *v->control;
  if (c.bank_key.has_value()) {
    if (!c.pixels.empty() || !c.expression.empty()) {
      return absl::InternalError("a bank control carries pixels");
    }
    return absl::OkStatus();
  }
  const size_t s = static_cast<size_t>(info.image_size);
  if (c.pixels.size() != info.channel_names.size() * s * s) {
    return absl::InternalError(absl::StrCat("accepted control with ", c.pixels.size(), " pixels"));
  }
  if (c.expression.size() != info.gene_ids.size()) {
    return absl::InternalError("accepted expression of the wrong length");
  }
  for (size_t g = 0; g < c.expression.size(); ++g) {
    const double z = (double{c.expression[g]} - info.gene_mean[g]) / info.gene_std[g];
    if (!std::isfinite(c.expression[g]) || std::abs(z) > server::kMaxExpressionZ) {
      return absl::InternalError(absl::StrCat("accepted expression value ", c.expression[g]));
    }
  }
  return absl::OkStatus();
}

}  // namespace cellflux::fuzz

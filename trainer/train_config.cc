#include "trainer/train_config.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/models/precision.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::trainer {
namespace {

using FieldPtr = std::variant<int64_t*, uint64_t*, int*, double*, std::string*,
                              std::vector<int64_t>*, std::vector<double>*>;

// Every configurable key, by its dotted path. The one table drives YAML loading, overrides and
// dumping, so a key cannot be readable in one and missing in another.
std::map<std::string, FieldPtr> Fields(TrainConfig& c) {
  return {
      {"model_config", &c.model_config},
      {"data_dir", &c.data_dir},
      {"work_dir", &c.work_dir},
      {"seed", &c.seed},
      {"device", &c.device},
      {"threads", &c.threads},
      {"on_bad_sample", &c.on_bad_sample},
      {"gene_ae.steps", &c.gene_ae.steps},
      {"gene_ae.batch_size", &c.gene_ae.batch_size},
      {"gene_ae.lr", &c.gene_ae.lr},
      {"gene_ae.weight_decay", &c.gene_ae.weight_decay},
      {"vae.pretrained", &c.vae.pretrained},
      {"vae.steps", &c.vae.steps},
      {"vae.batch_size", &c.vae.batch_size},
      {"vae.lr", &c.vae.lr},
      {"vae.kl_weight", &c.vae.kl_weight},
      {"vae.loss", &c.vae.loss},
      {"encode.crops_per_site", &c.encode.crops_per_site},
      {"encode.batch_size", &c.encode.batch_size},
      {"flow.steps", &c.flow.steps},
      {"flow.global_batch", &c.flow.global_batch},
      {"flow.micro_batch", &c.flow.micro_batch},
      {"flow.lr", &c.flow.lr},
      {"flow.weight_decay", &c.flow.weight_decay},
      {"flow.grad_clip", &c.flow.grad_clip},
      {"flow.condition_drop", &c.flow.condition_drop},
      {"flow.beta", &c.flow.beta},
      {"flow.ema_decay", &c.flow.ema_decay},
      {"flow.warmup_steps", &c.flow.warmup_steps},
      {"flow.checkpoint_every", &c.flow.checkpoint_every},
      {"flow.keep_last", &c.flow.keep_last},
      {"flow.val_every", &c.flow.val_every},
      {"flow.val_pairs", &c.flow.val_pairs},
      {"flow.val_num_steps", &c.flow.val_num_steps},
      {"flow.log_every", &c.flow.log_every},
      {"flow.precision", &c.flow.precision},
      {"eval.num_steps", &c.eval.num_steps},
      {"eval.guidance", &c.eval.guidance},
      {"eval.guidance_candidates", &c.eval.guidance_candidates},
      {"eval.sampler", &c.eval.sampler},
      {"eval.max_pairs", &c.eval.max_pairs},
      {"eval.samples_per_pair", &c.eval.samples_per_pair},
      {"eval.extractor", &c.eval.extractor},
      {"eval.sample_sizes", &c.eval.sample_sizes},
      {"eval.grid_perturbations", &c.eval.grid_perturbations},
      {"eval.batch_size", &c.eval.batch_size},
      {"eval.ground_truth", &c.eval.ground_truth},
      {"eval.crops_per_site", &c.eval.crops_per_site},
      {"eval.precision", &c.eval.precision},
  };
}

absl::Status SetFromNode(const std::string& key, const YAML::Node& node, FieldPtr field,
                         const std::string& label) {
  try {
    std::visit([&](auto* p) { *p = node.as<std::remove_pointer_t<decltype(p)>>(); }, field);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": key '", key, "' has a value of the wrong type (", e.msg, ")"));
  }
  return absl::OkStatus();
}

absl::Status Walk(const YAML::Node& node, const std::string& prefix,
                  std::map<std::string, FieldPtr>& fields, const std::string& label) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = prefix.empty() ? it->first.as<std::string>()
                                     : absl::StrCat(prefix, ".", it->first.as<std::string>());
    auto f = fields.find(key);
    if (f != fields.end()) {
      CF_RETURN_IF_ERROR(SetFromNode(key, it->second, f->second, label));
    } else if (it->second.IsMap()) {
      CF_RETURN_IF_ERROR(Walk(it->second, key, fields, label));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(label, ": unknown key '", key, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status PositiveInt(const char* key, int64_t v) {
  if (v <= 0)
    return absl::InvalidArgumentError(absl::StrCat("config key '", key, "' must be > 0, got ", v));
  return absl::OkStatus();
}

}  // namespace

absl::Status TrainConfig::Validate() const {
  if (on_bad_sample != "error" && on_bad_sample != "skip") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key 'on_bad_sample' must be error or skip, got '", on_bad_sample, "'"));
  }
  CF_RETURN_IF_ERROR(PositiveInt("gene_ae.batch_size", gene_ae.batch_size));
  CF_RETURN_IF_ERROR(PositiveInt("vae.batch_size", vae.batch_size));
  CF_RETURN_IF_ERROR(PositiveInt("encode.batch_size", encode.batch_size));
  CF_RETURN_IF_ERROR(PositiveInt("flow.global_batch", flow.global_batch));
  CF_RETURN_IF_ERROR(PositiveInt("flow.micro_batch", flow.micro_batch));
  CF_RETURN_IF_ERROR(PositiveInt("flow.checkpoint_every", flow.checkpoint_every));
  CF_RETURN_IF_ERROR(PositiveInt("flow.val_every", flow.val_every));
  CF_RETURN_IF_ERROR(PositiveInt("flow.log_every", flow.log_every));
  CF_RETURN_IF_ERROR(PositiveInt("eval.num_steps", eval.num_steps));
  CF_RETURN_IF_ERROR(PositiveInt("eval.samples_per_pair", eval.samples_per_pair));
  CF_RETURN_IF_ERROR(PositiveInt("eval.crops_per_site", eval.crops_per_site));
  for (double g : eval.guidance_candidates) {
    if (!(g >= 0.0 && g <= 100.0))
      return absl::InvalidArgumentError(absl::StrCat("config key 'eval.guidance_candidates' holds ",
                                                     g, "; each must be in [0, 100]"));
  }
  if (vae.loss != "mse" && vae.loss != "l1") {
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'vae.loss' must be mse or l1, got '", vae.loss, "'"));
  }
  if (eval.sampler != "euler" && eval.sampler != "heun") {
    return absl::InvalidArgumentError(
        absl::StrCat("config key 'eval.sampler' must be euler or heun, got '", eval.sampler, "'"));
  }
  if (flow.condition_drop < 0 || flow.condition_drop >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key 'flow.condition_drop' must be in [0, 1), got ", flow.condition_drop));
  }
  for (const auto& [key, value] :
       {std::pair{"flow.precision", &flow.precision}, {"eval.precision", &eval.precision}}) {
    if (absl::Status s = ParsePrecision(*value).status(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", s.message()));
    }
  }
  if (flow.steps < 0 || gene_ae.steps < 0 || vae.steps < 0) {
    return absl::InvalidArgumentError("config keys '*.steps' must be >= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainConfig> TrainConfig::FromYamlString(const std::string& text,
                                                        const std::string& label) {
  TrainConfig c;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return c;
  if (!root.IsMap())
    return absl::InvalidArgumentError(absl::StrCat(label, ": top level must be a mapping"));
  auto fields = Fields(c);
  CF_RETURN_IF_ERROR(Walk(root, "", fields, label));
  return c;
}

absl::StatusOr<TrainConfig> TrainConfig::Load(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return FromYamlString(text, absl::StrCat("config '", path, "'"));
}

absl::Status TrainConfig::Set(const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("override '", assignment, "': expected key=value"));
  }
  std::string key = assignment.substr(0, eq);
  auto fields = Fields(*this);
  auto f = fields.find(key);
  if (f == fields.end()) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : fields) keys.push_back(k);
    return absl::InvalidArgumentError(absl::StrCat("override '", assignment, "': unknown key '",
                                                   key, "' (known: ", absl::StrJoin(keys, ", "),
                                                   ")"));
  }
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("override '", assignment, "': ", e.what()));
  }
  return SetFromNode(key, value, f->second, "override");
}

std::string TrainConfig::ToYaml() const {
  TrainConfig copy = *this;
  YAML::Node root;
  for (const auto& [key, field] : Fields(copy)) {
    std::visit([&](auto* p) { root[key] = *p; }, field);
  }
  return YAML::Dump(root);
}

}  // namespace cellflux::trainer

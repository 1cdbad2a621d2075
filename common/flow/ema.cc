#include "common/flow/ema.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cellflux {

Ema::Ema(const torch::nn::Module& module, double decay) : decay_(decay) {
  TORCH_CHECK(decay >= 0.0 && decay <= 1.0, "Ema: decay must be in [0, 1], got ", decay);
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    shadows_.emplace_back(item.key(), item.value().detach().clone());
  }
}

std::vector<torch::Tensor> Ema::MatchedParameters(const torch::nn::Module& module) const {
  const auto params = module.named_parameters(/*recurse=*/true);
  TORCH_CHECK(params.size() == shadows_.size(), "Ema: module has ", params.size(),
              " parameters, the EMA tracks ", shadows_.size());
  std::vector<torch::Tensor> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& item = params[i];
    const auto& [name, shadow] = shadows_[i];
    TORCH_CHECK(item.key() == name, "Ema: parameter ", i, " is '", item.key(), "', expected '",
                name, "'");
    TORCH_CHECK(item.value().sizes() == shadow.sizes(), "Ema: parameter '", name, "' has shape ",
                item.value().sizes(), ", expected ", shadow.sizes());
    out.push_back(item.value());
  }
  return out;
}

void Ema::Update(const torch::nn::Module& module) {
  std::vector<torch::Tensor> params = MatchedParameters(module);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> shadows;
  shadows.reserve(shadows_.size());
  for (size_t i = 0; i < shadows_.size(); ++i) {
    shadows.push_back(shadows_[i].second);
    params[i] = params[i].detach();
    if (params[i].scalar_type() != shadows[i].scalar_type()) {
      params[i] = params[i].to(shadows[i].scalar_type());
    }
  }
  // One fused kernel per list (foreach ops) instead of two per parameter.
  torch::_foreach_mul_(shadows, decay_);
  torch::_foreach_add_(shadows, params, /*alpha=*/1.0 - decay_);
  ++num_updates_;
}

void Ema::CopyTo(torch::nn::Module& module) const {
  std::vector<torch::Tensor> params = MatchedParameters(module);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadows_[i].second);
}

TensorMap Ema::state() const {
  TensorMap out;
  for (const auto& [name, shadow] : shadows_) out[name] = shadow;
  return out;
}

absl::Status Ema::LoadState(const TensorMap& state) {
  std::vector<std::string> missing, mismatched, extra;
  for (const auto& [name, shadow] : shadows_) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != shadow.sizes()) {
      mismatched.push_back(
          absl::StrCat(name, " (expected ", ShapeOf(shadow), ", got ", ShapeOf(it->second), ")"));
    }
  }
  if (state.size() + missing.size() != shadows_.size()) {
    for (const auto& [name, tensor] : state) {
      bool known = false;
      for (const auto& s : shadows_) known = known || s.first == name;
      if (!known) extra.push_back(name);
    }
  }
  if (!missing.empty() || !mismatched.empty() || !extra.empty()) {
    std::string msg = "EMA state does not match the model:";
    if (!missing.empty()) absl::StrAppend(&msg, " missing [", absl::StrJoin(missing, ", "), "]");
    if (!extra.empty()) absl::StrAppend(&msg, " unexpected [", absl::StrJoin(extra, ", "), "]");
    if (!mismatched.empty()) {
      absl::StrAppend(&msg, " shape mismatch [", absl::StrJoin(mismatched, ", "), "]");
    }
    return absl::InvalidArgumentError(msg);
  }
  return TorchCall("EMA state", [&] {
    torch::NoGradGuard no_grad;
    for (auto& [name, shadow] : shadows_) shadow.copy_(state.at(name));
  });
}

}  // namespace cellflux

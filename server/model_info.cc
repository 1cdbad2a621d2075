#include "server/model_info.h"

#include <algorithm>

namespace cellflux::server {

std::optional<int64_t> ModelInfo::LabelOf(const std::string& id) const {
  auto it = label_of_.find(id);
  if (it == label_of_.end()) return std::nullopt;
  return it->second;
}

void ModelInfo::BuildIndex() {
  label_of_.clear();
  for (size_t i = 0; i < perturbations.size(); ++i) {
    label_of_.emplace(perturbations[i].id, static_cast<int64_t>(i));
  }
  std::sort(controls.begin(), controls.end());
}

}  // namespace cellflux::server

#include "server/checkpoint_watcher.h"

#include <sys/stat.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/checkpoint_dir.h"

namespace cellflux::server {

CheckpointWatcher::CheckpointWatcher(std::string path)
    : path_(std::move(path)), last_(Identity(path_)) {}

std::string CheckpointWatcher::Identity(const std::string& path) {
  absl::StatusOr<std::string> dir = ResolveCheckpointDir(path);
  if (!dir.ok()) return "";
  std::error_code ec;
  const std::filesystem::path canonical = std::filesystem::canonical(*dir, ec);
  if (ec) return "";
  struct stat st;
  const std::string config = (canonical / kConfigFile).string();
  if (stat(config.c_str(), &st) != 0) return "";
  return absl::StrCat(canonical.string(), "@", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

bool CheckpointWatcher::Poll() {
  const std::string now = Identity(path_);
  if (now.empty() || now == last_) return false;
  last_ = now;
  return true;
}

}  // namespace cellflux::server

#include "common/checkpoint/promote.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/checkpoint/model_bundle.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;

std::string SubPath(const std::string& dir, const std::string& name) { return dir + "/" + name; }

absl::Status PosixError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Reads and fully validates a checkpoint directory: every file, then the model built on the CPU
// with every weight loaded (names and shapes).
struct Validated {
  std::string model_id;  // as config.json names it
  std::string hash;      // DefaultModelId: a hash over every file's contents
};
absl::StatusOr<Validated> ValidateFully(const std::string& dir) {
  CF_ASSIGN_OR_RETURN(CheckpointBundle bundle, ReadCheckpoint(dir));
  absl::StatusOr<CellFluxModel> model = ModelFromBundle(bundle, torch::Device(torch::kCPU));
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("checkpoint '", dir, "': ", model.status().message()));
  }
  return Validated{bundle.model_id, DefaultModelId(bundle)};
}

// The target of `link`, "" when it does not exist. FAILED_PRECONDITION when it is not a link.
absl::StatusOr<std::string> LinkTarget(const std::string& link) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(link, ec);
  if (ec || st.type() == fs::file_type::not_found) return std::string();
  if (st.type() != fs::file_type::symlink) {
    return absl::FailedPreconditionError(absl::StrCat(
        link,
        " exists but is not a symbolic link; promote manages it as a link to versions/<id>. "
        "Move the directory to versions/<name> and run `ln -s versions/<name> ",
        link, "`, or promote into an empty MODELS_DIR"));
  }
  return fs::read_symlink(link).string();
}

// Points `link` at `target` atomically: a fresh link under a temp name, renamed over `link`.
absl::Status SetLink(const std::string& models_dir, const std::string& link,
                     const std::string& target) {
  const std::string tmp = SubPath(models_dir, absl::StrCat(".", link, ".tmp-", getpid()));
  unlink(tmp.c_str());
  if (symlink(target.c_str(), tmp.c_str()) != 0) return PosixError("cannot create link", tmp);
  const std::string path = SubPath(models_dir, link);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status status = PosixError("cannot rename link over", path);
    unlink(tmp.c_str());
    return status;
  }
  return FsyncDirectory(models_dir);
}

absl::Status FsyncRegularFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return PosixError("cannot open", path);
  const int rc = fsync(fd);
  close(fd);
  return rc == 0 ? absl::OkStatus() : PosixError("cannot fsync", path);
}

// Copies the checkpoint's files (not trainer_state/: the server never reads it) into `dst`.
absl::Status CopyServingFiles(const std::string& src, const std::string& dst) {
  CF_RETURN_IF_ERROR(MakeDirs(dst));
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(src, ec)) {
    if (!entry.is_regular_file()) continue;  // trainer_state/ and anything else that is not a file
    const std::string to = SubPath(dst, entry.path().filename().string());
    fs::copy_file(entry.path(), to, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot copy ", entry.path().string(), " to ", to, ": ", ec.message()));
    }
    CF_RETURN_IF_ERROR(FsyncRegularFile(to));
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", src, ": ", ec.message()));
  return FsyncDirectory(dst);
}

std::string VersionName(const std::string& model_id) {
  std::string name = absl::StrReplaceAll(model_id, {{"/", "_"}, {" ", "_"}});
  if (name.empty() || name[0] == '.') name = "v" + name;
  return name;
}

}  // namespace

absl::StatusOr<PromoteResult> PromoteCheckpoint(const std::string& checkpoint,
                                                const std::string& models_dir) {
  CF_ASSIGN_OR_RETURN(const std::string src, ResolveCheckpointDir(checkpoint));
  CF_ASSIGN_OR_RETURN(const Validated source, ValidateFully(src));
  CF_RETURN_IF_ERROR(MakeDirs(SubPath(models_dir, kVersionsDir)));
  CF_ASSIGN_OR_RETURN(const std::string old_current, LinkTarget(SubPath(models_dir, kCurrentLink)));
  CF_ASSIGN_OR_RETURN(const std::string old_previous,
                      LinkTarget(SubPath(models_dir, kPreviousLink)));

  PromoteResult result;
  result.model_id = source.model_id;
  const std::string name = VersionName(source.model_id);
  result.current = SubPath(kVersionsDir, name);
  const std::string version_dir = SubPath(models_dir, result.current);
  if (old_current == result.current) {
    result.previous = old_previous;
    return result;  // already serving exactly this version
  }

  std::error_code ec;
  if (fs::exists(version_dir, ec)) {
    // Promoted before (e.g. rolled back since): reuse the copy if it is intact.
    absl::StatusOr<Validated> existing = ValidateFully(version_dir);
    if (!existing.ok() || existing->hash != source.hash) {
      return absl::FailedPreconditionError(
          absl::StrCat(version_dir, " exists but does not hold ", src, " (",
                       existing.ok() ? "different contents" : existing.status().message(),
                       "); remove it and promote again"));
    }
  } else {
    const std::string tmp = SubPath(
        models_dir,
        absl::StrCat(kVersionsDir, "/.", name, ".tmp-", getpid(), "-", std::random_device{}()));
    absl::Status copied = CopyServingFiles(src, tmp);
    absl::StatusOr<Validated> copy =
        copied.ok() ? ValidateFully(tmp) : absl::StatusOr<Validated>(copied);
    if (copy.ok() && copy->hash != source.hash) {
      copy = absl::DataLossError(absl::StrCat("the copy in ", tmp, " has content id ", copy->hash,
                                              ", the source ", source.hash));
    }
    if (copy.ok() && rename(tmp.c_str(), version_dir.c_str()) != 0) {
      copy = PosixError("cannot rename into", version_dir);
    }
    if (!copy.ok()) {
      fs::remove_all(tmp, ec);
      return copy.status();
    }
    CF_RETURN_IF_ERROR(FsyncDirectory(SubPath(models_dir, kVersionsDir)));
  }

  if (!old_current.empty()) CF_RETURN_IF_ERROR(SetLink(models_dir, kPreviousLink, old_current));
  CF_RETURN_IF_ERROR(SetLink(models_dir, kCurrentLink, result.current));
  result.previous = old_current.empty() ? old_previous : old_current;
  result.changed = true;
  return result;
}

absl::StatusOr<PromoteResult> RollbackCheckpoint(const std::string& models_dir) {
  CF_ASSIGN_OR_RETURN(const std::string current, LinkTarget(SubPath(models_dir, kCurrentLink)));
  CF_ASSIGN_OR_RETURN(const std::string previous, LinkTarget(SubPath(models_dir, kPreviousLink)));
  if (previous.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(SubPath(models_dir, kPreviousLink),
                     " does not exist: nothing to roll back to (promote keeps the version it "
                     "replaces there)"));
  }
  const std::string target = SubPath(models_dir, previous);
  CF_ASSIGN_OR_RETURN(const Validated header, ValidateFully(target));
  if (!current.empty()) CF_RETURN_IF_ERROR(SetLink(models_dir, kPreviousLink, current));
  CF_RETURN_IF_ERROR(SetLink(models_dir, kCurrentLink, previous));
  PromoteResult result;
  result.model_id = header.model_id;
  result.current = previous;
  result.previous = current;
  result.changed = true;
  return result;
}

}  // namespace cellflux

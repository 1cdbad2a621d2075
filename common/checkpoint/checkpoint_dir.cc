#include "common/checkpoint/checkpoint_dir.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checkpoint/checkpoint.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace cellflux {
namespace {

namespace fs = std::filesystem;

absl::Status CheckName(const std::string& name, const std::string& where) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      name.find_first_of("\r\n\t") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": '", name, "' is not a checkpoint directory name (empty, hidden or has a '/')"));
  }
  return absl::OkStatus();
}

// The step in dir/config.json, or nullopt when it is not a readable checkpoint config.
std::optional<int64_t> StepOf(const fs::path& dir) {
  absl::StatusOr<std::string> text = ReadFile((dir / kConfigFile).string());
  if (!text.ok()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  auto step = j.find("step");
  if (step == j.end() || !step->is_number_integer()) return std::nullopt;
  return step->get<int64_t>();
}

// ".<name>.tmp-..." / ".<name>.old-..." → <name>; empty if `entry` is neither.
std::string LeftoverTarget(const std::string& entry, const std::string& kind) {
  if (entry.size() < 2 || entry[0] != '.') return "";
  size_t at = entry.rfind(kind);
  if (at == std::string::npos || at <= 1) return "";
  return entry.substr(1, at - 1);
}

}  // namespace

absl::Status UpdateCheckpointPointer(const std::string& root, const std::string& pointer,
                                     const std::string& name) {
  const std::string pointer_file = (fs::path(root) / pointer).string();
  CF_RETURN_IF_ERROR(CheckName(name, pointer_file));
  if (!fs::is_directory(fs::path(root) / name)) {
    return absl::NotFoundError(
        absl::StrCat(pointer_file, ": checkpoint '", name, "' is not a directory in '", root, "'"));
  }
  return WriteFileAtomic(pointer_file, name + "\n");
}

absl::StatusOr<std::string> ReadCheckpointPointer(const std::string& root,
                                                  const std::string& pointer) {
  const std::string pointer_file = (fs::path(root) / pointer).string();
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(pointer_file));
  std::string name(absl::StripAsciiWhitespace(text));
  CF_RETURN_IF_ERROR(CheckName(name, pointer_file));
  return name;
}

absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path) {
  const fs::path p(path);
  if (fs::is_regular_file(p / kConfigFile)) return path;
  if (fs::is_regular_file(p / kLatestPointer)) {
    CF_ASSIGN_OR_RETURN(std::string name, ReadCheckpointPointer(path, kLatestPointer));
    const fs::path dir = p / name;
    if (!fs::is_regular_file(dir / kConfigFile)) {
      return absl::NotFoundError(absl::StrCat((p / kLatestPointer).string(), " points to '", name,
                                              "', which is not a checkpoint (no ", kConfigFile,
                                              ")"));
    }
    return dir.string();
  }
  return absl::NotFoundError(absl::StrCat("'", path, "' is neither a checkpoint directory (no ",
                                          kConfigFile, ") nor a checkpoint root (no '",
                                          kLatestPointer, "' file)"));
}

absl::StatusOr<std::vector<CheckpointListing>> ListCheckpoints(const std::string& root) {
  std::vector<CheckpointListing> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_directory()) continue;
    std::optional<int64_t> step = StepOf(e.path());
    if (step.has_value()) out.push_back({name, *step});
  }
  if (ec) {
    std::string msg = absl::StrCat("cannot list checkpoint root '", root, "': ", ec.message());
    return ec == std::errc::no_such_file_or_directory ? absl::NotFoundError(msg)
                                                      : absl::InternalError(msg);
  }
  std::sort(out.begin(), out.end(), [](const CheckpointListing& a, const CheckpointListing& b) {
    return a.step != b.step ? a.step < b.step : a.name < b.name;
  });
  return out;
}

int64_t StepFromCheckpointName(const std::string& name) {
  int64_t step = -1;
  if (!absl::StartsWith(name, "step-") || name.size() == 5 ||
      name.find_first_not_of("0123456789", 5) != std::string::npos ||
      !absl::SimpleAtoi(name.substr(5), &step)) {
    return -1;
  }
  return step;
}

absl::StatusOr<ResumeChoice> ChooseResumeCheckpoint(
    const std::string& root, const std::function<absl::Status(const std::string& dir)>& load) {
  std::vector<CheckpointListing> candidates;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_directory()) continue;
    std::optional<int64_t> step = StepOf(e.path());
    if (!step.has_value() && StepFromCheckpointName(name) >= 0) step = StepFromCheckpointName(name);
    if (step.has_value()) candidates.push_back({name, *step});
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::InternalError(
        absl::StrCat("cannot list checkpoint root '", root, "': ", ec.message()));
  }
  // Newest first; among equal steps, by name (deterministic).
  std::sort(candidates.begin(), candidates.end(),
            [](const CheckpointListing& a, const CheckpointListing& b) {
              return a.step != b.step ? a.step > b.step : a.name < b.name;
            });
  ResumeChoice choice;
  if (candidates.empty()) return choice;

  // What `latest` says, in words, for the notes.
  absl::StatusOr<std::string> latest = ReadCheckpointPointer(root, kLatestPointer);
  std::vector<std::string> rejected;  // "<name> (step N): why"
  for (const CheckpointListing& c : candidates) {
    const std::string dir = (fs::path(root) / c.name).string();
    absl::Status st = fs::is_regular_file(fs::path(dir) / kConfigFile)
                          ? load(dir)
                          : absl::NotFoundError(absl::StrCat("no ", kConfigFile));
    if (!st.ok()) {
      rejected.push_back(absl::StrCat(c.name, " (step ", c.step, "): ", st.message()));
      continue;
    }
    choice.dir = dir;
    choice.name = c.name;
    choice.step = c.step;
    break;
  }
  if (choice.dir.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot resume: no checkpoint under '", root, "' can be loaded, and starting over would ",
        "overwrite them: ", absl::StrJoin(rejected, "; "),
        ". Repair or move them away (or run without --resume in an empty work dir)"));
  }
  if (!rejected.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resume from '", choice.dir, "' (step ", choice.step,
                     "): newer checkpoint", rejected.size() > 1 ? "s" : "", " under '", root,
                     "' cannot be loaded and a resumed run would overwrite ",
                     rejected.size() > 1 ? "them" : "it", ": ", absl::StrJoin(rejected, "; "),
                     ". Repair or move ", rejected.size() > 1 ? "them" : "it", " out of '", root,
                     "' to resume from step ", choice.step));
  }
  if (!latest.ok()) {
    choice.notes.push_back(absl::StrCat("'", (fs::path(root) / kLatestPointer).string(),
                                        "' is unusable (", latest.status().message(), "); using ",
                                        choice.name, ", the newest checkpoint that loads"));
  } else if (*latest != choice.name) {
    const fs::path pointed = fs::path(root) / *latest;
    const std::string why = !fs::is_directory(pointed) ? "is missing"
                            : !fs::is_regular_file(pointed / kConfigFile)
                                ? absl::StrCat("has no ", kConfigFile)
                            : StepOf(pointed).value_or(-1) < choice.step ? "is older"
                                                                         : "cannot be loaded";
    choice.notes.push_back(absl::StrCat("'", (fs::path(root) / kLatestPointer).string(),
                                        "' names '", *latest, "', which ", why, "; using ",
                                        choice.name, ", the newest checkpoint that loads"));
  }
  return choice;
}

absl::StatusOr<std::vector<std::string>> CleanupCheckpointLeftovers(const std::string& root) {
  std::vector<fs::path> tmps, olds;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory()) continue;
    if (!LeftoverTarget(name, ".tmp-").empty()) tmps.push_back(e.path());
    if (!LeftoverTarget(name, ".old-").empty()) olds.push_back(e.path());
  }
  if (ec == std::errc::no_such_file_or_directory)
    return std::vector<std::string>{};  // nothing written yet
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot list checkpoint root '", root, "': ", ec.message()));
  std::sort(olds.begin(), olds.end());
  std::vector<std::string> done;
  for (const fs::path& old : olds) {
    const fs::path target = fs::path(root) / LeftoverTarget(old.filename().string(), ".old-");
    if (!fs::exists(target)) {
      fs::rename(old, target, ec);
      if (ec)
        return absl::InternalError(
            absl::StrCat("cannot restore '", old.string(), "': ", ec.message()));
    } else {
      fs::remove_all(old, ec);
      if (ec)
        return absl::InternalError(
            absl::StrCat("cannot delete '", old.string(), "': ", ec.message()));
    }
    done.push_back(old.filename().string());
  }
  for (const fs::path& tmp : tmps) {
    fs::remove_all(tmp, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("cannot delete '", tmp.string(), "': ", ec.message()));
    done.push_back(tmp.filename().string());
  }
  if (!done.empty()) CF_RETURN_IF_ERROR(FsyncDirectory(root));
  return done;
}

absl::StatusOr<std::vector<std::string>> PruneCheckpoints(const std::string& root, int keep_last) {
  if (keep_last < 1)
    return absl::InvalidArgumentError(absl::StrCat("keep_last must be ≥ 1, got ", keep_last));
  CF_RETURN_IF_ERROR(CleanupCheckpointLeftovers(root).status());
  CF_ASSIGN_OR_RETURN(std::vector<CheckpointListing> all, ListCheckpoints(root));
  std::set<std::string> keep;
  for (const char* pointer : {kLatestPointer, kBestPointer}) {
    absl::StatusOr<std::string> name = ReadCheckpointPointer(root, pointer);
    if (name.ok()) {
      keep.insert(*name);
    } else if (name.status().code() != absl::StatusCode::kNotFound) {
      // An unreadable pointer means we cannot know what to protect: delete nothing.
      return name.status();
    }
  }
  for (size_t i = all.size() > static_cast<size_t>(keep_last) ? all.size() - keep_last : 0;
       i < all.size(); ++i) {
    keep.insert(all[i].name);
  }
  std::vector<std::string> removed;
  std::error_code ec;
  for (const CheckpointListing& c : all) {
    if (keep.count(c.name)) continue;
    fs::remove_all(fs::path(root) / c.name, ec);
    if (ec)
      return absl::InternalError(absl::StrCat(
          "cannot delete checkpoint '", (fs::path(root) / c.name).string(), "': ", ec.message()));
    removed.push_back(c.name);
  }
  if (!removed.empty()) CF_RETURN_IF_ERROR(FsyncDirectory(root));
  return removed;
}

}  // namespace cellflux

// Managing a checkpoint root: a directory of checkpoint directories (checkpoint.h) plus pointer
// files naming one of them, `latest` (the newest complete checkpoint) and `best` (lowest
// validation FID). Pointer files hold the checkpoint's directory name (no slashes) and a newline
// and are replaced atomically (WriteFileAtomic). Single writer per root (rank 0).
#ifndef CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_
#define CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellflux {

inline constexpr char kLatestPointer[] = "latest";
inline constexpr char kBestPointer[] = "best";

// Writes root/<pointer> = name. INVALID_ARGUMENT if `name` is empty, hidden, "..", or holds a '/';
// NOT_FOUND if root/name is not a directory.
absl::Status UpdateCheckpointPointer(const std::string& root, const std::string& pointer,
                                     const std::string& name);
inline absl::Status UpdateLatestPointer(const std::string& root, const std::string& name) {
  return UpdateCheckpointPointer(root, kLatestPointer, name);
}

// The checkpoint name root/<pointer> holds; NOT_FOUND if there is no such pointer file.
absl::StatusOr<std::string> ReadCheckpointPointer(const std::string& root,
                                                  const std::string& pointer);

// `path` itself if it holds config.json; else root/<contents of path/latest>. NOT_FOUND naming
// `path` when it is neither, or naming the pointer when it points to a missing checkpoint.
absl::StatusOr<std::string> ResolveCheckpointDir(const std::string& path);

struct CheckpointListing {
  std::string name;  // directory name inside the root
  int64_t step = 0;  // from its config.json
};

// Visible subdirectories of `root` whose config.json has an integer "step", sorted by step then
// name. Hidden (".") entries, such as write leftovers, are skipped.
absl::StatusOr<std::vector<CheckpointListing>> ListCheckpoints(const std::string& root);

// Where `--resume` continues: the newest checkpoint of `root` that `load` accepts.
//
// Candidates are the visible subdirectories that are checkpoints (config.json with an integer
// "step") or are named like one ("step-<N>", e.g. a step directory that lost its config.json),
// newest step first. `load(dir)` checks one (e.g. reads and restores its trainer state) and the
// first it accepts is chosen, whatever `latest` says: a `latest` that is empty, points to a
// missing directory or to one without config.json, or names an older checkpoint (a crash between
// writing a checkpoint and moving the pointer) never makes a resumed run lose progress. `notes`
// say in words what was passed over and why, for the log.
//
//   * No candidates at all (a fresh root, or none yet): OK with an empty `dir` (start at step 0;
//     nothing is lost).
//   * Candidates, but `load` accepts none: FAILED_PRECONDITION listing each and why.
//   * A candidate newer than the chosen one that `load` rejected: FAILED_PRECONDITION naming it
//     and why, because continuing would overwrite it with other contents when training reaches its
//     step; the message says to repair or move it away.
struct ResumeChoice {
  std::string dir;   // root/name of the checkpoint to continue from; empty = nothing to resume
  std::string name;  // its directory name
  int64_t step = 0;  // its step
  std::vector<std::string> notes;  // what was passed over and why (empty when `latest` was used)
};
absl::StatusOr<ResumeChoice> ChooseResumeCheckpoint(
    const std::string& root, const std::function<absl::Status(const std::string& dir)>& load);

// The step a directory named "step-<digits>" stands for, or -1.
int64_t StepFromCheckpointName(const std::string& name);

// Removes hidden write leftovers in `root`: ".<name>.tmp-*" directories are deleted; an
// ".<name>.old-*" directory is renamed back to <name> when <name> is missing (a crash between the
// two renames of WriteCheckpoint), else deleted. Returns the entries removed or restored.
absl::StatusOr<std::vector<std::string>> CleanupCheckpointLeftovers(const std::string& root);

// Cleans leftovers, then deletes all but the `keep_last` checkpoints with the highest steps,
// never deleting the ones `latest` or `best` point to. Returns the names deleted.
absl::StatusOr<std::vector<std::string>> PruneCheckpoints(const std::string& root, int keep_last);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_

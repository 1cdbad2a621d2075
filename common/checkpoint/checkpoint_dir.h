// Managing a checkpoint root: a directory of checkpoint directories (checkpoint.h) plus pointer
// files naming one of them, `latest` (the newest complete checkpoint) and `best` (lowest
// validation FID). Pointer files hold the checkpoint's directory name (no slashes) and a newline
// and are replaced atomically (WriteFileAtomic). Single writer per root (rank 0).
#ifndef CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_
#define CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_

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

// Removes hidden write leftovers in `root`: ".<name>.tmp-*" directories are deleted; an
// ".<name>.old-*" directory is renamed back to <name> when <name> is missing (a crash between the
// two renames of WriteCheckpoint), else deleted. Returns the entries removed or restored.
absl::StatusOr<std::vector<std::string>> CleanupCheckpointLeftovers(const std::string& root);

// Cleans leftovers, then deletes all but the `keep_last` checkpoints with the highest steps,
// never deleting the ones `latest` or `best` point to. Returns the names deleted.
absl::StatusOr<std::vector<std::string>> PruneCheckpoints(const std::string& root, int keep_last);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_DIR_H_

// Promoting a trained checkpoint to the directory a server serves (`cellflux-tool promote`).
//
// MODELS_DIR layout (the server runs with --checkpoint MODELS_DIR/current):
//   MODELS_DIR/versions/<model_id>/   full copies of promoted checkpoints (no trainer_state/)
//   MODELS_DIR/current  -> versions/<model_id>   relative symbolic link: what the server loads
//   MODELS_DIR/previous -> versions/<model_id>   the one before, for --rollback
//
// Promote: the source (a checkpoint directory, or a training root with `latest`) is validated
// fully — read (every file, finite weights, vocabularies) and loaded into the model on the CPU
// (every tensor name and shape) — then copied into a hidden temp directory under versions/,
// fsync()ed, renamed to versions/<model_id>, read back (its model id must match), and only then
// `previous` is pointed at the old target and `current` is flipped by rename(2) of a fresh link:
// a server polling `current` (cellflux-server --watch-checkpoint-s) sees the old or the new
// checkpoint, never a partial one. Any failure before the flip leaves `current` and `previous`
// unchanged (a half-written copy stays hidden and is removed). Promoting the version `current`
// already points to is a no-op.
//
// Rollback swaps `current` and `previous` (after validating the checkpoint `previous` names).
//
// Errors: INVALID_ARGUMENT / NOT_FOUND from reading the checkpoint (naming file and tensor),
// FAILED_PRECONDITION when MODELS_DIR/current exists but is not a link (a hand-made layout), or
// there is nothing to roll back to.
#ifndef CELLFLUX_COMMON_CHECKPOINT_PROMOTE_H_
#define CELLFLUX_COMMON_CHECKPOINT_PROMOTE_H_

#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

inline constexpr char kCurrentLink[] = "current";
inline constexpr char kPreviousLink[] = "previous";
inline constexpr char kVersionsDir[] = "versions";

struct PromoteResult {
  std::string model_id;  // what `current` serves now
  std::string current;   // link target now, "versions/<model_id>"
  std::string previous;  // link target of `previous` now ("" when there is none)
  bool changed = false;  // false when `current` already pointed there
};

absl::StatusOr<PromoteResult> PromoteCheckpoint(const std::string& checkpoint,
                                                const std::string& models_dir);

absl::StatusOr<PromoteResult> RollbackCheckpoint(const std::string& models_dir);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_PROMOTE_H_

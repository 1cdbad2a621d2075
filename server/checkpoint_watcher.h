// Notices when --checkpoint starts naming another checkpoint, e.g. after `cellflux-tool promote`
// flipped MODELS_DIR/current (common/checkpoint/promote.h), so the server reloads by itself.
//
// A checkpoint's identity is the canonical path (symbolic links resolved) of the directory
// ResolveCheckpointDir finds for the watched path, plus the mtime of its config.json (so a
// checkpoint rewritten in place under the same name counts too). Poll() compares it with the
// last identity seen. While the path cannot be resolved (a promote half-way, a volume being
// remounted) nothing changes: the last identity is kept and the server keeps its model.
//
// Not thread-safe: one thread polls (cellflux-server's watcher thread; tests call Poll directly).
#ifndef CELLFLUX_SERVER_CHECKPOINT_WATCHER_H_
#define CELLFLUX_SERVER_CHECKPOINT_WATCHER_H_

#include <string>

namespace cellflux::server {

class CheckpointWatcher {
 public:
  // Records the current identity of `path` (the one the server is about to load).
  explicit CheckpointWatcher(std::string path);

  // True once per change of identity since the last call (or construction).
  bool Poll();

  // The identity now; "" when `path` does not resolve to a checkpoint.
  static std::string Identity(const std::string& path);

  const std::string& last_identity() const { return last_; }

 private:
  std::string path_;
  std::string last_;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_CHECKPOINT_WATCHER_H_

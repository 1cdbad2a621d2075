// cellflux-tool promote RUN_CHECKPOINT MODELS_DIR: validates a trained checkpoint fully, copies it
// to MODELS_DIR/versions/<model_id> and flips MODELS_DIR/current to it atomically, keeping the
// old target as MODELS_DIR/previous (common/checkpoint/promote.h). `--rollback MODELS_DIR` swaps
// current and previous. A server started with --checkpoint MODELS_DIR/current and
// --watch-checkpoint-s N picks the new model up within N seconds without dropping a request.
// Exit 0 on success, 2 when the checkpoint is missing or invalid (nothing changed), 1 otherwise.
#include "common/checkpoint/promote.h"

#include <iostream>
#include <memory>
#include <string>

#include "common/tools/command.h"

namespace cellflux::tool {
namespace {

struct PromoteFlags {
  std::string checkpoint;
  std::string models_dir;
  bool rollback = false;
};

int RunPromote(const PromoteFlags& f) {
  absl::StatusOr<PromoteResult> r;
  if (f.rollback) {
    if (f.models_dir.empty() && !f.checkpoint.empty()) {
      r = RollbackCheckpoint(f.checkpoint);  // `promote --rollback MODELS_DIR`
    } else if (!f.models_dir.empty() && f.checkpoint.empty()) {
      r = RollbackCheckpoint(f.models_dir);
    } else {
      r = absl::InvalidArgumentError("--rollback takes exactly one argument: MODELS_DIR");
    }
  } else if (f.checkpoint.empty() || f.models_dir.empty()) {
    r = absl::InvalidArgumentError(
        "usage: promote RUN_CHECKPOINT MODELS_DIR (or --rollback MODELS_DIR)");
  } else {
    r = PromoteCheckpoint(f.checkpoint, f.models_dir);
  }
  if (!r.ok()) return ReportStatus("promote", r.status());
  if (!r->changed) {
    std::cout << "already current: " << r->model_id << " (" << r->current << ")\n";
  } else {
    std::cout << (f.rollback ? "rolled back: current -> " : "promoted: current -> ") << r->current
              << " (model " << r->model_id << ")";
    if (!r->previous.empty()) std::cout << "; previous -> " << r->previous;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

CF_TOOL_COMMAND(
    promote, "Validate a checkpoint and make it the one MODELS_DIR/current serves (or roll back)",
    ([](CLI::App* app) -> RunFn {
      auto f = std::make_shared<PromoteFlags>();
      app->add_option("checkpoint", f->checkpoint,
                      "trained checkpoint directory, or a training root with 'latest' "
                      "(with --rollback: MODELS_DIR)");
      app->add_option("models_dir", f->models_dir,
                      "the server's models directory (it serves MODELS_DIR/current)");
      app->add_flag("--rollback", f->rollback,
                    "point current back at previous (and previous at current)");
      return [f]() { return RunPromote(*f); };
    }));

}  // namespace cellflux::tool

// cellflux-tool: checkpoint inspection, weight interop checks, FID, synthetic plates.
// The verbs are registered by their own files (command.h); this file only dispatches.
#include <iostream>

#include "common/tools/command.h"
#include "common/torch/runtime.h"
#include "common/util/logging.h"

namespace cellflux::tool {

std::vector<Command>& Registry() {
  static auto* registry = new std::vector<Command>();
  return *registry;
}

int ReportStatus(const std::string& verb, const absl::Status& status) {
  if (status.ok()) return 0;
  std::cerr << "cellflux-tool " << verb << ": " << status.message() << "\n";
  if (status.code() == absl::StatusCode::kInvalidArgument ||
      status.code() == absl::StatusCode::kNotFound)
    return 2;
  return 1;
}

}  // namespace cellflux::tool

int main(int argc, char** argv) {
  CLI::App app{"cellflux-tool: checkpoints, weight interop, FID, synthetic plates"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, cellflux::tool::RunFn>> verbs;
  for (const auto& cmd : cellflux::tool::Registry()) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.description);
    verbs.emplace_back(sub, cmd.setup(sub));
  }
  CLI11_PARSE(app, argc, argv);
  cellflux::ConfigureRuntime("cellflux-tool", c10::Device(c10::kCPU));
  for (auto& [sub, run] : verbs) {
    if (sub->parsed()) return run();
  }
  return 1;
}

// Registry of cellflux-tool verbs. Each verb's .cc file registers itself:
//
//   CF_TOOL_COMMAND(inspect, "Print a checkpoint's config, sizes and vocabulary",
//                   [](CLI::App* app) { ...add options...; return [=]() -> int { ... }; });
//
// The setup function adds the verb's options to its subcommand and returns the function that runs
// it (exit code). main.cc builds the CLI from the registry.
#ifndef CELLFLUX_COMMON_TOOLS_COMMAND_H_
#define CELLFLUX_COMMON_TOOLS_COMMAND_H_

#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace cellflux::tool {

using RunFn = std::function<int()>;
using SetupFn = std::function<RunFn(CLI::App*)>;

struct Command {
  std::string name;
  std::string description;
  SetupFn setup;
};

std::vector<Command>& Registry();

struct Registrar {
  Registrar(std::string name, std::string description, SetupFn setup) {
    Registry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

// Prints "cellflux-tool <verb>: <message>" to stderr and returns the exit code for the status
// (0 if ok, 2 for INVALID_ARGUMENT/NOT_FOUND, 1 otherwise).
int ReportStatus(const std::string& verb, const absl::Status& status);

}  // namespace cellflux::tool

#define CF_TOOL_COMMAND(name, description, setup) \
  static ::cellflux::tool::Registrar cf_tool_registrar_##name(#name, description, setup)

#endif  // CELLFLUX_COMMON_TOOLS_COMMAND_H_

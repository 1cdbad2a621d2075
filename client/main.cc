// cellflux-client: talks to a cellflux server (DESIGN.md §5).
//
//   cellflux-client info    --server HOST:PORT
//   cellflux-client predict --server HOST:PORT (--perturbation BRD-… | --smiles S [--dose-um D])
//                           (--control-ref PLATE:WELL[:SITE]
//                           | --control-dir DIR --control-expression FILE[:COLUMN]) --out DIR
//   cellflux-client screen  --server HOST:PORT --plan PLAN.csv --out DIR [--concurrency N] …
//
// Exit codes: 0 every row succeeded; 1 a row failed or an error stopped the command; 2 bad flags;
// 130 stopped by Ctrl-C (rerun the same command to resume a screen).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "client/model_info.h"
#include "client/plan.h"
#include "client/screen.h"
#include "client/stop_signal.h"

namespace cellflux::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

struct Flags {
  ConnectionOptions connection;
  double deadline_seconds = 600;
  int retries = 5;
  // predict
  std::string perturbation;
  std::string smiles;
  double dose_um = 0;
  std::string control_ref;
  std::string control_dir;
  std::string control_expression;
  int control_bit_depth = 0;
  // predict + screen
  std::string out_dir;
  std::optional<int> samples;
  std::optional<int> steps;
  std::optional<double> guidance;
  std::optional<uint64_t> seed;
  // screen
  std::string plan;
  int concurrency = 4;
  bool no_progress = false;
};

int Fail(const absl::Status& status) {
  std::cerr << "error: " << status.message() << " [" << absl::StatusCodeToString(status.code())
            << "]\n";
  return absl::IsInvalidArgument(status) && status.message().rfind("--", 0) == 0 ? kExitUsage
                                                                                 : kExitFailed;
}

int RunInfo(const Flags& flags) {
  auto connection = Connection::Create(flags.connection);
  if (!connection.ok()) return Fail(connection.status());
  RetryPolicy retry;
  retry.max_retries = flags.retries;
  auto info = FetchModelInfo(**connection, retry, std::min(flags.deadline_seconds, 60.0), nullptr);
  if (!info.ok()) return Fail(info.status());
  std::cout << FormatModelInfo(*info, flags.connection.server);
  return kExitOk;
}

ScreenOptions ToScreenOptions(const Flags& flags) {
  ScreenOptions options;
  options.out_dir = flags.out_dir;
  options.concurrency = flags.concurrency;
  options.deadline_seconds = flags.deadline_seconds;
  options.retry.max_retries = flags.retries;
  options.sampling.num_samples = flags.samples;
  options.sampling.num_steps = flags.steps;
  options.sampling.guidance_scale = flags.guidance;
  options.sampling.seed = flags.seed;
  options.progress = !flags.no_progress;
  return options;
}

int RunPlan(const Flags& flags, const Plan& plan, ScreenOptions options) {
  auto connection = Connection::Create(flags.connection);
  if (!connection.ok()) return Fail(connection.status());
  StopSignal stop;
  InstallStopSignalHandlers(&stop);
  auto summary = RunScreen(**connection, plan, options, &stop);
  RestoreDefaultSignalHandlers();
  if (!summary.ok()) return Fail(summary.status());
  for (const RowFailure& failure : summary->failures) {
    std::cerr << "failed: " << RowName(failure.row) << " (" << RowOrigin(plan.rows[failure.row])
              << ", " << RowSubject(plan.rows[failure.row])
              << "): " << absl::StatusCodeToString(failure.status.code()) << ": "
              << failure.status.message() << "\n";
  }
  std::cerr << absl::StrCat(
      summary->rows_skipped + summary->rows_succeeded, "/", summary->rows_total, " rows done (",
      summary->rows_skipped, " from an earlier run), ", summary->rows_failed, " failed, ",
      summary->rows_not_run, " not run, ", summary->retries, " retries, ",
      static_cast<int>(summary->elapsed_seconds), " s; outputs in ", options.out_dir, "\n");
  if (summary->stopped && !summary->AllSucceeded()) return kExitInterrupted;
  return summary->AllSucceeded() ? kExitOk : kExitFailed;
}

int RunPredict(const Flags& flags) {
  if (flags.control_ref.empty() == flags.control_dir.empty()) {
    return Fail(absl::InvalidArgumentError(
        "--control-ref or --control-dir (with --control-expression): give exactly one"));
  }
  if (flags.perturbation.empty() == flags.smiles.empty()) {
    return Fail(absl::InvalidArgumentError("--perturbation or --smiles: give exactly one"));
  }
  if (flags.dose_um != 0 && flags.smiles.empty()) {
    return Fail(absl::InvalidArgumentError(
        "--dose-um goes with --smiles (a --perturbation has its vocabulary dose)"));
  }
  Plan plan;
  plan.path = "(command line)";
  PlanRow row;
  row.line = 0;
  row.perturbation_id = flags.perturbation;
  row.smiles = flags.smiles;
  row.dose_um = flags.dose_um;
  // The compound's columns as a plan would have them (carried into results.csv and the GCT).
  if (flags.smiles.empty()) {
    plan.header = {"perturbation_id"};
    row.fields = {flags.perturbation};
  } else {
    plan.has_smiles = true;
    plan.header = {"smiles", "dose_um"};
    row.fields = {flags.smiles, flags.dose_um == 0 ? "" : absl::StrCat(flags.dose_um)};
  }
  if (!flags.control_ref.empty()) {
    auto ref = ParseControlRef(flags.control_ref);
    if (!ref.ok())
      return Fail(
          absl::InvalidArgumentError(absl::StrCat("--control-ref: ", ref.status().message())));
    row.control_ref = *ref;
    plan.header.push_back("control_ref");
    row.fields.push_back(flags.control_ref);
  } else {
    row.control_dir = flags.control_dir;
    row.control_expression = flags.control_expression;
    row.control_bit_depth = flags.control_bit_depth;
    plan.header.insert(plan.header.end(), {"control_dir", "control_expression"});
    row.fields.insert(row.fields.end(), {flags.control_dir, flags.control_expression});
  }
  plan.rows.push_back(row);
  ScreenOptions options = ToScreenOptions(flags);
  options.concurrency = 1;
  options.resume = false;  // predict always asks again
  options.progress = false;
  return RunPlan(flags, plan, options);
}

int RunScreenCommand(const Flags& flags) {
  auto plan = ReadPlan(flags.plan);
  if (!plan.ok()) return Fail(plan.status());
  if (plan->rows.empty())
    return Fail(absl::InvalidArgumentError(absl::StrCat(flags.plan, ": no rows")));
  ScreenOptions options = ToScreenOptions(flags);
  options.priority = cellflux::v1::BATCH;  // interactive requests go first; see the proto
  return RunPlan(flags, *plan, options);
}

void AddConnectionFlags(CLI::App* app, Flags* flags) {
  app->add_option("--server", flags->connection.server, "server address HOST:PORT")->required();
  app->add_option("--tls-ca", flags->connection.tls_ca_file,
                  "PEM CA bundle; enables TLS and verifies the server")
      ->check(CLI::ExistingFile);
  app->add_option("--auth-token-file", flags->connection.auth_token_file,
                  "file with the bearer token sent as 'authorization: Bearer <token>'")
      ->check(CLI::ExistingFile);
  app->add_option("--deadline", flags->deadline_seconds, "per-call deadline, seconds")
      ->capture_default_str();
  app->add_option("--retries", flags->retries,
                  "retries on UNAVAILABLE / RESOURCE_EXHAUSTED (jittered exponential backoff)")
      ->capture_default_str();
}

void AddSamplingFlags(CLI::App* app, Flags* flags) {
  app->add_option("--out", flags->out_dir, "output folder")->required();
  app->add_option("--samples", flags->samples, "samples per prediction (default: server's)");
  app->add_option("--steps", flags->steps, "Euler steps (default: server's)");
  app->add_option("--guidance", flags->guidance, "guidance scale (default: server's)");
  app->add_option("--seed", flags->seed,
                  "base seed; row i uses seed + i × samples (default: random, reported)");
}

int Main(int argc, char** argv) {
  CLI::App app{"cellflux-client: CellFluxMM predictions from a cellflux server"};
  app.require_subcommand(1);
  Flags flags;

  CLI::App* info = app.add_subcommand("info", "model id, channels, genes, defaults and limits");
  AddConnectionFlags(info, &flags);

  CLI::App* predict = app.add_subcommand("predict", "one perturbation (or SMILES) on one control");
  AddConnectionFlags(predict, &flags);
  AddSamplingFlags(predict, &flags);
  predict->add_option("--perturbation", flags.perturbation,
                      "Broad ID, e.g. BRD-K12345678-001-01-1 (or --smiles)");
  predict->add_option("--smiles", flags.smiles,
                      "a compound by structure (structure models: GetModelInfo condition "
                      "structure or id+structure), e.g. 'CN(C)C(=N)N=C(N)N.Cl'");
  predict
      ->add_option("--dose-um", flags.dose_um,
                   "dose of the --smiles compound in µM (0 = unknown; the server then uses 1 µM)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  predict->add_option("--control-ref", flags.control_ref,
                      "control in the server's bank: PLATE:WELL[:SITE]");
  predict->add_option("--control-dir", flags.control_dir,
                      "folder with the control's five channel TIFFs");
  predict->add_option(
      "--control-expression", flags.control_expression,
      "control expression: FILE.gct[:COLUMN_ID], FILE.gctx[:COLUMN_ID] or FILE.csv");
  predict
      ->add_option("--control-bit-depth", flags.control_bit_depth,
                   "bit depth of the --control-dir images: 12 or 16 (0 = from the files: 16 when "
                   "a pixel exceeds 4095, else 12)")
      ->check(CLI::IsMember({0, 12, 16}))
      ->capture_default_str();

  CLI::App* screen = app.add_subcommand("screen", "every row of a CSV plan, resumable");
  AddConnectionFlags(screen, &flags);
  AddSamplingFlags(screen, &flags);
  screen
      ->add_option("--plan", flags.plan,
                   "plan CSV (perturbation_id | smiles [+ dose_um], control_ref | control_dir, "
                   "control_expression, any extra columns)")
      ->required()
      ->check(CLI::ExistingFile);
  screen->add_option("--concurrency", flags.concurrency, "simultaneous requests")
      ->capture_default_str();
  screen->add_flag("--no-progress", flags.no_progress, "do not draw the progress bar");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (info->parsed()) return RunInfo(flags);
  if (predict->parsed()) return RunPredict(flags);
  return RunScreenCommand(flags);
}

}  // namespace
}  // namespace cellflux::client

int main(int argc, char** argv) { return cellflux::client::Main(argc, argv); }

// cellflux-server: flags → options → run. See server/server.h for what runs and
// proto/cellflux/v1/cellflux.proto for the API.
//
//   cellflux-server --checkpoint DIR [--listen 0.0.0.0:50051] [--metrics-listen 0.0.0.0:9464]
//     [--controls DATA_DIR [--max-controls N]] [--max-batch N] [--max-queue N]
//     [--batching step|request] [--max-queue-delay-ms N] [--batch-turn N] [--codec-threads N]
//     [--device cpu|cuda:0] [--threads N] [--tls-cert F --tls-key F] [--auth-token-file F]
//     [--drain-grace-s N] [--watch-checkpoint-s N] [--structure-cache N] [--config FILE]
//
// Signals: SIGTERM/SIGINT drain (health NOT_SERVING, new calls UNAVAILABLE, in-flight calls
// finish within --drain-grace-s) and exit 0; SIGHUP reloads --checkpoint in the background and
// swaps it in atomically (a failed reload keeps the old model and counts
// cellflux_reload_failures_total; a SIGHUP during a reload runs once that one ends). With
// --watch-checkpoint-s N > 0 a watcher thread polls --checkpoint every N seconds and raises
// SIGHUP itself when it names another checkpoint (`cellflux-tool promote` flipping
// MODELS_DIR/current; server/checkpoint_watcher.h). Exit 1 when start-up fails.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/torch/runtime.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "server/checkpoint_watcher.h"
#include "server/model_backend.h"
#include "server/server.h"

namespace {

// Defaults come from the option structs, so they are written once (there).
const cellflux::server::ServerOptions kServerDefaults;
const cellflux::server::SchedulerOptions& kSchedulerDefaults = kServerDefaults.scheduler;
const cellflux::server::ModelBackendOptions kBackendDefaults;

struct Flags {
  std::string checkpoint;
  std::string listen = kServerDefaults.listen;
  std::string metrics_listen = "0.0.0.0:9464";  // ServerOptions: none (tests); the binary: on
  std::string controls;
  int64_t max_controls = kBackendDefaults.max_controls;
  int max_batch = kSchedulerDefaults.max_batch;
  int max_queue = kSchedulerDefaults.max_queue;
  std::string batching =
      kSchedulerDefaults.mode == cellflux::server::BatchingMode::kStep ? "step" : "request";
  int max_queue_delay_ms =
      static_cast<int>(absl::ToInt64Milliseconds(kSchedulerDefaults.max_queue_delay));
  int batch_turn = kSchedulerDefaults.batch_turn;
  int codec_threads = kSchedulerDefaults.codec_threads;
  bool help_decode_in_flight = kSchedulerDefaults.help_decode_in_flight;
  std::string device = kBackendDefaults.device;
  int threads = 0;
  std::string tls_cert;
  std::string tls_key;
  std::string auth_token_file;
  int drain_grace_s = static_cast<int>(absl::ToInt64Seconds(kServerDefaults.drain_grace));
  int watch_checkpoint_s = 0;
  int structure_cache = kServerDefaults.service.structure_cache.capacity;
};

absl::StatusOr<cellflux::server::ServerOptions> ToOptions(const Flags& f) {
  cellflux::server::ServerOptions o;
  o.listen = f.listen;
  o.metrics_listen = f.metrics_listen;
  o.scheduler.max_batch = f.max_batch;
  o.scheduler.max_queue = f.max_queue;
  if (f.batching == "step") {
    o.scheduler.mode = cellflux::server::BatchingMode::kStep;
  } else if (f.batching == "request") {
    o.scheduler.mode = cellflux::server::BatchingMode::kRequest;
  } else {
    return absl::InvalidArgumentError("--batching must be step or request, got " + f.batching);
  }
  o.scheduler.max_queue_delay = absl::Milliseconds(f.max_queue_delay_ms);
  o.scheduler.batch_turn = f.batch_turn;
  o.scheduler.codec_threads = f.codec_threads;
  o.scheduler.help_decode_in_flight = f.help_decode_in_flight;
  o.tls_cert_file = f.tls_cert;
  o.tls_key_file = f.tls_key;
  o.drain_grace = absl::Seconds(f.drain_grace_s);
  o.service.structure_cache.capacity = f.structure_cache;
  if (!f.auth_token_file.empty()) {
    absl::StatusOr<std::string> token = cellflux::ReadFile(f.auth_token_file);
    if (!token.ok()) return token.status();
    o.service.auth_token = std::string(absl::StripAsciiWhitespace(*token));
    if (o.service.auth_token.empty()) {
      return absl::InvalidArgumentError("--auth-token-file " + f.auth_token_file + " is empty");
    }
  }
  CF_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::shared_ptr<cellflux::server::Backend>> Load(const Flags& f, double* seconds) {
  cellflux::server::ModelBackendOptions o;
  o.checkpoint_dir = f.checkpoint;
  o.controls_dir = f.controls;
  o.max_controls = f.max_controls;
  o.device = f.device;
  const absl::Time start = absl::Now();
  auto backend = cellflux::server::LoadModelBackend(o);
  *seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return backend;
}

int Run(const Flags& flags) {
  absl::StatusOr<c10::Device> device = cellflux::ParseDevice(flags.device);
  if (!device.ok()) {
    CF_LOG(ERROR) << device.status();
    return 1;
  }
  // The model threads (the step loop: the forwards; the codec workers: encoders and decoders)
  // run side by side, so by default they share the cores evenly.
  const unsigned model_threads = 1 + static_cast<unsigned>(std::max(1, flags.codec_threads));
  const int threads =
      flags.threads > 0
          ? flags.threads
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / model_threads));
  cellflux::ConfigureRuntime("cellflux-server", *device, threads);
  absl::StatusOr<cellflux::server::ServerOptions> options = ToOptions(flags);
  if (!options.ok()) {
    CF_LOG(ERROR) << options.status();
    return 1;
  }

  // Signals go to this thread's sigwait only: block them before any other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = cellflux::server::CellFluxServer::Start(*options);
  if (!server.ok()) {
    CF_LOG(ERROR) << server.status();
    return 1;
  }
  double seconds = 0;
  auto backend = Load(flags, &seconds);
  if (!backend.ok()) {
    CF_LOG(ERROR) << "cannot load " << flags.checkpoint << ": " << backend.status();
    (*server)->Shutdown();
    return 1;
  }
  (*server)->SetBackend(*std::move(backend), seconds);

  // The watcher starts from the identity just loaded; a change raises SIGHUP (handled below).
  absl::Notification stop_watching;
  std::thread watcher;
  if (flags.watch_checkpoint_s > 0) {
    CF_LOG(INFO) << "watching " << flags.checkpoint << " every " << flags.watch_checkpoint_s
                 << " s for a new checkpoint";
    watcher = std::thread([&flags, &stop_watching] {
      cellflux::server::CheckpointWatcher watch(flags.checkpoint);
      while (
          !stop_watching.WaitForNotificationWithTimeout(absl::Seconds(flags.watch_checkpoint_s))) {
        if (watch.Poll()) {
          CF_LOG(INFO) << "checkpoint changed: " << watch.last_identity() << "; reloading";
          kill(getpid(), SIGHUP);
        }
      }
    });
  }

  std::thread reloader;
  absl::Mutex reload_mu;
  bool reloading = false;     // a reloader thread is running (guarded by reload_mu)
  bool reload_again = false;  // a SIGHUP arrived while it ran: it loads once more
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      {
        absl::MutexLock lock(&reload_mu);
        if (reloading) {
          CF_LOG(INFO) << "SIGHUP during a reload: reloading again once it ends";
          reload_again = true;
          continue;
        }
        reloading = true;
      }
      if (reloader.joinable()) reloader.join();
      CF_LOG(INFO) << "SIGHUP: reloading " << flags.checkpoint << " in the background";
      reloader = std::thread([&flags, &server, &reload_mu, &reloading, &reload_again] {
        while (true) {
          double s = 0;
          auto fresh = Load(flags, &s);
          if (fresh.ok()) {
            (*server)->SetBackend(*std::move(fresh), s);
          } else {
            CF_LOG(ERROR) << "reload failed, keeping the current model: " << fresh.status();
            (*server)->metrics().ReloadFailed();
          }
          absl::MutexLock lock(&reload_mu);
          if (!reload_again) {
            reloading = false;
            return;
          }
          reload_again = false;
        }
      });
      continue;
    }
    CF_LOG(INFO) << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining";
    break;
  }
  stop_watching.Notify();
  if (watcher.joinable()) watcher.join();
  (*server)->Shutdown();
  if (reloader.joinable()) reloader.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cellflux-server: CellFluxMM predictions over gRPC (cellflux.v1.CellFlux)"};
  app.footer(
      "Signals: SIGHUP reloads --checkpoint in the background and swaps it in atomically (a "
      "failed reload keeps the current model and counts cellflux_reload_failures_total); "
      "SIGTERM/SIGINT drain (health NOT_SERVING, new calls UNAVAILABLE, in-flight calls get "
      "--drain-grace-s) and exit 0.\n"
      "/metrics has no authentication: keep --metrics-listen on an address inside the cluster.");
  Flags f;
  app.add_option("--checkpoint", f.checkpoint, "checkpoint directory to serve (SIGHUP reloads it)")
      ->required();
  app.add_option("--listen", f.listen, "gRPC address")->capture_default_str();
  app.add_option("--metrics-listen", f.metrics_listen,
                 "Prometheus /metrics address (empty = off); unauthenticated, keep it inside the "
                 "cluster")
      ->capture_default_str();
  app.add_option("--controls", f.controls,
                 "prepared data directory whose DMSO wells form the control bank");
  app.add_option("--max-controls", f.max_controls,
                 "load only the first N (plate, well, site) DMSO sites into the bank (0 = all)")
      ->capture_default_str();
  app.add_option("--max-batch", f.max_batch, "samples per velocity forward")->capture_default_str();
  app.add_option("--max-queue", f.max_queue,
                 "queued samples per priority class before RESOURCE_EXHAUSTED (a request for "
                 "more samples than this is INVALID_ARGUMENT)")
      ->capture_default_str();
  app.add_option("--batching", f.batching, "step (continuous) or request (dynamic batching)")
      ->capture_default_str();
  app.add_option("--max-queue-delay-ms", f.max_queue_delay_ms,
                 "request batching: max wait to fill a batch")
      ->capture_default_str();
  app.add_option("--batch-turn", f.batch_turn,
                 "while interactive and batch requests both wait, one of every N admitted "
                 "samples is batch (1 = batch first)")
      ->capture_default_str();
  app.add_option("--codec-threads", f.codec_threads,
                 "codec stage workers (encoders and decoders beside the step loop)")
      ->capture_default_str();
  app.add_option("--help-decode-in-flight", f.help_decode_in_flight,
                 "when the codec stage is behind, the step loop may decode between two forwards "
                 "while rows are in flight (they wait for it); it always may with an empty batch")
      ->capture_default_str();
  app.add_option("--device", f.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  app.add_option("--threads", f.threads,
                 "intra-op CPU threads of each model thread: the step loop and each codec worker "
                 "(0 = the cores shared evenly among them)");
  app.add_option("--tls-cert", f.tls_cert, "PEM certificate chain (TLS on with --tls-key)");
  app.add_option("--tls-key", f.tls_key, "PEM private key");
  app.add_option("--auth-token-file", f.auth_token_file,
                 "file holding the bearer token clients must send (auth on; use with TLS, a "
                 "plaintext port logs a warning)");
  app.add_option("--drain-grace-s", f.drain_grace_s, "seconds in-flight calls get on SIGTERM")
      ->capture_default_str();
  app.add_option("--watch-checkpoint-s", f.watch_checkpoint_s,
                 "poll --checkpoint every N seconds and reload when it names another checkpoint "
                 "(cellflux-tool promote flipping MODELS_DIR/current); 0 = off, reload with SIGHUP")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option(
         "--structure-cache", f.structure_cache,
         "structure models: distinct (SMILES, dose) compounds kept resolved, least recently "
         "used evicted first (each holds one fingerprint row on the device)")
      ->capture_default_str();
  app.set_config("--config", "", "TOML/INI file with the long flag names as keys (flags win)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return Run(f);
}

#include "client/stop_signal.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

namespace cellflux::client {
namespace {

std::atomic<StopSignal*> g_signal{nullptr};

void Handle(int /*signo*/) {
  StopSignal* signal = g_signal.load();
  if (signal == nullptr) return;
  signal->Escalate();
  // Only async-signal-safe calls here: write(2) of a constant message.
  const char* message = signal->level() == 1
                            ? "\nstopping: finishing in-flight predictions (Ctrl-C again to "
                              "abandon them; rerun with the same --out to resume)\n"
                            : "\nabandoning in-flight predictions\n";
  ssize_t ignored = write(STDERR_FILENO, message, std::strlen(message));
  (void)ignored;
}

}  // namespace

void InstallStopSignalHandlers(StopSignal* signal) {
  g_signal.store(signal);
  struct sigaction action {};
  action.sa_handler = Handle;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void RestoreDefaultSignalHandlers() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  g_signal.store(nullptr);
}

}  // namespace cellflux::client

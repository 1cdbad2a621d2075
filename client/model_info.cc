#include "client/model_info.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace cellflux::client {

bool SleepUnlessStopped(double seconds, const StopSignal* stop) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  // Slices of ≤ 50 ms keep Ctrl-C responsive; the loop ends at `end` at the latest.
  while (true) {
    if (stop != nullptr && stop->stop_requested()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(end - now, std::chrono::milliseconds(50)));
  }
}

absl::StatusOr<cellflux::v1::GetModelInfoResponse> FetchModelInfo(const Connection& connection,
                                                                  const RetryPolicy& retry,
                                                                  double deadline_seconds,
                                                                  const StopSignal* stop) {
  absl::BitGen rng;
  absl::Status last;
  for (int attempt = 0; attempt <= retry.max_retries; ++attempt) {
    if (attempt > 0 && !SleepUnlessStopped(BackoffSeconds(retry, attempt - 1, rng), stop)) {
      return absl::CancelledError("stopped while waiting for the server");
    }
    grpc::ClientContext context;
    connection.PrepareContext(&context, deadline_seconds);
    cellflux::v1::GetModelInfoResponse response;
    last = FromGrpcStatus(
        connection.stub()->GetModelInfo(&context, cellflux::v1::GetModelInfoRequest(), &response));
    if (last.ok()) return response;
    if (!IsRetryable(last.code())) break;
  }
  return absl::Status(last.code(),
                      absl::StrCat("GetModelInfo on ", connection.target(), ": ", last.message()));
}

std::string FormatModelInfo(const cellflux::v1::GetModelInfoResponse& info,
                            const std::string& server) {
  std::string out;
  absl::StrAppend(&out, "server:         ", server, "\n");
  absl::StrAppend(&out, "model:          ", info.model_id(), " (step ", info.step(), ")\n");
  absl::StrAppend(&out, "channels:       ", absl::StrJoin(info.channel_names(), ", "), "\n");
  absl::StrAppend(&out, "image size:     ", info.image_size(), " x ", info.image_size(), "\n");
  std::vector<std::string> first(info.gene_ids().begin(),
                                 info.gene_ids().begin() + std::min(5, info.gene_ids_size()));
  absl::StrAppend(&out, "genes:          ", info.gene_ids_size());
  if (!first.empty()) {
    absl::StrAppend(&out, " (", absl::StrJoin(first, ", "), info.gene_ids_size() > 5 ? ", …" : "",
                    ")");
  } else {
    absl::StrAppend(&out, " (image-only model)");
  }
  absl::StrAppend(&out, "\n");
  absl::StrAppend(&out, "perturbations:  ", info.num_perturbations(), "\n");
  // Servers from before structure encoders leave it empty: those models condition on IDs.
  const std::string condition = info.condition().empty() ? "id" : info.condition();
  absl::StrAppend(
      &out, "conditions on:  ", condition,
      condition == "id" ? " (perturbation_id only)\n" : " (perturbation_id or smiles + dose_um)\n");
  absl::StrAppend(&out, "control bank:   ", info.num_controls(),
                  " DMSO sites (plate, well, site)\n");
  absl::StrAppend(&out,
                  absl::StrFormat("defaults:       steps=%d guidance=%g samples=%d\n",
                                  info.defaults().num_steps(), info.defaults().guidance_scale(),
                                  info.defaults().num_samples()));
  absl::StrAppend(&out,
                  absl::StrFormat("limits:         steps<=%d guidance<=%g samples<=%d\n",
                                  info.limits().max_steps(), info.limits().max_guidance_scale(),
                                  info.limits().max_samples()));
  return out;
}

}  // namespace cellflux::client

// cellflux.v1.CellFlux on gRPC's callback API.
//
// Each handler runs on a gRPC thread and never blocks on the model: it authorizes, validates
// (validate.h), hands a PredictTask to the Scheduler and returns a reactor. When the task is done
// a scheduler thread (the step loop or a codec worker) posts the result to a WorkQueue, which
// encodes the images, writes the response, updates metrics, logs one line and finishes the RPC, so
// neither a scheduler thread nor a gRPC thread ever waits for image encoding or for a slow client.
//
// Codes: see proto/cellflux/v1/cellflux.proto. In short: UNAUTHENTICATED (token configured and
// missing/wrong), UNAVAILABLE (no model yet, or draining), INVALID_ARGUMENT / NOT_FOUND
// (validation, or num_samples > max_queue_samples: it could never be queued), RESOURCE_EXHAUSTED
// (queue full), DEADLINE_EXCEEDED (the call's deadline passed, even when gRPC also marked the call
// cancelled) / CANCELLED (the client cancelled; the samples leave the batch at the next step),
// INTERNAL (model failure, or a non-finite sample: logged with the request id and counted in
// cellflux_nonfinite_outputs_total).
//
// One structured log line per request:
//   rpc=Predict id=<request_id> perturbation=<id> samples=N steps=N queue_ms=.. compute_ms=..
//   total_ms=.. code=OK
// (smiles="<SMILES>" instead of perturbation= for a request by structure; logged text is cut to
// 128 characters and C-escaped.)
//
// Requests by structure (PredictRequest.smiles) to a structure model go through the serving
// model's StructureCache (structure_cache.h), made by SetBackend with options.structure_cache;
// each new model gets a new, empty cache (its extra-structure slots are the model's own).
//
// Thread-safety: all public methods are thread-safe. The model is swapped with SetBackend();
// requests validated against the old model finish on it.
#ifndef CELLFLUX_SERVER_SERVICE_H_
#define CELLFLUX_SERVER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cellflux/v1/cellflux.grpc.pb.h"
#include "server/backend.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/structure_cache.h"
#include "server/work_queue.h"

namespace cellflux::server {

struct ServiceOptions {
  // When non-empty, every CellFlux call needs metadata "authorization: Bearer <auth_token>".
  std::string auth_token;
  // Threads that build responses (image encoding) and finish Predict calls; ≥ 1.
  int response_threads = 2;
  // The scheduler's max_queue (samples); a request for more samples can never be queued and gets
  // INVALID_ARGUMENT instead of a retryable RESOURCE_EXHAUSTED. 0 = no such check.
  int max_queue_samples = 0;
  // The structure cache of a structure model (compounds by SMILES; capacity = extra slots).
  StructureCacheOptions structure_cache;
};

class CellFluxService final : public v1::CellFlux::CallbackService {
 public:
  // scheduler and metrics are not owned and must outlive the service; metrics may be null.
  CellFluxService(const ServiceOptions& options, Scheduler* scheduler, ServerMetrics* metrics);
  ~CellFluxService() override;

  // The model new requests use (null = none: UNAVAILABLE), with a new structure cache when the
  // model has a structure encoder (options.structure_cache.capacity must be ≥ 1:
  // ServerOptions::Validate checks it).
  void SetBackend(std::shared_ptr<Backend> backend);
  std::shared_ptr<Backend> backend() const;

  // From now on every call gets UNAVAILABLE ("draining"). Irreversible.
  void StartDraining();
  // Waits until every accepted Predict has been answered (call after Scheduler::Stop).
  void WaitForResponses();
  // Waits, until `deadline` at the latest, for every answered Predict call to be complete on the
  // wire (gRPC's OnDone: status sent). True when none is left.
  bool WaitForCallsDone(absl::Time deadline);

  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* context,
                                    const v1::PredictRequest* request,
                                    v1::PredictResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::GetModelInfoResponse* response) override;
  grpc::ServerUnaryReactor* ListPerturbations(grpc::CallbackServerContext* context,
                                              const v1::ListPerturbationsRequest* request,
                                              v1::ListPerturbationsResponse* response) override;

 private:
  class PredictReactor;

  // The serving model and its structure cache (null for an "id" model).
  struct Serving {
    std::shared_ptr<Backend> backend;
    std::shared_ptr<StructureCache> structures;
  };
  // OK, or UNAUTHENTICATED / UNAVAILABLE; on OK *serving holds the model to use.
  absl::Status Admit(grpc::CallbackServerContext* context, Serving* serving);
  // Finishes a unary call with `status` right away (counts and logs it).
  grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const char* method,
                                      absl::Time start, const absl::Status& status);
  void Record(const char* method, absl::Time start, const grpc::Status& status);

  const ServiceOptions options_;
  Scheduler* const scheduler_;
  ServerMetrics* const metrics_;
  std::atomic<bool> draining_{false};

  mutable absl::Mutex mu_;
  Serving serving_ ABSL_GUARDED_BY(mu_);

  WorkQueue responses_;

  absl::Mutex calls_mu_;
  int64_t open_calls_ ABSL_GUARDED_BY(calls_mu_) = 0;  // Predict reactors not yet OnDone
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_SERVICE_H_

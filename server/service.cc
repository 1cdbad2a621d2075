#include "server/service.h"

#include <cmath>
#include <functional>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/chem/chem.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "server/grpc_status.h"
#include "server/image_codec.h"
#include "server/validate.h"

namespace cellflux::server {
namespace {

uint64_t RandomSeed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

// Compares without an early exit, so response time does not leak how much of a token matched.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// For the log line: bounded and printable.
std::string LogSafe(const std::string& s) { return absl::CEscape(s.substr(0, 128)); }

// `perturbation="<id>"`, or `smiles="<SMILES>"` for a request by structure (both when a
// malformed request set both).
std::string Subject(const std::string& perturbation_id, const std::string& smiles) {
  if (smiles.empty()) return absl::StrFormat("perturbation=\"%s\"", LogSafe(perturbation_id));
  if (perturbation_id.empty()) return absl::StrFormat("smiles=\"%s\"", LogSafe(smiles));
  return absl::StrFormat("perturbation=\"%s\" smiles=\"%s\"", LogSafe(perturbation_id),
                         LogSafe(smiles));
}
std::string Subject(const ValidatedPredict& r) { return Subject(r.perturbation_id, r.smiles); }

double Ms(double seconds) { return 1000.0 * seconds; }

// gRPC reports an expired deadline to the server as a cancellation (OnCancel), so the scheduler
// sees CANCELLED either way: it was the deadline when it has passed. The slack covers gRPC's timer
// firing a hair before the realtime deadline it was converted from.
absl::Status DeadlineIfPassed(const absl::Status& status, absl::Time deadline) {
  if (status.code() == absl::StatusCode::kCancelled &&
      absl::Now() + absl::Milliseconds(50) >= deadline) {
    return absl::DeadlineExceededError("deadline exceeded before all samples were generated");
  }
  return status;
}

// The last line of defence behind validation: a NaN/Inf sample is never returned as OK.
absl::Status CheckFinite(const PredictResult& result) {
  for (size_t k = 0; k < result.samples.size(); ++k) {
    const SampleOutput& s = result.samples[k];
    bool finite = s.finite;
    for (float v : s.expression) finite = finite && std::isfinite(v);
    if (!finite) {
      return absl::InternalError(absl::StrFormat(
          "the model produced non-finite values (NaN/Inf) for sample %d; nothing is returned "
          "(the server logged it with this request's id)",
          k));
    }
  }
  return absl::OkStatus();
}

// The one image → proto conversion: `pixels` (the model's channels in order, image_size² each)
// into `image`, each channel encoded as `encoding`. `what` names the image in the error.
absl::Status ImageToProto(const std::vector<uint16_t>& pixels, const ModelInfo& info,
                          v1::Encoding encoding, const std::string& what, v1::Image* image) {
  const int s = info.image_size;
  const size_t plane = static_cast<size_t>(s) * s;
  if (pixels.size() != plane * info.channel_names.size()) {
    return absl::InternalError(absl::StrFormat("%s has %d pixels, expected %d", what, pixels.size(),
                                               plane * info.channel_names.size()));
  }
  image->set_height(s);
  image->set_width(s);
  image->set_bit_depth(12);  // outputs are in the model's 12-bit scale
  for (size_t c = 0; c < info.channel_names.size(); ++c) {
    CF_ASSIGN_OR_RETURN(std::string bytes,
                        EncodeChannel(pixels.data() + c * plane, s, s, encoding));
    v1::Channel* ch = image->add_channels();
    ch->set_name(info.channel_names[c]);
    ch->set_encoding(encoding);
    ch->set_data(std::move(bytes));
  }
  return absl::OkStatus();
}

absl::Status BuildResponse(const PredictResult& result, const ValidatedPredict& request,
                           const ModelInfo& info, v1::PredictResponse* response) {
  for (size_t k = 0; k < result.samples.size(); ++k) {
    const SampleOutput& sample = result.samples[k];
    v1::Prediction* p = response->add_predictions();
    CF_RETURN_IF_ERROR(ImageToProto(sample.pixels, info, request.output_encoding,
                                    absl::StrCat("sample ", k), p->mutable_image()));
    p->mutable_expression()->Add(sample.expression.begin(), sample.expression.end());
    p->set_seed(request.seed + k);
  }
  response->set_model_id(info.model_id);
  if (request.structure != nullptr) {
    const ResolvedStructure& s = *request.structure;
    v1::StructureMatch* m = response->mutable_structure();
    m->set_canonical_smiles(s.canonical_smiles);
    m->set_in_vocabulary(s.in_vocabulary);
    m->set_nearest_perturbation_id(s.nearest_id);
    m->set_nearest_similarity(s.nearest_similarity);
    m->set_dose_um(s.dose_um);
  }
  return absl::OkStatus();
}

// options.return_control: the control the flow started from, in the response's encoding.
absl::Status AddControl(const Backend& backend, const ValidatedPredict& request,
                        v1::PredictResponse* response) {
  const ModelInfo& info = backend.info();
  const ControlInput* control = request.control.get();
  ControlInput bank;
  if (control->bank_key) {
    CF_ASSIGN_OR_RETURN(bank, backend.BankControlInput(*control->bank_key));
    control = &bank;
  }
  CF_RETURN_IF_ERROR(ImageToProto(control->pixels, info, request.output_encoding, "control",
                                  response->mutable_control_image()));
  response->mutable_control_expression()->Add(control->expression.begin(),
                                              control->expression.end());
  return absl::OkStatus();
}

}  // namespace

class CellFluxService::PredictReactor final : public grpc::ServerUnaryReactor {
 public:
  // `on_done` runs once when gRPC is done with the call.
  explicit PredictReactor(std::function<void()> on_done) : on_done_(std::move(on_done)) {}
  const std::shared_ptr<std::atomic<bool>>& cancelled() const { return cancelled_; }
  // gRPC calls this on client cancellation or an expired deadline; the scheduler drops the
  // samples at its next step and the done callback finishes the call.
  void OnCancel() override { cancelled_->store(true); }
  void OnDone() override {
    on_done_();
    delete this;
  }

 private:
  std::function<void()> on_done_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

CellFluxService::CellFluxService(const ServiceOptions& options, Scheduler* scheduler,
                                 ServerMetrics* metrics)
    : options_(options),
      scheduler_(scheduler),
      metrics_(metrics),
      responses_(options.response_threads, "cf-respond") {}

CellFluxService::~CellFluxService() = default;

void CellFluxService::SetBackend(std::shared_ptr<Backend> backend) {
  Serving serving;
  if (backend != nullptr && backend->info().uses_structure()) {
    const int bits = backend->info().fingerprint_bits;
    serving.structures = std::make_shared<StructureCache>(
        options_.structure_cache, &backend->info(),
        [bits](const std::string& smiles) {
          return chem::ParseStructure(smiles, chem::kDefaultRadius, bits);
        },
        // The cache keeps the backend (and so its ModelInfo) alive.
        [backend](int slot, const std::vector<int>& fingerprint, double dose_um) {
          return backend->RegisterStructure(slot, fingerprint, dose_um);
        },
        metrics_);
  }
  serving.backend = std::move(backend);
  absl::MutexLock lock(&mu_);
  serving_ = std::move(serving);
}

std::shared_ptr<Backend> CellFluxService::backend() const {
  absl::MutexLock lock(&mu_);
  return serving_.backend;
}

void CellFluxService::StartDraining() { draining_.store(true); }

void CellFluxService::WaitForResponses() { responses_.Drain(); }

bool CellFluxService::WaitForCallsDone(absl::Time deadline) {
  absl::MutexLock lock(&calls_mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) { return open_calls_ == 0; };
  return calls_mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
}

absl::Status CellFluxService::Admit(grpc::CallbackServerContext* context, Serving* serving) {
  if (!options_.auth_token.empty()) {
    const auto& md = context->client_metadata();
    auto it = md.find("authorization");
    const std::string expected = "Bearer " + options_.auth_token;
    if (it == md.end() ||
        !ConstantTimeEquals(absl::string_view(it->second.data(), it->second.size()), expected)) {
      return absl::UnauthenticatedError(
          "this server needs metadata \"authorization: Bearer <token>\"");
    }
  }
  if (draining_.load()) {
    return absl::UnavailableError("server is shutting down; retry on another replica");
  }
  {
    absl::MutexLock lock(&mu_);
    *serving = serving_;
  }
  if (serving->backend == nullptr) {
    return absl::UnavailableError("no model loaded yet; retry shortly");
  }
  return absl::OkStatus();
}

void CellFluxService::Record(const char* method, absl::Time start, const grpc::Status& status) {
  if (metrics_ != nullptr) {
    metrics_->RequestDone(method, GrpcCodeName(status.error_code()),
                          absl::ToDoubleSeconds(absl::Now() - start));
  }
}

grpc::ServerUnaryReactor* CellFluxService::FinishNow(grpc::CallbackServerContext* context,
                                                     const char* method, absl::Time start,
                                                     const absl::Status& status) {
  grpc::Status wire = ToGrpcStatus(status);
  Record(method, start, wire);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(wire);
  return reactor;
}

grpc::ServerUnaryReactor* CellFluxService::Predict(grpc::CallbackServerContext* context,
                                                   const v1::PredictRequest* request,
                                                   v1::PredictResponse* response) {
  const absl::Time start = absl::Now();
  Serving serving;
  absl::Status status = Admit(context, &serving);
  if (!status.ok()) return FinishNow(context, "Predict", start, status);
  std::shared_ptr<Backend> backend = std::move(serving.backend);
  absl::StatusOr<ValidatedPredict> valid =
      ValidatePredict(*request, backend->info(), RandomSeed(), serving.structures.get());
  if (!valid.ok()) {
    CF_LOG(INFO) << absl::StrFormat("rpc=Predict id=\"%s\" %s code=%s msg=\"%s\"",
                                    LogSafe(request->request_id()),
                                    Subject(request->perturbation_id(), request->smiles()),
                                    GrpcCodeName(ToGrpcStatus(valid.status()).error_code()),
                                    LogSafe(std::string(valid.status().message())));
    return FinishNow(context, "Predict", start, valid.status());
  }
  if (options_.max_queue_samples > 0 && valid->num_samples > options_.max_queue_samples) {
    valid->structure.reset();  // unpinned before the client hears back
    return FinishNow(
        context, "Predict", start,
        absl::InvalidArgumentError(absl::StrFormat(
            "options.num_samples %d can never be queued on this server (its queue "
            "holds %d samples, --max-queue); ask for at most %d per request",
            valid->num_samples, options_.max_queue_samples, options_.max_queue_samples)));
  }

  {
    absl::MutexLock lock(&calls_mu_);
    ++open_calls_;
  }
  auto* reactor = new PredictReactor([this] {
    absl::MutexLock lock(&calls_mu_);
    --open_calls_;
  });
  auto task = std::make_unique<PredictTask>();
  task->backend = backend;
  task->control = valid->control;
  task->label = valid->label;
  task->num_steps = valid->num_steps;
  task->guidance = valid->guidance;
  task->seed = valid->seed;
  task->num_samples = valid->num_samples;
  task->priority = valid->priority == v1::BATCH ? Priority::kBatch : Priority::kInteractive;
  task->sampler = valid->sampler == v1::HEUN ? SamplerKind::kHeun : SamplerKind::kEuler;
  task->deadline = absl::FromChrono(context->deadline());
  task->cancelled = reactor->cancelled();
  // Not const: the response job drops request_info->structure (the structure cache pin) before
  // it finishes the call, so a client's next request never finds its own finished one still
  // holding a slot. Nothing else touches it after Schedule.
  auto request_info = std::make_shared<ValidatedPredict>(*std::move(valid));
  const std::string request_id = request->request_id();
  const absl::Time deadline = task->deadline;
  task->done = [this, reactor, response, backend, request_info, request_id, start,
                deadline](absl::StatusOr<PredictResult> result) {
    // Scheduler thread: hand off at once, encode and finish elsewhere.
    auto shared = std::make_shared<absl::StatusOr<PredictResult>>(std::move(result));
    responses_.Submit(
        [this, reactor, response, backend, request_info, request_id, start, deadline, shared] {
          absl::Status status = DeadlineIfPassed(shared->status(), deadline);
          double queue_s = 0, compute_s = 0, decode_s = 0;
          if (status.ok()) {
            queue_s = (*shared)->queue_seconds;
            compute_s = (*shared)->compute_seconds;
            decode_s = (*shared)->decode_seconds;
            status = CheckFinite(**shared);
            if (!status.ok()) {
              CF_LOG(ERROR) << absl::StrFormat("rpc=Predict id=\"%s\" %s non-finite: %s",
                                               LogSafe(request_id), Subject(*request_info),
                                               status.message());
              if (metrics_ != nullptr) metrics_->NonFiniteOutput();
            }
          }
          if (status.ok()) {
            status = BuildResponse(**shared, *request_info, backend->info(), response);
          }
          if (status.ok() && request_info->return_control) {
            status = AddControl(*backend, *request_info, response);
          }
          const double total_s = absl::ToDoubleSeconds(absl::Now() - start);
          if (status.ok()) {
            v1::Timing* timing = response->mutable_timing();
            timing->set_queue_seconds(queue_s);
            timing->set_compute_seconds(compute_s);
            timing->set_total_seconds(total_s);
          } else {
            response->Clear();
          }
          const grpc::Status wire = ToGrpcStatus(status);
          CF_LOG(INFO) << absl::StrFormat(
              "rpc=Predict id=\"%s\" %s samples=%d steps=%d guidance=%g "
              "queue_ms=%.1f compute_ms=%.1f decode_ms=%.1f total_ms=%.1f code=%s",
              LogSafe(request_id), Subject(*request_info), request_info->num_samples,
              request_info->num_steps, request_info->guidance, Ms(queue_s), Ms(compute_s),
              Ms(decode_s), Ms(total_s), GrpcCodeName(wire.error_code()));
          Record("Predict", start, wire);
          request_info->structure.reset();
          reactor->Finish(wire);  // last touch of the reactor and the response
        });
  };
  status = scheduler_->Schedule(&task);
  if (!status.ok()) {
    const grpc::Status wire = ToGrpcStatus(status);
    CF_LOG(INFO) << absl::StrFormat("rpc=Predict id=\"%s\" %s samples=%d code=%s",
                                    LogSafe(request_id), Subject(*request_info),
                                    request_info->num_samples, GrpcCodeName(wire.error_code()));
    Record("Predict", start, wire);
    request_info->structure.reset();
    reactor->Finish(wire);
  }
  return reactor;
}

grpc::ServerUnaryReactor* CellFluxService::GetModelInfo(grpc::CallbackServerContext* context,
                                                        const v1::GetModelInfoRequest*,
                                                        v1::GetModelInfoResponse* response) {
  const absl::Time start = absl::Now();
  Serving serving;
  if (absl::Status s = Admit(context, &serving); !s.ok()) {
    return FinishNow(context, "GetModelInfo", start, s);
  }
  const ModelInfo& info = serving.backend->info();
  response->set_model_id(info.model_id);
  response->set_step(info.step);
  for (const std::string& c : info.channel_names) response->add_channel_names(c);
  response->set_image_size(info.image_size);
  for (const std::string& g : info.gene_ids) response->add_gene_ids(g);
  response->set_num_perturbations(static_cast<int32_t>(info.perturbations.size()));
  response->mutable_defaults()->set_num_steps(info.sampling.num_steps);
  response->mutable_defaults()->set_guidance_scale(info.sampling.guidance_scale);
  response->mutable_defaults()->set_num_samples(info.sampling.num_samples);
  response->mutable_limits()->set_max_steps(info.sampling.max_steps);
  response->mutable_limits()->set_max_samples(info.sampling.max_samples);
  response->mutable_limits()->set_max_guidance_scale(info.sampling.max_guidance_scale);
  response->set_num_controls(static_cast<int32_t>(info.controls.size()));
  response->set_condition(info.condition);
  return FinishNow(context, "GetModelInfo", start, absl::OkStatus());
}

grpc::ServerUnaryReactor* CellFluxService::ListPerturbations(
    grpc::CallbackServerContext* context, const v1::ListPerturbationsRequest* request,
    v1::ListPerturbationsResponse* response) {
  const absl::Time start = absl::Now();
  Serving serving;
  if (absl::Status s = Admit(context, &serving); !s.ok()) {
    return FinishNow(context, "ListPerturbations", start, s);
  }
  const ModelInfo& info = serving.backend->info();
  absl::StatusOr<Page> page = ValidatePageRequest(*request, info);
  if (!page.ok()) return FinishNow(context, "ListPerturbations", start, page.status());
  for (int64_t i = page->offset; i < page->offset + page->size; ++i) {
    const PerturbationEntry& e = info.perturbations[i];
    v1::Perturbation* p = response->add_perturbations();
    p->set_id(e.id);
    p->set_dose(e.dose);
    p->set_name(e.name);
  }
  const int64_t next = page->offset + page->size;
  if (next < static_cast<int64_t>(info.perturbations.size())) {
    response->set_next_page_token(MakePageToken(info, next));
  }
  response->set_total_size(static_cast<int32_t>(info.perturbations.size()));
  return FinishNow(context, "ListPerturbations", start, absl::OkStatus());
}

}  // namespace cellflux::server

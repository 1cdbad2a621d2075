// An in-process fake of the cellflux.v1.CellFlux service for client tests.
//
// Deterministic: a prediction's pixels and expression are pure functions of (perturbation id,
// seed, sample, channel / gene), and of the control's expression when one is sent, so tests can
// recompute what a file must hold. Knobs: an id that is INVALID_ARGUMENT ("unknown
// perturbation"), UNAVAILABLE for the first `unavailable_first` calls, an optional required token,
// and a hook run after every successful Predict (tests use it to stop a screen after k rows).
// Every Predict is counted, per request_id too. Listens on 127.0.0.1 with an ephemeral port.
#ifndef CELLFLUX_TESTS_CLIENT_FAKE_CELLFLUX_SERVICE_H_
#define CELLFLUX_TESTS_CLIENT_FAKE_CELLFLUX_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cellflux/v1/cellflux.grpc.pb.h"
#include "common/data/landmark_genes.h"

namespace cellflux::client::testing {

inline uint32_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

inline uint64_t HashString(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// An n × n RAW_U16_LE image of the five channels, pixel(c, i) for channel c, pixel index i.
template <typename PixelFn>
void FillImage(cellflux::v1::Image* image, int n, PixelFn pixel) {
  image->set_height(n);
  image->set_width(n);
  int c = 0;
  for (const char* name : {"DNA", "RNA", "ER", "AGP", "Mito"}) {
    auto* channel = image->add_channels();
    channel->set_name(name);
    channel->set_encoding(cellflux::v1::RAW_U16_LE);
    std::string bytes(static_cast<size_t>(n) * n * 2, '\0');
    for (int i = 0; i < n * n; ++i) {
      const uint16_t v = pixel(c, i);
      bytes[2 * i] = static_cast<char>(v & 0xff);
      bytes[2 * i + 1] = static_cast<char>(v >> 8);
    }
    channel->set_data(std::move(bytes));
    ++c;
  }
}

struct FakeOptions {
  int image_size = 24;
  int num_genes = 978;  // the first num_genes L1000 landmark probes, in the fixture's order
  std::string model_id = "fake-model-v1";
  std::string bad_perturbation = "BRD-BAD00000-000-00-0";
  int unavailable_first = 0;   // the first k Predict calls answer UNAVAILABLE
  std::string required_token;  // non-empty: "authorization: Bearer <token>" required
};

class FakeCellFlux final : public cellflux::v1::CellFlux::Service {
 public:
  explicit FakeCellFlux(FakeOptions options) : options_(std::move(options)) {
    for (int g = 0; g < options_.num_genes; ++g) gene_ids_.push_back(LandmarkGenes()[g].probe_id);
    absl::MutexLock lock(&mu_);
    unavailable_left_ = options_.unavailable_first;
  }

  // Expression value the fake generates for gene g (before adding the control's value).
  static float Effect(const std::string& perturbation, uint64_t seed, int gene) {
    return static_cast<float>(Mix(HashString(perturbation) * 31 + seed * 7 + gene) % 2001) /
               1000.0f -
           1.0f;
  }
  static uint16_t Pixel(const std::string& perturbation, uint64_t seed, int channel, int i) {
    return static_cast<uint16_t>(Mix(HashString(perturbation) + seed * 131 + channel * 7919 + i) %
                                 4096);
  }

  const std::vector<std::string>& gene_ids() const { return gene_ids_; }

  void set_on_success(std::function<void(int64_t successes)> hook) {
    absl::MutexLock lock(&mu_);
    on_success_ = std::move(hook);
  }
  void set_unavailable_first(int k) {
    absl::MutexLock lock(&mu_);
    unavailable_left_ = k;
  }
  int64_t calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  int64_t calls_for(const std::string& request_id) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_by_request_.find(request_id);
    return it == calls_by_request_.end() ? 0 : it->second;
  }
  int64_t successes_for(const std::string& request_id) const {
    absl::MutexLock lock(&mu_);
    auto it = successes_by_request_.find(request_id);
    return it == successes_by_request_.end() ? 0 : it->second;
  }
  cellflux::v1::PredictRequest last_request() const {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }
  // Every Predict request in arrival order (rows of a screen arrive in any order).
  std::vector<cellflux::v1::PredictRequest> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

  grpc::Status GetModelInfo(grpc::ServerContext* context, const cellflux::v1::GetModelInfoRequest*,
                            cellflux::v1::GetModelInfoResponse* response) override {
    if (grpc::Status auth = CheckToken(context); !auth.ok()) return auth;
    response->set_model_id(options_.model_id);
    response->set_step(1234);
    for (const char* name : {"DNA", "RNA", "ER", "AGP", "Mito"}) response->add_channel_names(name);
    response->set_image_size(options_.image_size);
    for (const auto& gene : gene_ids_) response->add_gene_ids(gene);
    response->set_num_perturbations(21);
    response->set_num_controls(3);
    response->mutable_defaults()->set_num_steps(50);
    response->mutable_defaults()->set_guidance_scale(1.5);
    response->mutable_defaults()->set_num_samples(1);
    response->mutable_limits()->set_max_steps(200);
    response->mutable_limits()->set_max_samples(8);
    response->mutable_limits()->set_max_guidance_scale(10);
    return grpc::Status::OK;
  }

  grpc::Status Predict(grpc::ServerContext* context, const cellflux::v1::PredictRequest* request,
                       cellflux::v1::PredictResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      ++calls_by_request_[request->request_id()];
      last_request_ = *request;
      requests_.push_back(*request);
      if (unavailable_left_ > 0) {
        --unavailable_left_;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: warming up");
      }
    }
    if (grpc::Status auth = CheckToken(context); !auth.ok()) return auth;
    if (request->perturbation_id() == options_.bad_perturbation) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("perturbation_id: unknown perturbation '",
                                       request->perturbation_id(), "' (not in the vocabulary)"));
    }
    std::vector<float> control(gene_ids_.size(), 0.0f);
    if (request->has_data()) {
      const auto& image = request->data().image();
      if (image.channels_size() != 5 || image.height() < options_.image_size ||
          image.width() < options_.image_size) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "control.data.image: bad shape");
      }
      for (const auto& channel : image.channels()) {
        if (channel.data().size() != static_cast<size_t>(image.height()) * image.width() * 2) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("channel ", channel.name(), ": byte count"));
        }
      }
      const auto& expression = request->data().expression();
      if (expression.values_size() != static_cast<int>(gene_ids_.size())) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("control.data.expression: ", expression.values_size(),
                                         " values, expected ", gene_ids_.size()));
      }
      for (int g = 0; g < expression.values_size(); ++g) control[g] = expression.values(g);
    } else if (!request->has_ref()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "control: not set");
    }
    if (!request->smiles().empty()) {
      // Toy structure answer: the canonical SMILES is the upper-cased SMILES; "C" is in the
      // vocabulary, anything else is 0.5 away from BRD-NEAR.
      auto* s = response->mutable_structure();
      s->set_canonical_smiles(absl::AsciiStrToUpper(request->smiles()));
      s->set_in_vocabulary(s->canonical_smiles() == "C");
      s->set_nearest_perturbation_id(s->in_vocabulary() ? "BRD-C" : "BRD-NEAR");
      s->set_nearest_similarity(s->in_vocabulary() ? 1.0 : 0.5);
      s->set_dose_um(request->dose_um());
    }
    const int samples = request->options().has_num_samples() ? request->options().num_samples() : 1;
    const uint64_t seed = request->options().has_seed() ? request->options().seed() : 777;
    const int n = options_.image_size;
    for (int k = 0; k < samples; ++k) {
      auto* prediction = response->add_predictions();
      prediction->set_seed(seed + k);
      FillImage(prediction->mutable_image(), n, [&](int c, int i) {
        // With a control image of the model's size, "perturb" it (a per-channel gain) so the
        // output looks like cells; otherwise deterministic noise.
        if (request->has_data() && request->data().image().height() == n &&
            request->data().image().width() == n &&
            request->data().image().channels(c).encoding() == cellflux::v1::RAW_U16_LE) {
          const std::string& bytes = request->data().image().channels(c).data();
          const int control =
              static_cast<uint8_t>(bytes[2 * i]) | (static_cast<uint8_t>(bytes[2 * i + 1]) << 8);
          const double gain =
              0.6 + (Mix(HashString(request->perturbation_id()) + c + k) % 800) / 1000.0;
          return static_cast<uint16_t>(std::min(4095.0, control * gain));
        }
        return Pixel(request->perturbation_id(), seed + k, c, i);
      });
      for (size_t g = 0; g < gene_ids_.size(); ++g) {
        prediction->add_expression(
            control[g] + Effect(request->perturbation_id(), seed + k, static_cast<int>(g)));
      }
    }
    if (request->has_ref() && request->options().return_control()) {  // a bank well's crop
      FillImage(response->mutable_control_image(), n,
                [&](int c, int i) { return Pixel(request->ref().well(), 0, c, i); });
      for (size_t g = 0; g < gene_ids_.size(); ++g) response->add_control_expression(0.5f);
    }
    response->set_model_id(options_.model_id);
    response->mutable_timing()->set_total_seconds(0.001);
    std::function<void(int64_t)> hook;
    int64_t successes = 0;
    {
      absl::MutexLock lock(&mu_);
      ++successes_by_request_[request->request_id()];
      successes = ++successes_;
      hook = on_success_;
    }
    if (hook) hook(successes);
    return grpc::Status::OK;
  }

  grpc::Status ListPerturbations(grpc::ServerContext*,
                                 const cellflux::v1::ListPerturbationsRequest*,
                                 cellflux::v1::ListPerturbationsResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "fake");
  }

 private:
  grpc::Status CheckToken(grpc::ServerContext* context) const {
    if (options_.required_token.empty()) return grpc::Status::OK;
    auto it = context->client_metadata().find("authorization");
    if (it == context->client_metadata().end() ||
        std::string(it->second.data(), it->second.size()) !=
            absl::StrCat("Bearer ", options_.required_token)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token");
    }
    return grpc::Status::OK;
  }

  const FakeOptions options_;
  std::vector<std::string> gene_ids_;
  mutable absl::Mutex mu_;
  int unavailable_left_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t successes_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> calls_by_request_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> successes_by_request_ ABSL_GUARDED_BY(mu_);
  cellflux::v1::PredictRequest last_request_ ABSL_GUARDED_BY(mu_);
  std::vector<cellflux::v1::PredictRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::function<void(int64_t)> on_success_ ABSL_GUARDED_BY(mu_);
};

// The fake on 127.0.0.1:<ephemeral port>.
class FakeServer {
 public:
  explicit FakeServer(FakeOptions options = {}) : service_(std::move(options)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  bool ok() const { return server_ != nullptr && port_ > 0; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  FakeCellFlux& service() { return service_; }

 private:
  FakeCellFlux service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace cellflux::client::testing

#endif  // CELLFLUX_TESTS_CLIENT_FAKE_CELLFLUX_SERVICE_H_

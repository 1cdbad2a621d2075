// A tiny deterministic Backend for server tests: no network, exact arithmetic per row.
//
// Latent of a sample = image [1, C, S, S] (pixels / 4095 + 0.01·ε) and gene [1, G]
// (expression + 0.01·ε'), ε from a CPU generator seeded by the row's seed. The velocity is
//   v = α·(0.1·(label+1) − 0.05·z + t) + (1 − α)·(−0.05·z + t)
// computed row by row, so a row's bits never depend on its neighbours. Decode maps the image
// back to 12-bit pixels and returns the gene part as the expression.
//
// Hooks for tests: counters of calls and rows, gates that Step and Decode wait on (to hold the
// step loop or a codec worker inside the "model" while a test fills the queue), and error
// injection.
//
// Contract checker: every call checks backend.h's concurrency contract (Step only on "cf-batch"
// and never two at once; Encode/Decode only on "cf-codec" or "cf-batch", at most
// codec_threads + 1 at once and at most codec_threads beside a Step; HandOffForDecode only on
// "cf-batch"; no Decode of a Step's output before a HandOffForDecode after that Step; no call after
// MarkStopped()). A breach is recorded, not thrown; tests assert violations() is empty.
#ifndef CELLFLUX_TESTS_SERVER_FAKE_BACKEND_H_
#define CELLFLUX_TESTS_SERVER_FAKE_BACKEND_H_

#include <ATen/CPUGeneratorImpl.h>
#include <pthread.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/chem/chem.h"
#include "server/backend.h"

namespace cellflux::server::testing {

inline ModelInfo FakeModelInfo(int image_size = 8, int num_genes = 4) {
  ModelInfo info;
  info.model_id = "fake-model";
  info.step = 1234;
  info.channel_names = {"DNA", "RNA", "ER", "AGP", "Mito"};
  info.image_size = image_size;
  for (int g = 0; g < num_genes; ++g) info.gene_ids.push_back("gene_" + std::to_string(g) + "_at");
  for (int p = 0; p < 20; ++p) {
    info.perturbations.push_back(
        {"BRD-K" + std::to_string(10000000 + p), 1.0 + p, "cmpd" + std::to_string(p)});
  }
  info.sampling.num_steps = 5;
  info.sampling.guidance_scale = 1.5;
  info.sampling.num_samples = 1;
  info.sampling.max_steps = 1000000;
  info.sampling.max_samples = 8;
  info.sampling.max_guidance_scale = 10;
  info.controls = {{"P1", "a01", 1}, {"P1", "a01", 2}, {"P2", "b03", 1}};
  info.BuildIndex();
  return info;
}

// FakeModelInfo with a structure encoder: rows 0–2 are real drugs (canonical SMILES and Morgan
// bits from common/chem, 2048 bits), the other rows have no structure.
inline const std::vector<std::string>& FakeVocabularySmiles() {
  static const std::vector<std::string> smiles = {
      "CC(=O)Oc1ccccc1C(=O)O",         // aspirin
      "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",  // caffeine
      "CN(C)C(=N)N=C(N)N",             // metformin
  };
  return smiles;
}
inline ModelInfo FakeStructureModelInfo(const std::string& condition = "structure") {
  ModelInfo info = FakeModelInfo();
  info.condition = condition;
  for (size_t r = 0; r < FakeVocabularySmiles().size(); ++r) {
    absl::StatusOr<chem::Structure> s = chem::ParseStructure(FakeVocabularySmiles()[r]);
    if (!s.ok()) continue;  // the tests that need it fail on the empty canonical SMILES
    info.perturbations[r].canonical_smiles = s->canonical_smiles;
    info.perturbations[r].bits = s->bits;
  }
  return info;
}

class FakeBackend : public Backend {
 public:
  explicit FakeBackend(ModelInfo info = FakeModelInfo()) : info_(std::move(info)) {}

  const ModelInfo& info() const override { return info_; }

  // What DeviceMemoryBytes reports (the metrics test sets it).
  std::atomic<int64_t> device_memory_bytes{0};
  int64_t DeviceMemoryBytes() const override { return device_memory_bytes.load(); }

  absl::StatusOr<JointLatent> Encode(const std::vector<EncodeItem>& items) override {
    CodecCall call(this, "Encode");
    const int c = static_cast<int>(info_.channel_names.size());
    const int s = info_.image_size;
    const int g = static_cast<int>(info_.gene_ids.size());
    std::vector<torch::Tensor> images, genes;
    for (const EncodeItem& item : items) {
      if (fail_encode_) return absl::InternalError("fake encode failure");
      torch::Tensor base_image, base_gene;
      if (item.control->bank_key) {
        const double v = static_cast<double>(item.control->bank_key->site) / 10.0;
        base_image = torch::full({1, c, s, s}, v);
        base_gene = torch::full({1, g}, v);
      } else {
        std::vector<float> px(item.control->pixels.begin(), item.control->pixels.end());
        base_image = torch::tensor(px).view({1, c, s, s}) / 4095.0;
        base_gene = torch::tensor(item.control->expression).view({1, g});
      }
      for (uint64_t seed : item.seeds) {
        at::Generator gen = at::detail::createCPUGenerator(seed);
        images.push_back(base_image + 0.01 * torch::randn({1, c, s, s}, gen));
        genes.push_back(base_gene + 0.01 * torch::randn({1, g}, gen));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      encode_calls_ += 1;
    }
    return JointLatent{torch::cat(images), torch::cat(genes)};
  }

  absl::StatusOr<JointLatent> Step(const StepBatch& batch) override {
    StepCall call(this);
    {
      absl::MutexLock lock(&mu_);
      in_step_ += 1;
      auto may_pass = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return gate_open_ || step_permits_ > 0;
      };
      mu_.Await(absl::Condition(&may_pass));
      if (!gate_open_) step_permits_ -= 1;
      step_calls_ += 1;
      batch_sizes_.push_back(batch.z.image.size(0));
      std::vector<int64_t> labels;
      for (int64_t i = 0; i < batch.labels.size(0); ++i) {
        labels.push_back(batch.labels[i].item<int64_t>());
      }
      step_labels_.push_back(std::move(labels));
    }
    if (fail_step_) return absl::ResourceExhaustedError("fake out of memory");
    const int64_t n = batch.z.image.size(0);
    std::vector<torch::Tensor> images, genes;
    for (int64_t i = 0; i < n; ++i) {
      const double t = batch.t[i].item<float>();
      const double dt = batch.dt[i].item<float>();
      const double a = batch.guidance[i].item<float>();
      const double label = static_cast<double>(batch.labels[i].item<int64_t>());
      torch::Tensor zi = batch.z.image.narrow(0, i, 1);
      torch::Tensor gi = batch.z.gene.narrow(0, i, 1);
      auto velocity = [&](const torch::Tensor& z) {
        torch::Tensor cond = 0.1 * (label + 1) - 0.05 * z + t;
        torch::Tensor uncond = -0.05 * z + t;
        return a * cond + (1 - a) * uncond;
      };
      images.push_back(zi + dt * velocity(zi));
      genes.push_back(gi + dt * velocity(gi));
    }
    JointLatent out{torch::cat(images), torch::cat(genes)};
    absl::MutexLock lock(&mu_);
    not_handed_off_.push_back(out.image.storage().data());
    return out;
  }

  // Every Step output so far counts as handed off (the contract's "Decode after HandOffForDecode").
  absl::Status HandOffForDecode() override {
    absl::MutexLock lock(&mu_);
    if (ThreadName() != "cf-batch") ViolationLocked("HandOffForDecode outside the step loop");
    if (stopped_) ViolationLocked("HandOffForDecode after Stop returned");
    hand_offs_ += 1;
    if (fail_hand_off_) return absl::InternalError("fake hand-off failure");
    not_handed_off_.clear();
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<SampleOutput>> Decode(const JointLatent& z) override {
    CodecCall call(this, "Decode");
    {
      absl::MutexLock lock(&mu_);
      // z is alive, so no later tensor shares its storage: a match is one of the Steps since the
      // last hand-off (a Heun row's final z is the scheduler's own tensor and never matches).
      if (std::find(not_handed_off_.begin(), not_handed_off_.end(), z.image.storage().data()) !=
          not_handed_off_.end()) {
        ViolationLocked("Decode of rows no HandOffForDecode handed off after their Step");
      }
      mu_.Await(absl::Condition(&decode_gate_open_));
      if (hold_next_decode_ && hold_thread_ == ThreadName()) {
        hold_next_decode_ = false;
        decode_held_ = true;
        auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !decode_held_; };
        mu_.Await(absl::Condition(&released));
      }
    }
    std::vector<SampleOutput> out;
    for (int64_t i = 0; i < z.image.size(0); ++i) {
      torch::Tensor px =
          (z.image[i] * 4095.0).round().clamp(0, 4095).to(torch::kInt32).contiguous();
      SampleOutput s;
      const int32_t* p = px.data_ptr<int32_t>();
      s.pixels.assign(p, p + px.numel());
      torch::Tensor e = z.gene[i].contiguous();
      s.expression.assign(e.data_ptr<float>(), e.data_ptr<float>() + e.numel());
      out.push_back(std::move(s));
    }
    absl::MutexLock lock(&mu_);
    decode_calls_ += 1;
    return out;
  }

  // Test hooks.
  void CloseGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = false;
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = true;
  }
  // With the gate closed: lets `n` more Step calls through.
  void AllowSteps(int n) {
    absl::MutexLock lock(&mu_);
    step_permits_ += n;
  }
  // Contract checker: how many codec threads the scheduler runs (default 1), and from when on no
  // call may come (after Scheduler::Stop returned).
  void set_codec_threads(int n) {
    absl::MutexLock lock(&mu_);
    codec_threads_ = n;
  }
  void MarkStopped() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  std::vector<std::string> violations() {
    absl::MutexLock lock(&mu_);
    return violations_;
  }
  // The most Encode/Decode calls seen at once, and beside a Step.
  int max_codec_overlap() {
    absl::MutexLock lock(&mu_);
    return max_codec_overlap_;
  }
  // Decode waits while this gate is closed (to hold a codec worker inside the "model").
  void CloseDecodeGate() {
    absl::MutexLock lock(&mu_);
    decode_gate_open_ = false;
  }
  void OpenDecodeGate() {
    absl::MutexLock lock(&mu_);
    decode_gate_open_ = true;
  }
  // The next Decode call made on the thread named `thread` (the scheduler names its threads
  // cf-batch and cf-codec) waits until ReleaseHeldDecode(); other calls pass.
  // AwaitDecodeHeld() blocks until that call is waiting.
  void HoldNextDecodeOn(const std::string& thread) {
    absl::MutexLock lock(&mu_);
    hold_next_decode_ = true;
    hold_thread_ = thread;
  }
  bool AwaitDecodeHeld(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&decode_held_), timeout);
  }
  void ReleaseHeldDecode() {
    absl::MutexLock lock(&mu_);
    decode_held_ = false;
  }
  // Waits up to `timeout` until Step has returned from `n` calls in total; false if it did not.
  bool AwaitStepCalls(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return step_calls_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  // Blocks until Encode has returned from `n` calls in total (the codec stage encodes queued
  // tasks ahead of admission; tests that count rows per forward wait for it).
  void AwaitEncodeCalls(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return encode_calls_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }
  // Blocks until the step loop has entered Step at least `n` times in total.
  void AwaitInStep(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_step_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }
  void set_fail_encode(bool v) { fail_encode_ = v; }
  void set_fail_step(bool v) { fail_step_ = v; }
  void set_fail_hand_off(bool v) {
    absl::MutexLock lock(&mu_);
    fail_hand_off_ = v;
  }
  int hand_offs() {
    absl::MutexLock lock(&mu_);
    return hand_offs_;
  }
  int step_calls() {
    absl::MutexLock lock(&mu_);
    return step_calls_;
  }
  int encode_calls() {
    absl::MutexLock lock(&mu_);
    return encode_calls_;
  }
  int decode_calls() {
    absl::MutexLock lock(&mu_);
    return decode_calls_;
  }
  std::vector<int64_t> batch_sizes() {
    absl::MutexLock lock(&mu_);
    return batch_sizes_;
  }
  // The labels of the rows of each Step call, in call order.
  // Structure models: records each registration; label = V + 1 + slot, as the real encoder.
  absl::StatusOr<int64_t> RegisterStructure(int64_t slot, const std::vector<int>& bits,
                                            double dose_um) override {
    if (!info_.uses_structure()) return Backend::RegisterStructure(slot, bits, dose_um);
    absl::MutexLock lock(&mu_);
    if (slot < 0 || slot > registered_slots_) {
      violations_.push_back(absl::StrCat("RegisterStructure slot ", slot, " with ",
                                         registered_slots_, " registered"));
    }
    if (slot == registered_slots_) ++registered_slots_;
    registrations_.push_back({slot, dose_um});
    return info_.null_label() + 1 + slot;
  }
  std::vector<std::pair<int64_t, double>> registrations() {
    absl::MutexLock lock(&mu_);
    return registrations_;
  }

  std::vector<std::vector<int64_t>> step_labels() {
    absl::MutexLock lock(&mu_);
    return step_labels_;
  }

 private:
  static std::string ThreadName() {
    char name[16] = {0};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    return name;
  }
  void ViolationLocked(std::string what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    violations_.push_back(absl::StrCat(what, " (on thread \"", ThreadName(), "\")"));
  }
  // RAII: one Encode/Decode call in flight, checked against the contract on entry.
  class CodecCall {
   public:
    CodecCall(FakeBackend* b, const char* what) : b_(b) {
      absl::MutexLock lock(&b_->mu_);
      const std::string thread = ThreadName();
      if (thread != "cf-codec" && thread != "cf-batch") {
        b_->ViolationLocked(absl::StrCat(what, " outside the scheduler's threads"));
      }
      if (b_->stopped_) b_->ViolationLocked(absl::StrCat(what, " after Stop returned"));
      b_->in_codec_now_ += 1;
      b_->max_codec_overlap_ = std::max(b_->max_codec_overlap_, b_->in_codec_now_);
      if (b_->in_codec_now_ > b_->codec_threads_ + 1) {
        b_->ViolationLocked(absl::StrCat(b_->in_codec_now_, " Encode/Decode calls at once"));
      }
      if (b_->in_step_now_ > 0 && b_->in_codec_now_ > b_->codec_threads_) {
        b_->ViolationLocked(
            absl::StrCat(b_->in_codec_now_, " Encode/Decode calls beside a running Step"));
      }
    }
    ~CodecCall() {
      absl::MutexLock lock(&b_->mu_);
      b_->in_codec_now_ -= 1;
    }

   private:
    FakeBackend* b_;
  };
  class StepCall {
   public:
    explicit StepCall(FakeBackend* b) : b_(b) {
      absl::MutexLock lock(&b_->mu_);
      if (ThreadName() != "cf-batch") b_->ViolationLocked("Step outside the step loop");
      if (b_->stopped_) b_->ViolationLocked("Step after Stop returned");
      if (b_->in_step_now_ > 0) b_->ViolationLocked("two Steps at once");
      if (b_->in_codec_now_ > b_->codec_threads_) {
        b_->ViolationLocked(
            absl::StrCat("Step beside ", b_->in_codec_now_, " Encode/Decode calls"));
      }
      b_->in_step_now_ += 1;
    }
    ~StepCall() {
      absl::MutexLock lock(&b_->mu_);
      b_->in_step_now_ -= 1;
    }

   private:
    FakeBackend* b_;
  };

  ModelInfo info_;
  std::atomic<bool> fail_encode_{false};
  std::atomic<bool> fail_step_{false};
  absl::Mutex mu_;
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  int step_permits_ ABSL_GUARDED_BY(mu_) = 0;
  int codec_threads_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int in_step_now_ ABSL_GUARDED_BY(mu_) = 0;
  int in_codec_now_ ABSL_GUARDED_BY(mu_) = 0;
  int max_codec_overlap_ ABSL_GUARDED_BY(mu_) = 0;
  bool fail_hand_off_ ABSL_GUARDED_BY(mu_) = false;
  int hand_offs_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<const void*> not_handed_off_ ABSL_GUARDED_BY(mu_);  // storages of Step outputs
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
  bool decode_gate_open_ ABSL_GUARDED_BY(mu_) = true;
  bool hold_next_decode_ ABSL_GUARDED_BY(mu_) = false;
  std::string hold_thread_ ABSL_GUARDED_BY(mu_);
  bool decode_held_ ABSL_GUARDED_BY(mu_) = false;
  int in_step_ ABSL_GUARDED_BY(mu_) = 0;
  int step_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int encode_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int decode_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> batch_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<int64_t>> step_labels_ ABSL_GUARDED_BY(mu_);
  int64_t registered_slots_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int64_t, double>> registrations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellflux::server::testing

#endif  // CELLFLUX_TESTS_SERVER_FAKE_BACKEND_H_

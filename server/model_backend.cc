#include "server/model_backend.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <utility>
#if defined(CELLFLUX_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "common/chem/chem.h"
#include "common/flow/sampler.h"
#include "common/models/cellflux_model.h"
#include "common/models/normalization.h"
#include "common/torch/runtime.h"
#include "common/torch/tensors.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "server/control_bank.h"
#include "server/device_streams.h"

namespace cellflux::server {
namespace {

ModelInfo InfoFrom(const CheckpointBundle& b) {
  ModelInfo info;
  info.model_id = b.model_id;
  info.step = b.step;
  info.channel_names = b.config.channel_names;
  info.image_size = b.config.image_size;
  if (b.config.sit.gene_latent_dim > 0) {
    for (const GeneEntry& g : b.genes) info.gene_ids.push_back(g.probe_id);
  }
  for (const cellflux::PerturbationEntry& p : b.perturbations) {
    info.perturbations.push_back(
        {p.id, std::isnan(p.dose) ? 0.0 : p.dose, p.name.empty() ? p.smiles : p.name});
  }
  const SamplingConfig& s = b.config.sampling;
  info.sampling.num_steps = s.num_steps;
  info.sampling.guidance_scale = s.guidance_scale;
  info.sampling.num_samples = 1;
  info.sampling.max_steps = s.max_steps;
  info.sampling.max_samples = s.max_samples;
  info.sampling.max_guidance_scale = s.max_guidance;
  info.condition = b.config.sit.condition;
  info.fingerprint_bits = b.config.sit.fingerprint_bits;
  return info;
}

// Structure models: each vocabulary row's canonical SMILES (for matching a smiles request to it)
// and the fingerprint the checkpoint holds for it (structure_embedder.fingerprints, what the model
// was trained with; for the nearest-compound search).
void AddVocabularyStructures(const CheckpointBundle& b, CellFluxModel& model, ModelInfo* info) {
  torch::Tensor fp = model->sit()->structure_embedder->fingerprints.detach().to(torch::kCPU);
  fp = (fp != 0).contiguous();  // [V, B] bool
  const int64_t bits = fp.size(1);
  int with_smiles = 0;
  for (size_t r = 0; r < info->perturbations.size() && static_cast<int64_t>(r) < fp.size(0); ++r) {
    PerturbationEntry& e = info->perturbations[r];
    const bool* row = fp[r].data_ptr<bool>();
    for (int64_t k = 0; k < bits; ++k) {
      if (row[k]) e.bits.push_back(static_cast<int>(k));
    }
    if (b.perturbations[r].smiles.empty()) continue;
    absl::StatusOr<chem::Structure> s = chem::ParseStructure(
        b.perturbations[r].smiles, chem::kDefaultRadius, info->fingerprint_bits);
    if (s.ok()) {
      e.canonical_smiles = s->canonical_smiles;
      ++with_smiles;
    }
  }
  CF_LOG(INFO) << "structure encoder (" << info->condition << "): " << with_smiles << " of "
               << info->perturbations.size() << " vocabulary compounds with a parsable SMILES";
}

class ModelBackend final : public Backend {
 public:
  ModelBackend(ModelInfo info, CellFluxModel model, ImageNormalization norm)
      : info_(std::move(info)),
        model_(std::move(model)),
        norm_(std::move(norm)),
        streams_(model_->device(), model_->device().is_cuda()) {
    info_.BuildIndex();
  }

  const ModelInfo& info() const override { return info_; }

  absl::StatusOr<JointLatent> Encode(const std::vector<EncodeItem>& items) override {
    JointLatent out;
    absl::Status status = TorchCall("encoding controls", [&] {
      DeviceStreams::CodecScope scope(streams_);
      std::vector<torch::Tensor> images, genes;
      for (const EncodeItem& item : items) {
        if (item.control->bank_key) {
          auto it = bank_.find(*item.control->bank_key);
          TORCH_CHECK(it != bank_.end(), "control plate ", item.control->bank_key->plate, " well ",
                      item.control->bank_key->well, " site ", item.control->bank_key->site,
                      " is not in this model's control bank");
          JointLatent z0 =
              model_->DrawSource(it->second.posterior, it->second.gene_latent, item.seeds);
          images.push_back(z0.image);
          if (z0.gene.defined()) genes.push_back(z0.gene);
          continue;
        }
        BankLatent latent = EncodeControl(*item.control);
        JointLatent z0 = model_->DrawSource(latent.posterior, latent.gene_latent, item.seeds);
        images.push_back(z0.image);
        if (z0.gene.defined()) genes.push_back(z0.gene);
      }
      out.image = torch::cat(images, 0);
      if (!genes.empty()) out.gene = torch::cat(genes, 0);
      streams_.HandToStep(scope, {out.image, out.gene});
    });
    if (!status.ok()) return status;
    return out;
  }

  // Encodes every bank entry, one at a time as a request's control is (so a bank reference gives
  // the bits of sending the same site), and publishes the bank's keys in info(). Called once,
  // before the backend is shared.
  absl::Status LoadBank(const ControlBankReader& reader) {
    const size_t n = reader.size();
    const auto start = std::chrono::steady_clock::now();
    size_t next_log = 0;
    for (size_t i = 0; i < n; ++i) {
      CF_ASSIGN_OR_RETURN(BankControl control, reader.Read(i));
      BankLatent latent;
      CF_RETURN_IF_ERROR(TorchCall("encoding the control bank", [&] {
        c10::InferenceMode guard;
        latent = EncodeControl(control.input);
      }));
      bank_.emplace(control.key, std::move(latent));
      const size_t end = i + 1;
      if (end >= next_log || end == n) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        CF_LOG(INFO) << "control bank: encoded " << end << "/" << n << " DMSO sites in " << secs
                     << " s";
        next_log = end + std::max<size_t>(1, n / 10);
      }
    }
    info_.controls = reader.keys();
    info_.BuildIndex();
    return absl::OkStatus();
  }

  // Keeps the reader for BankControl (options.return_control re-reads the well's TIFFs).
  void KeepBankReader(std::shared_ptr<const ControlBankReader> reader) {
    const std::vector<ControlKey> keys = reader->keys();
    for (size_t i = 0; i < keys.size(); ++i) bank_index_.emplace(keys[i], i);
    bank_reader_ = std::move(reader);
  }

  int64_t DeviceMemoryBytes() const override {
#if defined(CELLFLUX_WITH_CUDA)
    const c10::Device d = model_->device();
    if (d.is_cuda()) {
      // DeviceStats and StatType moved namespaces in LibTorch 2.x (c10::CachingDeviceAllocator);
      // getDeviceStats took an int, now a c10::DeviceIndex. Index 0 is StatType::AGGREGATE in both.
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
          static_cast<c10::DeviceIndex>(d.index() < 0 ? 0 : d.index()));
      return stats.allocated_bytes[0].current;
    }
#endif
    return 0;
  }

  absl::StatusOr<int64_t> RegisterStructure(int64_t slot, const std::vector<int>& bits,
                                            double dose_um) override {
    if (!info_.uses_structure()) return Backend::RegisterStructure(slot, bits, dose_um);
    absl::StatusOr<int64_t> label;
    CF_RETURN_IF_ERROR(TorchCall("registering a structure", [&] {
      label = model_->sit()->structure_embedder->SetExtraStructure(slot, bits, dose_um);
    }));
    return label;
  }

  absl::StatusOr<ControlInput> BankControlInput(const ControlKey& key) const override {
    auto it = bank_index_.find(key);
    if (bank_reader_ == nullptr || it == bank_index_.end()) {
      return absl::NotFoundError(
          absl::StrFormat("control plate \"%s\" well \"%s\" site %d is not in the bank", key.plate,
                          key.well, key.site));
    }
    CF_ASSIGN_OR_RETURN(BankControl c, bank_reader_->Read(it->second));
    return std::move(c.input);
  }

  absl::StatusOr<JointLatent> Step(const StepBatch& batch) override {
    JointLatent next;
    absl::Status status = TorchCall("velocity step", [&] {
      const torch::Device d = model_->device();
      torch::Tensor t = batch.t.to(d), dt = batch.dt.to(d);
      JointLatent v = GuidedVelocity(model_->velocity_fn(), batch.z, t, batch.labels.to(d),
                                     batch.guidance.to(d), model_->null_label());
      next = EulerStep(batch.z, v, dt);
    });
    if (!status.ok()) return status;
    return next;
  }

  absl::Status HandOffForDecode() override {
    return TorchCall("handing rows to the decoder's stream", [&] { streams_.HandOff(); });
  }

  // Waits for everything queued on the step (default) stream: the weights and the bank, before
  // the first codec call reads them from a codec stream.
  void SynchronizeStep() { streams_.SynchronizeStep(); }

  // One sample per VAE and gene-decoder call: fixed shapes, so a sample's bits never depend on
  // how many rows finished with it (measured cost on the tiny model: ~6% of offline throughput
  // against one call for 16 samples).
  absl::StatusOr<std::vector<SampleOutput>> Decode(const JointLatent& z) override {
    std::vector<SampleOutput> out;
    absl::Status status = TorchCall("decoding samples", [&] {
      DeviceStreams::CodecScope scope(streams_);
      streams_.WaitForHandOff(scope);
      const int64_t n = z.image.size(0);
      for (int64_t i = 0; i < n; ++i) {
        JointLatent row;
        row.image = z.image.slice(0, i, i + 1);
        if (z.gene.defined()) row.gene = z.gene.slice(0, i, i + 1);
        DecodedSample d = model_->Decode(row);
        // NaN/Inf would leave as black pixels and NaN genes with OK: flag it (service.cc fails
        // the request).
        bool finite = torch::isfinite(d.images).all().item<bool>();
        if (d.expression.defined())
          finite = finite && torch::isfinite(d.expression).all().item<bool>();
        torch::Tensor px =
            DenormalizeImages(d.images, norm_).clamp(0, 65535).to(torch::kInt32).cpu().contiguous();
        SampleOutput s;
        s.finite = finite;
        const int32_t* p = px.data_ptr<int32_t>();
        s.pixels.assign(p, p + px.numel());
        if (d.expression.defined()) {
          torch::Tensor ex = d.expression.to(torch::kFloat32).cpu().contiguous();
          s.expression.assign(ex.data_ptr<float>(), ex.data_ptr<float>() + ex.numel());
        }
        out.push_back(std::move(s));
      }
    });
    if (!status.ok()) return status;
    return out;
  }

 private:
  // What a control contributes to z_0 besides the seeds: its image posterior and gene latent.
  struct BankLatent {
    LatentPosterior posterior;  // mean/std [N, C', h, w] on the device
    torch::Tensor gene_latent;  // [N, Lg] on the device; undefined for image-only models
  };

  // A control (raw pixels [C, S, S] + raw expression) → its latents, alone: one VAE call of C
  // pseudo-RGB images and one gene-encoder row, the same shapes for every control.
  BankLatent EncodeControl(const ControlInput& control) {
    const int64_t ch = static_cast<int64_t>(info_.channel_names.size());
    const int64_t s = info_.image_size;
    const std::vector<uint16_t>& px = control.pixels;
    TORCH_CHECK(static_cast<int64_t>(px.size()) == ch * s * s, "control pixels: expected ",
                ch * s * s, " values, got ", px.size());
    torch::Tensor raw = torch::empty({1, ch, s, s}, torch::kInt32);
    std::copy(px.begin(), px.end(), raw.data_ptr<int32_t>());  // uint16 → int32 (no uint16 dtype)
    torch::Tensor x =
        NormalizeImages(raw.to(torch::kFloat32), norm_).to(model_->device());  // [1, C, S, S]
    BankLatent out;
    out.posterior = model_->EncodeImages(x);
    if (model_->has_genes()) {
      torch::Tensor e = torch::tensor(control.expression).view({1, -1}).to(model_->device());
      out.gene_latent = model_->EncodeExpression(e);  // [1, Lg]
    }
    return out;
  }

  std::map<ControlKey, BankLatent> bank_;
  std::shared_ptr<const ControlBankReader> bank_reader_;
  std::map<ControlKey, size_t> bank_index_;  // written by LoadBank before sharing, then read-only
  ModelInfo info_;
  CellFluxModel model_;
  ImageNormalization norm_;
  // On CUDA, Encode/Decode run on each codec thread's own stream (device_streams.h).
  DeviceStreams streams_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<Backend>> LoadModelBackend(const ModelBackendOptions& options) {
  CF_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(options.device));
  // Resolves a root's `latest` pointer, validates every file and tensor, eval mode on `device`.
  CF_ASSIGN_OR_RETURN(LoadedModel loaded, LoadCheckpointModel(options.checkpoint_dir, device));
  const CheckpointBundle& bundle = loaded.metadata;
  const std::string& dir = loaded.dir;
  CellFluxModel model = loaded.model;
  ModelInfo info = InfoFrom(bundle);
  if (info.uses_structure()) AddVocabularyStructures(bundle, model, &info);
  if (!info.gene_ids.empty()) {
    // The statistics validation bounds standardized expression with (validate.h).
    torch::Tensor mean = model->gene_ae()->gene_mean().to(torch::kFloat32).cpu().contiguous();
    torch::Tensor std = model->gene_ae()->gene_std().to(torch::kFloat32).cpu().contiguous();
    info.gene_mean.assign(mean.data_ptr<float>(), mean.data_ptr<float>() + mean.numel());
    info.gene_std.assign(std.data_ptr<float>(), std.data_ptr<float>() + std.numel());
  }
  auto backend =
      std::make_shared<ModelBackend>(std::move(info), model, bundle.config.normalization);
  if (!options.controls_dir.empty()) {
    const ModelInfo& info = backend->info();
    ControlBankReader::Options bank;
    bank.dir = options.controls_dir;
    bank.image_size = info.image_size;
    bank.channel_names = info.channel_names;
    bank.gene_ids = info.gene_ids;
    bank.max_controls = options.max_controls;
    CF_ASSIGN_OR_RETURN(std::unique_ptr<ControlBankReader> reader, ControlBankReader::Open(bank));
    CF_RETURN_IF_ERROR(backend->LoadBank(*reader));
    backend->KeepBankReader(std::move(reader));
  }
  CF_RETURN_IF_ERROR(
      TorchCall("waiting for the loaded model", [&] { backend->SynchronizeStep(); }));
  if (options.warm_up) {
    // One 2-step sample through every stage, so the first request pays no lazy initialisation.
    c10::InferenceMode guard;
    const ModelInfo& info = backend->info();
    auto control = std::make_shared<ControlInput>();
    control->pixels.assign(info.channel_names.size() * info.image_size * info.image_size, 0);
    control->expression.assign(info.gene_ids.size(), 0.0f);
    CF_ASSIGN_OR_RETURN(JointLatent z, backend->Encode({EncodeItem{control, {0}}}));
    StepBatch batch;
    batch.z = z;
    batch.t = torch::zeros({1});
    batch.dt = torch::full({1}, 0.5f);
    batch.guidance = torch::full({1}, 2.0f);  // exercise the uncond half too
    batch.labels = torch::zeros({1}, torch::kInt64);
    CF_ASSIGN_OR_RETURN(z, backend->Step(batch));
    CF_RETURN_IF_ERROR(backend->HandOffForDecode());
    CF_RETURN_IF_ERROR(backend->Decode(z).status());
  }
  CF_LOG(INFO) << "loaded " << bundle.model_id << " from " << dir << " on " << device.str();
  return backend;
}

}  // namespace cellflux::server

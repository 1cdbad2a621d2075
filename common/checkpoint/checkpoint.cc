#include "common/checkpoint/checkpoint.h"

#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;

constexpr int kCheckpointFormat = 1;

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// 64-bit FNV-1a: no dependency, stable across platforms, good enough for an id suffix.
class Fnv1a {
 public:
  void Add(absl::string_view bytes) {
    for (unsigned char c : bytes) h_ = (h_ ^ c) * 0x100000001b3ULL;
  }
  void AddField(absl::string_view s) {
    Add(s);
    Add(absl::string_view("\0", 1));  // separator: ("ab","c") ≠ ("a","bc")
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

void HashTensors(const TensorMap& tensors, Fnv1a& h) {
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    h.AddField(name);
    h.AddField(c10::toString(c.scalar_type()));
    h.AddField(ShapeOf(c));
    h.AddField(absl::string_view(static_cast<const char*>(c.data_ptr()), c.nbytes()));
  }
}

bool IsFloating(const torch::Tensor& t) { return t.is_floating_point(); }

absl::Status ValidateWeights(const TensorMap& tensors, const std::string& file,
                             bool require_nonempty) {
  if (require_nonempty && tensors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": holds no tensors"));
  }
  for (const auto& [name, t] : tensors) {
    if (!t.defined())
      return absl::InvalidArgumentError(absl::StrCat(file, ", tensor '", name, "': undefined"));
    if (!IsFloating(t)) {
      return absl::InvalidArgumentError(absl::StrCat(file, ", tensor '", name, "': dtype ",
                                                     c10::toString(t.scalar_type()),
                                                     ", expected a floating-point dtype"));
    }
    bool finite = true;
    CF_RETURN_IF_ERROR(TorchCall(absl::StrCat(file, ", tensor '", name, "'"), [&] {
      finite = t.numel() == 0 || torch::isfinite(t).all().item<bool>();
    }));
    if (!finite) {
      return absl::InvalidArgumentError(absl::StrCat(file, ", tensor '", name, "' ", ShapeOf(t),
                                                     ": holds NaN or infinite values"));
    }
  }
  return absl::OkStatus();
}

bool ValidStem(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  }
  return true;
}

std::string RandomSuffix() {
  std::random_device rd;
  return absl::StrFormat("%d-%08x", ::getpid(), rd());
}

absl::Status SaveTensorsNamed(const std::string& path, const TensorMap& tensors) {
  absl::Status s = SaveSafetensors(path, tensors, {{"format", "pt"}});
  if (!s.ok() && s.message().find(path) == absl::string_view::npos) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return s;
}

absl::Status WriteContents(const std::string& tmp, const CheckpointBundle& bundle,
                           const TrainerState* trainer_state) {
  nlohmann::json config = bundle.config.ToJson();
  config["checkpoint_format"] = kCheckpointFormat;
  config["step"] = bundle.step;
  config["model_id"] = bundle.model_id;
  CF_RETURN_IF_ERROR(WriteFileAtomic(Join(tmp, kConfigFile), config.dump(2) + "\n"));
  CF_RETURN_IF_ERROR(SaveTensorsNamed(Join(tmp, kModelFile), bundle.model));
  CF_RETURN_IF_ERROR(SaveTensorsNamed(Join(tmp, kGeneAutoencoderFile), bundle.gene_autoencoder));
  CF_RETURN_IF_ERROR(SaveTensorsNamed(Join(tmp, kImageVaeFile), bundle.image_vae));
  CF_ASSIGN_OR_RETURN(std::string perts,
                      PerturbationsToTsv(bundle.perturbations, kPerturbationsFile));
  CF_RETURN_IF_ERROR(WriteFileAtomic(Join(tmp, kPerturbationsFile), perts));
  CF_ASSIGN_OR_RETURN(std::string genes, GenesToTsv(bundle.genes, kGenesFile));
  CF_RETURN_IF_ERROR(WriteFileAtomic(Join(tmp, kGenesFile), genes));
  if (trainer_state != nullptr) {
    const std::string ts = Join(tmp, kTrainerStateDir);
    CF_RETURN_IF_ERROR(MakeDirs(ts));
    if (!trainer_state->state.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kTrainerStateDir, "/", kTrainerStateJson, ": must be a JSON object"));
    }
    for (const auto& [stem, tensors] : trainer_state->tensors) {
      if (!ValidStem(stem) || stem + ".safetensors" == kTrainerStateJson) {
        return absl::InvalidArgumentError(absl::StrCat(kTrainerStateDir, ": invalid file stem '",
                                                       stem,
                                                       "' (allowed: [A-Za-z0-9_.-]+, not hidden)"));
      }
      CF_RETURN_IF_ERROR(SaveTensorsNamed(Join(ts, stem + ".safetensors"), tensors));
    }
    CF_RETURN_IF_ERROR(
        WriteFileAtomic(Join(ts, kTrainerStateJson), trainer_state->state.dump(2) + "\n"));
    CF_RETURN_IF_ERROR(FsyncDirectory(ts));
  }
  return FsyncDirectory(tmp);
}

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  return j;
}

absl::StatusOr<TensorMap> ReadWeights(const std::string& path) {
  absl::StatusOr<TensorMap> t;
  absl::Status s = TorchCall(path, [&] { t = LoadSafetensors(path); });
  if (!s.ok()) return s;
  return t;
}

}  // namespace

std::string DefaultModelId(const CheckpointBundle& bundle) {
  Fnv1a h;
  h.AddField(bundle.config.ToJson().dump());
  h.AddField(absl::StrCat(bundle.step));
  for (const PerturbationEntry& p : bundle.perturbations) {
    h.AddField(p.id);
    h.AddField(absl::StrCat(p.dose));
    h.AddField(p.smiles);
    h.AddField(p.name);
  }
  for (const GeneEntry& g : bundle.genes) {
    h.AddField(g.probe_id);
    h.AddField(g.symbol);
  }
  HashTensors(bundle.model, h);
  HashTensors(bundle.gene_autoencoder, h);
  HashTensors(bundle.image_vae, h);
  return absl::StrFormat("%s@step%d-%08x", bundle.config.name, bundle.step,
                         static_cast<uint32_t>(h.value() >> 32));
}

absl::Status ValidateCheckpointBundle(const CheckpointBundle& b, const std::string& dir) {
  const std::string config_file = Join(dir, kConfigFile);
  if (absl::Status s = b.config.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_file, ": ", s.message()));
  }
  if (b.step < 0)
    return absl::InvalidArgumentError(absl::StrCat(config_file, ": step ", b.step, " is negative"));
  if (static_cast<int64_t>(b.perturbations.size()) != b.config.sit.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Join(dir, kPerturbationsFile), ": ", b.perturbations.size(),
                     " rows, but config sit.num_classes = ", b.config.sit.num_classes));
  }
  if (static_cast<int64_t>(b.genes.size()) != b.config.gene_ae.num_genes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Join(dir, kGenesFile), ": ", b.genes.size(),
                     " rows, but config gene_ae.num_genes = ", b.config.gene_ae.num_genes));
  }
  CF_RETURN_IF_ERROR(ValidateWeights(b.model, Join(dir, kModelFile), /*require_nonempty=*/true));
  CF_RETURN_IF_ERROR(ValidateWeights(b.gene_autoencoder, Join(dir, kGeneAutoencoderFile),
                                     /*require_nonempty=*/true));
  CF_RETURN_IF_ERROR(
      ValidateWeights(b.image_vae, Join(dir, kImageVaeFile), /*require_nonempty=*/false));
  return absl::OkStatus();
}

absl::Status WriteCheckpoint(const std::string& dir_in, const CheckpointBundle& bundle_in,
                             const TrainerState* trainer_state) {
  fs::path dir = fs::path(dir_in).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "a/b/" → "a/b"
  const std::string name = dir.filename().string();
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint directory '", dir_in, "' has no name"));
  }
  CheckpointBundle bundle = bundle_in;
  if (bundle.model_id.empty()) bundle.model_id = DefaultModelId(bundle);
  CF_RETURN_IF_ERROR(ValidateCheckpointBundle(bundle, dir.string()));

  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  CF_RETURN_IF_ERROR(MakeDirs(parent.string()));
  const fs::path tmp = parent / absl::StrCat(".", name, ".tmp-", RandomSuffix());
  std::error_code ec;
  fs::create_directory(tmp, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create '", tmp.string(), "': ", ec.message()));
  if (absl::Status s = WriteContents(tmp.string(), bundle, trainer_state); !s.ok()) {
    fs::remove_all(tmp, ec);
    return s;
  }
  fs::path old;
  if (fs::exists(dir)) {
    old = parent / absl::StrCat(".", name, ".old-", RandomSuffix());
    fs::rename(dir, old, ec);
    if (ec) {
      fs::remove_all(tmp, ec);
      return absl::InternalError(absl::StrCat("cannot move the old checkpoint '", dir.string(),
                                              "' aside: ", ec.message()));
    }
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    const std::string msg =
        absl::StrCat("cannot rename '", tmp.string(), "' to '", dir.string(), "': ", ec.message());
    std::error_code ignored;
    if (!old.empty()) fs::rename(old, dir, ignored);  // put the old one back
    fs::remove_all(tmp, ignored);
    return absl::InternalError(msg);
  }
  CF_RETURN_IF_ERROR(FsyncDirectory(parent.string()));
  if (!old.empty()) {
    fs::remove_all(old, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("wrote '", dir.string(),
                                              "' but cannot delete the old copy '", old.string(),
                                              "': ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointBundle> ReadCheckpoint(const std::string& dir) {
  if (!fs::is_directory(dir))
    return absl::NotFoundError(absl::StrCat("checkpoint '", dir, "': not a directory"));
  CheckpointBundle b;
  const std::string config_file = Join(dir, kConfigFile);
  CF_ASSIGN_OR_RETURN(nlohmann::json j, ReadJson(config_file));
  auto step = j.find("step");
  if (step == j.end() || !step->is_number_integer() || step->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_file, ": field 'step' missing or not a non-negative integer"));
  }
  b.step = step->get<int64_t>();
  auto id = j.find("model_id");
  if (id == j.end() || !id->is_string() || id->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_file, ": field 'model_id' missing or not a non-empty string"));
  }
  b.model_id = id->get<std::string>();
  auto format = j.find("checkpoint_format");
  if (format != j.end() &&
      (!format->is_number_integer() || format->get<int64_t>() > kCheckpointFormat)) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_file, ": checkpoint_format ", format->dump(),
                     " is newer than this program understands (", kCheckpointFormat, ")"));
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::FromJson(j);
  if (!config.ok())
    return absl::InvalidArgumentError(absl::StrCat(config_file, ": ", config.status().message()));
  b.config = *std::move(config);

  CF_ASSIGN_OR_RETURN(b.model, ReadWeights(Join(dir, kModelFile)));
  CF_ASSIGN_OR_RETURN(b.gene_autoencoder, ReadWeights(Join(dir, kGeneAutoencoderFile)));
  CF_ASSIGN_OR_RETURN(b.image_vae, ReadWeights(Join(dir, kImageVaeFile)));
  const std::string perts_file = Join(dir, kPerturbationsFile);
  CF_ASSIGN_OR_RETURN(std::string perts, ReadFile(perts_file));
  CF_ASSIGN_OR_RETURN(b.perturbations, ParsePerturbationsTsv(perts, perts_file));
  const std::string genes_file = Join(dir, kGenesFile);
  CF_ASSIGN_OR_RETURN(std::string genes, ReadFile(genes_file));
  CF_ASSIGN_OR_RETURN(b.genes, ParseGenesTsv(genes, genes_file));
  CF_RETURN_IF_ERROR(ValidateCheckpointBundle(b, dir));
  return b;
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir) {
  const std::string ts = Join(dir, kTrainerStateDir);
  if (!fs::is_directory(ts))
    return absl::NotFoundError(absl::StrCat(ts, ": checkpoint has no trainer state"));
  TrainerState state;
  CF_ASSIGN_OR_RETURN(state.state, ReadJson(Join(ts, kTrainerStateJson)));
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(ts, ec)) {
    const fs::path p = e.path();
    if (p.extension() != ".safetensors" || !ValidStem(p.stem().string())) continue;
    CF_ASSIGN_OR_RETURN(state.tensors[p.stem().string()], ReadWeights(p.string()));
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list '", ts, "': ", ec.message()));
  return state;
}

}  // namespace cellflux

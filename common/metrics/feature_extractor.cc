#include "common/metrics/feature_extractor.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/torch/tensors.h"

namespace cellflux {
namespace {

class TorchScriptExtractor : public FeatureExtractor {
 public:
  TorchScriptExtractor(torch::jit::Module module, std::string path, torch::Device device,
                       bool two_args)
      : module_(std::move(module)), path_(std::move(path)), device_(device), two_args_(two_args) {}

  absl::StatusOr<torch::Tensor> Features(const torch::Tensor& images) override {
    torch::Tensor out;
    absl::Status s = TorchCall(absl::StrCat("feature extractor '", path_, "'"), [&] {
      c10::InferenceMode guard;
      std::vector<torch::jit::IValue> args = {images.to(device_)};
      if (two_args_) args.emplace_back(true);  // return_features=True (NVlabs signature)
      out = module_.forward(args).toTensor().to(torch::kCPU, torch::kFloat32);
    });
    if (!s.ok()) return s;
    if (out.dim() != 2 || out.size(0) != images.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("feature extractor '", path_,
                                                     "' returned shape ", ShapeOf(out),
                                                     ", expected [", images.size(0), ", D]"));
    }
    return out;
  }
  bool is_inception() const override { return true; }
  std::string name() const override { return path_; }

 private:
  torch::jit::Module module_;
  std::string path_;
  torch::Device device_;
  bool two_args_;
};

class RandomConvExtractor : public FeatureExtractor {
 public:
  explicit RandomConvExtractor(torch::Device device) : device_(device) {
    torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(20251125);
    const int64_t widths[4] = {3, 32, 64, 128};
    for (int i = 0; i < 3; ++i) {
      // He-scaled Gaussian weights from a fixed seed: the same features in every build and run.
      double stdv = std::sqrt(2.0 / (widths[i] * 9));
      weights_.push_back(
          (torch::randn({widths[i + 1], widths[i], 3, 3}, gen, torch::kFloat32) * stdv).to(device));
    }
  }
  absl::StatusOr<torch::Tensor> Features(const torch::Tensor& images) override {
    torch::Tensor out;
    absl::Status s = TorchCall("fallback feature extractor", [&] {
      c10::InferenceMode guard;
      torch::Tensor x =
          images.to(device_, torch::kFloat32) / 127.5 - 1.0;  // [N, 3, H, W] in [-1, 1]
      x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{64, 64})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(false));
      for (const auto& w : weights_)
        x = torch::relu(torch::conv2d(x, w, {}, /*stride=*/2, /*padding=*/1));
      torch::Tensor flat = x.flatten(2);  // [N, 128, 64]
      out = torch::cat({flat.mean(2), flat.std(2)}, 1).to(torch::kCPU);
    });
    if (!s.ok()) return s;
    return out;
  }
  bool is_inception() const override { return false; }
  std::string name() const override { return "fallback-random-conv-256"; }

 private:
  torch::Device device_;
  std::vector<torch::Tensor> weights_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FeatureExtractor>> MakeFeatureExtractor(
    const std::string& path, const torch::Device& device) {
  if (path.empty()) return std::unique_ptr<FeatureExtractor>(new RandomConvExtractor(device));
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("feature extractor '", path, "' does not exist"));
  }
  torch::jit::Module module;
  absl::Status s = TorchCall(absl::StrCat("loading TorchScript extractor '", path, "'"), [&] {
    module = torch::jit::load(path, device);
    module.eval();
  });
  if (!s.ok()) return absl::InvalidArgumentError(s.message());
  const auto& schema = module.get_method("forward").function().getSchema();
  const bool two_args = schema.arguments().size() >= 3;  // self, images, return_features, ...
  return std::unique_ptr<FeatureExtractor>(
      new TorchScriptExtractor(std::move(module), path, device, two_args));
}

}  // namespace cellflux

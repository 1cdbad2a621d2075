#include "common/torch/tensors.h"

#include <torch/torch.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/status_macros.h"

namespace cellflux {

absl::Status TorchCall(const std::string& context, const std::function<void()>& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (absl::StrContains(what, "out of memory") || absl::StrContains(what, "CUDA out of memory")) {
      return absl::ResourceExhaustedError(absl::StrCat(context, ": ", what));
    }
    return absl::InternalError(absl::StrCat(context, ": ", what));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(context, ": ", e.what()));
  }
}

absl::StatusOr<io::DType> ToSafetensorsDType(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat64:
      return io::DType::kF64;
    case torch::kFloat32:
      return io::DType::kF32;
    case torch::kFloat16:
      return io::DType::kF16;
    case torch::kBFloat16:
      return io::DType::kBF16;
    case torch::kInt64:
      return io::DType::kI64;
    case torch::kInt32:
      return io::DType::kI32;
    case torch::kInt16:
      return io::DType::kI16;
    case torch::kInt8:
      return io::DType::kI8;
    case torch::kUInt8:
      return io::DType::kU8;
    case torch::kBool:
      return io::DType::kBool;
    default:
      return absl::UnimplementedError(
          absl::StrCat("no safetensors dtype for ", c10::toString(type)));
  }
}

torch::ScalarType ToTorchDType(io::DType dtype) {
  switch (dtype) {
    case io::DType::kF64:
      return torch::kFloat64;
    case io::DType::kF32:
      return torch::kFloat32;
    case io::DType::kF16:
      return torch::kFloat16;
    case io::DType::kBF16:
      return torch::kBFloat16;
    case io::DType::kI64:
      return torch::kInt64;
    case io::DType::kI32:
      return torch::kInt32;
    case io::DType::kI16:
      return torch::kInt16;
    case io::DType::kI8:
      return torch::kInt8;
    case io::DType::kU8:
      return torch::kUInt8;
    case io::DType::kBool:
      return torch::kBool;
  }
  return torch::kFloat32;
}

torch::Tensor TensorFromSafetensors(const io::SafetensorsFile& file, const io::TensorInfo& info) {
  torch::Tensor t =
      torch::empty(info.shape, torch::TensorOptions().dtype(ToTorchDType(info.dtype)));
  absl::string_view bytes = file.Data(info);
  // memcpy, not from_blob: the data section of a file need not be aligned for the dtype.
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

absl::StatusOr<TensorMap> LoadSafetensors(const std::string& path) {
  CF_ASSIGN_OR_RETURN(io::SafetensorsFile file, io::SafetensorsFile::Read(path));
  TensorMap out;
  for (const io::TensorInfo& info : file.tensors())
    out[info.name] = TensorFromSafetensors(file, info);
  return out;
}

absl::Status SaveSafetensors(const std::string& path, const TensorMap& tensors,
                             const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  std::vector<io::TensorToWrite> writes;
  keep.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    CF_ASSIGN_OR_RETURN(io::DType dtype, ToSafetensorsDType(tensor.scalar_type()));
    torch::Tensor c = tensor.detach().to(torch::kCPU).contiguous();
    keep.push_back(c);
    io::TensorToWrite w;
    w.name = name;
    w.dtype = dtype;
    w.shape = c.sizes().vec();
    w.data = absl::string_view(static_cast<const char*>(c.data_ptr()), c.nbytes());
    writes.push_back(w);
  }
  return io::WriteSafetensors(path, writes, metadata);
}

TensorMap StateDict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out[p.key()] = p.value();
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out[b.key()] = b.value();
  return out;
}

std::string ShapeOf(const torch::Tensor& t) {
  return t.defined() ? io::ShapeString(t.sizes().vec()) : std::string("undefined");
}

torch::Tensor RowScale(const torch::Tensor& s, const torch::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = s.size(0);
  return s.to(x.dtype()).view(shape);
}

absl::Status LoadStateDict(torch::nn::Module& module, const TensorMap& tensors,
                           const std::string& label, const LoadStateDictOptions& options) {
  TensorMap own = StateDict(module);
  auto skipped = [&](const std::string& name) {
    for (const auto& s : options.skip) {
      if (s == name) return true;
    }
    return false;
  };
  std::vector<std::string> missing, extra, mismatched;
  for (const auto& [name, param] : own) {
    if (skipped(name)) continue;
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != param.sizes()) {
      mismatched.push_back(
          absl::StrCat(name, " (file ", ShapeOf(it->second), ", model ", ShapeOf(param), ")"));
    }
  }
  if (!options.allow_extra) {
    for (const auto& [name, tensor] : tensors) {
      if (own.count(name) || skipped(name)) continue;
      bool ignored = false;
      for (const auto& p : options.ignore_prefixes) ignored |= absl::StartsWith(name, p);
      if (!ignored) extra.push_back(name);
    }
  }
  if (!missing.empty() || !extra.empty() || !mismatched.empty()) {
    std::string msg = absl::StrCat("weights '", label, "' do not match the model:");
    if (!missing.empty())
      absl::StrAppend(&msg, " missing ", missing.size(), " [", absl::StrJoin(missing, ", "), "];");
    if (!extra.empty())
      absl::StrAppend(&msg, " unexpected ", extra.size(), " [", absl::StrJoin(extra, ", "), "];");
    if (!mismatched.empty())
      absl::StrAppend(&msg, " shape mismatch [", absl::StrJoin(mismatched, "; "), "];");
    return absl::InvalidArgumentError(msg);
  }
  return TorchCall(absl::StrCat("loading weights '", label, "'"), [&] {
    torch::NoGradGuard no_grad;
    for (auto& [name, param] : own) {
      if (skipped(name)) continue;
      param.copy_(tensors.at(name).to(param.device(), param.scalar_type()));
    }
  });
}

}  // namespace cellflux

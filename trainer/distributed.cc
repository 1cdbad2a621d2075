#include "trainer/distributed.h"

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// The Gloo and NCCL process groups need their libraries' headers, which PyTorch's wheels do not
// always ship (gloo/, nccl.h); without them this build runs single-process only.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#define CELLFLUX_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#define CELLFLUX_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/torch/tensors.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux::trainer {
namespace {

absl::StatusOr<int> EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  int out = 0;
  if (!absl::SimpleAtoi(v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("environment variable ", name, "='", v, "' is not an integer"));
  }
  return out;
}

std::string EnvString(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v == nullptr || *v == '\0') ? fallback : std::string(v);
}

}  // namespace

Distributed::~Distributed() = default;

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::FromEnv(const torch::Device& device) {
  std::unique_ptr<Distributed> d(new Distributed());
  d->device_ = device;
  CF_ASSIGN_OR_RETURN(d->world_size_, EnvInt("WORLD_SIZE", 1));
  CF_ASSIGN_OR_RETURN(d->rank_, EnvInt("RANK", 0));
  CF_ASSIGN_OR_RETURN(d->local_rank_, EnvInt("LOCAL_RANK", 0));
  if (d->world_size_ < 1 || d->rank_ < 0 || d->rank_ >= d->world_size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("RANK=", d->rank_, " is not in [0, WORLD_SIZE=", d->world_size_, ")"));
  }
  if (d->world_size_ == 1) return d;

  const std::string addr = EnvString("MASTER_ADDR", "127.0.0.1");
  CF_ASSIGN_OR_RETURN(int port, EnvInt("MASTER_PORT", 29500));
  const bool agent_store = EnvString("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  absl::Status s = TorchCall("c10d rendezvous", [&] {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(port);
    opts.isServer = !agent_store && d->rank_ == 0;
    opts.numWorkers = d->world_size_;
    opts.waitWorkers = false;
    opts.timeout = std::chrono::minutes(5);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(addr, opts);
    std::string prefix =
        agent_store ? absl::StrCat("/worker/attempt_", EnvString("TORCHELASTIC_RESTART_COUNT", "0"))
                    : std::string("cellflux");
    store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
#ifdef CELLFLUX_C10D_NCCL
    if (device.is_cuda()) {
      auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
      d->group_ =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(store, d->rank_, d->world_size_, nccl_opts);
      d->backend_ = "nccl";
      return;
    }
#endif
#ifdef CELLFLUX_C10D_GLOO
    auto gloo_opts = c10d::ProcessGroupGloo::Options::create();
    const std::string ifname = EnvString("GLOO_SOCKET_IFNAME", "");
    if (!ifname.empty()) {
      gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      // Bind to the rendezvous address: works on loopback-only sandboxes and single hosts.
      gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    }
    d->group_ =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, d->rank_, d->world_size_, gloo_opts);
    d->backend_ = "gloo";
#else
    throw std::runtime_error(device.is_cuda() ? "this build has neither the NCCL nor the Gloo process group"
                                              : "this build has no Gloo process group (LibTorch without gloo headers)");
#endif
  });
  if (!s.ok()) return s;
  CF_LOG(INFO) << "distributed: rank " << d->rank_ << "/" << d->world_size_ << " (local "
               << d->local_rank_ << ") backend " << d->backend_ << " via " << addr << ":" << port;
  return d;
}

absl::Status Distributed::AverageGradients(const std::vector<torch::Tensor>& params) {
  if (world_size_ == 1) return absl::OkStatus();
  return TorchCall("all-reduce of gradients", [&] {
    std::vector<torch::Tensor> grads;
    for (const auto& p : params) {
      if (!p.requires_grad()) continue;
      // A parameter without a gradient this step still takes part, as zeros, so every rank
      // reduces a buffer of the same layout.
      grads.push_back(p.grad().defined() ? p.grad().reshape(-1)
                                         : torch::zeros({p.numel()}, p.options()));
    }
    torch::Tensor flat = torch::cat(grads);
    std::vector<torch::Tensor> bufs = {flat};
    group_->allreduce(bufs)->wait();
    flat.div_(world_size_);
    int64_t offset = 0;
    for (const auto& p : params) {
      if (!p.requires_grad()) continue;
      torch::Tensor slice = flat.narrow(0, offset, p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
      offset += p.numel();
    }
  });
}

absl::Status Distributed::Broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  if (world_size_ == 1) return absl::OkStatus();
  return TorchCall("broadcast", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& t : tensors) {
      std::vector<torch::Tensor> bufs = {t.detach()};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      group_->broadcast(bufs, opts)->wait();
    }
  });
}

absl::Status Distributed::AllReduceSum(torch::Tensor& tensor) {
  if (world_size_ == 1) return absl::OkStatus();
  return TorchCall("all-reduce", [&] {
    std::vector<torch::Tensor> bufs = {tensor};
    group_->allreduce(bufs)->wait();
  });
}

absl::Status Distributed::Barrier() {
  if (world_size_ == 1) return absl::OkStatus();
  return TorchCall("barrier", [&] { group_->barrier()->wait(); });
}

}  // namespace cellflux::trainer

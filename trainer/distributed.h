// Multi-process training over PyTorch's c10d: NCCL on CUDA, Gloo on CPU, rendezvous from the
// standard environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so
//   python3 -m torch.distributed.run --no_python --nproc_per_node=2 cellflux-train flow ...
//   (Debian 12's python3-torch also needs --redirects 2 --tee 2; README: multi-GPU)
// launches it. Without WORLD_SIZE (or WORLD_SIZE=1) everything is a no-op on one process.
//
// Under torchrun the elastic agent already hosts the TCP store on MASTER_PORT
// (TORCHELASTIC_USE_AGENT_STORE=True): every rank connects as a client under
// /worker/attempt_<TORCHELASTIC_RESTART_COUNT>. Launched by hand, rank 0 hosts the store.
//
// All calls are collective: every rank must make them in the same order.
#ifndef CELLFLUX_TRAINER_DISTRIBUTED_H_
#define CELLFLUX_TRAINER_DISTRIBUTED_H_

#include <torch/types.h>
#include <torch/version.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace c10d {
class ProcessGroup;
class Backend;
}  // namespace c10d

namespace cellflux::trainer {

class Distributed {
 public:
  // Reads the environment; a single-process group when WORLD_SIZE is unset or 1.
  static absl::StatusOr<std::unique_ptr<Distributed>> FromEnv(const torch::Device& device);
  ~Distributed();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  bool is_main() const { return rank_ == 0; }
  const char* backend() const { return backend_; }

  // Sums every gradient across ranks (one flattened all-reduce) and divides by world_size.
  absl::Status AverageGradients(const std::vector<torch::Tensor>& params);
  // Copies root's values into `tensors` on every rank (used for identical initial weights).
  absl::Status Broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  // In-place sum across ranks.
  absl::Status AllReduceSum(torch::Tensor& tensor);
  absl::Status Barrier();

 private:
  Distributed() = default;
  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  const char* backend_ = "none";
  torch::Device device_ = torch::kCPU;
  // LibTorch 2 made ProcessGroupGloo/ProcessGroupNCCL backends of a ProcessGroup (c10d::Backend)
  // with the same collectives; 1.x has them derive from ProcessGroup itself.
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<c10d::Backend> group_;
#else
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
#endif
};

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_DISTRIBUTED_H_

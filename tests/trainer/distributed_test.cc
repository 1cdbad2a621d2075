#include "trainer/distributed.h"

#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace cellflux::trainer {
namespace {

TEST(DistributedTest, SingleProcessWithoutEnvIsNoOp) {
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  auto d = Distributed::FromEnv(torch::kCPU);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->world_size(), 1);
  EXPECT_TRUE((*d)->is_main());
  torch::Tensor p = torch::ones({3}, torch::requires_grad());
  p.mutable_grad() = torch::full({3}, 2.0);
  ASSERT_TRUE((*d)->AverageGradients({p}).ok());
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({3}, 2.0)));
}

TEST(DistributedTest, RejectsBadRank) {
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "5", 1);
  auto d = Distributed::FromEnv(torch::kCPU);
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message()).find("RANK=5"), std::string::npos);
}

// Two real Gloo ranks (fork) average their gradients: rank r contributes r+1, the mean is 1.5.
TEST(DistributedTest, TwoGlooRanksAverageGradients) {
  const int port = 29600 + (getpid() % 300);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  const int rank = child == 0 ? 1 : 0;
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  auto d = Distributed::FromEnv(torch::kCPU);
  bool ok = d.ok();
  double got = -1;
  if (ok) {
    torch::Tensor p = torch::zeros({4}, torch::requires_grad());
    p.mutable_grad() = torch::full({4}, static_cast<float>(rank + 1));
    ok = (*d)->AverageGradients({p}).ok();
    got = p.grad()[0].item<double>();
    torch::Tensor w = torch::full({2}, static_cast<float>(rank * 10));
    ok = ok && (*d)->Broadcast({w}, 0).ok();
    ok = ok && w[1].item<float>() == 0.0f;
  }
  if (child == 0) _exit(ok && got == 1.5 ? 0 : 1);
  int status = 0;
  waitpid(child, &status, 0);
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(got, 1.5);
  EXPECT_TRUE(ok);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "rank 1 disagreed";
}

}  // namespace
}  // namespace cellflux::trainer

#include "trainer/train_config.h"

#include "gtest/gtest.h"

namespace cellflux::trainer {
namespace {

TEST(TrainConfigTest, ShippedDemoConfigLoads) {
  auto c = TrainConfig::Load("configs/demo.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_config, "configs/tiny.json");
  EXPECT_EQ(c->flow.global_batch, 32);
  EXPECT_TRUE(c->Validate().ok());
}

TEST(TrainConfigTest, UnknownKeyIsNamed) {
  auto c = TrainConfig::FromYamlString("flow:\n  stepz: 3\n", "cfg.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("flow.stepz"), std::string::npos) << c.status();
}

TEST(TrainConfigTest, WrongTypeIsNamed) {
  auto c = TrainConfig::FromYamlString("flow:\n  lr: fast\n", "cfg.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("flow.lr"), std::string::npos) << c.status();
}

TEST(TrainConfigTest, OverridesAndRoundTrip) {
  TrainConfig c;
  ASSERT_TRUE(c.Set("flow.steps=123").ok());
  ASSERT_TRUE(c.Set("eval.sample_sizes=[10, 20]").ok());
  ASSERT_TRUE(c.Set("device=cuda:1").ok());
  EXPECT_FALSE(c.Set("flow.nope=1").ok());
  EXPECT_FALSE(c.Set("flow.steps").ok());
  auto back = TrainConfig::FromYamlString(c.ToYaml(), "dump");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->flow.steps, 123);
  EXPECT_EQ(back->eval.sample_sizes, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(back->device, "cuda:1");
}

TEST(TrainConfigTest, GuidanceCandidatesAndVaeLoss) {
  TrainConfig c;
  EXPECT_TRUE(c.eval.guidance_candidates.empty());
  EXPECT_EQ(c.vae.loss, "mse");
  ASSERT_TRUE(c.Set("eval.guidance_candidates=[1.0, 1.5, 2]").ok());
  ASSERT_TRUE(c.Set("vae.loss=l1").ok());
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  auto back = TrainConfig::FromYamlString(c.ToYaml(), "dump");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->eval.guidance_candidates, (std::vector<double>{1.0, 1.5, 2.0}));
  EXPECT_EQ(back->vae.loss, "l1");
  c.vae.loss = "lpips";
  EXPECT_NE(std::string(c.Validate().message()).find("vae.loss"), std::string::npos);
  c.vae.loss = "l1";
  c.eval.guidance_candidates = {1.0, -2.0};
  EXPECT_NE(std::string(c.Validate().message()).find("eval.guidance_candidates"),
            std::string::npos);
}

TEST(TrainConfigTest, ValidateRejectsBadValues) {
  TrainConfig c;
  c.on_bad_sample = "ignore";
  EXPECT_FALSE(c.Validate().ok());
  c = TrainConfig();
  c.flow.condition_drop = 1.5;
  EXPECT_FALSE(c.Validate().ok());
}

TEST(TrainConfigTest, PrecisionKeys) {
  TrainConfig c;
  EXPECT_EQ(c.flow.precision, "auto");
  EXPECT_EQ(c.eval.precision, "auto");
  ASSERT_TRUE(c.Set("flow.precision=bf16").ok());
  ASSERT_TRUE(c.Set("eval.precision=tf32").ok());
  EXPECT_TRUE(c.Validate().ok());
  auto back = TrainConfig::FromYamlString(c.ToYaml(), "dump");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->flow.precision, "bf16");
  EXPECT_EQ(back->eval.precision, "tf32");
  c.flow.precision = "fp16";
  absl::Status bad = c.Validate();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("flow.precision"), std::string::npos) << bad;
  EXPECT_NE(bad.message().find("'fp16'"), std::string::npos) << bad;
}

}  // namespace
}  // namespace cellflux::trainer

#include "common/models/config.h"

#include "gtest/gtest.h"

namespace cellflux {
namespace {

TEST(ModelConfigTest, ShippedConfigsLoadAndValidate) {
  for (const char* path : {"configs/tiny.json", "configs/paper.json"}) {
    auto c = ModelConfig::Load(path);
    ASSERT_TRUE(c.ok()) << c.status();
  }
  auto paper = ModelConfig::Load("configs/paper.json");
  EXPECT_EQ(paper->sit.depth, 28);
  EXPECT_EQ(paper->sit.hidden_size, 1152);
  EXPECT_EQ(paper->latent_size(), 32);
  EXPECT_EQ(paper->image_latent_channels(), 20);
}

TEST(ModelConfigTest, MismatchedLatentIsRejectedWithFieldName) {
  ModelConfig c;
  c.sit.in_channels = 16;
  absl::Status s = c.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("sit.in_channels"), std::string::npos) << s;
}

}  // namespace
}  // namespace cellflux

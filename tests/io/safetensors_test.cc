#include "common/io/safetensors.h"

#include <cstring>

#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

std::string Header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

TEST(SafetensorsTest, RoundTripsF32AndMetadata) {
  float values[6] = {1, 2, 3, 4, 5, 6};
  int64_t ids[2] = {7, -8};
  std::vector<TensorToWrite> w = {
      {"b.weight", DType::kF32, {2, 3}, absl::string_view(reinterpret_cast<char*>(values), 24)},
      {"a.ids", DType::kI64, {2}, absl::string_view(reinterpret_cast<char*>(ids), 16)}};
  auto bytes = SerializeSafetensors(w, {{"format", "pt"}});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = SafetensorsFile::Parse(*bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  auto t = file->Expect("b.weight", DType::kF32, {2, 3});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(std::memcmp(file->Data(**t).data(), values, 24), 0);
}

TEST(SafetensorsTest, RejectsHeaderPastEnd) {
  std::string bytes = Header("{}", "");
  bytes[0] = 100;
  auto file = SafetensorsFile::Parse(bytes, "x.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("x.safetensors"), std::string::npos);
  EXPECT_NE(file.status().message().find("past the end"), std::string::npos);
}

}  // namespace
}  // namespace cellflux::io

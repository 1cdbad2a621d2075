// Control folders: both naming schemes (stain names on the real BBBC047 fixture site, BBBC047
// wavelength names on written files), error messages, centre crop and the request image.
#include "client/control_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/io/tiff.h"
#include "tests/client/test_util.h"

namespace cellflux::client {
namespace {

using ::testing::HasSubstr;

constexpr int kDna = 0, kRna = 1, kEr = 2, kAgp = 3, kMito = 4;

TEST(ControlDirTest, StainAndChannelNames) {
  EXPECT_EQ(ChannelIndexForFileName("Hoechst.tif"), kDna);
  EXPECT_EQ(ChannelIndexForFileName("ERSyto.tif"), kEr);
  EXPECT_EQ(ChannelIndexForFileName("ERSytoBleed.tif"), kRna);
  EXPECT_EQ(ChannelIndexForFileName("Ph_golgi.tif"), kAgp);
  EXPECT_EQ(ChannelIndexForFileName("Mito.TIFF"), kMito);
  EXPECT_EQ(ChannelIndexForFileName("dna.png"), kDna);
  EXPECT_EQ(ChannelIndexForFileName("site1_RNA.tif"), kRna);
  EXPECT_EQ(ChannelIndexForFileName("site1-er.tif"), kEr);
  EXPECT_EQ(ChannelIndexForFileName("README.md"), -1);
  EXPECT_EQ(ChannelIndexForFileName("mitochondria.tif"), -1);
  EXPECT_EQ(ChannelIndexForFileName("Hoechst.txt"), -1);
}

TEST(ControlDirTest, Bbbc047WavelengthNames) {
  // BBBC047: w1 DNA, w2 ER, w3 RNA, w4 AGP, w5 Mito.
  const std::string stem = "cdp2bioactives_a01_s1_w";
  EXPECT_EQ(ChannelIndexForFileName(stem + "1A8B2C3D4.tif"), kDna);
  EXPECT_EQ(ChannelIndexForFileName(stem + "2A8B2C3D4.tif"), kEr);
  EXPECT_EQ(ChannelIndexForFileName(stem + "3A8B2C3D4.tif"), kRna);
  EXPECT_EQ(ChannelIndexForFileName(stem + "4A8B2C3D4.tif"), kAgp);
  EXPECT_EQ(ChannelIndexForFileName(stem + "5A8B2C3D4.tif"), kMito);
  EXPECT_EQ(ChannelIndexForFileName(stem + "6A8B2C3D4.tif"), -1);
  EXPECT_EQ(ChannelIndexForFileName("plate_w12.tif"), -1);
}

TEST(ControlDirTest, RealFixtureSiteByStainNames) {
  const std::string dir = testing::kFixtures + "/bbbc047-site";
  auto files = FindChannelFiles(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files)[kDna], dir + "/Hoechst.tif");
  EXPECT_EQ((*files)[kRna], dir + "/ERSytoBleed.tif");
  EXPECT_EQ((*files)[kEr], dir + "/ERSyto.tif");
  EXPECT_EQ((*files)[kAgp], dir + "/Ph_golgi.tif");
  EXPECT_EQ((*files)[kMito], dir + "/Mito.tif");

  auto image = LoadControlImage(dir, 256);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->channels.size(), 5u);
  EXPECT_EQ(image->channels[0].rows, 256);
  EXPECT_EQ(image->channels[0].cols, 256);
  // The crop is the centre of the 696×520 field.
  auto full = io::ReadImage16(dir + "/Hoechst.tif");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(image->channels[kDna].at<uint16_t>(0, 0),
            full->at<uint16_t>((520 - 256) / 2, (696 - 256) / 2));

  auto proto = ToProtoImage(*image, {"DNA", "RNA", "ER", "AGP", "Mito"});
  ASSERT_TRUE(proto.ok()) << proto.status();
  ASSERT_EQ(proto->channels_size(), 5);
  EXPECT_EQ(proto->channels(0).data().size(), 256u * 256u * 2u);
  const auto& bytes = proto->channels(0).data();
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]) | (static_cast<uint8_t>(bytes[1]) << 8),
            image->channels[kDna].at<uint16_t>(0, 0));
}

TEST(ControlDirTest, WrittenBbbc047NamedFolder) {
  const std::string dir = testing::MakeTempDir("bbbc047");
  for (int w = 1; w <= 5; ++w) {
    cv::Mat mat(40, 50, CV_16UC1, cv::Scalar(100 * w));
    ASSERT_TRUE(io::WriteTiff16(dir + "/x_a01_s1_w" + std::to_string(w) + "ABC.tif", mat).ok());
  }
  testing::WriteText(dir + "/notes.txt", "ignored");
  auto image = LoadControlImage(dir, 0);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels[kDna].at<uint16_t>(0, 0), 100);   // w1
  EXPECT_EQ(image->channels[kRna].at<uint16_t>(0, 0), 300);   // w3
  EXPECT_EQ(image->channels[kEr].at<uint16_t>(0, 0), 200);    // w2
  EXPECT_EQ(image->channels[kMito].at<uint16_t>(5, 5), 500);  // w5
  EXPECT_EQ(image->channels[kDna].cols, 50);
}

TEST(ControlDirTest, MissingAndDuplicateChannelsAreNamed) {
  const std::string dir = testing::MakeTempDir("missing");
  cv::Mat mat(8, 8, CV_16UC1, cv::Scalar(1));
  for (const char* name : {"DNA.tif", "RNA.tif", "ER.tif"}) {
    ASSERT_TRUE(io::WriteTiff16(dir + "/" + name, mat).ok());
  }
  auto missing = FindChannelFiles(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("AGP, Mito"));
  EXPECT_THAT(missing.status().message(), HasSubstr(dir));

  ASSERT_TRUE(io::WriteTiff16(dir + "/Hoechst.tif", mat).ok());
  auto duplicate = FindChannelFiles(dir);
  ASSERT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.status().message(), HasSubstr("two files for channel DNA"));

  EXPECT_EQ(FindChannelFiles(dir + "/nope").status().code(), absl::StatusCode::kNotFound);
}

// Five stain-named TIFFs of `value` everywhere, with `peak` at (1, 2) of the Mito channel.
std::string WriteSite(const std::string& name, int value, int peak) {
  const std::string dir = testing::MakeTempDir(name);
  for (const char* stain : {"DNA", "RNA", "ER", "AGP", "Mito"}) {
    cv::Mat mat(12, 12, CV_16UC1, cv::Scalar(value));
    if (std::string(stain) == "Mito") mat.at<uint16_t>(1, 2) = static_cast<uint16_t>(peak);
    EXPECT_TRUE(io::WriteTiff16(dir + "/" + stain + ".tif", mat).ok());
  }
  return dir;
}

TEST(ControlDirTest, BitDepthComesFromTheFilesMaximum) {
  // The real BBBC047 site: 16-bit files holding 12-bit values → declared 12-bit.
  auto real = LoadControlImage(testing::kFixtures + "/bbbc047-site", 256);
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(real->bit_depth, 12);
  EXPECT_LE(real->max_value, 4095);
  EXPECT_EQ(ToProtoImage(*real, {})->bit_depth(), 12);

  // One pixel above 4095 anywhere in the uncropped site (here outside a 4×4 crop) → 16-bit, and
  // the pixels are sent unchanged for the server to rescale.
  auto wide = LoadControlImage(WriteSite("wide", 1000, 40000), 4);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->bit_depth, 16);
  EXPECT_EQ(wide->max_value, 40000);
  auto proto = ToProtoImage(*wide, {});
  ASSERT_TRUE(proto.ok());
  EXPECT_EQ(proto->bit_depth(), 16);
  EXPECT_EQ(wide->channels[0].at<uint16_t>(0, 0), 1000);
}

TEST(ControlDirTest, ExplicitBitDepth) {
  const std::string dir = WriteSite("explicit", 1000, 40000);
  auto twelve = LoadControlImage(dir, 0, 12);  // declared 12-bit, but a pixel says otherwise
  ASSERT_FALSE(twelve.ok());
  EXPECT_EQ(twelve.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twelve.status().message(), HasSubstr("Mito.tif"));
  EXPECT_THAT(twelve.status().message(), HasSubstr("40000"));

  auto sixteen = LoadControlImage(WriteSite("low16", 1000, 3000), 0, 16);
  ASSERT_TRUE(sixteen.ok()) << sixteen.status();
  EXPECT_EQ(sixteen->bit_depth, 16);  // a dim 16-bit site stays 16-bit when told so

  auto bad = LoadControlImage(dir, 0, 8);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("bit depth 8 is not 12 or 16"));
}

TEST(ControlDirTest, CenterCropLeavesSmallImages) {
  cv::Mat mat(10, 12, CV_16UC1, cv::Scalar(3));
  EXPECT_EQ(CenterCrop(mat, 0).cols, 12);
  EXPECT_EQ(CenterCrop(mat, 16).cols, 12);
  EXPECT_EQ(CenterCrop(mat, 4).rows, 4);
}

}  // namespace
}  // namespace cellflux::client

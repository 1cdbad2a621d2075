// The control bank reader on a real prepared dataset (synth → prepare): every DMSO site becomes
// one entry, its pixels are the evaluation centre crop in the model's channel order, its
// expression is a DMSO row of the L1000 plate paired with its CP plate, chosen the same way on
// every open; bad inputs name what is wrong.
#include "server/control_bank.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/data/manifest.h"
#include "common/util/logging.h"
#include "tests/testing/tiny_dataset.h"

namespace cellflux::server {
namespace {

namespace fs = std::filesystem;

class ControlBankTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetMinLogLevel(LogLevel::kWARNING);
    root_ = new std::string(
        cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_control_bank_test"));
    fs::remove_all(*root_);
    auto dir = cellflux::testing::MakeTinyPreparedDataset(*root_);
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(*dir);
    auto m = data::LoadManifest(*dir_);
    ASSERT_TRUE(m.ok()) << m.status();
    manifest_ = new data::Manifest(*std::move(m));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete manifest_;
    delete dir_;
    delete root_;
  }

  static ControlBankReader::Options Options() {
    ControlBankReader::Options o;
    o.dir = *dir_;
    o.image_size = 64;
    o.channel_names = {"DNA", "RNA", "ER", "AGP", "Mito"};
    // Eight of the dataset's genes in reverse order: the reader must map by probe id.
    for (int g = 7; g >= 0; --g) o.gene_ids.push_back(manifest_->gene_ids[g]);
    return o;
  }

  static size_t DmsoSites() {
    size_t n = 0;
    for (const data::ControlWell& w : manifest_->cp_controls) n += w.site_ids.size();
    return n;
  }

  static const data::SiteFiles& SiteOf(const ControlKey& key) {
    for (const data::SiteFiles& s : manifest_->sites) {
      if (s.plate == key.plate && absl::AsciiStrToLower(s.well) == key.well && s.site == key.site)
        return s;
    }
    ADD_FAILURE() << "no site for " << key.plate << " " << key.well << " " << key.site;
    return manifest_->sites[0];
  }

  static std::string* root_;
  static std::string* dir_;
  static data::Manifest* manifest_;
};

std::string* ControlBankTest::root_ = nullptr;
std::string* ControlBankTest::dir_ = nullptr;
data::Manifest* ControlBankTest::manifest_ = nullptr;

TEST_F(ControlBankTest, OneSortedEntryPerDmsoSite) {
  auto reader = ControlBankReader::Open(Options());
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_GT(DmsoSites(), 4u);
  EXPECT_EQ((*reader)->size(), DmsoSites());
  std::vector<ControlKey> keys = (*reader)->keys();
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  for (const ControlKey& k : keys) {
    EXPECT_EQ(k.well, absl::AsciiStrToLower(k.well));
    EXPECT_GE(k.site, 1);
  }
}

TEST_F(ControlBankTest, PixelsAreTheCentreCropInModelChannelOrder) {
  ControlBankReader::Options o = Options();
  o.channel_names = {"mito", "DNA", "RNA", "ER", "AGP"};  // a permutation, any case
  auto reader = ControlBankReader::Open(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto c = (*reader)->Read(1);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->input.pixels.size(), 5u * 64 * 64);
  const data::SiteFiles& site = SiteOf(c->key);
  const int canonical[5] = {4, 0, 1, 2, 3};
  for (int m = 0; m < 5; ++m) {
    cv::Mat img = cv::imread(site.paths[canonical[m]], cv::IMREAD_UNCHANGED);
    ASSERT_EQ(img.type(), CV_16UC1) << site.paths[canonical[m]];
    ASSERT_EQ(img.rows, 96);
    const int off = (96 - 64) / 2;
    for (int y = 0; y < 64; y += 7) {
      for (int x = 0; x < 64; x += 5) {
        ASSERT_EQ(c->input.pixels[(m * 64 + y) * 64 + x], img.at<uint16_t>(off + y, off + x))
            << "channel " << m << " y " << y << " x " << x;
      }
    }
  }
}

TEST_F(ControlBankTest, ExpressionIsADmsoRowOfThePairedL1000Plate) {
  auto reader = ControlBankReader::Open(Options());
  ASSERT_TRUE(reader.ok()) << reader.status();
  // The L1000 plate each CP plate's pairs used most often.
  std::map<std::string, std::map<std::string, int>> counts;
  for (const data::ManifestPair& p : manifest_->pairs) ++counts[p.cp_plate][p.l1000_plate];
  const size_t width = manifest_->gene_ids.size();
  std::map<std::string, int> rows_used;
  for (size_t i = 0; i < (*reader)->size(); ++i) {
    auto c = (*reader)->Read(i);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_GE(c->l1000_row, 0);
    const data::ExpressionRow& row = manifest_->expression_rows[c->l1000_row];
    EXPECT_TRUE(row.is_control) << "row " << c->l1000_row;
    EXPECT_EQ(row.plate, c->l1000_plate);
    const auto& by_plate = counts[c->key.plate];
    int best = 0;
    for (const auto& [plate, n] : by_plate) best = std::max(best, n);
    EXPECT_EQ(by_plate.at(c->l1000_plate), best) << c->l1000_plate;
    ASSERT_EQ(c->input.expression.size(), 8u);
    for (int g = 0; g < 8; ++g) {  // model gene g = dataset gene 7 - g
      EXPECT_EQ(c->input.expression[g], manifest_->expression[c->l1000_row * width + (7 - g)]);
    }
    ++rows_used[std::to_string(c->l1000_row)];
  }
  EXPECT_GT(rows_used.size(), 1u) << "every bank site got the same DMSO row";

  // The same choice on every open (restarts and reloads keep each entry's profile).
  auto again = ControlBankReader::Open(Options());
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < (*reader)->size(); ++i) {
    EXPECT_EQ((*again)->Read(i)->l1000_row, (*reader)->Read(i)->l1000_row);
  }
}

TEST_F(ControlBankTest, ImageOnlyModelsNeedNoExpression) {
  ControlBankReader::Options o = Options();
  o.gene_ids.clear();
  auto reader = ControlBankReader::Open(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto c = (*reader)->Read(0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->input.expression.empty());
  EXPECT_EQ(c->l1000_row, -1);
}

TEST_F(ControlBankTest, MaxControlsKeepsTheFirstKeys) {
  ControlBankReader::Options o = Options();
  o.max_controls = 3;
  auto reader = ControlBankReader::Open(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto all = ControlBankReader::Open(Options());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ((*reader)->size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ((*reader)->keys()[i], (*all)->keys()[i]);
}

TEST_F(ControlBankTest, BadInputsNameTheProblem) {
  ControlBankReader::Options o = Options();
  o.channel_names[2] = "Actin";
  auto r = ControlBankReader::Open(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("\"Actin\""), std::string::npos) << r.status();

  o = Options();
  o.gene_ids.push_back("999999_at");
  r = ControlBankReader::Open(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("999999_at"), std::string::npos) << r.status();

  o = Options();
  o.dir = *root_ + "/no_such_dir";
  r = ControlBankReader::Open(o);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no_such_dir"), std::string::npos) << r.status();

  o = Options();
  o.image_size = 128;  // sites are 96×96
  r = ControlBankReader::Open(o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto c = (*r)->Read(0);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("96×96"), std::string::npos) << c.status();
  EXPECT_EQ((*r)->Read((*r)->size()).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(StableHashTest, IsFnv1a) {
  EXPECT_EQ(StableHash(""), 14695981039346656037ULL);
  EXPECT_EQ(StableHash("a"), 0xaf63dc4c8601ec8cULL);  // published FNV-1a 64 test vector
}

}  // namespace
}  // namespace cellflux::server

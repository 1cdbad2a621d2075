// Request validation: every bad-input case with its code and a message that names the problem,
// centre cropping and reordering, page tokens, and a fuzz-style sweep over mutated requests.
#include "server/validate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <opencv2/core.hpp>
#include <random>

#include "common/io/tiff.h"
#include "server/image_codec.h"
#include "server/structure_cache.h"
#include "tests/server/fake_backend.h"

namespace cellflux::server {
namespace {

using ::testing::HasSubstr;

constexpr int kS = 8;  // FakeModelInfo image size

// Pixel value of channel c at (y, x) in the test image (≤ 4095 for the sizes used here).
uint16_t Px(int c, int y, int x) { return static_cast<uint16_t>(c * 800 + y * 20 + x); }

v1::Image MakeImage(int h, int w, v1::Encoding enc = v1::RAW_U16_LE) {
  const ModelInfo info = testing::FakeModelInfo();
  v1::Image image;
  image.set_height(h);
  image.set_width(w);
  for (size_t c = 0; c < info.channel_names.size(); ++c) {
    std::vector<uint16_t> plane(h * w);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) plane[y * w + x] = Px(c, y, x);
    v1::Channel* ch = image.add_channels();
    ch->set_name(info.channel_names[c]);
    ch->set_encoding(enc);
    ch->set_data(*EncodeChannel(plane.data(), h, w, enc));
  }
  return image;
}

v1::PredictRequest ValidRequest() {
  const ModelInfo info = testing::FakeModelInfo();
  v1::PredictRequest r;
  r.set_perturbation_id(info.perturbations[3].id);
  *r.mutable_data()->mutable_image() = MakeImage(kS, kS);
  for (size_t g = 0; g < info.gene_ids.size(); ++g) {
    r.mutable_data()->mutable_expression()->add_values(0.25f * g);
  }
  return r;
}

class ValidateTest : public ::testing::Test {
 protected:
  absl::StatusOr<ValidatedPredict> Validate(const v1::PredictRequest& r) {
    return ValidatePredict(r, info_, /*random_seed=*/777);
  }
  void ExpectError(const v1::PredictRequest& r, absl::StatusCode code, const std::string& text) {
    auto v = Validate(r);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), code) << v.status();
    EXPECT_THAT(std::string(v.status().message()), HasSubstr(text));
  }
  ModelInfo info_ = testing::FakeModelInfo();
};

TEST_F(ValidateTest, ValidRequestGetsDefaults) {
  auto v = Validate(ValidRequest());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->label, 3);
  EXPECT_EQ(v->num_steps, info_.sampling.num_steps);
  EXPECT_EQ(v->num_samples, info_.sampling.num_samples);
  EXPECT_DOUBLE_EQ(v->guidance, info_.sampling.guidance_scale);
  EXPECT_EQ(v->seed, 777u);
  EXPECT_EQ(v->output_encoding, v1::RAW_U16_LE);
  EXPECT_EQ(v->priority, v1::INTERACTIVE);
  EXPECT_EQ(v->sampler, v1::EULER);
  ASSERT_EQ(v->control->pixels.size(), 5u * kS * kS);
  EXPECT_EQ(v->control->pixels[2 * kS * kS + 3 * kS + 4], Px(2, 3, 4));
  EXPECT_EQ(v->control->expression, std::vector<float>({0, 0.25f, 0.5f, 0.75f}));
}

TEST_F(ValidateTest, OptionsAreTakenWhenSet) {
  auto r = ValidRequest();
  r.mutable_options()->set_num_steps(17);
  r.mutable_options()->set_num_samples(3);
  r.mutable_options()->set_guidance_scale(1.0);
  r.mutable_options()->set_seed(5);
  r.mutable_options()->set_output_encoding(v1::PNG);
  r.mutable_options()->set_priority(v1::BATCH);
  r.mutable_options()->set_sampler(v1::HEUN);
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->priority, v1::BATCH);
  EXPECT_EQ(v->sampler, v1::HEUN);
  EXPECT_EQ(v->num_steps, 17);
  EXPECT_EQ(v->num_samples, 3);
  EXPECT_EQ(v->guidance, 1.0);
  EXPECT_EQ(v->seed, 5u);
  EXPECT_EQ(v->output_encoding, v1::PNG);
  r.mutable_options()->set_seed(0);  // explicitly 0 is a seed, not "unset"
  EXPECT_EQ(Validate(r)->seed, 0u);
}

TEST_F(ValidateTest, LargerImagesAreCentreCropped) {
  auto r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS + 3, kS + 4);
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  // Offsets ⌊3/2⌋ = 1 rows, ⌊4/2⌋ = 2 columns.
  EXPECT_EQ(v->control->pixels[0], Px(0, 1, 2));
  EXPECT_EQ(v->control->pixels[4 * kS * kS + (kS - 1) * kS + kS - 1], Px(4, kS, kS + 1));
}

TEST_F(ValidateTest, PngAndTiffChannelsDecode) {
  for (v1::Encoding enc : {v1::PNG, v1::TIFF}) {
    auto r = ValidRequest();
    *r.mutable_data()->mutable_image() = MakeImage(kS + 2, kS, enc);
    auto v = Validate(r);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->control->pixels[kS * kS + 5], Px(1, 1, 5));
  }
}

TEST_F(ValidateTest, PermutedChannelsAndGenesAreReordered) {
  auto r = ValidRequest();
  auto* channels = r.mutable_data()->mutable_image()->mutable_channels();
  channels->SwapElements(0, 4);     // Mito first, DNA last
  (*channels)[0].set_name("mito");  // case-insensitive
  auto* e = r.mutable_data()->mutable_expression();
  e->clear_values();
  for (int g = 3; g >= 0; --g) {
    e->add_values(10.0f + g);
    e->add_gene_ids(info_.gene_ids[g]);
  }
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->control->pixels[0], Px(0, 0, 0));
  EXPECT_EQ(v->control->pixels[4 * kS * kS], Px(4, 0, 0));
  EXPECT_EQ(v->control->expression, std::vector<float>({10, 11, 12, 13}));
}

TEST_F(ValidateTest, PerturbationErrors) {
  auto r = ValidRequest();
  r.set_perturbation_id("");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "perturbation_id is required");
  r.set_perturbation_id("BRD-NOPE");
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "\"BRD-NOPE\" is not in the model's vocabulary");
}

// Requests by structure, against a structure model whose cache uses the real parser (RDKit).
class ValidateSmilesTest : public ::testing::Test {
 protected:
  ValidateSmilesTest() {
    cache_ = *StructureCache::Create(
        StructureCacheOptions{}, &info_,
        [](const std::string& smiles) { return chem::ParseStructure(smiles); },
        [this](int slot, const std::vector<int>&, double) -> absl::StatusOr<int64_t> {
          ++registrations_;
          return info_.null_label() + 1 + slot;
        });
  }
  static v1::PredictRequest SmilesRequest(const std::string& smiles, double dose = 0) {
    v1::PredictRequest r = ValidRequest();
    r.clear_perturbation_id();
    r.set_smiles(smiles);
    r.set_dose_um(dose);
    return r;
  }
  void ExpectError(const v1::PredictRequest& r, absl::StatusCode code, const std::string& text) {
    auto v = ValidatePredict(r, info_, 1, cache_.get());
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), code) << v.status();
    EXPECT_THAT(std::string(v.status().message()), HasSubstr(text));
  }
  ModelInfo info_ = testing::FakeStructureModelInfo();
  std::shared_ptr<StructureCache> cache_;
  int registrations_ = 0;
};

TEST_F(ValidateSmilesTest, CompoundOutsideTheVocabularyGetsARegisteredLabel) {
  // Ibuprofen sodium: the salt is dropped.
  auto v = ValidatePredict(SmilesRequest("CC(C)Cc1ccc(cc1)C(C)C(=O)[O-].[Na+]", 25), info_, 1,
                           cache_.get());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->label, info_.null_label() + 1);
  EXPECT_TRUE(v->perturbation_id.empty());
  EXPECT_EQ(v->smiles, "CC(C)Cc1ccc(cc1)C(C)C(=O)[O-].[Na+]");
  ASSERT_NE(v->structure, nullptr);
  EXPECT_EQ(v->structure->canonical_smiles, "CC(C)Cc1ccc(C(C)C(=O)[O-])cc1");
  EXPECT_FALSE(v->structure->in_vocabulary);
  EXPECT_DOUBLE_EQ(v->structure->dose_um, 25);
  EXPECT_FALSE(v->structure->nearest_id.empty());
  EXPECT_GT(v->structure->nearest_similarity, 0);
  EXPECT_LT(v->structure->nearest_similarity, 1);
  EXPECT_EQ(registrations_, 1);
  EXPECT_EQ(cache_->pinned(), 1);  // held by the validated request
  v = absl::InternalError("released");
  EXPECT_EQ(cache_->pinned(), 0);
}

TEST_F(ValidateSmilesTest, VocabularyCompoundBySmilesUsesItsLabel) {
  // Metformin hydrochloride = vocabulary row 2 (metformin).
  auto v = ValidatePredict(SmilesRequest("CN(C)C(=N)N=C(N)N.Cl"), info_, 1, cache_.get());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->label, 2);
  EXPECT_TRUE(v->structure->in_vocabulary);
  EXPECT_EQ(v->structure->nearest_id, info_.perturbations[2].id);
  EXPECT_EQ(registrations_, 0);
}

TEST_F(ValidateSmilesTest, ExactlyOneOfPerturbationIdAndSmiles) {
  auto both = SmilesRequest("CCO");
  both.set_perturbation_id(info_.perturbations[0].id);
  ExpectError(both, absl::StatusCode::kInvalidArgument,
              "set exactly one of perturbation_id and smiles, not both");
  auto neither = SmilesRequest("");
  ExpectError(neither, absl::StatusCode::kInvalidArgument, "perturbation_id or smiles is required");
}

TEST_F(ValidateSmilesTest, UnparsableSmilesIsNamedWithRdkitsReason) {
  ExpectError(SmilesRequest("C1CC(N"), absl::StatusCode::kInvalidArgument, "smiles: ");
  ExpectError(SmilesRequest("C1CC(N"), absl::StatusCode::kInvalidArgument, "C1CC(N");
  // Valence: a chemically impossible structure, rejected by RDKit's sanitization.
  ExpectError(SmilesRequest("C(C)(C)(C)(C)C"), absl::StatusCode::kInvalidArgument, "valence");
  EXPECT_EQ(cache_->size(), 0);
}

TEST_F(ValidateSmilesTest, DoseMustBeFinitePositiveOrUnset) {
  ExpectError(SmilesRequest("CCO", -1), absl::StatusCode::kInvalidArgument,
              "dose_um must be a finite dose in µM > 0 (or 0 = unknown), got -1");
  ExpectError(SmilesRequest("CCO", std::nan("")), absl::StatusCode::kInvalidArgument, "dose_um");
  ExpectError(SmilesRequest("CCO", INFINITY), absl::StatusCode::kInvalidArgument, "dose_um");
  auto by_id = ValidRequest();
  by_id.set_dose_um(10);
  ExpectError(by_id, absl::StatusCode::kInvalidArgument, "dose_um applies to smiles requests only");
}

TEST_F(ValidateSmilesTest, SmilesLengthIsCapped) {
  ExpectError(SmilesRequest(std::string(kMaxSmilesLength + 1, 'C')),
              absl::StatusCode::kInvalidArgument, "at most 4096");
}

TEST_F(ValidateSmilesTest, OtherErrorsComeFirstAndCostNoParse) {
  auto r = SmilesRequest("CCO");
  r.mutable_options()->set_num_steps(0);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "options.num_steps");
  EXPECT_EQ(cache_->size(), 0);
}

TEST(ValidateIdModelTest, SmilesToAnIdModelIsFailedPrecondition) {
  const ModelInfo info = testing::FakeModelInfo();
  v1::PredictRequest r = ValidRequest();
  r.clear_perturbation_id();
  r.set_smiles("CCO");
  auto v = ValidatePredict(r, info, 1);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(v.status().message()),
              HasSubstr("conditions on perturbation IDs only (GetModelInfo.condition \"id\")"));
}

TEST_F(ValidateTest, OptionLimits) {
  struct Case {
    std::function<void(v1::PredictOptions*)> set;
    std::string text;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Case> cases = {
      {[](auto* o) { o->set_num_steps(0); }, "num_steps must be in [1, 1000000], got 0"},
      {[](auto* o) { o->set_num_steps(1000001); }, "got 1000001"},
      {[](auto* o) { o->set_num_samples(0); }, "num_samples must be in [1, 8], got 0"},
      {[](auto* o) { o->set_num_samples(9); }, "got 9"},
      {[](auto* o) { o->set_guidance_scale(-0.5); }, "guidance_scale must be in [0, 10]"},
      {[](auto* o) { o->set_guidance_scale(10.5); }, "got 10.5"},
      {[nan](auto* o) { o->set_guidance_scale(nan); }, "got nan"},
      {[](auto* o) { o->set_output_encoding(static_cast<v1::Encoding>(42)); }, "unknown value 42"},
      {[](auto* o) { o->set_priority(static_cast<v1::Priority>(7)); }, "priority: unknown value 7"},
      {[](auto* o) { o->set_sampler(static_cast<v1::Sampler>(9)); }, "sampler: unknown value 9"},
  };
  for (const Case& c : cases) {
    auto r = ValidRequest();
    c.set(r.mutable_options());
    ExpectError(r, absl::StatusCode::kInvalidArgument, c.text);
  }
}

TEST_F(ValidateTest, ControlRefs) {
  v1::PredictRequest r;
  r.set_perturbation_id(info_.perturbations[0].id);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "control is required");
  r.mutable_ref()->set_plate("P1");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "needs plate and well");
  r.mutable_ref()->set_well("A01");  // case-insensitive, site 0 → lowest
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v->control->bank_key, (ControlKey{"P1", "a01", 1}));
  r.mutable_ref()->set_site(2);
  EXPECT_EQ(Validate(r)->control->bank_key->site, 2);
  r.mutable_ref()->set_site(3);
  ExpectError(r, absl::StatusCode::kNotFound,
              "control plate \"P1\" well \"a01\" site 3 is not in the control bank");
  r.mutable_ref()->set_site(0);
  r.mutable_ref()->set_well("h12");
  ExpectError(r, absl::StatusCode::kNotFound, "well \"h12\" is not in the control bank");
  info_.controls.clear();
  r.mutable_ref()->set_well("a01");
  ExpectError(r, absl::StatusCode::kNotFound, "no control bank");
}

TEST_F(ValidateTest, ImageErrors) {
  auto r = ValidRequest();
  r.mutable_data()->clear_image();
  ExpectError(r, absl::StatusCode::kInvalidArgument, "control.data.image is required");

  r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS - 1, kS + 5);
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "is 7×13 (height×width); the model needs at least 8×8");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->set_height(kMaxImageSide + 1);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "largest accepted side");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels()->RemoveLast();
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "has 4 channels, the model needs 5 (DNA, RNA, ER, AGP, Mito)");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels(2)->set_name("Actin");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "channel 2 is named \"Actin\"");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels(2)->set_name("DNA");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "has channel \"DNA\" twice");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels(1)->set_encoding(v1::ENCODING_UNSPECIFIED);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "channel 1 (RNA): encoding is not set");

  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels(3)->mutable_data()->pop_back();
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "channel 3 (AGP): RAW_U16_LE needs 2 × 8 × 8 = 128 bytes, got 127");

  r = ValidRequest();
  auto* ch = r.mutable_data()->mutable_image()->mutable_channels(0);
  ch->set_encoding(v1::PNG);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "encoding is PNG but the bytes are not a PNG");
  ch->set_encoding(v1::TIFF);
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "encoding is TIFF but the bytes are not a TIFF");
}

// Channel c of the request image set to raw pixels `plane` (kS × kS).
void SetRawChannel(v1::PredictRequest* r, int c, const std::vector<uint16_t>& plane) {
  r->mutable_data()->mutable_image()->mutable_channels(c)->set_data(
      *EncodeChannel(plane.data(), kS, kS, v1::RAW_U16_LE));
}

TEST_F(ValidateTest, TwelveBitImagesRejectValuesAbove4095NamingThePixel) {
  for (int declared : {0, 12}) {
    auto r = ValidRequest();
    r.mutable_data()->mutable_image()->set_bit_depth(declared);
    std::vector<uint16_t> plane(kS * kS, 100);
    plane[2 * kS + 5] = 4096;  // row 2, column 5
    plane[6 * kS + 1] = 60000;
    SetRawChannel(&r, 3, plane);
    ExpectError(r, absl::StatusCode::kInvalidArgument,
                "channel 3 (AGP): pixel (row 2, column 5) is 4096, above 4095");
  }
  // 4095 itself is fine and reaches the model unchanged (no clamping, no rescaling).
  auto r = ValidRequest();
  std::vector<uint16_t> plane(kS * kS, 4095);
  SetRawChannel(&r, 0, plane);
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->control->pixels[0], 4095);
  EXPECT_EQ(v->control->pixels[kS * kS - 1], 4095);
}

TEST_F(ValidateTest, SixteenBitImagesAreRescaledTo12Bits) {
  auto r = ValidRequest();
  r.mutable_data()->mutable_image()->set_bit_depth(16);
  std::vector<uint16_t> plane(kS * kS, 0);
  plane[0] = 65535;  // → 4095
  plane[1] = 16;     // 16·4095/65535 = 0.9998 → 1
  plane[2] = 8;      // 0.4999 → 0
  plane[3] = 32768;  // 2047.53 → 2048
  plane[4] = 4096;   // 255.94 → 256: a 12-bit-looking value is still read as 16-bit
  SetRawChannel(&r, 1, plane);
  auto v = Validate(r);
  ASSERT_TRUE(v.ok()) << v.status();
  const uint16_t* rna = v->control->pixels.data() + kS * kS;
  EXPECT_EQ(rna[0], 4095);
  EXPECT_EQ(rna[1], 1);
  EXPECT_EQ(rna[2], 0);
  EXPECT_EQ(rna[3], 2048);
  EXPECT_EQ(rna[4], 256);
  // Every channel is rescaled: Mito's (0, 0) is Px(4, 0, 0) = 3200 → 199.96 → 200.
  EXPECT_EQ(v->control->pixels[4 * kS * kS], 200);
}

TEST_F(ValidateTest, OtherBitDepthsAreRejected) {
  for (int declared : {8, 10, 14, 32, -1}) {
    auto r = ValidRequest();
    r.mutable_data()->mutable_image()->set_bit_depth(declared);
    ExpectError(r, absl::StatusCode::kInvalidArgument,
                "control.data.image.bit_depth is " + std::to_string(declared) +
                    "; expected 12 (values 0..4095, the default) or 16");
  }
}

TEST_F(ValidateTest, EncodedImageErrors) {
  // A PNG of the wrong size.
  auto r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS + 1, kS, v1::PNG);
  r.mutable_data()->mutable_image()->set_height(kS);
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "the PNG is 8×9 (width×height) but the request says 8×8");

  // A PNG whose data is cut short: the header parses, decoding fails.
  r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS, kS, v1::PNG);
  std::string* bytes = r.mutable_data()->mutable_image()->mutable_channels(1)->mutable_data();
  bytes->resize(40);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "channel 1 (RNA)");

  // An 8-bit PNG is not silently widened.
  r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS, kS, v1::PNG);
  cv::Mat eight(kS, kS, CV_8UC1, cv::Scalar(7));
  r.mutable_data()->mutable_image()->mutable_channels(4)->set_data(*io::EncodePng(eight));
  ExpectError(r, absl::StatusCode::kInvalidArgument, "channel 4 (Mito)");

  // A TIFF that declares a gigantic size is refused before decoding.
  r = ValidRequest();
  *r.mutable_data()->mutable_image() = MakeImage(kS, kS, v1::TIFF);
  std::string tiff = r.data().image().channels(0).data();
  auto h = TiffHeaderSize(tiff);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->width, kS);
  EXPECT_EQ(h->height, kS);
}

TEST_F(ValidateTest, ExpressionErrors) {
  auto r = ValidRequest();
  r.mutable_data()->clear_expression();
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "control.data.expression is required: 4 L1000 values");

  r = ValidRequest();
  r.mutable_data()->mutable_expression()->add_values(1);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "has 5 values, the model needs 4");

  r = ValidRequest();
  r.mutable_data()->mutable_expression()->set_values(2, std::nanf(""));
  ExpectError(r, absl::StatusCode::kInvalidArgument, "gene gene_2_at is nan");
  r.mutable_data()->mutable_expression()->set_values(2, std::numeric_limits<float>::infinity());
  ExpectError(r, absl::StatusCode::kInvalidArgument, "gene gene_2_at is inf");

  r = ValidRequest();
  auto* e = r.mutable_data()->mutable_expression();
  for (int g = 0; g < 3; ++g) e->add_gene_ids(info_.gene_ids[g]);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "has 3 gene_ids for 4 values");
  e->add_gene_ids("200814_at");
  ExpectError(r, absl::StatusCode::kInvalidArgument,
              "gene_ids[3] = \"200814_at\" is not one of the model's genes");
  e->set_gene_ids(3, info_.gene_ids[0]);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "has \"gene_0_at\" twice");

  // Image-only model: expression must be absent.
  info_.gene_ids.clear();
  ExpectError(ValidRequest(), absl::StatusCode::kInvalidArgument, "image-only");
  auto img_only = ValidRequest();
  img_only.mutable_data()->clear_expression();
  EXPECT_TRUE(Validate(img_only).ok());
}

// Issue 19.2: one expression value of 1e30 gave NaN outputs with OK. Beyond kMaxExpressionZ
// training standard deviations is INVALID_ARGUMENT naming the gene.
TEST_F(ValidateTest, ExpressionFarOutsideTheTrainingRangeIsRejectedNamingTheGene) {
  info_.gene_mean = {0, 1, 2, 3};
  info_.gene_std = {1, 1, 0.5f, 2};
  ASSERT_TRUE(Validate(ValidRequest()).ok());
  v1::PredictRequest r = ValidRequest();
  r.mutable_data()->mutable_expression()->set_values(2, 1e30f);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "gene gene_2_at is 1e+30");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "at most 100");
  // The bound is in standardized units: gene 2 (mean 2, std 0.5) allows 2 ± 50.
  r.mutable_data()->mutable_expression()->set_values(2, 2 + 0.5f * 99);
  EXPECT_TRUE(Validate(r).ok());
  r.mutable_data()->mutable_expression()->set_values(2, 2 - 0.5f * 101);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "gene gene_2_at");
  // Permuted gene ids: the message names the gene, whatever its position in the request.
  r = ValidRequest();
  for (int g : {3, 2, 1, 0}) {
    r.mutable_data()->mutable_expression()->add_gene_ids(info_.gene_ids[g]);
  }
  r.mutable_data()->mutable_expression()->set_values(0, -1e6f);  // gene 3
  ExpectError(r, absl::StatusCode::kInvalidArgument, "gene gene_3_at is -1e+06");
}

// Issue 19.6: echoed input is cut to 64 characters + "…".
TEST_F(ValidateTest, EchoedInputIsCapped) {
  v1::PredictRequest r = ValidRequest();
  r.set_perturbation_id(std::string(8192, 'x'));
  auto v = Validate(r);
  ASSERT_FALSE(v.ok());
  EXPECT_LT(v.status().message().size(), 200u);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr(std::string(64, 'x') + "…"));
  EXPECT_EQ(Echo("short"), "short");
  EXPECT_EQ(Echo(std::string(64, 'a')), std::string(64, 'a'));
  EXPECT_EQ(Echo(std::string(65, 'a')), std::string(64, 'a') + "…");
  // Whole UTF-8 characters: 70 × "µ" (2 bytes each) → 64 of them.
  std::string micro;
  for (int i = 0; i < 70; ++i) micro += "µ";
  EXPECT_EQ(Echo(micro), micro.substr(0, 128) + "…");
  r = ValidRequest();
  r.mutable_data()->mutable_image()->mutable_channels(0)->set_name(std::string(5000, 'n'));
  v = Validate(r);
  ASSERT_FALSE(v.ok());
  EXPECT_LT(v.status().message().size(), 300u);
  r = ValidRequest();
  for (int g = 0; g < 4; ++g) {
    r.mutable_data()->mutable_expression()->add_gene_ids(std::string(5000, 'g'));
  }
  v = Validate(r);
  ASSERT_FALSE(v.ok());
  EXPECT_LT(v.status().message().size(), 300u);
}

TEST_F(ValidateTest, RequestIdLength) {
  auto r = ValidRequest();
  r.set_request_id(std::string(129, 'x'));
  ExpectError(r, absl::StatusCode::kInvalidArgument, "request_id is 129 characters");
}

TEST_F(ValidateTest, PageTokens) {
  v1::ListPerturbationsRequest req;
  auto p = ValidatePageRequest(req, info_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->offset, 0);
  EXPECT_EQ(p->size, 20);  // default 100, clipped to the vocabulary
  req.set_page_size(7);
  req.set_page_token(MakePageToken(info_, 14));
  p = ValidatePageRequest(req, info_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->offset, 14);
  EXPECT_EQ(p->size, 6);
  for (std::string bad :
       {"garbage", "other-model@3", "fake-model@-1", "fake-model@21", "fake-model@"}) {
    req.set_page_token(bad);
    EXPECT_EQ(ValidatePageRequest(req, info_).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  req.set_page_token("");
  req.set_page_size(-1);
  EXPECT_EQ(ValidatePageRequest(req, info_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ImageCodecTest, RoundTripsEveryEncoding) {
  std::vector<uint16_t> plane(6 * 5);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = static_cast<uint16_t>(i * 131 % 4096);
  for (v1::Encoding enc : {v1::RAW_U16_LE, v1::PNG, v1::TIFF}) {
    v1::Channel ch;
    ch.set_encoding(enc);
    ch.set_data(*EncodeChannel(plane.data(), 6, 5, enc));
    auto back = DecodeChannel(ch, 6, 5, "test");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, plane) << v1::Encoding_Name(enc);
  }
}

// Fuzz-style: mutated wire bytes and mutated channel payloads must give OK or a clean
// INVALID_ARGUMENT / NOT_FOUND, never a crash or another code.
TEST_F(ValidateTest, MutatedRequestsNeverCrash) {
  std::mt19937 rng(12345);
  std::vector<v1::PredictRequest> seeds = {ValidRequest()};
  for (v1::Encoding enc : {v1::PNG, v1::TIFF}) {
    auto r = ValidRequest();
    *r.mutable_data()->mutable_image() = MakeImage(kS + 1, kS + 2, enc);
    seeds.push_back(r);
  }
  v1::PredictRequest ref;
  ref.set_perturbation_id(info_.perturbations[1].id);
  ref.mutable_ref()->set_plate("P1");
  ref.mutable_ref()->set_well("a01");
  seeds.push_back(ref);
  int ok = 0, invalid = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    v1::PredictRequest r = seeds[iter % seeds.size()];
    if (iter % 2 == 0) {
      // Mutate the wire bytes: flips, truncation, insertion.
      std::string wire = r.SerializeAsString();
      const int edits = 1 + rng() % 4;
      for (int e = 0; e < edits && !wire.empty(); ++e) {
        const size_t pos = rng() % wire.size();
        switch (rng() % 3) {
          case 0:
            wire[pos] = static_cast<char>(wire[pos] ^ (1 << (rng() % 8)));
            break;
          case 1:
            wire.resize(pos);
            break;
          default:
            wire.insert(pos, 1, static_cast<char>(rng()));
            break;
        }
      }
      if (!r.ParseFromString(wire)) continue;
    } else if (r.has_data() && r.data().image().channels_size() > 0) {
      // Mutate one channel's payload (PNG/TIFF headers and bodies).
      auto* ch = r.mutable_data()->mutable_image()->mutable_channels(rng() % 5);
      std::string* d = ch->mutable_data();
      for (int e = 0; e < 1 + static_cast<int>(rng() % 8) && !d->empty(); ++e) {
        (*d)[rng() % d->size()] = static_cast<char>(rng());
      }
      if (rng() % 4 == 0) d->resize(rng() % (d->size() + 1));
    }
    auto v = Validate(r);
    if (v.ok()) {
      ++ok;
      EXPECT_TRUE(v->control->bank_key || v->control->pixels.size() == 5u * kS * kS);
    } else {
      ++invalid;
      EXPECT_THAT(v.status().code(),
                  ::testing::AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound))
          << v.status();
      EXPECT_FALSE(v.status().message().empty());
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(invalid, 100);
}

}  // namespace
}  // namespace cellflux::server

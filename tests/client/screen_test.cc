// End-to-end tests of `screen` against the in-process fake service: failures, retries, resume,
// the GCT output and the report. Backoff is shortened to milliseconds; nothing is timed.
#include "client/screen.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/connection.h"
#include "client/plan.h"
#include "common/io/gct.h"
#include "common/metrics/cell_profile.h"
#include "common/util/logging.h"
#include "tests/client/fake_cellflux_service.h"
#include "tests/client/test_util.h"

namespace cellflux::client {
namespace {

using testing::FakeOptions;
using testing::FakeServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBad[] = "BRD-BAD00000-000-00-0";

std::string Pert(int i) { return absl::StrFormat("BRD-K%08d-001-01-1", 10000000 + i); }

// A plan of `n` bank-control rows with an extra metadata column; row `bad` (if ≥ 0) is unknown.
std::string WritePlan(const std::string& dir, int n, int bad) {
  std::string text = "perturbation_id,control_ref,compound_name\n";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&text, i == bad ? kBad : Pert(i), ",24277:a0", 1 + i % 3, ":1,cpd ", i, "\n");
  }
  const std::string path = dir + "/plan.csv";
  testing::WriteText(path, text);
  return path;
}

class ScreenTest : public ::testing::Test {
 protected:
  void SetUp() override { SetMinLogLevel(LogLevel::kWARNING); }

  void Start(FakeOptions fake = {}) {
    server_ = std::make_unique<FakeServer>(fake);
    ASSERT_TRUE(server_->ok());
    ConnectionOptions options;
    options.server = server_->address();
    auto connection = Connection::Create(options);
    ASSERT_TRUE(connection.ok()) << connection.status();
    connection_ = *std::move(connection);
  }

  ScreenOptions Options(const std::string& out) {
    ScreenOptions options;
    options.out_dir = out;
    options.concurrency = 3;
    options.deadline_seconds = 30;
    options.retry.max_retries = 4;
    options.retry.initial_backoff_seconds = 0.001;
    options.retry.max_backoff_seconds = 0.004;
    options.progress = false;
    options.sampling.seed = 100;
    return options;
  }

  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<Connection> connection_;
};

TEST_F(ScreenTest, TwentyRowsWithOneBadRowGiveNineteenResultsAndOneFailure) {
  Start();
  const std::string dir = testing::MakeTempDir("screen20");
  auto plan = ReadPlan(WritePlan(dir, 20, /*bad=*/7));
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto summary = RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();

  EXPECT_EQ(summary->rows_succeeded, 19);
  EXPECT_EQ(summary->rows_failed, 1);
  EXPECT_FALSE(summary->AllSucceeded());
  ASSERT_EQ(summary->failures.size(), 1u);
  EXPECT_EQ(summary->failures[0].row, 7);
  EXPECT_EQ(summary->failures[0].status.code(), absl::StatusCode::kInvalidArgument);
  // INVALID_ARGUMENT is not retried: one call for the bad row, one per good row.
  EXPECT_EQ(server_->service().calls_for("r000007"), 1);
  EXPECT_EQ(server_->service().calls(), 20);
  EXPECT_EQ(summary->retries, 0);

  const auto results = testing::Lines(dir + "/out/results.csv");
  ASSERT_EQ(results.size(), 20u);  // header + 19
  EXPECT_THAT(results[0], HasSubstr("row,perturbation_id,control_ref,compound_name,sample,seed"));
  const auto failures = testing::Lines(dir + "/out/failures.csv");
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_THAT(failures[1], HasSubstr("r000007"));
  EXPECT_THAT(failures[1], HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(failures[1], HasSubstr("unknown perturbation"));

  // Per prediction: one TIFF per channel and a composite.
  struct stat st;
  for (const char* file :
       {"s0_DNA.tif", "s0_RNA.tif", "s0_ER.tif", "s0_AGP.tif", "s0_Mito.tif", "s0_composite.png"}) {
    EXPECT_EQ(stat((dir + "/out/predictions/r000003/" + file).c_str(), &st), 0) << file;
  }
  EXPECT_NE(stat((dir + "/out/predictions/r000007").c_str(), &st), 0);
  // Bank controls: the client asks for the control back and shows it beside the predictions.
  EXPECT_TRUE(server_->service().last_request().options().return_control());
  EXPECT_EQ(stat((dir + "/out/predictions/r000003/control_composite.png").c_str(), &st), 0);
  const std::string report = testing::ReadText(dir + "/out/report.html");
  EXPECT_THAT(report, HasSubstr("data:image/png;base64,"));
  EXPECT_THAT(report, HasSubstr(Pert(3)));
  EXPECT_THAT(report, HasSubstr("Failures (1)"));
}

TEST_F(ScreenTest, RetriesUnavailableThenSucceeds) {
  FakeOptions fake;
  fake.unavailable_first = 3;
  Start(fake);
  const std::string dir = testing::MakeTempDir("retry");
  auto plan = ReadPlan(WritePlan(dir, 1, -1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ScreenOptions options = Options(dir + "/out");
  options.concurrency = 1;
  auto summary = RunScreen(*connection_, *plan, options, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->AllSucceeded());
  EXPECT_EQ(summary->retries, 3);
  EXPECT_EQ(server_->service().calls_for("r000000"), 4);
}

TEST_F(ScreenTest, GivesUpAfterMaxRetries) {
  FakeOptions fake;
  fake.unavailable_first = 100;
  Start(fake);
  const std::string dir = testing::MakeTempDir("giveup");
  auto plan = ReadPlan(WritePlan(dir, 1, -1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ScreenOptions options = Options(dir + "/out");
  options.retry.max_retries = 2;
  auto summary = RunScreen(*connection_, *plan, options, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rows_failed, 1);
  ASSERT_EQ(summary->failures.size(), 1u);
  EXPECT_EQ(summary->failures[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(summary->failures[0].attempts, 3);
  EXPECT_EQ(server_->service().calls_for("r000000"), 3);
}

TEST_F(ScreenTest, StoppedScreenResumesWithoutRedoingRows) {
  Start();
  const std::string dir = testing::MakeTempDir("resume");
  auto plan = ReadPlan(WritePlan(dir, 20, -1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  StopSignal stop;
  // The same call Ctrl-C makes, after the 6th successful prediction.
  server_->service().set_on_success([&stop](int64_t successes) {
    if (successes == 6) stop.RequestStop();
  });
  auto first = RunScreen(*connection_, *plan, Options(dir + "/out"), &stop);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->stopped);
  EXPECT_FALSE(first->AllSucceeded());
  // Rows in flight when the stop came finish (≤ concurrency of them), nothing else starts.
  EXPECT_GE(first->rows_succeeded, 6);
  EXPECT_LE(first->rows_succeeded, 6 + 2);
  EXPECT_EQ(first->rows_failed, 0);
  EXPECT_EQ(first->rows_not_run, 20 - first->rows_succeeded);
  const int64_t calls_first = server_->service().calls();
  EXPECT_EQ(calls_first, first->rows_succeeded);

  server_->service().set_on_success(nullptr);
  StopSignal fresh;
  auto second = RunScreen(*connection_, *plan, Options(dir + "/out"), &fresh);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->AllSucceeded());
  EXPECT_EQ(second->rows_skipped, first->rows_succeeded);
  EXPECT_EQ(second->rows_succeeded, 20 - first->rows_succeeded);
  EXPECT_EQ(server_->service().calls(), 20);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(server_->service().calls_for(RowName(i)), 1) << i;
  EXPECT_EQ(testing::Lines(dir + "/out/results.csv").size(), 21u);

  // A third run has nothing left to do.
  auto third = RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->rows_skipped, 20);
  EXPECT_EQ(server_->service().calls(), 20);
}

TEST_F(ScreenTest, ChangedOptionsRedoRows) {
  Start();
  const std::string dir = testing::MakeTempDir("changed");
  auto plan = ReadPlan(WritePlan(dir, 2, -1));
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr).ok());
  ScreenOptions options = Options(dir + "/out");
  options.sampling.seed = 5;  // different seeds: earlier outputs no longer match
  auto summary = RunScreen(*connection_, *plan, options, nullptr);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->rows_skipped, 0);
  EXPECT_EQ(server_->service().calls(), 4);
}

// Resuming against a server that now serves another checkpoint redoes every row (the demo once
// kept 36 rows of the previous model's predictions after the served checkpoint changed).
TEST_F(ScreenTest, AnotherModelRedoesRows) {
  Start();
  const std::string dir = testing::MakeTempDir("model_changed");
  auto plan = ReadPlan(WritePlan(dir, 3, -1));
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr).ok());
  FakeOptions other;
  other.model_id = "fake-model-v2";
  Start(other);
  auto summary = RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rows_skipped, 0);
  EXPECT_EQ(summary->rows_succeeded, 3);
  EXPECT_EQ(server_->service().calls(), 3);
}

TEST_F(ScreenTest, PredictionsGctParsesBackWithShapeIdsAndValues) {
  FakeOptions fake;
  fake.num_genes = 50;
  Start(fake);
  const std::string dir = testing::MakeTempDir("gct");
  auto plan = ReadPlan(WritePlan(dir, 20, /*bad=*/4));
  ASSERT_TRUE(plan.ok());
  ScreenOptions options = Options(dir + "/out");
  options.sampling.num_samples = 2;
  auto summary = RunScreen(*connection_, *plan, options, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();

  auto gct = io::ReadGct(dir + "/out/predictions.gct");
  ASSERT_TRUE(gct.ok()) << gct.status();
  EXPECT_EQ(gct->rows(), 50);
  EXPECT_EQ(gct->cols(), 19 * 2);
  EXPECT_EQ(gct->row_ids, server_->service().gene_ids());
  EXPECT_EQ(gct->col_ids[0], "r000000_s0");
  EXPECT_EQ(gct->col_ids[1], "r000000_s1");
  EXPECT_EQ(gct->col_ids[8], "r000005_s0");  // row 4 failed
  ASSERT_NE(gct->RowMeta("pr_gene_symbol"), nullptr);
  EXPECT_EQ((*gct->RowMeta("pr_gene_symbol"))[0], "PSME1");  // 200814_at
  for (const char* field : {"perturbation_id", "control_ref", "compound_name", "row", "sample",
                            "seed", "model_id", "control"}) {
    EXPECT_NE(gct->ColMeta(field), nullptr) << field;
  }
  EXPECT_EQ((*gct->ColMeta("model_id"))[0], "fake-model-v1");
  EXPECT_EQ((*gct->ColMeta("compound_name"))[8], "cpd 5");
  // Seeds: row i uses seed + i × samples, sample k adds k.
  EXPECT_EQ((*gct->ColMeta("seed"))[9], absl::StrCat(100 + 5 * 2 + 1));
  // Values: exactly what the fake generated for row 5, sample 1, gene 7.
  EXPECT_EQ(gct->at(7, 9), testing::FakeCellFlux::Effect(Pert(5), 100 + 5 * 2 + 1, 7));
}

// Plans mixing perturbation_id and smiles rows: the request carries smiles + dose_um, and
// results.csv, the GCT column metadata, the row records and the report carry what the server
// said about the compound.
TEST_F(ScreenTest, SmilesRowsCarryTheStructureFieldsIntoEveryOutput) {
  FakeOptions fake;
  fake.num_genes = 20;
  Start(fake);
  const std::string dir = testing::MakeTempDir("smiles");
  testing::WriteText(dir + "/plan.csv",
                     "perturbation_id,smiles,dose_um,control_ref\n" + Pert(1) +
                         ",,,24277:a01:1\n,cco,2.5,24277:a01:1\n,c,,24277:a02:1\n");
  auto plan = ReadPlan(dir + "/plan.csv");
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto summary = RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->AllSucceeded());
  // The screen sends rows concurrently: look at every request, not the last one to arrive.
  int smiles_requests = 0;
  for (const auto& request : server_->service().requests()) {
    if (request.smiles().empty()) {
      EXPECT_EQ(request.perturbation_id(), Pert(1));
      continue;
    }
    ++smiles_requests;
    EXPECT_EQ(request.perturbation_id(), "") << request.smiles();
  }
  EXPECT_EQ(smiles_requests, 2);

  auto record = ReadRowRecord(dir + "/out", 1);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->smiles, "cco");
  EXPECT_EQ(record->canonical_smiles, "CCO");
  EXPECT_FALSE(record->in_vocabulary);
  EXPECT_EQ(record->nearest_perturbation_id, "BRD-NEAR");
  EXPECT_DOUBLE_EQ(record->nearest_similarity, 0.5);
  EXPECT_DOUBLE_EQ(record->dose_um, 2.5);

  auto gct = io::ReadGct(dir + "/out/predictions.gct");
  ASSERT_TRUE(gct.ok()) << gct.status();
  ASSERT_NE(gct->ColMeta("nearest_perturbation_id"), nullptr);
  EXPECT_THAT(*gct->ColMeta("nearest_perturbation_id"),
              ::testing::ElementsAre("-666", "BRD-NEAR", "BRD-C"));
  EXPECT_THAT(*gct->ColMeta("smiles"), ::testing::ElementsAre("-666", "cco", "c"));
  EXPECT_THAT(*gct->ColMeta("dose_um"), ::testing::ElementsAre("-666", "2.5", "-666"));
  EXPECT_THAT(*gct->ColMeta("in_vocabulary"), ::testing::ElementsAre("-666", "false", "true"));

  const std::string results = testing::ReadText(dir + "/out/results.csv");
  EXPECT_THAT(results, HasSubstr("canonical_smiles,in_vocabulary,nearest_perturbation_id,"
                                 "nearest_similarity,model_dose_um"));
  EXPECT_THAT(results, HasSubstr("CCO,false,BRD-NEAR,0.5000,2.5"));
  const std::string report = testing::ReadText(dir + "/out/report.html");
  EXPECT_THAT(report, HasSubstr("smiles cco at 2.5 µM"));
  EXPECT_THAT(report, HasSubstr("nearest training compound BRD-NEAR (Tanimoto 0.50)"));
  EXPECT_THAT(report, HasSubstr("in the model's vocabulary (BRD-C)"));
}

TEST_F(ScreenTest, ControlDirRowsSendImageAndExpression) {
  FakeOptions fake;
  fake.image_size = 64;
  Start(fake);
  const std::string dir = testing::MakeTempDir("ctrldir");
  const std::string site = testing::kFixtures + "/bbbc047-site";
  const std::string gct = std::string(testing::kFixtures) + "/l1000/test_l1000.gct";
  // Absolute paths (the plan's folder is a temp dir).
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  testing::WriteText(
      dir + "/plan.csv",
      absl::StrCat("perturbation_id,control_dir,control_expression\n", Pert(1), ",", cwd, "/", site,
                   ",", cwd, "/", gct, ":LJP005_A375_24H_X1_B19:A03\n"));
  auto plan = ReadPlan(dir + "/plan.csv");
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto summary = RunScreen(*connection_, *plan, Options(dir + "/out"), nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_TRUE(summary->AllSucceeded()) << summary->failures[0].status;

  const auto request = server_->service().last_request();
  ASSERT_TRUE(request.has_data());
  EXPECT_EQ(request.data().image().height(), 64);  // centre-cropped by the client
  ASSERT_EQ(request.data().image().channels_size(), 5);
  EXPECT_EQ(request.data().image().channels(1).name(), "RNA");
  EXPECT_EQ(request.data().expression().values_size(), 978);
  EXPECT_EQ(request.data().expression().gene_ids(0), "200814_at");
  struct stat st;
  EXPECT_EQ(stat((dir + "/out/predictions/r000000/control_composite.png").c_str(), &st), 0);
  const std::string report = testing::ReadText(dir + "/out/report.html");
  EXPECT_THAT(report, HasSubstr("alt='control'"));
  EXPECT_THAT(report, HasSubstr("generated (mean over samples) &minus; control"));
}

// Also the input of scripts/check_report.sh, which renders this test's report in Chromium.
TEST_F(ScreenTest, ReportShowsControlAndGeneratedPanels) {
  FakeOptions fake;
  fake.image_size = 192;
  Start(fake);
  const std::string dir = testing::MakeTempDir("report");
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  const std::string site = absl::StrCat(cwd, "/", testing::kFixtures, "/bbbc047-site");
  const std::string gct = absl::StrCat(cwd, "/", testing::kFixtures, "/l1000/test_l1000.gct");
  std::string plan_text = "perturbation_id,control_ref,control_dir,control_expression,compound\n";
  absl::StrAppend(&plan_text, Pert(1), ",,", site, ",", gct, ":LJP005_A375_24H_X1_B19:A03,a\n");
  absl::StrAppend(&plan_text, Pert(1), ",,", site, ",", gct, ":LJP005_A375_24H_X1_B19:A04,a\n");
  absl::StrAppend(&plan_text, Pert(2), ",24277:a01:1,,,b\n");
  absl::StrAppend(&plan_text, kBad, ",24277:a02:1,,,c\n");
  testing::WriteText(dir + "/plan.csv", plan_text);
  auto plan = ReadPlan(dir + "/plan.csv");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ScreenOptions options = Options(dir + "/out");
  options.sampling.num_samples = 2;
  auto summary = RunScreen(*connection_, *plan, options, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rows_succeeded, 3);
  EXPECT_EQ(summary->rows_failed, 1);

  const std::string report = testing::ReadText(dir + "/out/report.html");
  // Two perturbation sections, three rows, 2 controls from disk, 1 bank control sent back by
  // the server (options.return_control), 6 generated panels.
  EXPECT_THAT(report, HasSubstr(absl::StrCat("<h2>", Pert(1), " <small>(2 rows)")));
  EXPECT_THAT(report, HasSubstr(absl::StrCat("<h2>", Pert(2), " <small>(1 row)")));
  size_t images = 0;
  for (size_t at = report.find("src='data:image/png;base64,"); at != std::string::npos;
       at = report.find("src='data:image/png;base64,", at + 1)) {
    ++images;
  }
  EXPECT_EQ(images, 2u + 1u + 6u);
  EXPECT_THAT(report, Not(HasSubstr("server's control bank")));  // the placeholder for no image
  EXPECT_THAT(report, HasSubstr("up-regulated"));
  EXPECT_THAT(report, HasSubstr("Failures (1)"));
  EXPECT_EQ(report.find("src='/"), std::string::npos);  // nothing outside the page
  // Each compound opens with the mean Δ over its rows and how many rows agree on each gene.
  const size_t p1 = report.find(absl::StrCat("<h2>", Pert(1)));
  EXPECT_LT(report.find("compound: mean &Delta; over 2 rows", p1),
            report.find(" &middot; control ", p1))
      << "the compound section comes before the rows";
  EXPECT_THAT(report, HasSubstr("compound: mean &Delta; over 1 row"));
  EXPECT_THAT(report, HasSubstr("rows agreeing"));
  EXPECT_THAT(report, ::testing::ContainsRegex("<td class=num>[12]/2</td>"));
  // ... and the morphology profile's largest changes (issue 15): generated images minus each
  // row's control, in units of the screen's control spread, before the rows.
  const size_t morph = report.find("morphology profile", p1);
  ASSERT_NE(morph, std::string::npos);
  EXPECT_LT(morph, report.find(" &middot; control ", p1));
  EXPECT_THAT(report.substr(morph, 2000),
              ::testing::ContainsRegex("(DNA|RNA|ER|AGP|Mito|nuclei)_"));
  // The profiles are kept in the row records (a resumed screen reports them too).
  auto record = ReadRowRecord(dir + "/out", 0);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->control_profile.size(), ProfileFeatureNames().size());
  ASSERT_EQ(record->samples.size(), 2u);
  EXPECT_EQ(record->samples[0].profile.size(), ProfileFeatureNames().size());
  EXPECT_NE(record->samples[0].profile, record->control_profile);
}

TEST_F(ScreenTest, TokenIsSentAsBearerMetadata) {
  FakeOptions fake;
  fake.required_token = "s3cret";
  Start(fake);
  const std::string dir = testing::MakeTempDir("token");
  testing::WriteText(dir + "/token", "s3cret\n");
  ConnectionOptions with_token;
  with_token.server = server_->address();
  with_token.auth_token_file = dir + "/token";
  auto connection = Connection::Create(with_token);
  ASSERT_TRUE(connection.ok());
  auto plan = ReadPlan(WritePlan(dir, 1, -1));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(RunScreen(**connection, *plan, Options(dir + "/out"), nullptr)->AllSucceeded());
  // Without the token the server refuses GetModelInfo: the screen cannot start.
  auto refused = RunScreen(*connection_, *plan, Options(dir + "/out2"), nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace cellflux::client

// The cellflux-client binary end to end against the fake service: info output, exit codes of
// screen (0 all good, 1 a row failed) and predict, and bad flags (2).
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/client/fake_cellflux_service.h"
#include "tests/client/test_util.h"

namespace cellflux::client {
namespace {

using ::testing::HasSubstr;

std::string Binary() {
  const char* build = std::getenv("CELLFLUX_BUILD_DIR");
  return absl::StrCat(build ? build : "build", "/client/cellflux-client");
}

// Runs the binary with `args`; returns the exit code and stores stdout+stderr in `output`.
int RunClient(const std::string& args, std::string* output) {
  FILE* pipe = popen(absl::StrCat(Binary(), " ", args, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  output->clear();
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output->append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class CliTest : public ::testing::Test {
 protected:
  testing::FakeServer server_;
};

TEST_F(CliTest, InfoPrintsModelGenesAndLimits) {
  ASSERT_TRUE(server_.ok());
  std::string out;
  ASSERT_EQ(RunClient("info --server " + server_.address(), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("fake-model-v1 (step 1234)"));
  EXPECT_THAT(out, HasSubstr("DNA, RNA, ER, AGP, Mito"));
  EXPECT_THAT(out, HasSubstr("genes:          978 (200814_at"));
  EXPECT_THAT(out, HasSubstr("perturbations:  21"));
  EXPECT_THAT(out, HasSubstr("steps<=200"));
}

TEST_F(CliTest, ScreenExitCodeIsNonZeroWhenARowFails) {
  const std::string dir = testing::MakeTempDir("cli");
  testing::WriteText(dir + "/good.csv",
                     "perturbation_id,control_ref\nBRD-K1,1:a01\nBRD-K2,1:a02\n");
  testing::WriteText(dir + "/bad.csv",
                     "perturbation_id,control_ref\nBRD-K1,1:a01\nBRD-BAD00000-000-00-0,1:a02\n");
  std::string out;
  const std::string common = " --server " + server_.address() + " --no-progress --seed 1";
  EXPECT_EQ(RunClient("screen --plan " + dir + "/good.csv --out " + dir + "/good" + common, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("2/2 rows done"));
  EXPECT_EQ(RunClient("screen --plan " + dir + "/bad.csv --out " + dir + "/bad" + common, &out), 1)
      << out;
  EXPECT_THAT(out, HasSubstr("unknown perturbation"));
  EXPECT_THAT(out, HasSubstr("plan line 3"));
}

TEST_F(CliTest, PredictWritesImagesAndGct) {
  const std::string dir = testing::MakeTempDir("clipredict");
  std::string out;
  ASSERT_EQ(RunClient("predict --server " + server_.address() +
                    " --perturbation BRD-K1 --control-ref 24277:a01:1 --samples 2 --seed 9 --out " +
                    dir,
                &out),
            0)
      << out;
  struct stat st;
  EXPECT_EQ(stat((dir + "/predictions/r000000/s1_composite.png").c_str(), &st), 0);
  EXPECT_EQ(stat((dir + "/predictions.gct").c_str(), &st), 0);
  EXPECT_EQ(stat((dir + "/report.html").c_str(), &st), 0);
}

TEST_F(CliTest, BadFlagsExitWithTwo) {
  std::string out;
  EXPECT_EQ(RunClient("screen --server " + server_.address(), &out), 2) << out;
  EXPECT_EQ(RunClient("predict --server " + server_.address() +
                    " --perturbation X --control-ref 1:a01 --control-dir d --out /tmp/x",
                &out),
            2)
      << out;
}

}  // namespace
}  // namespace cellflux::client

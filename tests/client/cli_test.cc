// The cellflux-client binary end to end against the fake service: info output, exit codes of
// screen (0 all good, 1 a row failed) and predict, and bad flags (2).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

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
  EXPECT_EQ(RunClient("screen --plan " + dir + "/good.csv --out " + dir + "/good" + common, &out),
            0)
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
  ASSERT_EQ(
      RunClient("predict --server " + server_.address() +
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

// predict's errors point at the command line, not at a "plan line 0" the user never wrote.
TEST_F(CliTest, PredictErrorsNameTheCommandLine) {
  const std::string dir = testing::MakeTempDir("clipredict_bad");
  std::string out;
  EXPECT_NE(
      RunClient("predict --server " + server_.address() + " --perturbation BRD-K1 --control-dir " +
                    dir + "/no_such_folder --out " + dir + "/out",
                &out),
      0);
  EXPECT_THAT(out, HasSubstr("command line"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("plan line 0")));
}

// A real SIGINT (what Ctrl-C sends) to the running binary: it exits 130 with the rows done so far
// journaled, and the same command then finishes the screen without redoing any row.
TEST_F(CliTest, SigintStopsTheScreenAndARerunResumes) {
  const std::string dir = testing::MakeTempDir("clisigint");
  std::string plan = "perturbation_id,control_ref\n";
  for (int i = 0; i < 12; ++i) absl::StrAppend(&plan, "BRD-K", i, ",1:a01\n");
  testing::WriteText(dir + "/plan.csv", plan);
  const std::string binary = Binary();
  const std::string address = server_.address();
  const std::string out = dir + "/out";
  const std::string log = dir + "/log.txt";
  std::vector<std::string> args = {
      binary,  "screen", "--server",      address, "--plan",       dir + "/plan.csv",
      "--out", out,      "--concurrency", "2",     "--no-progress"};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  std::atomic<pid_t> child{0};
  server_.service().set_on_success([&child](int64_t successes) {
    const pid_t pid = child.load();
    if (successes == 4 && pid > 0) kill(pid, SIGINT);  // never kill(0): that is our own group
  });
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  // `child` is set right after spawning; the child needs a process start and five RPCs before the
  // hook fires, and if it ever won that race the hook would do nothing and the test fail.
  ASSERT_EQ(posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
  child.store(pid);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  posix_spawn_file_actions_destroy(&actions);
  ASSERT_TRUE(WIFEXITED(status)) << testing::ReadText(log);
  EXPECT_EQ(WEXITSTATUS(status), 130) << testing::ReadText(log);
  const int64_t first_calls = server_.service().calls();
  EXPECT_GE(first_calls, 4);
  EXPECT_LT(first_calls, 12);
  EXPECT_EQ(testing::Lines(out + "/journal.jsonl").size(), static_cast<size_t>(first_calls));

  server_.service().set_on_success(nullptr);
  std::string output;
  EXPECT_EQ(RunClient(absl::StrCat("screen --server ", address, " --plan ", dir, "/plan.csv --out ",
                                   out, " --no-progress"),
                      &output),
            0)
      << output;
  EXPECT_EQ(server_.service().calls(), 12);
  EXPECT_THAT(output, HasSubstr("12/12 rows done (" + std::to_string(first_calls) +
                                " from an earlier run)"));
  // A screen is bulk work: it asks to be admitted after interactive requests.
  EXPECT_EQ(server_.service().last_request().options().priority(), cellflux::v1::BATCH);
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

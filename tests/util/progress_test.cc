#include "common/util/progress.h"

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace cellflux {
namespace {

std::string ReadAll(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

TEST(ProgressBarTest, PlainModePrintsCountsAndFinalLine) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions o;
    o.label = "train";
    o.out = f;
    o.force_plain = true;
    o.plain_interval_seconds = 1000;  // only the final line
    ProgressBar bar(10, o);
    for (int i = 1; i <= 10; ++i) bar.Update(i, "loss=0.5");
    bar.Finish("done");
  }
  std::string out = ReadAll(f);
  std::fclose(f);
  EXPECT_NE(out.find("train 10/10 100%"), std::string::npos) << out;
  EXPECT_NE(out.find("done"), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << "plain mode must not redraw in place";
}

TEST(ProgressBarTest, FormatDuration) {
  EXPECT_EQ(FormatDuration(65), "1:05");
  EXPECT_EQ(FormatDuration(3725), "1:02:05");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(ProgressBarTest, DisabledPrintsNothing) {
  FILE* f = std::tmpfile();
  {
    ProgressOptions o;
    o.out = f;
    o.enabled = false;
    ProgressBar bar(3, o);
    bar.Update(3);
  }
  EXPECT_EQ(ReadAll(f), "");
  std::fclose(f);
}

}  // namespace
}  // namespace cellflux

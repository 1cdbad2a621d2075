// The server's checkpoint watcher: a flip of MODELS_DIR/current (what `cellflux-tool promote`
// does) is seen once; a dangling or half-made link changes nothing; a rewrite in place is seen.
#include "server/checkpoint_watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace cellflux::server {
namespace {

namespace fs = std::filesystem;

class CheckpointWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / "checkpoint_watcher_test";
    fs::remove_all(root_);
    fs::create_directories(root_ / "versions");
    for (const char* v : {"a", "b"}) {
      fs::create_directories(root_ / "versions" / v);
      std::ofstream(root_ / "versions" / v / "config.json") << "{}";
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  // Points current at `target` the way promote does (new link renamed over the old one).
  void Flip(const std::string& target) {
    const fs::path tmp = root_ / ".current.tmp";
    fs::remove(tmp);
    fs::create_symlink(target, tmp);
    fs::rename(tmp, root_ / "current");
  }

  fs::path root_;
};

TEST_F(CheckpointWatcherTest, SeesAFlipOnce) {
  Flip("versions/a");
  CheckpointWatcher watch((root_ / "current").string());
  EXPECT_NE(watch.last_identity().find("versions/a@"), std::string::npos) << watch.last_identity();
  EXPECT_FALSE(watch.Poll());
  Flip("versions/b");
  EXPECT_TRUE(watch.Poll());
  EXPECT_NE(watch.last_identity().find("versions/b@"), std::string::npos);
  EXPECT_FALSE(watch.Poll());
  Flip("versions/a");  // rollback is a change too
  EXPECT_TRUE(watch.Poll());
}

TEST_F(CheckpointWatcherTest, UnresolvablePathsKeepTheLastIdentity) {
  Flip("versions/a");
  CheckpointWatcher watch((root_ / "current").string());
  const std::string loaded = watch.last_identity();
  Flip("versions/missing");
  EXPECT_FALSE(watch.Poll());
  EXPECT_EQ(watch.last_identity(), loaded);
  fs::create_directories(root_ / "versions" / "empty");  // no config.json yet
  Flip("versions/empty");
  EXPECT_FALSE(watch.Poll());
  Flip("versions/a");  // back where it was: no change to report
  EXPECT_FALSE(watch.Poll());
  EXPECT_EQ(CheckpointWatcher::Identity((root_ / "nothing").string()), "");
}

TEST_F(CheckpointWatcherTest, SeesACheckpointRewrittenInPlace) {
  const fs::path config = root_ / "versions" / "a" / "config.json";
  CheckpointWatcher watch((root_ / "versions" / "a").string());
  // A different mtime, set explicitly rather than waiting for the clock to tick.
  struct timespec times[2] = {{0, UTIME_OMIT}, {1'000'000'000, 123}};
  ASSERT_EQ(utimensat(AT_FDCWD, config.c_str(), times, 0), 0);
  EXPECT_TRUE(watch.Poll());
  EXPECT_FALSE(watch.Poll());
}

}  // namespace
}  // namespace cellflux::server

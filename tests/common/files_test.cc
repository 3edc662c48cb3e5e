#include "cleave/common/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/test_support.h"

namespace cleave::common {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Contents(const std::string& path) { return ReadFile(path).value_or("<missing>"); }

TEST(FilesTest, WriteFileAtomicallyReplacesTheFileAndLeavesNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.File("plan.json");
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "new").ok());
  EXPECT_EQ(Contents(path), "new");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(ReadFile(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileAtomically(dir.File("no/such/folder/x"), "x").ok());
}

// A reader (an edge rescanning, a planner reading a profile) opening the file while it is
// rewritten sees the old or the new contents whole, never a truncated or half-written file.
TEST(FilesTest, AReaderSeesTheOldOrTheNewFileWholeWhileItIsRewritten) {
  test::TempDir dir;
  const std::string path = dir.File("profile.json");
  const size_t size = 8 << 20;
  const std::string versions[] = {std::string(size, 'a'), std::string(size, 'b')};
  ASSERT_TRUE(WriteFileAtomically(path, versions[0]).ok());
  std::atomic<bool> writing{true};
  std::atomic<int> reads{0}, torn{0};
  std::thread reader([&] {
    while (writing) {
      const std::string seen = Contents(path);
      ++reads;
      if (seen != versions[0] && seen != versions[1]) ++torn;
    }
  });
  for (int i = 1; i <= 20; ++i) ASSERT_TRUE(WriteFileAtomically(path, versions[i % 2]).ok());
  writing = false;
  reader.join();
  EXPECT_GT(reads, 0);
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
}

TEST(FilesTest, ReadFileRefusesDevicesFifosAndFilesBeyondItsBoundBeforeReading) {
  test::TempDir dir;
  auto device = ReadFile("/dev/zero");  // would never end
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(device.status().message()), HasSubstr("not a regular file"));
  ASSERT_EQ(mkfifo(dir.File("fifo").c_str(), 0600), 0);
  EXPECT_THAT(std::string(ReadFile(dir.File("fifo")).status().message()),
              HasSubstr("not a regular file"));
  ASSERT_TRUE(WriteFileAtomically(dir.File("four"), "four").ok());
  EXPECT_EQ(ReadFile(dir.File("four"), 4).value_or(""), "four");
  auto large = ReadFile(dir.File("four"), 3);
  EXPECT_EQ(large.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(large.status().message()), HasSubstr("4 bytes, more than the 3"));
  EXPECT_THAT(std::string(ReadFile(dir.path()).status().message()), HasSubstr("directory"));
}

TEST(FilesTest, AStagedFolderReplacesTheTargetWholeAndKeepsWhatItIsTold) {
  test::TempDir dir;
  const std::string target = dir.File("bundles/net/1");
  {  // a new target
    auto staged = StagedFolder::Begin(target);
    ASSERT_TRUE(staged.ok()) << staged.status();
    EXPECT_EQ(fs::path(staged->path()).filename(), ".1.staging");
    ASSERT_TRUE(WriteFileAtomically(staged->path() + "/segment_0.pt", "s0").ok());
    ASSERT_TRUE(WriteFileAtomically(staged->path() + "/manifest.json", "m1").ok());
    EXPECT_FALSE(fs::exists(target));  // nothing is visible before the commit
    ASSERT_TRUE(staged->Commit().ok());
  }
  EXPECT_EQ(Contents(target + "/manifest.json"), "m1");
  {  // an existing one: the kept file is carried over, the others are gone
    ASSERT_TRUE(WriteFileAtomically(target + "/stray", "x").ok());
    auto staged = StagedFolder::Begin(target);
    ASSERT_TRUE(staged.ok()) << staged.status();
    ASSERT_TRUE(staged->Keep("segment_0.pt").ok());
    EXPECT_EQ(staged->Keep("nope").code(), absl::StatusCode::kNotFound);
    ASSERT_TRUE(WriteFileAtomically(staged->path() + "/manifest.json", "m2").ok());
    EXPECT_EQ(Contents(target + "/manifest.json"), "m1");  // the old one until the commit
    ASSERT_TRUE(staged->Commit().ok());
    EXPECT_EQ(staged->Commit().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(Contents(target + "/manifest.json"), "m2");
  EXPECT_EQ(Contents(target + "/segment_0.pt"), "s0");
  EXPECT_FALSE(fs::exists(target + "/stray"));
  for (const auto& entry : fs::directory_iterator(dir.File("bundles/net"))) {
    EXPECT_EQ(entry.path().filename(), "1") << "left over: " << entry.path();
  }
}

TEST(FilesTest, AnAbandonedStagedFolderChangesNothing) {
  test::TempDir dir;
  const std::string target = dir.File("b");
  ASSERT_TRUE(fs::create_directory(target));
  ASSERT_TRUE(WriteFileAtomically(target + "/manifest.json", "old").ok());
  {
    auto staged = StagedFolder::Begin(target);
    ASSERT_TRUE(staged.ok());
    ASSERT_TRUE(WriteFileAtomically(staged->path() + "/manifest.json", "new").ok());
  }  // destroyed without a commit
  EXPECT_EQ(Contents(target + "/manifest.json"), "old");
  EXPECT_FALSE(fs::exists(dir.File(".b.staging")));
}

TEST(FilesTest, BeginClearsWhatAnInterruptedWriterLeft) {
  test::TempDir dir;
  const std::string target = dir.File("b");
  // Killed between the two renames of the fallback: the target waits at its old name.
  ASSERT_TRUE(fs::create_directory(dir.File(".b.old")));
  ASSERT_TRUE(WriteFileAtomically(dir.File(".b.old/manifest.json"), "old").ok());
  ASSERT_TRUE(fs::create_directory(dir.File(".b.staging")));
  ASSERT_TRUE(WriteFileAtomically(dir.File(".b.staging/half"), "x").ok());
  auto staged = StagedFolder::Begin(target);
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_EQ(Contents(target + "/manifest.json"), "old");
  EXPECT_FALSE(fs::exists(dir.File(".b.old")));
  EXPECT_TRUE(fs::is_empty(staged->path()));
}

TEST(FilesTest, ATargetThatIsAFileIsRefused) {
  test::TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir.File("f"), "x").ok());
  auto staged = StagedFolder::Begin(dir.File("f"));
  EXPECT_EQ(staged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(staged.status().message()), HasSubstr("not a folder"));
}

}  // namespace
}  // namespace cleave::common

// Writers killed at random points: `cleave split`, `cleave exits train` and `cleave profile`
// are SIGKILLed again and again while they replace their output, and after every kill the
// output is the old or the new complete one — a bundle that loads, verifies and is one of the
// two, a profile that parses — while a cleave-edge watching the bundle folder every 10 ms only
// ever loads bundles that were complete.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The exit tests' reference model (the ExitsModel CTest fixture): 1x1x28x28 Fashion-MNIST.
constexpr const char* kModel = CLEAVE_EXITS_MODEL_DIR "/model.pt";

class CrashSafeWritesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kModel)) << kModel << " missing: run through CTest (ExitsModel)";
    target_ = dir_.File("bundles/fashion/1");
    watched_ = dir_.File("bundles/fashion");
    fs::create_directories(watched_);
  }

  std::vector<std::string> Split(const std::string& cuts, const std::string& out) const {
    return {test::BinaryPath("cleave"),
            "split",
            kModel,
            "--input-shape",
            "1,1,28,28",
            "--cuts",
            cuts,
            "-o",
            out};
  }

  // Runs `args` to the end; fails the test unless it exits 0.
  void Run(const std::vector<std::string>& args) {
    std::string command;
    for (const std::string& arg : args) absl::StrAppend(&command, "'", arg, "' ");
    const test::CommandResult result = test::RunCommand(command);
    ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  }

  // The newest modification time of anything under watched_ (a staging folder beside the
  // output included): a writer has started writing once it changes.
  fs::file_time_type LastWrite() const {
    std::error_code error;
    fs::file_time_type newest = fs::file_time_type::min();
    for (auto it = fs::recursive_directory_iterator(watched_, error);
         !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      newest = std::max(newest, it->last_write_time(error));
    }
    return newest;
  }

  // When an uninterrupted writer writes, counted from its first write: its first burst of
  // writes (until the first quiet 20 ms: the files of a bundle) and its whole run to its exit
  // (verification and the swap come after the burst).
  struct Writing {
    Clock::duration burst{0};
    Clock::duration span{0};
  };

  // Runs `args` to the end, uninterrupted, watching when it writes. Fails the test unless it
  // writes and exits 0.
  Writing MeasureWriting(const std::vector<std::string>& args) {
    const int pid = test::StartProcess(args, dir_.File("writer.log"));
    int status = 0;
    const bool wrote = AwaitFirstWrite(pid, &status);
    EXPECT_TRUE(wrote) << "the writer exited without writing under " << watched_;
    const Clock::time_point first = Clock::now();
    Writing writing;
    fs::file_time_type last_seen = LastWrite();
    Clock::time_point last_change = first;
    bool in_burst = true;
    while (wrote && waitpid(pid, &status, WNOHANG) != pid) {
      const fs::file_time_type now_seen = LastWrite();
      const Clock::time_point now = Clock::now();
      if (now_seen != last_seen) {
        last_seen = now_seen;
        last_change = now;
      } else if (in_burst && now - last_change > std::chrono::milliseconds(20)) {
        writing.burst = last_change - first;
        in_burst = false;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    writing.span = Clock::now() - first;
    if (in_burst) writing.burst = writing.span;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << *common::ReadFile(dir_.File("writer.log"));
    return writing;
  }

  // Polls until the writer `pid` starts writing: true then; false when it exited first (and
  // was reaped, its wait status in `status`).
  bool AwaitFirstWrite(int pid, int* status) const {
    const fs::file_time_type before = LastWrite();
    while (LastWrite() == before) {
      if (waitpid(pid, status, WNOHANG) == pid) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }

  // Starts `args` and SIGKILLs it at a random point: in three rounds of twenty before it
  // writes anything, in nine during its first burst of writes (`writing` from MeasureWriting),
  // in eight anywhere from its first write to its exit.
  void KillMidway(const std::vector<std::string>& args, const Writing& writing) {
    std::uniform_real_distribution<double> share(0.0, 1.0);
    const double mode = share(random_);
    const int pid = test::StartProcess(args, dir_.File("writer.log"));
    auto sleep = [](Clock::duration span, double fraction) {
      std::this_thread::sleep_for(
          std::chrono::duration_cast<std::chrono::microseconds>(span * fraction));
    };
    if (mode < 0.15) {
      sleep(std::chrono::milliseconds(400), share(random_));
    } else {
      int status = 0;
      if (!AwaitFirstWrite(pid, &status)) return;  // done before it was seen writing
      sleep(mode < 0.6 ? writing.burst + writing.burst / 5 : writing.span, share(random_));
    }
    test::KillProcess(pid);
  }

  // The id of the bundle in `dir` ("" when it does not load).
  static std::string IdOf(const std::string& dir) {
    auto bundle = common::Bundle::Load(dir);
    EXPECT_TRUE(bundle.ok()) << bundle.status();
    return bundle.ok() ? (*bundle)->id() : "";
  }

  // The bundle at target_ loads, verifies and is complete; returns its id ("" on failure).
  std::string CompleteBundleId() const {
    auto bundle = common::Bundle::Load(target_);
    EXPECT_TRUE(bundle.ok()) << bundle.status();
    if (!bundle.ok()) return "";
    auto verified = (*bundle)->Verify();
    EXPECT_TRUE(verified.ok()) << verified.status();
    return (*bundle)->id();
  }

  test::TempDir dir_;
  std::string target_;
  std::string watched_;  // where the writer under test writes; its log goes elsewhere
  std::mt19937 random_{20261201};
};

TEST_F(CrashSafeWritesTest, AKilledWriterLeavesTheOldOrTheNewCompleteBundle) {
  // Two versions of the bundle, whose ids are known: split at stem, and at stem and layer2.
  Run(Split("stem", dir_.File("reference/a")));
  Run(Split("stem,layer2", dir_.File("reference/b")));
  const std::string id_a = IdOf(dir_.File("reference/a"));
  const std::string id_b = IdOf(dir_.File("reference/b"));
  ASSERT_FALSE(id_a.empty() || id_b.empty());
  ASSERT_NE(id_a, id_b);
  const Writing split_writing = MeasureWriting(Split("stem", target_));
  std::set<std::string> seen = {CompleteBundleId()};  // every complete state the folder had

  test::EdgeProcess edge(dir_.File("bundles"), {"--watch-interval-ms", "10"});
  ASSERT_TRUE(edge.running()) << edge.Log();

  // cleave split, replacing one version with the other.
  for (int round = 0; round < 30; ++round) {
    KillMidway(Split(round % 2 == 0 ? "stem,layer2" : "stem", target_), split_writing);
    const std::string id = CompleteBundleId();
    EXPECT_TRUE(id == id_a || id == id_b) << "round " << round << ": bundle " << id;
    seen.insert(id);
  }
  // cleave exits train, adding heads to whichever version is there (a new id each time).
  const std::vector<std::string> train = {test::BinaryPath("cleave"),
                                          "exits",
                                          "train",
                                          target_,
                                          "--cuts",
                                          "stem",
                                          "--epochs",
                                          "1",
                                          "--limit",
                                          "300",
                                          "--held-out",
                                          "100"};
  const Writing train_writing = MeasureWriting(train);
  seen.insert(CompleteBundleId());
  for (int round = 0; round < 10; ++round) {
    const std::string before = CompleteBundleId();
    KillMidway(train, train_writing);
    const std::string after = CompleteBundleId();
    if (after != before) {  // the new bundle: the old one with a head at stem
      auto bundle = common::Bundle::Load(target_);
      ASSERT_TRUE(bundle.ok());
      EXPECT_NE((*bundle)->manifest().FindExit((*bundle)->manifest().cuts.at(0).id), nullptr);
    }
    seen.insert(after);
  }
  // Nothing a writer staged is left where a scanner looks, and the edge loaded only what was
  // complete.
  for (const auto& entry : fs::directory_iterator(dir_.File("bundles/fashion"))) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "1" || name.rfind('.', 0) == 0) << name;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the last scan finish
  std::istringstream log(edge.Log());
  std::string line;
  int loaded = 0;
  while (std::getline(log, line)) {
    if (line.find("event=bundle_loaded") == std::string::npos &&
        line.find("event=bundle_updated") == std::string::npos) {
      continue;
    }
    ++loaded;
    const size_t at = line.find(" id=");
    ASSERT_NE(at, std::string::npos) << line;
    const std::string id = line.substr(at + 4, 64);
    EXPECT_EQ(seen.count(id), 1u) << "the edge loaded a bundle that was never complete: " << line;
  }
  EXPECT_GT(loaded, 1);
}

TEST_F(CrashSafeWritesTest, AKilledProfilerLeavesNoFileOrACompleteOne) {
  watched_ = dir_.File("out");
  fs::create_directories(watched_);
  const std::string out = watched_ + "/profile.json";
  const std::vector<std::string> profile = {
      test::BinaryPath("cleave"), "profile", kModel, "--input-shape", "1,1,28,28", "-o", out};
  const Writing profile_writing = MeasureWriting(profile);
  for (int round = 0; round < 8; ++round) {
    KillMidway(profile, profile_writing);
    auto text = common::ReadFile(out);
    ASSERT_TRUE(text.ok()) << text.status();  // the first, complete run wrote it
    EXPECT_TRUE(nlohmann::json::accept(*text)) << "round " << round;
  }
}

}  // namespace
}  // namespace cleave

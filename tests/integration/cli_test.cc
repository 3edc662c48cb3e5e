// The `cleave` and `cleave-edge` executables as a user runs them: exit codes and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

using test::RunCommand;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

std::string Cleave() { return test::BinaryPath("cleave"); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = test::SaveModel(test::ResidualModel(), dir_.File("net.pt")); }

  test::CommandResult Run(const std::string& arguments) {
    return RunCommand(Cleave() + " " + arguments);
  }

  test::TempDir dir_;
  std::string model_;
};

TEST_F(CliTest, InspectJsonListsCutsWithIdNameShapeAndBytes) {
  auto result = Run("inspect " + model_ + " --input-shape 1,3,8,8 --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(result.output);
  ASSERT_GE(json.at("cuts").size(), 4u);
  for (const auto& cut : json.at("cuts")) {
    EXPECT_TRUE(cut.contains("id") && cut.contains("name") && cut.contains("shape") &&
                cut.contains("bytes"));
  }
  EXPECT_EQ(json["cuts"][1]["name"], "stem");
  EXPECT_EQ(json["cuts"][1]["shape"], nlohmann::json({1, 8, 8, 8}));
  EXPECT_EQ(json["cuts"][1]["bytes"], 2048);
}

TEST_F(CliTest, InspectTableIsReadable) {
  auto result = Run("inspect " + model_ + " --input-shape 1,3,8,8");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("block1"));
  EXPECT_THAT(result.output, HasSubstr("1x8x8x8"));
}

TEST_F(CliTest, SplitThenVerify) {
  auto inspect = Run("inspect " + model_ + " --input-shape 1,3,8,8 --json");
  const auto cuts = nlohmann::json::parse(inspect.output)["cuts"];
  const std::string ids =
      std::to_string(cuts[1]["id"].get<int>()) + "," + std::to_string(cuts[2]["id"].get<int>());
  auto split = Run("split " + model_ + " --input-shape 1,3,8,8 --cuts " + ids + " -o " +
                   dir_.File("bundle"));
  ASSERT_EQ(split.exit_code, 0) << split.output;
  // Exactly 0 (the segments reproduce the model bit for bit), not "0.9" or "0.001".
  EXPECT_THAT(split.output, ContainsRegex("max abs difference 0([^.0-9e]|$)"));
  auto verify = Run("verify " + dir_.File("bundle"));
  ASSERT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_THAT(verify.output, HasSubstr("hashes ok"));

  std::ofstream(dir_.File("bundle/segment_0.pt"), std::ios::app) << "tampered";
  auto tampered = Run("verify " + dir_.File("bundle"));
  EXPECT_NE(tampered.exit_code, 0);
  EXPECT_THAT(tampered.output, HasSubstr("does not match"));
}

TEST_F(CliTest, MissingModelFileIsAClearError) {
  auto result = Run("inspect " + dir_.File("absent.pt") + " --input-shape 1,3,8,8");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("file not found"));
  EXPECT_THAT(result.output, HasSubstr("absent.pt"));
}

TEST_F(CliTest, FileThatIsNotTorchScriptIsAClearError) {
  std::ofstream(dir_.File("notes.txt")) << "hello";
  auto result = Run("inspect " + dir_.File("notes.txt") + " --input-shape 1,3,8,8");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("is not a TorchScript file"));
}

TEST_F(CliTest, CutIdOutOfRangeIsAClearError) {
  auto result = Run("split " + model_ + " --input-shape 1,3,8,8 --cuts 500 -o " + dir_.File("b"));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("cut 500 out of range"));
}

TEST_F(CliTest, UnsortedCutsAndBadShapesAreClearErrors) {
  auto unsorted = Run("split " + model_ + " --input-shape 1,3,8,8 --cuts 3,1 -o " + dir_.File("b"));
  EXPECT_NE(unsorted.exit_code, 0);
  EXPECT_THAT(unsorted.output, HasSubstr("strictly increasing"));
  auto shape = Run("inspect " + model_ + " --input-shape 1,three,8,8");
  EXPECT_NE(shape.exit_code, 0);
  EXPECT_THAT(shape.output, HasSubstr("three"));
  auto wrong = Run("inspect " + model_ + " --input-shape 1,4,8,8");
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.output, HasSubstr("rejects input shape 1x4x8x8"));
}

TEST_F(CliTest, ProfilePlanThenSplitAtThePlannedCuts) {
  auto profile = Run("profile " + model_ + " --input-shape 1,3,8,8 --runs 3 --warmup 1 " +
                     "--batch-sizes 1,2 -o " + dir_.File("device.json"));
  ASSERT_EQ(profile.exit_code, 0) << profile.output;
  EXPECT_THAT(profile.output, HasSubstr("stem -> block1"));
  EXPECT_THAT(profile.output, HasSubstr("batch 2 median ms"));
  const auto profile_json = nlohmann::json::parse(std::ifstream(dir_.File("device.json")));
  EXPECT_EQ(profile_json["format"], "cleave.profile");

  // The same profile for both sides, with a device 50x slower and four links.
  auto plan = Run("plan " + model_ + " --input-shape 1,3,8,8 --device-profile " +
                  dir_.File("device.json") + " --edge-profile " + dir_.File("device.json") +
                  " --device-scale 50 --bandwidth 1mbit,5mbit,20mbit,100mbit --rtt 2ms -o " +
                  dir_.File("plan.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_THAT(plan.output, HasSubstr("all on device"));
  EXPECT_THAT(plan.output, HasSubstr("input to the edge (encoded)"));
  EXPECT_THAT(plan.output, HasSubstr("all-edge ms"));
  EXPECT_THAT(plan.output, HasSubstr("<- chosen"));
  EXPECT_THAT(plan.output, HasSubstr("100mbit"));
  const auto plan_json = nlohmann::json::parse(std::ifstream(dir_.File("plan.json")));
  ASSERT_EQ(plan_json["links"].size(), 4u);
  ASSERT_FALSE(plan_json["bundle_cuts"].empty());

  auto split = Run("split " + model_ + " --input-shape 1,3,8,8 --plan " + dir_.File("plan.json") +
                   " -o " + dir_.File("bundle"));
  ASSERT_EQ(split.exit_code, 0) << split.output;
  EXPECT_THAT(split.output, HasSubstr("codec int8+zstd1"));  // the plan's codec
  const auto manifest = nlohmann::json::parse(std::ifstream(dir_.File("bundle/manifest.json")));
  std::vector<int> cuts;
  for (const auto& cut : manifest["cuts"]) cuts.push_back(cut["id"]);
  EXPECT_EQ(cuts, plan_json["bundle_cuts"].get<std::vector<int>>());
}

TEST_F(CliTest, PlanOptionsReachThePlan) {
  ASSERT_EQ(Run("profile " + model_ + " --input-shape 1,3,8,8 --runs 1 --batch-sizes 1 -o " +
                dir_.File("p.json"))
                .exit_code,
            0);
  auto inspect = Run("inspect " + model_ + " --input-shape 1,3,8,8 --json");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  const int64_t stem = nlohmann::json::parse(inspect.output)["cuts"][1]["id"].get<int64_t>();
  // A deadline between all-on-device and what the 1 Mbit/s link costs: some candidates miss it.
  auto plan = Run("plan " + model_ + " --input-shape 1,3,8,8 --device-profile " +
                  dir_.File("p.json") + " --edge-profile " + dir_.File("p.json") +
                  " --bandwidth 1mbit --rtt 2ms --codec fp16 --zstd-level 3 --cuts stem" +
                  " --deadline 5ms -o " + dir_.File("plan.json"));
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  const auto json = nlohmann::json::parse(std::ifstream(dir_.File("plan.json")));
  EXPECT_EQ(json["codec"]["name"], "fp16");
  EXPECT_EQ(json["codec"]["zstd_level"], 3);
  EXPECT_DOUBLE_EQ(json["deadline_ms"].get<double>(), 5.0);
  ASSERT_EQ(json["links"].size(), 1u);
  // Only the named cut competes (with all-on-device and sending the input).
  for (const auto& cost : json["links"][0]["ranked"]) {
    if (cost["cut_id"].is_null() || cost["cut_id"] == 0) continue;
    EXPECT_EQ(cost["cut_id"], stem) << cost.dump();
  }
  // Feasible means within the deadline, for every candidate; all on device makes it, sending
  // anything over 1 Mbit/s with a 2 ms round trip does not.
  std::set<bool> feasible;
  for (const auto& cost : json["links"][0]["ranked"]) {
    EXPECT_EQ(cost["feasible"].get<bool>(), cost["expected_ms"].get<double>() <= 5.0)
        << cost.dump();
    feasible.insert(cost["feasible"].get<bool>());
  }
  EXPECT_EQ(feasible.size(), 2u) << "the deadline should split the candidates";
  for (const auto& cut : json["bundle_cuts"]) EXPECT_EQ(cut, stem);
  auto unknown_cut =
      Run("plan " + model_ + " --input-shape 1,3,8,8 --device-profile " + dir_.File("p.json") +
          " --edge-profile " + dir_.File("p.json") + " --bandwidth 1mbit --cuts nowhere");
  EXPECT_EQ(unknown_cut.exit_code, 1);
  EXPECT_THAT(unknown_cut.output, HasSubstr("nowhere"));
}

TEST_F(CliTest, PlanningErrorsNameWhatWasWrong) {
  ASSERT_EQ(Run("profile " + model_ + " --input-shape 1,3,8,8 --runs 1 --batch-sizes 1 -o " +
                dir_.File("p.json"))
                .exit_code,
            0);
  const std::string other = test::SaveModel(test::ConcatModel(), dir_.File("other.pt"));
  const std::string profiles =
      " --device-profile " + dir_.File("p.json") + " --edge-profile " + dir_.File("p.json");
  auto wrong_model =
      Run("plan " + other + " --input-shape 1,3,8,8" + profiles + " --bandwidth 5mbit");
  EXPECT_EQ(wrong_model.exit_code, 1);
  EXPECT_THAT(wrong_model.output, HasSubstr("model hashes differ"));
  auto bad_rate =
      Run("plan " + model_ + " --input-shape 1,3,8,8" + profiles + " --bandwidth 5mbps");
  EXPECT_EQ(bad_rate.exit_code, 1);
  EXPECT_THAT(bad_rate.output, HasSubstr("bad bit rate '5mbps'"));
  auto not_a_profile = Run("plan " + model_ + " --input-shape 1,3,8,8 --device-profile " + model_ +
                           " --edge-profile " + dir_.File("p.json") + " --bandwidth 5mbit");
  EXPECT_EQ(not_a_profile.exit_code, 1);
  EXPECT_THAT(not_a_profile.output, HasSubstr("is not a valid cleave profile"));
  auto both = Run("split " + model_ + " --input-shape 1,3,8,8 --cuts stem --plan " +
                  dir_.File("p.json") + " -o " + dir_.File("b"));
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_THAT(both.output, HasSubstr("give either --cuts or --plan"));
  auto profile_as_plan = Run("split " + model_ + " --input-shape 1,3,8,8 --plan " +
                             dir_.File("p.json") + " -o " + dir_.File("b"));
  EXPECT_EQ(profile_as_plan.exit_code, 1);
  EXPECT_THAT(profile_as_plan.output, HasSubstr("is not a cleave plan"));
}

TEST_F(CliTest, EdgeWithMissingBundleFolderExitsNonZero) {
  auto result = RunCommand(test::BinaryPath("cleave-edge") + " --bundles " + dir_.File("missing") +
                           " --listen 127.0.0.1:0");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("bundle folder not found"));
}

}  // namespace
}  // namespace cleave

// The `cleave` and `cleave-edge` executables as a user runs them: exit codes and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

using ::testing::HasSubstr;
using testing::RunCommand;

std::string Cleave() { return testing::BinaryPath("cleave"); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::SaveModel(testing::ResidualModel(), dir_.File("net.pt"));
  }

  testing::CommandResult Run(const std::string& arguments) {
    return RunCommand(Cleave() + " " + arguments);
  }

  testing::TempDir dir_;
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
  EXPECT_THAT(split.output, HasSubstr("max abs difference 0"));
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

TEST_F(CliTest, EdgeWithMissingBundleFolderExitsNonZero) {
  auto result = RunCommand(testing::BinaryPath("cleave-edge") + " --bundles " +
                           dir_.File("missing") + " --listen 127.0.0.1:0");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("bundle folder not found"));
}

}  // namespace
}  // namespace cleave

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/device/runtime.h"
#include "cleave/partitioner/exit_calibration.h"
#include "cleave/partitioner/exit_heads.h"
#include "tests/support/test_support.h"

namespace cleave::partitioner {
namespace {

using ::testing::HasSubstr;

common::LabeledImages Slice(const common::LabeledImages& data, int64_t begin, int64_t end) {
  return {data.images.slice(0, begin, end), data.labels.slice(0, begin, end)};
}

// One briefly trained reference model split at stem and layer2, shared by the suite: the
// ExitsModel CTest fixture trains it (`cleave train-reference`) and splits it (`cleave split`)
// into CLEAVE_EXITS_MODEL_DIR once per CTest run. Each test copies the bundle before changing
// it. A missing or broken fixture fails every test of the suite (in SetUp); none is skipped.
class ExitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { suite_error_ = new std::string(LoadShared()); }

  static void TearDownTestSuite() {
    delete data_;
    delete suite_error_;
  }

  // Loads what the tests share; returns what is missing, or "" when everything is there.
  static std::string LoadShared() {
    auto data = common::LoadFashionMnist(common::kFashionMnistDir, "train", 4000);
    if (!data.ok()) return std::string(data.status().message());
    data_ = new common::LabeledImages(*data);
    auto bundle = common::Bundle::Load(kPlainBundle);
    if (!bundle.ok()) {
      return absl::StrCat("the ExitsModel fixture's bundle: ", bundle.status().message(),
                          " (run the suite through CTest, which runs the fixture first)");
    }
    std::vector<std::string> names;
    for (const common::CutInfo& cut : (*bundle)->manifest().cuts) {
      cut_ids_.push_back(cut.id);
      names.push_back(cut.name);
    }
    if (names != std::vector<std::string>{"stem", "layer2"}) {
      return absl::StrCat(kPlainBundle, " is not cut at stem and layer2");
    }
    return "";
  }

  void SetUp() override { ASSERT_TRUE(suite_error_->empty()) << *suite_error_; }

  // A fresh copy of the split bundle, with exit heads trained at both cuts when `with_exits`.
  std::string FreshBundle(bool with_exits) {
    const std::string target = work_.File("bundle");
    std::filesystem::copy(kPlainBundle, target, std::filesystem::copy_options::recursive);
    if (with_exits) {
      auto bundle = common::Bundle::Load(target);
      EXPECT_TRUE(bundle.ok());
      ExitTrainingOptions options;
      options.epochs = 2;
      auto heads = TrainExitHeads(**bundle, cut_ids_, Slice(*data_, 0, 3000), options);
      EXPECT_TRUE(heads.ok()) << heads.status();
      EXPECT_TRUE(AddExitsToBundle(target, cut_ids_, *heads, options.kind).ok());
    }
    return target;
  }

  static constexpr const char* kPlainBundle = CLEAVE_EXITS_MODEL_DIR "/plain";
  static std::string* suite_error_;
  static common::LabeledImages* data_;
  static std::vector<int> cut_ids_;
  test::TempDir work_;
};

std::string* ExitsTest::suite_error_ = nullptr;
common::LabeledImages* ExitsTest::data_ = nullptr;
std::vector<int> ExitsTest::cut_ids_;

TEST_F(ExitsTest, HeadsTrainedOnASmallSubsetBeatChanceClearly) {
  const std::string dir = FreshBundle(/*with_exits=*/true);
  auto bundle = common::Bundle::Load(dir);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  auto predictions = PredictWithExits(**bundle, Slice(*data_, 3000, 4000));
  ASSERT_TRUE(predictions.ok()) << predictions.status();
  ASSERT_EQ(predictions->exit_logits.size(), 2u);
  for (const at::Tensor& logits : predictions->exit_logits) {
    const double accuracy =
        logits.argmax(1).eq(predictions->labels).to(at::kDouble).mean().item<double>();
    // Chance is 0.1 (1000 samples: a standard deviation of about 0.01). A pooled linear head
    // right after the stem sees little; 0.25 is still fifteen deviations above chance.
    EXPECT_GT(accuracy, 0.25);
  }
}

TEST_F(ExitsTest, ExitTrainingLeavesEverySegmentBitIdentical) {
  const std::string dir = FreshBundle(/*with_exits=*/false);
  const common::BundleManifest before = (*common::Bundle::Load(dir))->manifest();
  std::vector<std::string> bytes_before;
  for (const auto& segment : before.segments) {
    bytes_before.push_back(*common::ReadFile(dir + "/" + segment.module.file));
  }
  auto bundle = common::Bundle::Load(dir);
  ExitTrainingOptions options;
  options.epochs = 1;
  auto heads = TrainExitHeads(**bundle, cut_ids_, Slice(*data_, 0, 500), options);
  ASSERT_TRUE(heads.ok());
  auto id = AddExitsToBundle(dir, cut_ids_, *heads, options.kind);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_NE(*id, (*bundle)->id());  // the manifest changed...
  const common::BundleManifest after = (*common::Bundle::Load(dir))->manifest();
  ASSERT_EQ(after.segments.size(), before.segments.size());
  for (size_t i = 0; i < before.segments.size(); ++i) {  // ...the segments did not
    EXPECT_EQ(after.segments[i].module.sha256, before.segments[i].module.sha256);
    EXPECT_EQ(*common::ReadFile(dir + "/" + after.segments[i].module.file), bytes_before[i]);
  }
  EXPECT_EQ(after.exits.size(), 2u);
}

TEST_F(ExitsTest, BundleWithHeadsPassesVerify) {
  const std::string dir = FreshBundle(/*with_exits=*/true);
  auto bundle = common::Bundle::Load(dir);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_TRUE((*bundle)->Verify().ok());
  auto verify = test::RunCommand(test::BinaryPath("cleave") + " verify " + dir);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  std::filesystem::resize_file(dir + "/exit_" + std::to_string(cut_ids_[0]) + ".pt", 10);
  auto tampered = common::Bundle::Load(dir);
  ASSERT_FALSE(tampered.ok());
  EXPECT_EQ(tampered.status().code(), absl::StatusCode::kDataLoss);
}

// Accuracy on `data` of the device runtime acting on the bundle's exits (no edge: an input
// leaves at the first confident exit, or runs every segment), one image at a time as a robot
// would, with the segments as stored so nothing differs from calibration but the code path.
double DeviceAccuracy(const std::string& dir, const common::LabeledImages& data) {
  device::RuntimeOptions options;
  options.optimize_segments = false;
  auto runtime = device::Runtime::Create(dir, options);
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  if (!runtime.ok()) return 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < data.images.size(0); ++i) {
    auto result = (*runtime)->Infer(data.images.slice(0, i, i + 1));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return 0;
    correct += result->outputs.at(0).argmax(1).item<int64_t>() == data.labels[i].item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(data.images.size(0));
}

// Accuracy of the whole model (every segment, no exit) on `data`.
double FullAccuracy(const std::string& dir, const common::LabeledImages& data) {
  auto bundle = common::Bundle::Load(dir);
  EXPECT_TRUE(bundle.ok()) << bundle.status();
  if (!bundle.ok()) return 0;
  auto logits = (*bundle)->RunSegments(0, (*bundle)->num_loaded_segments() - 1, {data.images});
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok()) return 0;
  return logits->toTensor().argmax(1).eq(data.labels).to(at::kDouble).mean().item<double>();
}

TEST_F(ExitsTest, ChosenThresholdsKeepTheRequestedDropOnCalibrationData) {
  const std::string dir = FreshBundle(/*with_exits=*/true);
  const common::LabeledImages held_out = Slice(*data_, 3000, 4000);
  const double full = FullAccuracy(dir, held_out);
  double most_exits = 0;
  for (double drop : {0.0, 0.5, 2.0}) {
    ExitCalibrationOptions options;
    options.max_accuracy_drop_pp = drop;
    auto report = CalibrateBundleExits(dir, held_out, options);
    ASSERT_TRUE(report.ok()) << report.status();
    // Checked against what the device does with the manifest, not against the report.
    EXPECT_GE(DeviceAccuracy(dir, held_out), full - drop / 100 - 1e-9) << "drop " << drop;
    EXPECT_NEAR(report->full_accuracy, full, 1e-9);
    most_exits = std::max(most_exits, report->chosen.early_exit_rate);
    auto bundle = common::Bundle::Load(dir);
    ASSERT_TRUE(bundle.ok());
    EXPECT_EQ((*bundle)->id(), report->bundle_id);
    for (size_t e = 0; e < report->exit_cuts.size(); ++e) {
      const common::ExitInfo* exit = (*bundle)->manifest().FindExit(report->exit_cuts[e]);
      ASSERT_NE(exit, nullptr);
      EXPECT_DOUBLE_EQ(exit->temperature, report->temperatures[e]);
    }
  }
  // Disabling every exit would keep any bound: some inputs must leave early.
  EXPECT_GT(most_exits, 0);
}

TEST_F(ExitsTest, CalibrationWithoutExitsIsAClearError) {
  const std::string dir = FreshBundle(/*with_exits=*/false);
  auto report = CalibrateBundleExits(dir, Slice(*data_, 0, 100), {});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("exits train"));
}

TEST_F(ExitsTest, HeadsOnlyGoWhereSegmentsEnd) {
  const std::string dir = FreshBundle(/*with_exits=*/false);
  auto bundle = common::Bundle::Load(dir);
  auto heads = TrainExitHeads(**bundle, {cut_ids_[0] + 1}, Slice(*data_, 0, 10), {});
  ASSERT_FALSE(heads.ok());
  EXPECT_THAT(std::string(heads.status().message()), HasSubstr("exits go where segments end"));
}

TEST(ExitCalibrationTest, FitTemperatureRecoversAKnownTemperature) {
  // Labels drawn from softmax(z); logits handed over are 3 z: the best temperature is 3.
  at::manual_seed(11);
  const at::Tensor z = at::randn({20000, 10}) * 2;
  const at::Tensor labels = at::multinomial(at::softmax(z, 1), 1).squeeze(1);
  EXPECT_NEAR(FitTemperature(z * 3, labels), 3.0, 0.15);
  EXPECT_LT(ExpectedCalibrationError(z * 3, labels, 3.0),
            ExpectedCalibrationError(z * 3, labels, 1.0));
}

TEST(ExitCalibrationTest, ThresholdsTradeExitsForAccuracyAsRequested) {
  // One exit: confident samples (0.9) are right, unsure ones (0.6) are right half the time;
  // the full model is always right.
  ExitScores scores;
  scores.confidence.push_back(at::cat({at::full({50}, 0.9), at::full({50}, 0.6)}));
  scores.correct.push_back(at::cat({at::ones({50}, at::kBool), at::arange(50).remainder(2).eq(0)}));
  scores.final_correct = at::ones({100}, at::kBool);
  const std::vector<double> strict = ChooseThresholds(scores, 0.0);
  EXPECT_NEAR(SimulateExits(scores, strict).early_exit_rate, 0.5, 1e-9);
  EXPECT_DOUBLE_EQ(SimulateExits(scores, strict).overall_accuracy, 1.0);
  const std::vector<double> loose = ChooseThresholds(scores, 30.0);
  EXPECT_DOUBLE_EQ(SimulateExits(scores, loose).early_exit_rate, 1.0);
  EXPECT_DOUBLE_EQ(SimulateExits(scores, loose).overall_accuracy, 0.75);
}

TEST(ExitHeadTest, RejectsActivationsItCannotPool) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1);
  EXPECT_FALSE(BuildExitHead(HeadKind::kPoolLinear, {1, 2, 3}, 10, generator).ok());
  EXPECT_FALSE(BuildExitHead(HeadKind::kConvPoolLinear, {1, 8}, 10, generator).ok());
  auto head = BuildExitHead(HeadKind::kConvPoolLinear, {1, 8, 5, 5}, 10, generator);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->forward({at::rand({2, 8, 5, 5})}).toTensor().sizes(),
            (std::vector<int64_t>{2, 10}));
  EXPECT_FALSE(ParseHeadKind("mlp").ok());
}

}  // namespace
}  // namespace cleave::partitioner

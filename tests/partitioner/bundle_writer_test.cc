#include "cleave/partitioner/bundle_writer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "tests/support/test_support.h"

namespace cleave::partitioner {
namespace {

using ::testing::HasSubstr;

class BundleWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = test::TupleOutputModel();
    auto model = ModelGraph::Load(test::SaveModel(original_, dir_.File("net.pt")), {{1, 3, 8, 8}});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    for (const CutPoint& cut : model_->Cuts(Granularity::kNode)) {
      if (cut.info.id != common::kInputCutId) cut_ids_.push_back(cut.info.id);
    }
    ASSERT_GE(cut_ids_.size(), 2u);
  }

  absl::StatusOr<WrittenBundle> Write(const std::string& name, std::vector<int> cuts = {}) {
    return WriteBundle(*model_, cuts.empty() ? cut_ids_ : cuts, dir_.File(name), {});
  }

  test::TempDir dir_;
  torch::jit::Module original_;
  std::unique_ptr<ModelGraph> model_;
  std::vector<int> cut_ids_;
};

TEST_F(BundleWriterTest, WritesAVerifiedBundleThatLoadsBack) {
  auto written = Write("bundle");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->num_segments, cut_ids_.size() + 1);
  EXPECT_LE(written->max_abs_diff, 1e-6);
  auto bundle = common::Bundle::Load(dir_.File("bundle"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ((*bundle)->id(), written->id);
  EXPECT_EQ((*bundle)->manifest().name, "net");
  EXPECT_EQ((*bundle)->manifest().segments.back().outputs.size(), 3u);  // flattened tuple
  ASSERT_TRUE((*bundle)->Verify().ok());
}

TEST_F(BundleWriterTest, SameModelAndCutsGiveByteIdenticalBundles) {
  auto first = Write("a");
  auto second = Write("b");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id, second->id);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.File("a"))) {
    if (!entry.is_regular_file()) continue;
    const auto relative = std::filesystem::relative(entry.path(), dir_.File("a"));
    EXPECT_EQ(*common::ReadFile(entry.path().string()),
              *common::ReadFile((std::filesystem::path(dir_.File("b")) / relative).string()))
        << relative;
  }
}

TEST_F(BundleWriterTest, ReplacesAnEarlierBundleButRefusesOtherFolders) {
  ASSERT_TRUE(Write("bundle").ok());
  auto rewritten = Write("bundle", {cut_ids_.front()});
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_FALSE(std::filesystem::exists(dir_.File("bundle/segment_2.pt")));

  std::filesystem::create_directories(dir_.File("precious"));
  std::ofstream(dir_.File("precious/data.txt")) << "keep me";
  auto refused = Write("precious");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("refusing"));
  EXPECT_TRUE(std::filesystem::exists(dir_.File("precious/data.txt")));
}

TEST_F(BundleWriterTest, TamperedSegmentIsRefusedOnLoad) {
  ASSERT_TRUE(Write("bundle").ok());
  std::ofstream(dir_.File("bundle/segment_1.pt"), std::ios::app) << "x";
  auto bundle = common::Bundle::Load(dir_.File("bundle"));
  ASSERT_FALSE(bundle.ok());
  EXPECT_EQ(bundle.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(bundle.status().message()), HasSubstr("segment_1.pt"));
}

TEST_F(BundleWriterTest, FolderWithoutManifestIsNotABundle) {
  auto bundle = common::Bundle::Load(dir_.path());
  ASSERT_FALSE(bundle.ok());
  EXPECT_EQ(bundle.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(bundle.status().message()), HasSubstr("is not a bundle"));
}

TEST_F(BundleWriterTest, EmptyCutListIsRejected) {
  auto written = WriteBundle(*model_, {}, dir_.File("none"), {});
  ASSERT_FALSE(written.ok());
  EXPECT_THAT(std::string(written.status().message()), HasSubstr("no cuts"));
}

TEST_F(BundleWriterTest, CheckActivationAllowsOtherBatchSizesOnly) {
  ASSERT_TRUE(Write("bundle").ok());
  auto bundle = *common::Bundle::Load(dir_.File("bundle"));
  const common::CutInfo& cut = bundle->manifest().cuts.front();
  common::Shape shape = cut.tensor.shape;
  shape[0] = 7;
  EXPECT_TRUE(bundle->CheckActivation(cut.id, at::zeros(shape)).ok());
  shape[1] += 1;
  auto wrong = bundle->CheckActivation(cut.id, at::zeros(shape));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("bundle expects"));
  EXPECT_FALSE(bundle->CheckActivation(cut.id, at::zeros(cut.tensor.shape, at::kDouble)).ok());
  EXPECT_THAT(std::string(bundle->SegmentStartingAt(12345).status().message()),
              HasSubstr("resumes from cuts"));
}

TEST_F(BundleWriterTest, OutputsScaleWithTheBatchAndForwardMemoryIsMeasuredAtLoad) {
  ASSERT_TRUE(Write("bundle").ok());
  auto bundle = *common::Bundle::Load(dir_.File("bundle"));
  // (logits [N, 10], (features [N, 8], scalar)): the scalar has no batch to scale.
  const std::vector<common::TensorSpec> outputs = bundle->OutputsFor(7);
  ASSERT_EQ(outputs.size(), 3u);
  EXPECT_EQ(outputs[0].shape, (common::Shape{7, 10}));
  EXPECT_EQ(outputs[1].shape, (common::Shape{7, 8}));
  EXPECT_EQ(outputs[2].shape, (common::Shape{}));
  // Not measured: twice the largest tensor crossing a cut from there on.
  const common::CutInfo& cut = bundle->manifest().cuts.front();
  int64_t largest = 0;
  for (const common::CutInfo& later : bundle->manifest().cuts) {
    largest = std::max(largest, later.bytes);
  }
  EXPECT_EQ(bundle->ForwardBytes(cut.id, 3), 2 * 3 * largest);
  // Measured: at least the output, and more for more samples.
  common::Bundle::LoadOptions load;
  load.measure_forward_memory = true;
  auto measured = *common::Bundle::Load(dir_.File("bundle"), load);
  for (int id : {common::kInputCutId, cut.id}) {
    const int64_t one = measured->ForwardBytes(id, 1);
    EXPECT_GE(one, 10 * 4) << "cut " << id;
    EXPECT_GT(measured->ForwardBytes(id, 64), one) << "cut " << id;
  }
}

}  // namespace
}  // namespace cleave::partitioner

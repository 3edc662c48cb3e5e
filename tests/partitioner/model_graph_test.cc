#include "cleave/partitioner/model_graph.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "cleave/common/torchscript_io.h"
#include "tests/support/test_support.h"

namespace cleave::partitioner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<common::Shape> kImage = {{1, 3, 8, 8}};

std::unique_ptr<ModelGraph> Load(const torch::jit::Module& module, const test::TempDir& dir) {
  auto model = ModelGraph::Load(test::SaveModel(module, dir.File("model.pt")), kImage);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *std::move(model) : nullptr;
}

std::vector<std::string> Names(const std::vector<CutPoint>& cuts) {
  std::vector<std::string> names;
  for (const CutPoint& cut : cuts) names.push_back(cut.info.name);
  return names;
}

int IdOf(const ModelGraph& model, const std::string& name) {
  for (const CutPoint& cut : model.Cuts(Granularity::kNode)) {
    if (cut.info.name == name) return cut.info.id;
  }
  ADD_FAILURE() << "no cut named " << name;
  return -1;
}

// Runs the segments in order and compares with the original model on a fresh input.
void ExpectSplitReproducesModel(const torch::jit::Module& original, const ModelGraph& model,
                                const std::vector<int>& cut_ids, int64_t batch = 1) {
  auto segments = model.Split(cut_ids);
  ASSERT_TRUE(segments.ok()) << segments.status();
  ASSERT_EQ(segments->size(), cut_ids.size() + 1);
  const at::Tensor input = at::rand({batch, 3, 8, 8});
  c10::IValue value = input;
  {
    c10::InferenceMode inference;
    for (torch::jit::Module& segment : *segments) value = segment.forward({value});
  }
  std::vector<at::Tensor> actual;
  ASSERT_TRUE(common::FlattenTensors(value, &actual).ok());
  const std::vector<at::Tensor> expected = test::RunFlat(original, input);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_TRUE(at::allclose(actual[i], expected[i], 1e-5, 1e-6)) << "output " << i;
  }
}

TEST(ModelGraphTest, ResidualModelCutsOnlyWhereBranchesHaveJoined) {
  test::TempDir dir;
  auto model = Load(test::ResidualModel(), dir);
  ASSERT_NE(model, nullptr);
  EXPECT_THAT(Names(model->Cuts(Granularity::kModule)),
              ElementsAre("input", "stem", "block1", "block2", "mean"));
  // Inside a residual block the block input stays live next to the branch: no cut between
  // conv1 and conv2, only after the add.
  for (const CutPoint& cut : model->Cuts(Granularity::kNode)) {
    EXPECT_EQ(cut.info.name.find("block1/conv"), std::string::npos) << cut.info.name;
    EXPECT_EQ(cut.info.name.find("block1.conv1"), std::string::npos) << cut.info.name;
  }
  const CutPoint block1 = *model->FindCut(IdOf(*model, "block1"));
  EXPECT_EQ(block1.info.tensor.shape, (common::Shape{1, 8, 8, 8}));
  EXPECT_EQ(block1.info.bytes, 8 * 8 * 8 * 4);
  EXPECT_EQ(block1.info.tensor.dtype, c10::ScalarType::Float);
}

TEST(ModelGraphTest, ConcatModelCutsAroundTheBranchesNotInside) {
  test::TempDir dir;
  auto model = Load(test::ConcatModel(), dir);
  ASSERT_NE(model, nullptr);
  const std::vector<std::string> names = Names(model->Cuts(Granularity::kNode));
  EXPECT_THAT(names, ::testing::Contains("stem"));
  // Between the branches both the stem output and the left branch are live.
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("left")));
  const CutPoint after_cat = *model->FindCut(IdOf(*model, "cat"));
  EXPECT_EQ(after_cat.info.tensor.shape, (common::Shape{1, 8, 8, 8}));
}

TEST(ModelGraphTest, CutIdsAreStableAcrossLoadsAndGranularities) {
  test::TempDir dir;
  auto first = Load(test::ResidualModel(), dir);
  auto second = ModelGraph::Load(dir.File("model.pt"), kImage);
  ASSERT_TRUE(second.ok());
  std::map<std::string, int> node_ids;
  for (const CutPoint& cut : first->Cuts(Granularity::kNode)) node_ids[cut.info.name] = cut.info.id;
  for (const CutPoint& cut : (*second)->Cuts(Granularity::kModule)) {
    EXPECT_EQ(node_ids.at(cut.info.name), cut.info.id) << cut.info.name;
  }
}

TEST(ModelGraphTest, SplitReproducesResidualModelAtEveryCut) {
  test::TempDir dir;
  const torch::jit::Module original = test::ResidualModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  for (const CutPoint& cut : model->Cuts(Granularity::kNode)) {
    if (cut.info.id == common::kInputCutId) continue;
    SCOPED_TRACE(cut.info.name);
    ExpectSplitReproducesModel(original, *model, {cut.info.id});
  }
}

TEST(ModelGraphTest, SplitAtSeveralCutsReproducesConcatModel) {
  test::TempDir dir;
  const torch::jit::Module original = test::ConcatModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  ExpectSplitReproducesModel(original, *model, {IdOf(*model, "stem"), IdOf(*model, "cat")});
}

TEST(ModelGraphTest, SplitReproducesNestedTupleOutput) {
  test::TempDir dir;
  const torch::jit::Module original = test::TupleOutputModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  ExpectSplitReproducesModel(original, *model, {IdOf(*model, "stem")});
  EXPECT_EQ(test::RunFlat(original, at::rand({1, 3, 8, 8})).size(), 3u);
}

TEST(ModelGraphTest, SplitReproducesDictOutput) {
  test::TempDir dir;
  const torch::jit::Module original = test::DictOutputModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  ExpectSplitReproducesModel(original, *model, {IdOf(*model, "stem")});
}

TEST(ModelGraphTest, ControlFlowIsNeverCutInside) {
  test::TempDir dir;
  const torch::jit::Module original = test::ControlFlowModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  // Cuts before, between and after the stem's ops, after the whole if/else and after the
  // mean; none inside a branch (where `h * 2.0` or `h - 1.0` would be one), since a segment
  // cannot start half way through an If.
  const std::vector<CutPoint> cuts = model->Cuts(Granularity::kNode);
  EXPECT_THAT(Names(cuts),
              ElementsAre("input", "stem/conv2d", "stem/batch_norm", "stem", "If", "mean"));
  std::vector<int> ids;
  for (const CutPoint& cut : cuts) {
    if (cut.info.id != common::kInputCutId) ids.push_back(cut.info.id);
  }
  ExpectSplitReproducesModel(original, *model, ids);
}

TEST(ModelGraphTest, ScalarChecksDoNotDuplicateACut) {
  // The same tensor is live on both sides of each check: one cut for it, named after the
  // module that produced it; the input keeps its own cut.
  test::TempDir dir;
  const torch::jit::Module original = test::ShapeCheckModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  EXPECT_THAT(Names(model->Cuts(Granularity::kModule)), ElementsAre("input", "stem", "mean"));
  for (const CutPoint& cut : model->Cuts(Granularity::kNode)) {
    EXPECT_THAT(cut.info.name, ::testing::Not(HasSubstr("If"))) << cut.info.id;
  }
  ExpectSplitReproducesModel(original, *model, {IdOf(*model, "stem")});
}

TEST(ModelGraphTest, SegmentsAcceptLargerBatches) {
  test::TempDir dir;
  const torch::jit::Module original = test::ResidualModel();
  auto model = Load(original, dir);
  ASSERT_NE(model, nullptr);
  ExpectSplitReproducesModel(original, *model, {IdOf(*model, "stem"), IdOf(*model, "block2")},
                             /*batch=*/5);
}

TEST(ModelGraphTest, ModelWithoutInteriorCutHasOnlyTheInput) {
  test::TempDir dir;
  auto model = Load(test::SingleOpModel(), dir);
  ASSERT_NE(model, nullptr);
  EXPECT_THAT(Names(model->Cuts(Granularity::kNode)), ElementsAre("input"));
  auto split = model->Split({1});
  ASSERT_FALSE(split.ok());
  EXPECT_THAT(std::string(split.status().message()), HasSubstr("has no cut points"));
}

TEST(ModelGraphTest, MissingFileIsNotFound) {
  auto model = ModelGraph::Load("/nonexistent/model.pt", kImage);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("/nonexistent/model.pt"));
}

TEST(ModelGraphTest, NonTorchScriptFileIsRejected) {
  test::TempDir dir;
  std::ofstream(dir.File("notes.pt")) << "these are not weights";
  auto model = ModelGraph::Load(dir.File("notes.pt"), kImage);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("not a TorchScript file"));
}

TEST(ModelGraphTest, TruncatedTorchScriptFileIsRejected) {
  test::TempDir dir;
  test::SaveModel(test::ResidualModel(), dir.File("model.pt"));
  std::string bytes;
  {
    std::ifstream in(dir.File("model.pt"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(dir.File("cut.pt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto model = ModelGraph::Load(dir.File("cut.pt"), kImage);
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("cut.pt"));
}

TEST(ModelGraphTest, WrongInputShapeNamesTheShape) {
  test::TempDir dir;
  test::SaveModel(test::ResidualModel(), dir.File("model.pt"));
  auto model = ModelGraph::Load(dir.File("model.pt"), {{1, 5, 8, 8}});
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("rejects input shape 1x5x8x8"));
  auto wrong_count = ModelGraph::Load(dir.File("model.pt"), {{1, 3, 8, 8}, {1, 2}});
  EXPECT_THAT(std::string(wrong_count.status().message()), HasSubstr("takes 1 inputs"));
}

TEST(ModelGraphTest, BadCutListsAreRejected) {
  test::TempDir dir;
  auto model = Load(test::ResidualModel(), dir);
  ASSERT_NE(model, nullptr);
  const int stem = IdOf(*model, "stem");
  const int block1 = IdOf(*model, "block1");
  EXPECT_THAT(std::string(model->Split({block1, stem}).status().message()),
              HasSubstr("strictly increasing"));
  EXPECT_THAT(std::string(model->Split({stem, stem}).status().message()),
              HasSubstr("strictly increasing"));
  EXPECT_THAT(std::string(model->Split({999}).status().message()),
              HasSubstr("cut 999 out of range"));
  EXPECT_THAT(std::string(model->Split({0}).status().message()), HasSubstr("model input"));
}

TEST(ModelGraphTest, CutsResolveByIdOrName) {
  test::TempDir dir;
  auto model = Load(test::ResidualModel(), dir);
  ASSERT_NE(model, nullptr);
  const int block1 = IdOf(*model, "block1");
  auto ids = model->ResolveCuts({"stem", std::to_string(block1)});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int>{IdOf(*model, "stem"), block1}));
  auto unknown = model->ResolveCuts({"layer9"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown cut 'layer9'"));
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("block1"));
}

}  // namespace
}  // namespace cleave::partitioner

// A real split: `cleave split` writes the bundle, a `cleave-edge` process serves it on an
// ephemeral loopback port, and the device side (library and `cleave-device`) gets the same
// answers as the unsplit model.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cleave/device/runtime.h"
#include "cleave/partitioner/reference_model.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

using ::testing::HasSubstr;

TEST(SplitInferenceTest, EdgeProcessServesTheSplitModelExactly) {
  testing::TempDir dir;
  const torch::jit::Module original = testing::ConcatModel();
  const std::string bundle_id =
      testing::WriteTestBundle(original, dir.path(), "bundles/concat", {"stem", "cat"});
  testing::EdgeProcess edge(dir.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();

  device::RuntimeOptions options;
  options.edge = edge.address();
  options.deadline = std::chrono::seconds(30);
  options.local_fallback = false;
  auto runtime = device::Runtime::Create(dir.File("bundles/concat"), options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  EXPECT_EQ((*runtime)->bundle().id(), bundle_id);
  for (int i = 0; i < 20; ++i) {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    auto result = (*runtime)->Infer(input);
    ASSERT_TRUE(result.ok()) << result.status() << "\n" << edge.Log();
    EXPECT_EQ(result->placement, device::Placement::kEdge);
    EXPECT_TRUE(at::allclose(result->outputs[0], testing::RunFlat(original, input)[0], 1e-5, 1e-6));
  }
  EXPECT_EQ(edge.Stop(), 0) << "SIGTERM must drain and exit 0\n" << edge.Log();
}

TEST(SplitInferenceTest, EdgeProcessRefusesTamperedBundleAndServesTheRest) {
  testing::TempDir dir;
  testing::WriteTestBundle(testing::ResidualModel(), dir.path(), "bundles/good", {"stem"});
  testing::WriteTestBundle(testing::ConcatModel(), dir.path(), "bundles/bad", {"stem"});
  std::ofstream(dir.File("bundles/bad/segment_1.pt"), std::ios::app) << "x";
  testing::EdgeProcess edge(dir.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  EXPECT_THAT(edge.Log(), HasSubstr("bundle_refused"));
  EXPECT_THAT(edge.Log(), HasSubstr("bundles=1"));
}

TEST(SplitInferenceTest, DeviceCliOverFashionMnistAgreesWithUnsplitModel) {
  testing::TempDir dir;
  // An untrained reference model: agreement with the unsplit model does not need accuracy.
  const std::string model =
      testing::SaveModel(partitioner::BuildReferenceModel(3), dir.File("reference.pt"));
  auto split =
      testing::RunCommand(testing::BinaryPath("cleave") + " split " + model +
                          " --input-shape 1,1,28,28 --cuts 5,9 -o " + dir.File("bundles/ref"));
  ASSERT_EQ(split.exit_code, 0) << split.output;
  testing::EdgeProcess edge(dir.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  auto run = testing::RunCommand(testing::BinaryPath("cleave-device") + " --bundle " +
                                     dir.File("bundles/ref") + " --edge " + edge.address() +
                                     " --limit 50 --deadline-ms 30000 --no-fallback --json" +
                                     " --reference " + model,
                                 /*merge_stderr=*/false);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto summary = nlohmann::json::parse(run.output);
  EXPECT_EQ(summary["requests"], 50);
  EXPECT_EQ(summary["placements"]["edge"], 50);
  EXPECT_EQ(summary["agreement_with_unsplit"], 1.0);
  EXPECT_GT(summary["bytes_per_request"].get<double>(), 0.0);
}

}  // namespace
}  // namespace cleave

// Cut discovery and splitting on the real architecture families, scripted and traced, exported
// from Debian's python3-torchvision by tests/python/export_architectures.py: residual,
// inverted residual, dense concatenation, multi-branch, channel shuffle, squeeze-and-
// excitation, fire modules, a vision transformer, plus named-tuple and dict outputs, control
// flow and several inputs. For each: module-level cuts are found with readable unique names, a
// bundle split at every one of them reproduces the original model within 1e-5 relative, and
// the segments take a batch of 2 as the model does.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "cleave/common/bundle.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/bundle_writer.h"
#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/profiler.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave::partitioner {
namespace {

namespace fs = std::filesystem;

// The exported models: CTest's ArchitectureModels fixture writes them before these tests run;
// run alone, the first test exports them itself.
const fs::path& ModelsDir() {
  static const fs::path dir = fs::path(CLEAVE_TEST_MODELS_DIR) / "architectures";
  static std::once_flag exported;
  std::call_once(exported, [] {
    if (fs::exists(dir / "models.json")) return;
    const auto result = test::RunCommand("/usr/bin/python3 " CLEAVE_SOURCE_DIR
                                         "/tests/python/export_architectures.py " +
                                         dir.string());
    ASSERT_EQ(result.exit_code, 0) << result.output;
  });
  return dir;
}

struct ExportedModel {
  std::string file;
  std::vector<common::Shape> input_shapes;
};

std::optional<ExportedModel> FindModel(const std::string& name) {
  std::ifstream in(ModelsDir() / "models.json");
  if (!in) return std::nullopt;
  for (const auto& entry : nlohmann::json::parse(in)) {
    if (entry["name"] == name) {
      return ExportedModel{(ModelsDir() / entry["file"].get<std::string>()).string(),
                           entry["input_shapes"].get<std::vector<common::Shape>>()};
    }
  }
  return std::nullopt;
}

// |a - b| <= 1e-5 * max|b| + 1e-6, element-wise, over every flattened output.
void ExpectCloseRelative(const std::vector<at::Tensor>& actual,
                         const std::vector<at::Tensor>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_EQ(actual[i].sizes(), expected[i].sizes()) << "output " << i;
    const at::Tensor a = actual[i].to(at::kDouble), b = expected[i].to(at::kDouble);
    const double scale = b.numel() > 0 ? b.abs().max().item<double>() : 0.0;
    const double error = a.numel() > 0 ? (a - b).abs().max().item<double>() : 0.0;
    EXPECT_LE(error, 1e-5 * scale + 1e-6) << "output " << i << ", max |b| = " << scale;
  }
}

std::vector<at::Tensor> Flatten(const c10::IValue& value) {
  std::vector<at::Tensor> tensors;
  EXPECT_TRUE(common::FlattenTensors(value, &tensors).ok());
  return tensors;
}

class ArchitectureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchitectureTest, SplitAtEveryModuleCutReproducesTheModelAtBatchOneAndTwo) {
  const std::optional<ExportedModel> exported = FindModel(GetParam());
  ASSERT_TRUE(exported.has_value()) << GetParam() << " missing from " << ModelsDir();
  auto model = ModelGraph::Load(exported->file, exported->input_shapes);
  ASSERT_TRUE(model.ok()) << model.status();

  // Readable, unique names; the model input is cut 0 for single-input models.
  std::vector<int> interior;
  std::set<std::string> names;
  for (const CutPoint& cut : (*model)->Cuts(Granularity::kModule)) {
    EXPECT_FALSE(cut.info.name.empty()) << "cut " << cut.info.id;
    EXPECT_TRUE(names.insert(cut.info.name).second) << "duplicate name " << cut.info.name;
    if (cut.info.id != common::kInputCutId) interior.push_back(cut.info.id);
  }
  ASSERT_GE(interior.size(), 1u) << "expected a cut inside " << GetParam();

  // A bundle cut at every module-level cut, verified on write and again on load.
  test::TempDir dir;
  auto written = WriteBundle(**model, interior, dir.File("bundle"), BundleOptions{});
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->num_segments, interior.size() + 1);
  auto bundle = common::Bundle::Load(dir.File("bundle"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_TRUE((*bundle)->Verify().ok());

  // Against the original (unfrozen) model, at batch 1 and 2.
  auto original = common::LoadTorchScript(exported->file);
  ASSERT_TRUE(original.ok()) << original.status();
  c10::InferenceMode inference;
  for (int64_t batch : {1, 2}) {
    const std::vector<c10::IValue> inputs = SampleBatch(**model, batch);
    auto split = (*bundle)->RunSegments(0, written->num_segments - 1, inputs);
    ASSERT_TRUE(split.ok()) << "batch " << batch << ": " << split.status();
    ExpectCloseRelative(Flatten(*split), Flatten(original->forward(inputs)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, ArchitectureTest,
    ::testing::Values("resnet18_scripted", "resnet18_traced", "mobilenet_v2_scripted",
                      "mobilenet_v2_traced", "densenet121_scripted", "densenet121_traced",
                      "googlenet_scripted", "googlenet_traced", "shufflenet_v2_scripted",
                      "shufflenet_v2_traced", "efficientnet_b0_scripted", "efficientnet_b0_traced",
                      "squeezenet_scripted", "squeezenet_traced", "vit_scripted", "vit_traced",
                      "named_tuple_output_scripted", "dict_output_scripted",
                      "control_flow_scripted", "two_inputs_scripted", "two_inputs_traced"),
    [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace cleave::partitioner

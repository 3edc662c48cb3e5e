// A real split: `cleave split` writes the bundle, a `cleave-edge` process serves it on an
// ephemeral loopback port, and the device side (library and `cleave-device`) gets the same
// answers as the unsplit model.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "cleave/common/files.h"
#include "cleave/common/tensor_frame.h"
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
  options.edges = {edge.address()};
  options.deadline = std::chrono::seconds(30);
  options.local_fallback = false;
  options.offload_cut = testing::ReadManifest(dir.File("bundles/concat")).cuts[0].id;
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
  auto run = testing::RunCommand(
      testing::BinaryPath("cleave-device") + " --bundle " + dir.File("bundles/ref") + " --edge " +
          edge.address() + " --cut 5 --limit 50 --deadline-ms 30000 --no-fallback --json" +
          " --reference " + model,
      /*merge_stderr=*/false);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto summary = nlohmann::json::parse(run.output);
  EXPECT_EQ(summary["requests"], 50);
  EXPECT_EQ(summary["placements"]["edge"], 50);
  EXPECT_EQ(summary["agreement_with_unsplit"], 1.0);
  EXPECT_GT(summary["bytes_per_request"].get<double>(), 0.0);
  // Fashion-MNIST carries labels: accuracy is the share of the 50 answers that match them.
  const double accuracy = summary["accuracy"].get<double>();
  EXPECT_GE(accuracy, 0.0);
  EXPECT_LE(accuracy, 1.0);
  EXPECT_DOUBLE_EQ(accuracy * 50, std::round(accuracy * 50));

  // Without --json: a progress line on stderr, then the summary table on stdout.
  auto table = testing::RunCommand(testing::BinaryPath("cleave-device") + " --bundle " +
                                       dir.File("bundles/ref") + " --edge " + edge.address() +
                                       " --cut 5 --limit 20 --deadline-ms 30000 --no-fallback" +
                                       " 2> " + dir.File("progress.txt"),
                                   /*merge_stderr=*/false);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  for (const char* row :
       {"requests", "20", "accuracy", "ran on edge", "20 (100.0%)", "offloaded at cut 5",
        "latency p50 / p95 / p99", "ms", "bytes sent per request"}) {
    EXPECT_THAT(table.output, HasSubstr(row));
  }
  const std::string progress = *common::ReadFile(dir.File("progress.txt"));
  EXPECT_THAT(progress, HasSubstr("requests ["));
  EXPECT_THAT(progress, HasSubstr("20/20"));
  EXPECT_THAT(progress, HasSubstr("acc "));
}

TEST(SplitInferenceTest, DeviceCliRunsFramesFailsOverAndExportsTelemetry) {
  testing::TempDir dir;
  testing::WriteTestBundle(testing::ResidualModel(), dir.path(), "bundles/residual",
                           {"stem", "block1"});
  std::filesystem::create_directories(dir.File("frames"));
  for (int i = 0; i < 6; ++i) {
    auto frame = common::EncodeFrame(at::rand({1, 3, 8, 8}));
    ASSERT_TRUE(frame.ok());
    ASSERT_TRUE(
        common::WriteFileAtomically(dir.File("frames/" + std::to_string(i) + ".frame"), *frame)
            .ok());
  }
  testing::EdgeProcess edge(dir.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  // The first edge is down: every request fails over to the second.
  auto run = testing::RunCommand(testing::BinaryPath("cleave-device") + " --bundle " +
                                     dir.File("bundles/residual") + " --edge 127.0.0.1:1 --edge " +
                                     edge.address() + " --cut stem --inputs " + dir.File("frames") +
                                     " --in-flight 3 --deadline-ms 20000 --no-fallback --json" +
                                     " --telemetry-json " + dir.File("telemetry.json") +
                                     " --telemetry-prometheus " + dir.File("telemetry.prom"),
                                 /*merge_stderr=*/false);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto summary = nlohmann::json::parse(run.output);
  EXPECT_EQ(summary["requests"], 6);
  EXPECT_EQ(summary["placements"]["edge"], 6);
  EXPECT_FALSE(summary.contains("accuracy"));  // frames carry no labels
  EXPECT_GT(summary["latency_ms"]["p99"].get<double>(), 0.0);

  // Telemetry: counts and timings only, never a tensor value.
  const auto telemetry = nlohmann::json::parse(*common::ReadFile(dir.File("telemetry.json")));
  std::set<std::string> families;
  for (const auto& family : telemetry["metrics"]) families.insert(family["name"]);
  const std::set<std::string> known = {"cleave_device_requests_total",
                                       "cleave_device_exits_total",
                                       "cleave_device_offloads_total",
                                       "cleave_device_edge_failures_total",
                                       "cleave_device_probes_total",
                                       "cleave_device_sent_bytes_total",
                                       "cleave_device_request_seconds",
                                       "cleave_device_compute_seconds",
                                       "cleave_device_network_seconds",
                                       "cleave_device_link_rtt_seconds",
                                       "cleave_device_link_bandwidth_bytes_per_second"};
  for (const std::string& family : families) EXPECT_EQ(known.count(family), 1u) << family;
  // Every label value is a placement, a cut id, an edge target, a probe outcome or a bucket
  // bound: nothing a tensor value could leak into.
  const std::set<std::string> words = {
      "device-exit", "edge", "device",  "device-fallback", "degraded",    "ok",
      "failed",      "late", "no-edge", "127.0.0.1:1",     edge.address()};
  int labels = 0;
  for (const auto& family : telemetry["metrics"]) {
    for (const auto& sample : family["samples"]) {
      if (!sample.contains("labels")) continue;
      for (const auto& [name, value] : sample["labels"].items()) {
        const std::string text = value.get<std::string>();
        ++labels;
        const bool number =
            !text.empty() && text.find_first_not_of("0123456789.e+-Inf") == std::string::npos;
        EXPECT_TRUE(words.count(text) == 1 || number)
            << family["name"] << " label " << name << "=" << text;
      }
    }
  }
  EXPECT_GT(labels, 0);
  EXPECT_EQ(families.count("cleave_device_offloads_total"), 1u);
  EXPECT_EQ(families.count("cleave_device_request_seconds"), 1u);
  const std::string prometheus = *common::ReadFile(dir.File("telemetry.prom"));
  EXPECT_THAT(prometheus, HasSubstr("cleave_device_requests_total{placement=\"edge\"} 6"));
  EXPECT_THAT(prometheus, HasSubstr("cleave_device_edge_failures_total{edge=\"127.0.0.1:1\"}"));
}

TEST(SplitInferenceTest, DeviceCliNamesAnUnknownCutAndAnEmptyFrameFolder) {
  testing::TempDir dir;
  testing::WriteTestBundle(testing::ResidualModel(), dir.path(), "bundles/residual", {"stem"});
  const std::string device =
      testing::BinaryPath("cleave-device") + " --bundle " + dir.File("bundles/residual");
  auto unknown = testing::RunCommand(device + " --cut layer9");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.output, HasSubstr("--cut layer9"));
  EXPECT_THAT(unknown.output, HasSubstr("stem"));
  std::filesystem::create_directories(dir.File("empty"));
  auto empty = testing::RunCommand(device + " --inputs " + dir.File("empty"));
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.output, HasSubstr("holds no *.frame files"));
}

}  // namespace
}  // namespace cleave

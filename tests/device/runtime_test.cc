// The device runtime against real edges (in process, loopback gRPC): placement, fallback,
// telemetry, lifetimes. About 500 lines: one fixture's tests, which the resilience tests
// (resilience_test.cc) and the edge client's (edge_client_test.cc) already split off.
#include "cleave/device/runtime.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/edge_server.h"
#include "cleave/proto/byte_buffer.h"
#include "cleave/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/raw_grpc_server.h"
#include "tests/support/test_support.h"

namespace cleave::device {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = test::ResidualModel();
    bundle_id_ =
        test::WriteTestBundle(original_, dir_.path(), "bundles/residual", {"stem", "block1"});
    ASSERT_FALSE(bundle_id_.empty());
  }

  void StartEdge() {
    edge_server::EdgeServerOptions options;
    options.bundles_dir = dir_.File("bundles");
    options.listen = "127.0.0.1:0";
    auto server = edge_server::EdgeServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    edge_ = *std::move(server);
  }

  std::string EdgeAddress() const { return "127.0.0.1:" + std::to_string(edge_->port()); }

  // Starts `count` more in-process edges serving `bundles_dir` (kept in more_edges_); returns
  // their addresses, fewer when one fails to start (which fails the test).
  std::vector<std::string> StartEdges(int count, const std::string& bundles_dir) {
    std::vector<std::string> addresses;
    for (int i = 0; i < count; ++i) {
      edge_server::EdgeServerOptions options;
      options.bundles_dir = bundles_dir;
      options.listen = "127.0.0.1:0";
      auto server = edge_server::EdgeServer::Start(options);
      EXPECT_TRUE(server.ok()) << server.status();
      if (!server.ok()) break;
      addresses.push_back("127.0.0.1:" + std::to_string((*server)->port()));
      more_edges_.push_back(*std::move(server));
    }
    return addresses;
  }

  // Options that always offload at the bundle's first cut (the adaptive policy would keep
  // this tiny model on the device).
  RuntimeOptions FixedCutOptions(std::vector<std::string> edges) {
    RuntimeOptions options;
    options.edges = std::move(edges);
    options.offload_cut = test::ReadManifest(dir_.File("bundles/residual")).cuts[0].id;
    return options;
  }

  // FixedCutOptions with a deadline no loaded machine misses and no probes: every request goes
  // to the edge once (and once more on a failure) before the device answers.
  RuntimeOptions PatientFixedCutOptions(std::vector<std::string> edges) {
    RuntimeOptions options = FixedCutOptions(std::move(edges));
    options.deadline = std::chrono::seconds(30);
    options.probe_interval = std::chrono::milliseconds(0);
    return options;
  }

  // A runtime against the test's edge with a deadline no loaded machine misses.
  std::unique_ptr<Runtime> MakeEdgeRuntime() {
    RuntimeOptions options = FixedCutOptions({EdgeAddress()});
    options.deadline = std::chrono::seconds(30);
    return MakeRuntime(options);
  }

  std::unique_ptr<Runtime> MakeRuntime(RuntimeOptions options) {
    auto runtime = Runtime::Create(dir_.File("bundles/residual"), options);
    EXPECT_TRUE(runtime.ok()) << runtime.status();
    return runtime.ok() ? *std::move(runtime) : nullptr;
  }

  void ExpectMatchesOriginal(const Result& result, const at::Tensor& input) {
    ASSERT_EQ(result.outputs.size(), 1u);
    EXPECT_TRUE(at::allclose(result.outputs[0], test::RunFlat(original_, input)[0], 1e-5, 1e-6));
  }

  test::TempDir dir_;
  torch::jit::Module original_;
  std::string bundle_id_;
  std::unique_ptr<edge_server::EdgeServer> edge_;
  std::vector<std::unique_ptr<edge_server::EdgeServer>> more_edges_;
};

TEST_F(RuntimeTest, SplitAcrossARealEdgeEqualsTheUnsplitModel) {
  StartEdge();
  auto runtime = MakeEdgeRuntime();
  ASSERT_NE(runtime, nullptr);
  const int second_cut = runtime->bundle().manifest().cuts[1].id;
  for (std::optional<int> cut : {std::optional<int>(), std::optional<int>(second_cut),
                                 std::optional<int>(common::kInputCutId)}) {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    InferOptions call;
    call.offload_cut = cut;
    auto result = runtime->Infer(input, call);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
    EXPECT_GT(result->bytes_sent, 0u);
    ExpectMatchesOriginal(*result, input);
    const Timings& timings = result->timings;
    EXPECT_EQ(timings.device_compute_ms > 0, cut != common::kInputCutId);
    EXPECT_GT(timings.encode_ms, 0);
    EXPECT_GT(timings.network_ms, 0);
    EXPECT_GE(timings.edge_queue_ms, 0);
    EXPECT_GT(timings.edge_compute_ms, 0);
    EXPECT_GE(timings.total_ms, timings.device_compute_ms + timings.encode_ms + timings.network_ms +
                                    timings.edge_compute_ms);
  }
  // The future form takes the same path.
  const at::Tensor input = at::rand({1, 3, 8, 8});
  auto result = runtime->InferAsync(input).get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
  ExpectMatchesOriginal(*result, input);
}

// Offloads before the last segment and keeps a copy of each input it was given.
class RecordingPolicy final : public OffloadPolicy {
 public:
  PolicyDecision Decide(const PolicyInput& input) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    device_segment_ms_.push_back(input.device_segment_ms);
    return {input.device_segment_ms.size() - 1, 0};
  }
  std::vector<std::vector<double>> seen() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return device_segment_ms_;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::vector<std::vector<double>> device_segment_ms_;
};

TEST_F(RuntimeTest, SegmentsRunAsOneCallStillFeedEachSegmentsTimeToThePolicy) {
  // No exits and no probes: the two device segments before the last cut run as one call, and
  // its time is shared between them by their measured proportions.
  StartEdge();
  auto policy = std::make_shared<RecordingPolicy>();
  RuntimeOptions options;
  options.edges = {EdgeAddress()};
  options.deadline = std::chrono::seconds(30);
  options.policy = policy;
  options.probe_interval = std::chrono::milliseconds(0);
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  for (int i = 0; i < 20; ++i) {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    auto result = runtime->Infer(input);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
    EXPECT_GT(result->timings.device_compute_ms, 0);
    ExpectMatchesOriginal(*result, input);
  }
  const std::vector<std::vector<double>> seen = policy->seen();
  ASSERT_EQ(seen.size(), 20u);
  const std::vector<double>& first = seen.front();  // from the warm-up, segment by segment
  const std::vector<double>& last = seen.back();
  ASSERT_GT(first[0], 0);
  ASSERT_GT(first[1], 0);
  EXPECT_GT(last[0], 0);
  EXPECT_GT(last[1], 0);
  EXPECT_NEAR(last[0] / last[1], first[0] / first[1], 1e-6 * first[0] / first[1]);
}

TEST_F(RuntimeTest, LinkGaugesShowTheEstimateWhenTelemetryIsRead) {
  StartEdge();
  RuntimeOptions options = FixedCutOptions({EdgeAddress()});
  options.deadline = std::chrono::seconds(30);
  options.probe_interval = std::chrono::milliseconds(0);  // only answers move the estimate
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  for (int i = 0; i < 5; ++i) {
    auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
  }
  // Each answer is learnt from just after it is handed over: wait for the last one.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (runtime->link().samples < 5 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const nlohmann::json telemetry = nlohmann::json::parse(runtime->TelemetryJson());
  const LinkEstimate link = runtime->link();  // nothing learnt since: the same estimate
  std::map<std::string, double> gauges;
  for (const nlohmann::json& metric : telemetry["metrics"]) {
    if (metric["type"] == "gauge") gauges[metric["name"]] = metric["samples"][0]["value"];
  }
  EXPECT_DOUBLE_EQ(gauges.at("cleave_device_link_rtt_seconds"), link.rtt_ms / 1000.0);
  EXPECT_DOUBLE_EQ(gauges.at("cleave_device_link_bandwidth_bytes_per_second"),
                   link.bytes_per_ms * 1000.0);
  EXPECT_EQ(link.samples, 5);
}

TEST_F(RuntimeTest, AnAnsweredRequestReleasesItsTensorsBeforeItsDeadline) {
  // The edge deadline stays queued for 30 s; an answered request must not keep its input,
  // activations and frame alive that long (at robot rates that is memory and fresh pages).
  StartEdge();
  auto runtime = MakeEdgeRuntime();
  ASSERT_NE(runtime, nullptr);
  const at::Tensor input = at::rand({1, 3, 8, 8});
  auto result = runtime->Infer(input);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
  // The gRPC thread that answered may still be unwinding its callback for a moment.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (input.use_count() > 1 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(input.use_count(), 1);
}

TEST_F(RuntimeTest, ManyThreadsShareOneRuntimeAndStream) {
  StartEdge();
  auto runtime = MakeEdgeRuntime();
  ASSERT_NE(runtime, nullptr);
  std::vector<std::future<void>> threads;
  for (int t = 0; t < 4; ++t) {
    threads.push_back(std::async(std::launch::async, [&] {
      for (int i = 0; i < 10; ++i) {
        const at::Tensor input = at::rand({1, 3, 8, 8});
        auto result = runtime->Infer(input);
        ASSERT_TRUE(result.ok()) << result.status();
        EXPECT_EQ(result->placement, Placement::kEdge);
        ExpectMatchesOriginal(*result, input);
      }
    }));
  }
  for (auto& thread : threads) thread.get();
}

TEST_F(RuntimeTest, UnreachableEdgeFallsBackToTheDeviceWithinTheDeadline) {
  RuntimeOptions options = FixedCutOptions({"127.0.0.1:1"});  // nothing listens there
  options.deadline = std::chrono::milliseconds(500);
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  const at::Tensor input = at::rand({1, 3, 8, 8});
  const auto start = std::chrono::steady_clock::now();
  auto result = runtime->Infer(input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kDeviceFallback);
  EXPECT_FALSE(result->fallback_reason.empty());
  ExpectMatchesOriginal(*result, input);
  // Not a speed assertion: the call must not hang past its deadline by more than a margin
  // that no scheduler hiccup explains.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(RuntimeTest, AnEdgeThatRefusesTheRequestIsTriedOnceMoreThenTheDeviceAnswers) {
  // Two edges serving only another bundle answer NOT_FOUND. Infer's caller thread, which
  // receives the edge's answers to decode them, sees the refusal and has the request tried
  // once more on the second edge; after its refusal too, the device finishes the request.
  const std::string other =
      test::WriteTestBundle(original_, dir_.path(), "other/residual", {"stem"});
  ASSERT_FALSE(other.empty());
  ASSERT_NE(other, bundle_id_);
  const std::vector<std::string> addresses = StartEdges(2, dir_.File("other"));
  ASSERT_EQ(addresses.size(), 2u);
  RuntimeOptions options = PatientFixedCutOptions(addresses);
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  const at::Tensor input = at::rand({1, 3, 8, 8});
  auto result = runtime->Infer(input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kDeviceFallback);
  EXPECT_THAT(result->fallback_reason, HasSubstr("unknown bundle id"));
  EXPECT_THAT(result->fallback_reason, HasSubstr(addresses[1]));
  ExpectMatchesOriginal(*result, input);
  const std::string telemetry = runtime->TelemetryPrometheus();
  for (const std::string& address : addresses) {
    EXPECT_THAT(telemetry,
                HasSubstr("cleave_device_edge_failures_total{edge=\"" + address + "\"} 1"));
  }

  options.local_fallback = false;
  auto strict = MakeRuntime(options);
  ASSERT_NE(strict, nullptr);
  auto refused = strict->Infer(input);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("unknown bundle id"));
}

// An edge that answers every request on its stream with the frames it was given: an
// impersonated or broken edge, to try what a device accepts.
class ScriptedEdge {
 public:
  explicit ScriptedEdge(std::vector<std::string> outputs)
      : server_([outputs = std::move(outputs)](const grpc::ByteBuffer& message) {
          v1::InferRequest request;
          v1::InferResponse response;
          if (proto::ParseByteBuffer(message, &request)) {
            response.set_request_id(request.request_id());
          }
          for (const std::string& output : outputs) response.add_outputs(output);
          return proto::ToByteBuffer(response);
        }) {}

  std::string address() const { return server_.target(); }

 private:
  test::RawGrpcServer server_;
};

TEST_F(RuntimeTest, AnAnswerBeyondWhatTheBundleDeclaresIsRefusedAndTheDeviceAnswers) {
  // The model answers [1, 10] for one sample. An edge declaring more (a batch in the thousands,
  // another shape, more outputs) is refused from the frames' headers, before they are decoded.
  const at::Tensor logits = at::rand({1, 10});
  const std::vector<std::pair<std::vector<std::string>, std::string>> answers = {
      {{test::CompressedZerosFrame({4096, 10})}, "dimension 0 (the batch) is 4096, not 1"},
      {{test::CompressedZerosFrame({1, 1000})}, "dimension 1 is 1000, not 10"},
      {{*common::EncodeFrame(logits), *common::EncodeFrame(logits)},
       "2 outputs; the bundle declares 1"},
  };
  for (const auto& [outputs, problem] : answers) {
    ScriptedEdge edge(outputs);
    auto runtime = MakeRuntime(PatientFixedCutOptions({edge.address()}));
    ASSERT_NE(runtime, nullptr);
    const at::Tensor input = at::rand({1, 3, 8, 8});
    auto result = runtime->Infer(input);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->placement, Placement::kDeviceFallback);
    EXPECT_THAT(result->fallback_reason, HasSubstr("returned a bad answer"));
    EXPECT_THAT(result->fallback_reason, HasSubstr(problem));
    ExpectMatchesOriginal(*result, input);
  }
  // The same edge answering what the bundle declares is taken.
  ScriptedEdge honest({*common::EncodeFrame(logits)});
  auto runtime = MakeRuntime(FixedCutOptions({honest.address()}));
  ASSERT_NE(runtime, nullptr);
  auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
  EXPECT_TRUE(at::equal(result->outputs.at(0), logits));
}

TEST_F(RuntimeTest, RoundRobinPutsTheStreamsOfSeveralRuntimesOnSuccessiveAddresses) {
  // One target resolving to two edges. Each runtime holds one stream on the process's shared
  // channel for that target; round_robin opens each new stream on the next ready address, so
  // a few runtimes in turn reach both edges (pick_first would keep to the first).
  const std::vector<std::string> addresses = StartEdges(2, dir_.File("bundles"));
  ASSERT_EQ(addresses.size(), 2u);
  RuntimeOptions options = PatientFixedCutOptions({"ipv4:" + addresses[0] + "," + addresses[1]});
  options.edge_client.load_balancing = "round_robin";
  auto served = [&](size_t i) {
    return absl::StrContains(more_edges_[i]->metrics().RenderPrometheusText(),
                             "cleave_edge_requests_total{");
  };
  for (int i = 0; i < 20 && !(served(0) && served(1)); ++i) {
    auto runtime = MakeRuntime(options);
    ASSERT_NE(runtime, nullptr);
    auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->placement, Placement::kEdge) << result->fallback_reason;
  }
  EXPECT_TRUE(served(0));
  EXPECT_TRUE(served(1));
}

TEST_F(RuntimeTest, WithoutFallbackAnUnreachableEdgeIsAnError) {
  RuntimeOptions options = FixedCutOptions({"127.0.0.1:1"});
  options.deadline = std::chrono::milliseconds(300);
  options.local_fallback = false;
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(result.status().code() == absl::StatusCode::kUnavailable ||
              result.status().code() == absl::StatusCode::kDeadlineExceeded)
      << result.status();
}

TEST_F(RuntimeTest, EdgeThatGoesAwayAndComesBackIsUsedAgain) {
  StartEdge();
  const std::string address = EdgeAddress();
  RuntimeOptions options = FixedCutOptions({address});
  options.deadline = std::chrono::seconds(5);
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  ASSERT_EQ(runtime->Infer(at::rand({1, 3, 8, 8}))->placement, Placement::kEdge);
  edge_->Shutdown(std::chrono::milliseconds(100));
  edge_.reset();
  auto during = runtime->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->placement, Placement::kDeviceFallback);
  // Same port again: the runtime reconnects on its own.
  edge_server::EdgeServerOptions again;
  again.bundles_dir = dir_.File("bundles");
  again.listen = address;
  auto server = edge_server::EdgeServer::Start(again);
  ASSERT_TRUE(server.ok()) << server.status();
  edge_ = *std::move(server);
  bool used_edge = false;
  for (int attempt = 0; attempt < 50 && !used_edge; ++attempt) {
    auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
    ASSERT_TRUE(result.ok());
    used_edge = result->placement == Placement::kEdge;
    if (!used_edge) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(used_edge);
}

TEST_F(RuntimeTest, NoEdgeRunsEverythingOnTheDevice) {
  auto runtime = MakeRuntime({});
  ASSERT_NE(runtime, nullptr);
  const at::Tensor input = at::rand({2, 3, 8, 8});
  auto result = runtime->Infer(input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kDevice);
  EXPECT_EQ(result->bytes_sent, 0u);
  ExpectMatchesOriginal(*result, input);
}

TEST_F(RuntimeTest, BadOffloadCutAndBadInputAreErrors) {
  RuntimeOptions options;
  options.offload_cut = 4242;
  auto runtime = Runtime::Create(dir_.File("bundles/residual"), options);
  ASSERT_FALSE(runtime.ok());
  EXPECT_THAT(std::string(runtime.status().message()), HasSubstr("cut 4242"));

  auto good = MakeRuntime({});
  auto result = good->Infer(at::rand({1, 5, 8, 8}));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RuntimeTest, ConfidentSamplesNeverTouchTheNetwork) {
  test::AddUntrainedExit(dir_.File("bundles/residual"),
                         0.0);  // every sample is confident enough
  StartEdge();
  for (const bool fixed_cut : {true, false}) {
    SCOPED_TRACE(fixed_cut ? "fixed cut after the exit" : "adaptive policy");
    RuntimeOptions options;
    options.edges = {EdgeAddress()};
    if (fixed_cut)
      options.offload_cut = test::ReadManifest(dir_.File("bundles/residual")).cuts[1].id;
    options.probe_interval = std::chrono::milliseconds(1);  // a probe due on every call
    options.deadline = std::chrono::seconds(30);
    auto runtime = MakeRuntime(options);
    ASSERT_NE(runtime, nullptr);
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->placement, Placement::kDeviceExit);
      EXPECT_EQ(result->exit_cut, runtime->bundle().manifest().cuts[0].id);
      EXPECT_EQ(result->bytes_sent, 0u);
      EXPECT_TRUE(result->fallback_reason.empty());
      ASSERT_EQ(result->outputs.size(), 1u);
      EXPECT_EQ(result->outputs[0].sizes(), (std::vector<int64_t>{1, 10}));
      EXPECT_GT(result->confidence, 0.0);
    }
    // Not even a probe: the edge saw no request at all.
    EXPECT_THAT(runtime->TelemetryPrometheus(), Not(HasSubstr("cleave_device_probes_total{")));
    EXPECT_THAT(edge_->metrics().RenderPrometheusText(),
                Not(HasSubstr("cleave_edge_requests_total{")));
  }
}

TEST_F(RuntimeTest, UnsureSamplesContinueToTheEdge) {
  test::AddUntrainedExit(dir_.File("bundles/residual"),
                         1.0);  // an untrained head is never that sure
  StartEdge();
  auto runtime = MakeEdgeRuntime();
  ASSERT_NE(runtime, nullptr);
  const at::Tensor input = at::rand({1, 3, 8, 8});
  InferOptions call;
  call.offload_cut = runtime->bundle().manifest().cuts[1].id;
  auto result = runtime->Infer(input, call);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kEdge);
  EXPECT_FALSE(result->exit_cut.has_value());
  EXPECT_LT(result->confidence, 1.0);
  ExpectMatchesOriginal(*result, input);
}

TEST_F(RuntimeTest, MissingBundleIsNotFound) {
  auto runtime = Runtime::Create(dir_.File("nowhere"), {});
  ASSERT_FALSE(runtime.ok());
  EXPECT_EQ(runtime.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cleave::device

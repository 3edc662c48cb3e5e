// A cleave-edge process through its life while devices use it: bundles added, updated with a
// broken copy and half-copied while its watcher rescans and requests keep coming; SIGTERM with
// requests in flight. Devices keep getting the edge's answers, each exactly once.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cleave/device/pipeline.h"
#include "cleave/device/runtime.h"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// A runtime that always offloads at the bundle's first cut and never answers itself: every
// answer it returns came from the edge.
std::unique_ptr<device::Runtime> EdgeOnlyRuntime(const std::string& bundle_dir,
                                                 const std::string& edge) {
  device::RuntimeOptions options;
  options.edges = {edge};
  options.offload_cut = test::ReadManifest(bundle_dir).cuts.at(0).id;
  options.deadline = std::chrono::seconds(10);
  options.local_fallback = false;
  options.probe_interval = milliseconds(0);
  auto runtime = device::Runtime::Create(bundle_dir, options);
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  return runtime.ok() ? *std::move(runtime) : nullptr;
}

// Waits up to 30 s until the edge's log contains `text`.
bool LogEventuallyContains(const test::EdgeProcess& edge, const std::string& text) {
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < give_up) {
    if (edge.Log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

TEST(EdgeLifecycleTest, BundlesChangingUnderTrafficNeverFailARequest) {
  test::TempDir dir;
  const torch::jit::Module model = test::ResidualModel();
  ASSERT_FALSE(test::WriteTestBundle(model, dir.path(), "bundles/residual/1", {"stem"}).empty());
  test::EdgeProcess edge(dir.File("bundles"), {"--watch-interval-ms", "50"});
  ASSERT_TRUE(edge.running()) << edge.Log();
  auto runtime = EdgeOnlyRuntime(dir.File("bundles/residual/1"), edge.address());
  ASSERT_NE(runtime, nullptr);

  // Traffic: two frames in flight all along, every answer counted and checked.
  std::mutex mutex;
  std::map<uint64_t, int> answers;
  std::map<uint64_t, at::Tensor> inputs;
  std::atomic<bool> stop{false};
  int failures = 0;
  device::Pipeline pipeline(runtime.get(), 2, [&](uint64_t sequence, auto result) {
    std::lock_guard<std::mutex> lock(mutex);
    ++answers[sequence];
    if (!result.ok() || result->placement != device::Placement::kEdge ||
        !at::allclose(result->outputs.at(0), test::RunFlat(model, inputs.at(sequence))[0], 1e-5,
                      1e-6)) {
      ++failures;
      ADD_FAILURE() << "request " << sequence << ": "
                    << (result.ok() ? result->fallback_reason : result.status().ToString());
    }
  });
  std::thread traffic([&] {
    while (!stop) {
      const at::Tensor input = at::rand({1, 3, 8, 8});
      std::unique_lock<std::mutex> lock(mutex);
      const uint64_t next = inputs.size();
      inputs[next] = input;
      lock.unlock();
      auto sequence = pipeline.Submit(input);
      EXPECT_TRUE(sequence.ok() && *sequence == next) << sequence.status();
    }
  });

  // 1. A second version appears beside the first.
  test::TempDir staging;
  const std::string v2 =
      test::WriteTestBundle(model, staging.path(), "residual-2", {"stem", "block1"});
  fs::copy(staging.File("residual-2"), dir.File("bundles/residual/2"), fs::copy_options::recursive);
  EXPECT_TRUE(LogEventuallyContains(edge, "id=" + v2));
  // 2. Version 2 overwritten in place by a broken copy: refused, version 2 keeps serving.
  std::ofstream(dir.File("bundles/residual/2/segment_1.pt"), std::ios::app) << "corrupt";
  std::ofstream(dir.File("bundles/residual/2/manifest.json"), std::ios::app) << "\n";
  EXPECT_TRUE(LogEventuallyContains(edge, "event=bundle_refused"));
  // 3. A bundle half copied in (files without their manifest) is not loaded until its
  // manifest arrives.
  const std::string concat =
      test::WriteTestBundle(test::ConcatModel(), staging.path(), "concat", {"stem"});
  fs::create_directories(dir.File("bundles/concat/1"));
  for (const auto& entry : fs::directory_iterator(staging.File("concat"))) {
    if (entry.path().filename() != "manifest.json") {
      fs::copy(entry.path(), dir.File("bundles/concat/1") / entry.path().filename(),
               fs::copy_options::recursive);
    }
  }
  std::this_thread::sleep_for(milliseconds(300));  // several rescans
  EXPECT_EQ(edge.Log().find("id=" + concat), std::string::npos);
  fs::copy(staging.File("concat/manifest.json"), dir.File("bundles/concat/1/manifest.json"));
  EXPECT_TRUE(LogEventuallyContains(edge, "id=" + concat));

  stop = true;
  traffic.join();
  ASSERT_TRUE(pipeline.DrainFor(std::chrono::seconds(30)));
  EXPECT_EQ(pipeline.duplicate_results(), 0u);
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_GT(answers.size(), 20u) << "too little traffic to mean anything";
  EXPECT_EQ(answers.size(), inputs.size());
  for (const auto& [sequence, count] : answers) EXPECT_EQ(count, 1) << "request " << sequence;
  EXPECT_EQ(failures, 0);
  // The broken copy never replaced version 2: a device on it is still served.
  auto on_v2 = EdgeOnlyRuntime(staging.File("residual-2"), edge.address());
  ASSERT_NE(on_v2, nullptr);
  auto result = on_v2->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, device::Placement::kEdge);
}

// grpc.health.v1.Health/Watch on the overall service, read on gRPC's threads: each status the
// server streams is recorded (1 SERVING, 2 NOT_SERVING). The health protos are not part of our
// build: the request (an empty service name) is an empty message and the response's status is
// field 1, a varint.
class HealthWatch final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit HealthWatch(const std::shared_ptr<grpc::Channel>& channel) : stub_(channel) {
    stub_.PrepareBidiStreamingCall(&context_, "/grpc.health.v1.Health/Watch", grpc::StubOptions(),
                                   this);
    StartWrite(&request_);
    StartWritesDone();
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (response_.Dump(&slices).ok()) {
      for (const auto& slice : slices) {
        bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      statuses_.push_back(bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0);
    }
    changed_.notify_all();
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& /*status*/) override {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

  // Waits up to `timeout` for the stream to report `status`.
  bool AwaitStatus(int status, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      return std::find(statuses_.begin(), statuses_.end(), status) != statuses_.end();
    });
  }
  // Waits until the call is over (the server has gone).
  bool AwaitDone(milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done_; });
  }

 private:
  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_{nullptr, 0};
  grpc::ByteBuffer response_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<int> statuses_;
  bool done_ = false;
};

TEST(EdgeLifecycleTest, SigtermAnswersWhatIsInFlightReportsNotServingAndExitsZero) {
  test::TempDir dir;
  const torch::jit::Module model = test::ResidualModel();
  ASSERT_FALSE(test::WriteTestBundle(model, dir.path(), "bundles/residual/1", {"stem"}).empty());
  // Batches wait 1.5 s to fill: the requests below are still queued when SIGTERM arrives.
  test::EdgeProcess edge(dir.File("bundles"), {"--max-queue-delay-us", "1500000",
                                               "--max-batch-size", "64", "--workers", "1"});
  ASSERT_TRUE(edge.running()) << edge.Log();
  auto channel = grpc::CreateChannel(edge.address(), grpc::InsecureChannelCredentials());
  HealthWatch* watch = new HealthWatch(channel);  // deletes itself: see below
  ASSERT_TRUE(watch->AwaitStatus(1, milliseconds(10000)));
  auto runtime = EdgeOnlyRuntime(dir.File("bundles/residual/1"), edge.address());
  ASSERT_NE(runtime, nullptr);
  std::vector<at::Tensor> inputs;
  std::vector<std::future<absl::StatusOr<device::Result>>> answers;
  for (int i = 0; i < 3; ++i) {
    inputs.push_back(at::rand({1, 3, 8, 8}));
    answers.push_back(runtime->InferAsync(inputs.back()));
  }
  std::this_thread::sleep_for(milliseconds(300));  // they reach the edge's queue
  const auto sent = Clock::now();
  std::thread stopper([&] { EXPECT_EQ(edge.Stop(), 0) << edge.Log(); });
  EXPECT_TRUE(watch->AwaitStatus(2, milliseconds(5000))) << "no NOT_SERVING while draining";
  for (size_t i = 0; i < answers.size(); ++i) {
    auto result = answers[i].get();
    ASSERT_TRUE(result.ok()) << "request " << i << ": " << result.status();
    EXPECT_EQ(result->placement, device::Placement::kEdge);
    EXPECT_TRUE(
        at::allclose(result->outputs.at(0), test::RunFlat(model, inputs[i])[0], 1e-5, 1e-6));
  }
  stopper.join();
  EXPECT_LT(Clock::now() - sent, std::chrono::seconds(5)) << "the drain waited out its grace";
  EXPECT_THAT(edge.Log(), HasSubstr("draining and stopping"));
  ASSERT_TRUE(watch->AwaitDone(milliseconds(10000)));
  delete watch;
}

}  // namespace
}  // namespace cleave

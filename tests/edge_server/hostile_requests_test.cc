// A cleave-edge process under abuse: batteries of hostile and oversized requests, on unary
// calls and streams, many at once. The edge runs under an address-space limit, so a regression
// fails an allocation inside the edge (and this test) instead of exhausting the machine; its
// peak resident memory must stay within its budget plus a stated margin, every request gets a
// precise answer, and a valid request right after gets the right one.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/v1/inference.grpc.pb.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

// Under AddressSanitizer or ThreadSanitizer (scripts/sanitize.sh) the edge reserves terabytes
// of shadow address space, and ASan keeps freed memory in quarantine: no address-space limit
// then, and the resident-memory bound is not checked (every answer still is).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

constexpr uint64_t kMiB = uint64_t{1} << 20;
// The edge's budget for requests in flight, and what its resident memory may grow beyond it:
// gRPC's buffers and threads, the allocator's slack and the forwards' temporaries, which the
// budget estimates rather than counts (measured peak growth here: see docs/RELIABILITY.md).
constexpr uint64_t kBudgetMiB = 32;
constexpr uint64_t kMarginMiB = 48;
// Address space the edge may map: LibTorch, gRPC, thread stacks and malloc arenas reserve far
// more than they touch, so this is a bound against runaway allocations (the attack below asks
// for 16 x 400 MB), not a measure of use.
constexpr uint64_t kAddressSpace = 4096 * kMiB;
// Requests per battery, and how many run at once.
constexpr int kConcurrent = 16;
constexpr int kStreams = 4;
constexpr int kPerStream = 16;

class HostileRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const torch::jit::Module model = test::ResidualModel();
    residual_id_ = test::WriteTestBundle(model, dir_.path(), "bundles/residual/1", {"stem"});
    wide_id_ = test::WriteTestBundle(model, dir_.path(), "bundles/wide/1", {"stem"});
    ASSERT_FALSE(residual_id_.empty());
    ASSERT_FALSE(wide_id_.empty());
    auto bundle = common::Bundle::Load(dir_.File("bundles/wide/1"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *bundle;
    cut_ = bundle_->manifest().cuts.at(0).id;
    // "wide" takes batches of up to 1024 samples (4 MiB activations): a handful fill the budget.
    const std::string config = dir_.File("edge.json");
    ASSERT_TRUE(common::WriteFileAtomically(
                    config, R"({"batching": {"models": {"wide": {"max_request_batch": 1024}}}})")
                    .ok());
    edge_ = std::make_unique<test::EdgeProcess>(
        dir_.File("bundles"),
        std::vector<std::string>{"--config", config, "--max-inflight-mb", absl::StrCat(kBudgetMiB),
                                 "--workers", "2", "--idle-spin-us", "0", "--watch-interval-ms",
                                 "0"},
        kSanitized ? 0 : kAddressSpace);
    ASSERT_TRUE(edge_->running()) << edge_->Log();
    channel_ = grpc::CreateChannel(edge_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
    // Warm up (the first forwards allocate LibTorch's pools), then measure from here.
    ExpectValidRequestAnswered();
    baseline_ = test::ReadProcessMemory(edge_->pid());
    test::ResetPeakRss(edge_->pid());
  }

  v1::InferRequest Hostile(const std::string& bundle_id, int64_t batch, uint64_t id) const {
    std::vector<int64_t> shape = bundle_->manifest().cuts.at(0).tensor.shape;
    shape[0] = batch;
    v1::InferRequest request;
    request.set_request_id(id);
    request.set_bundle_id(bundle_id);
    request.set_cut_id(cut_);
    request.set_activation(test::CompressedZerosFrame(shape));
    return request;
  }

  grpc::Status Call(const v1::InferRequest& request, v1::InferResponse* response) const {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return stub_->Infer(&context, request, response);
  }

  // Sends `request` from kConcurrent threads at once; `check` sees each status and answer.
  template <typename Check>
  void Concurrently(const v1::InferRequest& request, Check check) const {
    std::vector<std::thread> threads;
    std::vector<grpc::Status> statuses(kConcurrent);
    std::vector<v1::InferResponse> responses(kConcurrent);
    for (int i = 0; i < kConcurrent; ++i) {
      threads.emplace_back([&, i] { statuses[i] = Call(request, &responses[i]); });
    }
    for (std::thread& thread : threads) thread.join();
    for (int i = 0; i < kConcurrent; ++i) check(statuses[i], responses[i]);
  }

  // Writes kPerStream copies of `request` (ids 1..) on each of kStreams streams at once and
  // hands every answer to `check`; each id must be answered exactly once per stream.
  template <typename Check>
  void OnStreams(v1::InferRequest request, Check check) const {
    std::vector<std::thread> threads;
    std::vector<std::map<uint64_t, int>> answers(kStreams);
    std::vector<std::vector<v1::InferResponse>> responses(kStreams);
    std::vector<grpc::Status> finished(kStreams);
    for (int s = 0; s < kStreams; ++s) {
      threads.emplace_back([&, s, request]() mutable {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
        auto stream = stub_->InferStream(&context);
        std::thread reader([&] {
          v1::InferResponse response;
          while (stream->Read(&response)) {
            ++answers[s][response.request_id()];
            responses[s].push_back(response);
          }
        });
        for (int i = 1; i <= kPerStream; ++i) {
          request.set_request_id(static_cast<uint64_t>(i));
          if (!stream->Write(request)) break;
        }
        stream->WritesDone();
        reader.join();
        finished[s] = stream->Finish();
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (int s = 0; s < kStreams; ++s) {
      EXPECT_TRUE(finished[s].ok()) << finished[s].error_message();
      EXPECT_EQ(answers[s].size(), static_cast<size_t>(kPerStream)) << "stream " << s;
      for (const auto& [id, count] : answers[s]) {
        EXPECT_EQ(count, 1) << "stream " << s << " request " << id;
      }
      for (const v1::InferResponse& response : responses[s]) check(response);
    }
  }

  // A valid one-sample request gets the unsplit model's answer.
  void ExpectValidRequestAnswered() const {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    v1::InferRequest request;
    request.set_request_id(1);
    request.set_bundle_id(residual_id_);
    request.set_cut_id(cut_);
    request.set_activation(*common::EncodeFrame(bundle_->RunSegments(0, 0, {input})->toTensor()));
    v1::InferResponse response;
    const grpc::Status status = Call(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                             bundle_->RunSegments(0, 1, {input})->toTensor(), 1e-5, 1e-6));
  }

  // The answer of the back segment to zeros of one sample: every row of a valid wide answer.
  at::Tensor ZerosAnswer() const {
    auto shape = bundle_->manifest().cuts.at(0).tensor.shape;
    return bundle_->RunSegments(1, 1, {at::zeros(shape)})->toTensor();
  }

  test::TempDir dir_;
  std::string residual_id_, wide_id_;
  std::shared_ptr<const common::Bundle> bundle_;
  int cut_ = 0;
  std::unique_ptr<test::EdgeProcess> edge_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  test::ProcessMemory baseline_;
};

TEST_F(HostileRequestsTest, BatteriesOfOversizedRequestsStayWithinTheBudgetAndAreAnswered) {
  // 1. Small frames declaring batches a device never sends: refused from the header.
  for (int64_t batch : {int64_t{2674}, int64_t{100000}}) {
    const v1::InferRequest request = Hostile(residual_id_, batch, 1);
    Concurrently(request, [&](const grpc::Status& status, const v1::InferResponse&) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(status.error_message(),
                  HasSubstr(absl::StrCat("dimension 0 (the batch) is ", batch)));
    });
    OnStreams(request, [](const v1::InferResponse& response) {
      EXPECT_EQ(response.status_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
    });
  }
  // 2. Batches the bundle accepts, far more at once than the budget holds: each is computed
  // or refused RESOURCE_EXHAUSTED, never both, and the budget holds.
  const at::Tensor zeros_answer = ZerosAnswer();
  std::atomic<int> computed{0}, refused{0};
  auto count = [&](int code, const std::string& message, const v1::InferResponse& response) {
    if (code == 0) {
      ++computed;
      ASSERT_EQ(response.outputs_size(), 1);
      const at::Tensor output = *common::DecodeFrame(response.outputs(0));
      ASSERT_EQ(output.size(0), 1024);
      EXPECT_TRUE(at::allclose(output, zeros_answer.expand_as(output), 1e-5, 1e-6));
    } else {
      ++refused;
      EXPECT_EQ(code, static_cast<int>(absl::StatusCode::kResourceExhausted)) << message;
      EXPECT_THAT(message, AnyOf(HasSubstr("max_inflight_mb"), HasSubstr("queue is full")));
    }
  };
  const v1::InferRequest wide = Hostile(wide_id_, 1024, 1);
  Concurrently(wide, [&](const grpc::Status& status, const v1::InferResponse& response) {
    count(status.error_code(), status.error_message(), response);
  });
  OnStreams(wide, [&](const v1::InferResponse& response) {
    count(response.status_code(), response.status_message(), response);
  });
  EXPECT_GT(computed, 0);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(computed + refused, kConcurrent + kStreams * kPerStream);

  const test::ProcessMemory after = test::ReadProcessMemory(edge_->pid());
  const uint64_t growth = after.peak_rss > baseline_.rss ? after.peak_rss - baseline_.rss : 0;
  std::cout << "edge memory: resident " << baseline_.rss / kMiB << " MiB before, peak "
            << after.peak_rss / kMiB << " MiB during the batteries (growth " << growth / kMiB
            << " MiB, budget " << kBudgetMiB << " + margin " << kMarginMiB
            << "); address space peak " << after.peak_size / kMiB << " MiB\n";
  if (!kSanitized) {
    EXPECT_LE(growth, (kBudgetMiB + kMarginMiB) * kMiB);
  }
  ExpectValidRequestAnswered();
  EXPECT_EQ(edge_->Stop(), 0) << edge_->Log();
}

}  // namespace
}  // namespace cleave::edge_server

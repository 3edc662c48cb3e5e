// The executor on its own: batches of real frames through a real bundle, what it answers
// without computing, and what it counts.
#include "cleave/edge_server/batch_runner.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/edge_metrics.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::HasSubstr;

// A job's caller: the frame the job views, the result the runner writes, and the outcome.
struct Caller {
  std::string frame;
  JobResult result;
  std::optional<absl::Status> status;
  int answers = 0;
};

class BatchRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = test::ResidualModel();
    test::WriteTestBundle(original_, dir_.path(), "residual", {"stem", "block1"});
    auto bundle = common::Bundle::Load(dir_.File("residual"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *bundle;
    auto metrics = EdgeMetrics::Create(&registry_);
    ASSERT_TRUE(metrics.ok());
    metrics_ = *std::move(metrics);
    bundle_metrics_ = metrics_->ForBundle("residual", {common::kInputCutId, Cut(0), Cut(1)});
  }

  int Cut(size_t index) const { return bundle_->manifest().cuts.at(index).id; }

  // A job resuming at cut `index` from `input`, whose caller is kept in callers_.
  BatchJob Job(size_t index, const at::Tensor& input) {
    Caller& caller = callers_.emplace_back();
    caller.frame = *common::EncodeFrame(bundle_->RunSegments(0, index, {input})->toTensor());
    BatchJob job;
    job.bundle = bundle_;
    job.metrics = bundle_metrics_;
    job.cut = Cut(index);
    job.request_id = callers_.size();
    job.activation = caller.frame;
    job.result = &caller.result;
    job.done = [&caller](absl::Status status) {
      caller.status = std::move(status);
      ++caller.answers;
    };
    return job;
  }

  std::string Exposition() const { return registry_.RenderPrometheusText(); }

  test::TempDir dir_;
  torch::jit::Module original_;
  std::shared_ptr<const common::Bundle> bundle_;
  common::MetricsRegistry registry_;
  std::unique_ptr<EdgeMetrics> metrics_;
  std::shared_ptr<const BundleMetrics> bundle_metrics_;
  std::deque<Caller> callers_;  // stable addresses
  BatchRunner runner_{common::DecodeLimits{}};
};

TEST_F(BatchRunnerTest, BatchIsOneForwardWhoseOutputsMatchTheUnsplitModel) {
  std::vector<at::Tensor> inputs;
  std::vector<BatchJob> batch;
  for (int i = 0; i < 3; ++i) {
    inputs.push_back(at::rand({1, 3, 8, 8}));
    batch.push_back(Job(1, inputs.back()));
  }
  runner_.Run(std::move(batch));
  for (size_t i = 0; i < 3; ++i) {
    const Caller& caller = callers_[i];
    ASSERT_EQ(caller.answers, 1);
    ASSERT_TRUE(caller.status->ok()) << *caller.status;
    ASSERT_EQ(caller.result.outputs.size(), 1u);
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(caller.result.outputs[0]),
                             test::RunFlat(original_, inputs[i])[0], 1e-5, 1e-6));
    EXPECT_EQ(caller.result.timings.batch_size, 3u);
  }
  EXPECT_THAT(Exposition(), HasSubstr("cleave_edge_requests_total{model=\"residual\",cut=\"" +
                                      std::to_string(Cut(1)) + "\",status=\"OK\"} 3"));
  EXPECT_THAT(Exposition(), HasSubstr("cleave_edge_batch_size_count{model=\"residual\"} 1"));
}

TEST_F(BatchRunnerTest, CancelledExpiredAndUndecodableJobsAreAnsweredWithoutComputing) {
  std::vector<BatchJob> batch;
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  batch.back().context.cancelled = [] { return true; };
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  batch.back().context.deadline = batch.back().context.arrival - std::chrono::seconds(1);
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  callers_.back().frame[callers_.back().frame.size() - 1] ^= 1;  // the checksum no longer holds
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  callers_.back().frame = *common::EncodeFrame(at::rand({1, 5, 8, 8}));  // not the cut's shape
  batch.back().activation = callers_.back().frame;
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  runner_.Run(std::move(batch));

  for (const Caller& caller : callers_) EXPECT_EQ(caller.answers, 1);
  EXPECT_TRUE(absl::IsCancelled(*callers_[0].status)) << *callers_[0].status;
  EXPECT_TRUE(absl::IsDeadlineExceeded(*callers_[1].status)) << *callers_[1].status;
  EXPECT_THAT(std::string(callers_[1].status->message()), HasSubstr("not computed"));
  EXPECT_TRUE(absl::IsInvalidArgument(*callers_[2].status)) << *callers_[2].status;
  EXPECT_THAT(std::string(callers_[2].status->message()),
              HasSubstr("activation for cut " + std::to_string(Cut(0))));
  EXPECT_TRUE(absl::IsInvalidArgument(*callers_[3].status)) << *callers_[3].status;
  EXPECT_THAT(std::string(callers_[3].status->message()), HasSubstr("1x5x8x8"));
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(callers_[i].result.outputs.empty());
  // The one valid job ran on its own.
  ASSERT_TRUE(callers_[4].status->ok()) << *callers_[4].status;
  EXPECT_EQ(callers_[4].result.timings.batch_size, 1u);
  EXPECT_EQ(callers_[4].result.outputs.size(), 1u);
  const std::string text = Exposition();
  for (const char* status : {"CANCELLED", "DEADLINE_EXCEEDED", "OK"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("cleave_edge_requests_total{model=\"residual\",cut=\"",
                                             Cut(0), "\",status=\"", status, "\"} 1")));
  }
  EXPECT_THAT(text, HasSubstr(absl::StrCat("cut=\"", Cut(0), "\",status=\"INVALID_ARGUMENT\"} 2")));
}

TEST_F(BatchRunnerTest, AJobAtACutTheBundleCannotResumeFromIsRefusedAndCountedAsOther) {
  std::vector<BatchJob> batch;
  batch.push_back(Job(0, at::rand({1, 3, 8, 8})));
  batch.back().cut = 12345;
  runner_.Run(std::move(batch));
  ASSERT_EQ(callers_[0].answers, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(*callers_[0].status)) << *callers_[0].status;
  EXPECT_THAT(Exposition(), HasSubstr("cut=\"other\",status=\"INVALID_ARGUMENT\"} 1"));
  EXPECT_THAT(Exposition(), ::testing::Not(HasSubstr("12345")));
}

TEST_F(BatchRunnerTest, EmptyBatchIsANoOp) { runner_.Run({}); }

}  // namespace
}  // namespace cleave::edge_server

// Pipeline alone: frames started by the test, answered when, in the order and as often as the
// test says, so that ordering, duplicates and slots are checked exactly (the resilience tests
// drive it through real runtimes and edges).
#include "cleave/device/pipeline.h"

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cleave::device {
namespace {

using ::testing::HasSubstr;

using Done = std::function<void(absl::StatusOr<Result>)>;

// Holds every started frame's completion; the test answers them.
class Frames {
 public:
  Pipeline::StartFrame Starter() {
    return [this](at::Tensor, InferOptions, Done done) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.push_back(std::move(done));
    };
  }
  // Answers frame `index` (in start order) with a result tagged by its index.
  void Answer(size_t index) {
    Done done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done = done_.at(index);
    }
    Result result;
    result.cut_id = static_cast<int>(index);
    done(std::move(result));
  }
  size_t started() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Done> done_;
};

// What the pipeline delivered: (sequence, the tag of the result it came with).
class Delivered {
 public:
  Pipeline::ResultCallback Callback() {
    return [this](uint64_t sequence, absl::StatusOr<Result> result) {
      std::lock_guard<std::mutex> lock(mutex_);
      pairs_.emplace_back(sequence, result.ok() ? result->cut_id : -1);
    };
  }
  std::vector<std::pair<uint64_t, int>> pairs() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return pairs_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<uint64_t, int>> pairs_;
};

std::vector<std::pair<uint64_t, int>> InOrder(int count) {
  std::vector<std::pair<uint64_t, int>> pairs;
  for (int i = 0; i < count; ++i) pairs.emplace_back(i, i);
  return pairs;
}

TEST(PipelineTest, DeliversInSubmissionOrderWhatCompletesInReverse) {
  Frames frames;
  Delivered delivered;
  Pipeline pipeline(frames.Starter(), 4, delivered.Callback());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pipeline.Submit(at::zeros({1})).ok());
  for (size_t i : {3, 2, 1}) frames.Answer(i);
  EXPECT_TRUE(delivered.pairs().empty()) << "delivered before frame 0 was answered";
  EXPECT_EQ(pipeline.in_flight(), 4u);
  frames.Answer(0);
  EXPECT_EQ(delivered.pairs(), InOrder(4));
  EXPECT_EQ(pipeline.in_flight(), 0u);
  EXPECT_EQ(pipeline.duplicate_results(), 0u);
}

TEST(PipelineTest, ASecondResultForAFrameIsCountedAndNeverDelivered) {
  Frames frames;
  Delivered delivered;
  Pipeline pipeline(frames.Starter(), 3, delivered.Callback());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pipeline.Submit(at::zeros({1})).ok());
  frames.Answer(1);
  frames.Answer(1);  // twice while it waits for frame 0
  EXPECT_EQ(pipeline.duplicate_results(), 1u);
  frames.Answer(0);
  frames.Answer(0);  // twice after it was delivered
  frames.Answer(2);
  EXPECT_EQ(delivered.pairs(), InOrder(3));
  EXPECT_EQ(pipeline.duplicate_results(), 2u);
  EXPECT_TRUE(pipeline.DrainFor(std::chrono::milliseconds(0)));
}

TEST(PipelineTest, SubmitWaitsForASlotAndRefusesWhenNoneFrees) {
  Frames frames;
  Delivered delivered;
  Pipeline pipeline(frames.Starter(), 2, delivered.Callback());
  ASSERT_TRUE(pipeline.Submit(at::zeros({1})).ok());
  ASSERT_TRUE(pipeline.Submit(at::zeros({1})).ok());
  auto refused = pipeline.Submit(at::zeros({1}), {}, std::chrono::milliseconds(20));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("2 frames in flight"));
  EXPECT_EQ(frames.started(), 2u) << "a refused frame was started";
  EXPECT_FALSE(pipeline.DrainFor(std::chrono::milliseconds(20)));
  frames.Answer(0);
  auto third = pipeline.Submit(at::zeros({1}), {}, std::chrono::milliseconds(20));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(*third, 2u);
  frames.Answer(1);
  frames.Answer(2);
  EXPECT_EQ(delivered.pairs(), InOrder(3));
}

}  // namespace
}  // namespace cleave::device

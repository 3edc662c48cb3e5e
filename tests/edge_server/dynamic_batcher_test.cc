// The scheduler on its own: what batches it forms and hands to its runner, what it refuses,
// and what Shutdown does, with a runner that records batches (and can hold a worker busy)
// instead of computing them.
#include "cleave/edge_server/dynamic_batcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "cleave/common/bundle.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records every batch as the request ids it holds, answers each job OK, and holds the worker
// in its first batch until Release().
class RecordingRunner {
 public:
  explicit RecordingRunner(bool hold_first) : holding_(hold_first) {}

  DynamicBatcher::RunBatch Run() {
    return [this](std::vector<BatchJob> batch) {
      std::vector<uint64_t> ids;
      for (const BatchJob& job : batch) ids.push_back(job.request_id);
      std::unique_lock<std::mutex> lock(mutex_);
      batches_.push_back(ids);
      changed_.notify_all();
      changed_.wait(lock, [this] { return !holding_ || batches_.size() > 1; });
      lock.unlock();
      for (BatchJob& job : batch) job.done(absl::OkStatus());
    };
  }

  void Release() {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = false;
    changed_.notify_all();
  }

  // Waits until `count` batches have started; returns them.
  std::vector<std::vector<uint64_t>> AwaitBatches(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    EXPECT_TRUE(changed_.wait_for(lock, std::chrono::seconds(30),
                                  [&] { return batches_.size() >= count; }));
    return batches_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool holding_;
  std::vector<std::vector<uint64_t>> batches_;
};

class DynamicBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::WriteTestBundle(test::ResidualModel(), dir_.path(), "residual", {"stem", "block1"});
    auto bundle = common::Bundle::Load(dir_.File("residual"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *bundle;
    options_.workers = 1;
    options_.idle_spin = std::chrono::microseconds(0);
  }

  BatchJob Job(uint64_t id, int cut) {
    BatchJob job;
    job.bundle = bundle_;
    job.cut = cut;
    job.request_id = id;
    job.done = [this](absl::Status status) {
      std::lock_guard<std::mutex> lock(mutex_);
      answered_.push_back(status);
    };
    return job;
  }

  size_t Answered() {
    std::lock_guard<std::mutex> lock(mutex_);
    return answered_.size();
  }

  int Cut(size_t index) const { return bundle_->manifest().cuts.at(index).id; }

  test::TempDir dir_;
  std::shared_ptr<const common::Bundle> bundle_;
  DynamicBatcher::Options options_;
  std::mutex mutex_;
  std::vector<absl::Status> answered_;
};

TEST_F(DynamicBatcherTest, LoneJobRunsAtOnceAsABatchOfOne) {
  RecordingRunner runner(/*hold_first=*/false);
  DynamicBatcher batcher(options_, runner.Run());
  ASSERT_TRUE(batcher.Submit(Job(7, Cut(0))).ok());
  EXPECT_THAT(runner.AwaitBatches(1), ElementsAre(ElementsAre(7u)));
}

TEST_F(DynamicBatcherTest, JobsQueuedBehindABusyWorkerFormBatchesInArrivalOrder) {
  options_.default_batching.max_batch_size = 3;
  RecordingRunner runner(/*hold_first=*/true);
  DynamicBatcher batcher(options_, runner.Run());
  ASSERT_TRUE(batcher.Submit(Job(1, Cut(0))).ok());
  runner.AwaitBatches(1);  // the only worker is busy with job 1
  for (uint64_t id : {2, 3, 4, 5}) ASSERT_TRUE(batcher.Submit(Job(id, Cut(0))).ok());
  runner.Release();
  EXPECT_THAT(runner.AwaitBatches(3),
              ElementsAre(ElementsAre(1u), ElementsAre(2u, 3u, 4u), ElementsAre(5u)));
}

TEST_F(DynamicBatcherTest, JobsAtDifferentCutsNeverShareABatch) {
  RecordingRunner runner(/*hold_first=*/true);
  DynamicBatcher batcher(options_, runner.Run());
  ASSERT_TRUE(batcher.Submit(Job(1, Cut(0))).ok());
  runner.AwaitBatches(1);
  ASSERT_TRUE(batcher.Submit(Job(2, Cut(1))).ok());
  ASSERT_TRUE(batcher.Submit(Job(3, Cut(0))).ok());
  ASSERT_TRUE(batcher.Submit(Job(4, Cut(1))).ok());
  runner.Release();
  const auto batches = runner.AwaitBatches(3);
  // Cut 1's queue became ready first (its oldest job arrived first).
  EXPECT_THAT(batches, ElementsAre(ElementsAre(1u), ElementsAre(2u, 4u), ElementsAre(3u)));
}

TEST_F(DynamicBatcherTest, FullQueueAndShutdownAreToldApart) {
  options_.max_queue = 2;
  RecordingRunner runner(/*hold_first=*/true);
  DynamicBatcher batcher(options_, runner.Run());
  ASSERT_TRUE(batcher.Submit(Job(1, Cut(0))).ok());
  runner.AwaitBatches(1);  // taken: the queue is empty again
  ASSERT_TRUE(batcher.Submit(Job(2, Cut(0))).ok());
  ASSERT_TRUE(batcher.Submit(Job(3, Cut(0))).ok());
  const absl::Status full = batcher.Submit(Job(4, Cut(0)));
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_THAT(std::string(full.message()),
              HasSubstr("request 4 refused: the edge's queue is full"));
  runner.Release();
  batcher.Shutdown();
  const absl::Status stopped = batcher.Submit(Job(5, Cut(0)));
  EXPECT_TRUE(absl::IsUnavailable(stopped)) << stopped;
  EXPECT_THAT(std::string(stopped.message()), HasSubstr("shutting down"));
  EXPECT_EQ(Answered(), 3u);  // refused jobs are not answered by the batcher
}

TEST_F(DynamicBatcherTest, ShutdownRunsEverythingQueuedEvenWhenWaitingForAFullerBatch) {
  options_.default_batching.max_batch_size = 8;
  options_.default_batching.max_queue_delay = std::chrono::hours(1);
  RecordingRunner runner(/*hold_first=*/false);
  DynamicBatcher batcher(options_, runner.Run());
  for (uint64_t id : {1, 2, 3}) ASSERT_TRUE(batcher.Submit(Job(id, Cut(0))).ok());
  batcher.Shutdown();
  EXPECT_THAT(runner.AwaitBatches(1), ElementsAre(ElementsAre(1u, 2u, 3u)));
  EXPECT_EQ(Answered(), 3u);
}

TEST_F(DynamicBatcherTest, FullBatchDoesNotWaitForItsDelay) {
  options_.default_batching.max_batch_size = 2;
  options_.default_batching.max_queue_delay = std::chrono::hours(1);
  RecordingRunner runner(/*hold_first=*/false);
  DynamicBatcher batcher(options_, runner.Run());
  ASSERT_TRUE(batcher.Submit(Job(1, Cut(0))).ok());
  ASSERT_TRUE(batcher.Submit(Job(2, Cut(0))).ok());
  EXPECT_THAT(runner.AwaitBatches(1), ElementsAre(ElementsAre(1u, 2u)));
}

TEST_F(DynamicBatcherTest, BatchingIsPerModelNameWithDefaults) {
  options_.default_batching.max_batch_size = 4;
  BatchingOptions residual;
  residual.max_batch_size = 2;
  residual.max_request_batch = 8;
  options_.batching_by_model["residual"] = residual;
  RecordingRunner runner(/*hold_first=*/true);
  DynamicBatcher batcher(options_, runner.Run());
  EXPECT_EQ(bundle_->manifest().name, "residual");
  EXPECT_EQ(batcher.BatchingFor(*bundle_).max_request_batch, 8);
  ASSERT_TRUE(batcher.Submit(Job(1, Cut(0))).ok());
  runner.AwaitBatches(1);
  for (uint64_t id : {2, 3, 4}) ASSERT_TRUE(batcher.Submit(Job(id, Cut(0))).ok());
  runner.Release();
  EXPECT_THAT(runner.AwaitBatches(3),
              ElementsAre(ElementsAre(1u), ElementsAre(2u, 3u), ElementsAre(4u)));
}

TEST_F(DynamicBatcherTest, EveryWorkerIsPreparedBeforeItRunsABatch) {
  options_.workers = 3;
  std::mutex mutex;
  std::set<std::thread::id> prepared;
  options_.prepare_worker = [&] {
    std::lock_guard<std::mutex> lock(mutex);
    prepared.insert(std::this_thread::get_id());
  };
  std::set<std::thread::id> ran_on;
  DynamicBatcher batcher(options_, [&](std::vector<BatchJob> batch) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ran_on.insert(std::this_thread::get_id());
      EXPECT_EQ(prepared.count(std::this_thread::get_id()), 1u);
    }
    for (BatchJob& job : batch) job.done(absl::OkStatus());
  });
  for (uint64_t id = 0; id < 20; ++id) ASSERT_TRUE(batcher.Submit(Job(id, Cut(0))).ok());
  batcher.Shutdown();
  EXPECT_EQ(prepared.size(), 3u);
  EXPECT_EQ(Answered(), 20u);
}

}  // namespace
}  // namespace cleave::edge_server

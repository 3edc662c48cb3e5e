// The edge's scheduler: jobs that resume the same bundle at the same cut are queued together
// and handed to the runner as one batch (the BatchRunner runs it as one forward). A free
// worker takes everything queued for the oldest (bundle, cut) up to the bundle's max batch
// size, so batches grow with load and a lone request at low load starts at once; a bundle may
// also set a max queue delay to wait for fuller batches. A worker that runs out of work first
// polls for `idle_spin` (one worker at a time) before sleeping, so a request arriving soon
// after (the next one of a device in a control loop) starts without a thread wake-up. The
// total queue is bounded: a full queue refuses at once. The batcher neither decodes nor
// computes: what a batch means is the runner's business.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_
#define CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "cleave/common/mutex.h"
#include "cleave/edge_server/batch_job.h"

namespace cleave::edge_server {

struct BatchingOptions {
  int max_batch_size = 32;  // requests per forward
  // Samples one request may carry (dimension 0 of its activation): a device sends one.
  int64_t max_request_batch = 1;
  // How long the oldest request may wait for more to join its batch; 0: never wait.
  std::chrono::microseconds max_queue_delay{0};
};

class DynamicBatcher {
 public:
  struct Options {
    size_t workers = 2;
    size_t max_queue = 256;  // requests waiting, over all bundles
    // How long an idle worker polls for new work before sleeping; 0: sleep at once.
    std::chrono::microseconds idle_spin{200};
    // Batching per bundle name; bundles without an entry use `default_batching`.
    BatchingOptions default_batching;
    std::map<std::string, BatchingOptions> batching_by_model;
    // Runs first on every worker thread (LibTorch keeps its thread count per thread).
    std::function<void()> prepare_worker = [] {};
  };

  // Runs one batch: jobs of one bundle and cut, in arrival order, each answered exactly once.
  using RunBatch = std::function<void(std::vector<BatchJob> batch)>;

  // Starts the workers; each runs the batches it forms with `run`.
  DynamicBatcher(Options options, RunBatch run);
  // Shutdown().
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues `job`. RESOURCE_EXHAUSTED when the queue is full and UNAVAILABLE when the batcher
  // is shutting down; job.done is then not called.
  [[nodiscard]] absl::Status Submit(BatchJob job);

  // Stops accepting, runs everything queued, joins the workers. Idempotent.
  void Shutdown();

  // The batching options of `bundle`: its name's entry, or the defaults.
  [[nodiscard]] const BatchingOptions& BatchingFor(const common::Bundle& bundle) const;

 private:
  using Key = std::pair<std::string, int>;  // (bundle id, cut)
  using Clock = RequestContext::Clock;

  void WorkLoop();
  // Takes the next batch; empty when stopping with nothing queued.
  std::vector<BatchJob> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Polls (releasing mutex_ meanwhile) for up to options_.idle_spin unless another worker
  // already does; returns false when it did not poll.
  bool SpinForWork() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const Options options_;
  const RunBatch run_;
  common::Mutex mutex_;
  common::CondVar wake_;
  std::map<Key, std::deque<BatchJob>> queues_ ABSL_GUARDED_BY(mutex_);
  std::atomic<size_t> queued_{0};      // written under mutex_; atomic for the poller
  std::atomic<bool> spinning_{false};  // a worker is polling: Submit need not wake one
  std::atomic<bool> stopping_{false};  // the same
  std::vector<std::thread> workers_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_

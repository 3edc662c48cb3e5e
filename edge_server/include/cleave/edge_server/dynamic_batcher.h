// Dynamic batching for the edge: requests that resume the same bundle at the same cut are
// queued together and run as one forward, then split back. A free worker takes everything
// queued for the oldest (bundle, cut) up to the bundle's max batch size, so batches grow with
// load and a lone request at low load starts at once; a bundle may also set a max queue delay
// to wait for fuller batches. A worker that runs out of work first polls for `idle_spin`
// (one worker at a time) before sleeping, so a request arriving soon after (the next one of
// a device in a control loop) starts without a thread wake-up. The total queue is bounded: a
// full queue refuses at once (RESOURCE_EXHAUSTED). A request whose deadline passes or whose
// caller cancels while it waits is answered DEADLINE_EXCEEDED / CANCELLED and never computed.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_
#define CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "cleave/common/bundle.h"
#include "cleave/common/frame_codec.h"
#include "cleave/edge_server/edge_metrics.h"
#include "cleave/v1/inference.pb.h"

namespace cleave::edge_server {

struct BatchingOptions {
  int max_batch_size = 32;  // requests per forward
  // Samples one request may carry (dimension 0 of its activation): a device sends one.
  int64_t max_request_batch = 1;
  // How long the oldest request may wait for more to join its batch; 0: never wait.
  std::chrono::microseconds max_queue_delay{0};
};

// What a request carries besides its message: when it arrived, when it must have started
// computing, and whether its caller has gone away.
struct RequestContext {
  using Clock = std::chrono::steady_clock;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> cancelled = [] { return false; };
};

class DynamicBatcher {
 public:
  struct Options {
    size_t workers = 2;
    size_t max_queue = 256;  // requests waiting, over all bundles
    // How long an idle worker polls for new work before sleeping; 0: sleep at once.
    std::chrono::microseconds idle_spin{200};
    common::DecodeLimits limits;
    // Batching per bundle name; bundles without an entry use `default_batching`.
    BatchingOptions default_batching;
    std::map<std::string, BatchingOptions> batching_by_model;
  };

  // One queued request. `request` and `response` stay valid until `done` is called.
  struct Job {
    std::shared_ptr<const common::Bundle> bundle;
    const v1::InferRequest* request = nullptr;
    v1::InferResponse* response = nullptr;
    RequestContext context;
    std::function<void(absl::Status)> done;
  };

  // REQUIRES: `metrics` (may be null) outlives the batcher.
  DynamicBatcher(Options options, EdgeMetrics* metrics);
  // Shutdown().
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues `work`; returns false (and does not call work.done) when the queue is full or the
  // batcher is shutting down.
  [[nodiscard]] bool Submit(Job job);

  // Stops accepting, answers everything queued, joins the workers. Idempotent.
  void Shutdown();

  // The batching options of `bundle`: its name's entry, or the defaults.
  [[nodiscard]] const BatchingOptions& BatchingFor(const common::Bundle& bundle) const;

 private:
  using Key = std::pair<std::string, int>;  // (bundle id, cut)
  using Clock = RequestContext::Clock;

  void WorkLoop();
  // Takes the next batch (under the lock); empty when stopping with nothing queued.
  std::vector<DynamicBatcher::Job> TakeBatch(std::unique_lock<std::mutex>& lock);
  // Polls (unlocked) for up to options_.idle_spin unless another worker already does;
  // returns false when it did not poll.
  bool SpinForWork(std::unique_lock<std::mutex>& lock);
  void RunBatch(std::vector<DynamicBatcher::Job> batch);

  const Options options_;
  EdgeMetrics* metrics_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<Key, std::deque<DynamicBatcher::Job>> queues_;
  std::atomic<size_t> queued_{0};      // written under mutex_; atomic for the poller
  std::atomic<bool> spinning_{false};  // a worker is polling: Submit need not wake one
  std::atomic<bool> stopping_{false};  // the same
  std::vector<std::thread> workers_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_DYNAMIC_BATCHER_H_

// A fixed set of worker threads fed by a bounded queue. Submitting to a full queue fails at
// once instead of blocking: the caller answers RESOURCE_EXHAUSTED, which is the server's
// backpressure.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_WORKER_POOL_H_
#define CLEAVE_EDGE_SERVER_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cleave::edge_server {

class WorkerPool {
 public:
  // REQUIRES: threads >= 1, max_queue >= 1.
  WorkerPool(size_t threads, size_t max_queue);
  // Runs what is queued, then joins the workers.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; returns false (and drops it) when the queue is full or the pool is shut down.
  [[nodiscard]] bool TrySubmit(std::function<void()> task);

  // Stops accepting tasks, runs every queued task and joins the workers. Idempotent.
  void Shutdown();

  size_t queued() const;

 private:
  void Work();

  const size_t max_queue_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_WORKER_POOL_H_

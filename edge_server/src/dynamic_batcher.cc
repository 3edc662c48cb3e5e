#include "cleave/edge_server/dynamic_batcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/mutex.h"

namespace cleave::edge_server {
namespace {

// Tells the CPU this is a spin-wait loop (saves power, yields to a hyperthread sibling).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

}  // namespace

DynamicBatcher::DynamicBatcher(Options options, RunBatch run)
    : options_(std::move(options)), run_(std::move(run)) {
  for (size_t i = 0; i < std::max<size_t>(1, options_.workers); ++i) {
    workers_.emplace_back([this] { WorkLoop(); });
  }
}

DynamicBatcher::~DynamicBatcher() { Shutdown(); }

absl::Status DynamicBatcher::Submit(BatchJob job) {
  {
    common::MutexLock lock(&mutex_);
    if (stopping_) {
      return absl::UnavailableError(
          absl::StrCat("request ", job.request_id, " refused: the edge is shutting down"));
    }
    if (queued_ >= options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrCat("request ", job.request_id,
                                                       " refused: the edge's queue is full (",
                                                       options_.max_queue, " requests waiting)"));
    }
    const Key key(job.bundle->id(), job.cut);
    queues_[key].push_back(std::move(job));
    ++queued_;
  }
  if (!spinning_.load()) wake_.Signal();
  return absl::OkStatus();
}

void DynamicBatcher::Shutdown() {
  {
    common::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  wake_.SignalAll();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

const BatchingOptions& DynamicBatcher::BatchingFor(const common::Bundle& bundle) const {
  auto it = options_.batching_by_model.find(bundle.manifest().name);
  return it == options_.batching_by_model.end() ? options_.default_batching : it->second;
}

std::vector<BatchJob> DynamicBatcher::TakeBatch() {
  while (true) {
    if (queued_ == 0) {
      if (stopping_) return {};
      // Sleep only when polling found nothing (or another worker polls): a Submit that saw
      // this worker polling did not notify.
      if (!SpinForWork() || (queued_ == 0 && !stopping_)) wake_.Wait(&mutex_);
      continue;
    }
    // The queue that became ready first: full, or its oldest request has waited its delay.
    const Clock::time_point now = Clock::now();
    auto chosen = queues_.end();
    Clock::time_point chosen_ready = Clock::time_point::max();
    for (auto it = queues_.begin(); it != queues_.end(); ++it) {
      const BatchingOptions& batching = BatchingFor(*it->second.front().bundle);
      const bool full = static_cast<int>(it->second.size()) >= batching.max_batch_size;
      const Clock::time_point ready =
          full || stopping_ ? it->second.front().context.arrival
                            : it->second.front().context.arrival + batching.max_queue_delay;
      if (ready < chosen_ready) {
        chosen = it;
        chosen_ready = ready;
      }
    }
    if (chosen_ready > now) {
      wake_.WaitUntil(&mutex_, chosen_ready);
      continue;
    }
    const auto size = static_cast<size_t>(
        std::max(1, BatchingFor(*chosen->second.front().bundle).max_batch_size));
    std::vector<BatchJob> batch;
    while (!chosen->second.empty() && batch.size() < size) {
      batch.push_back(std::move(chosen->second.front()));
      chosen->second.pop_front();
    }
    queued_ -= batch.size();
    if (chosen->second.empty()) queues_.erase(chosen);
    // Requests a polling worker took the place of a wake-up for may be left for another.
    if (queued_ > 0) wake_.Signal();
    return batch;
  }
}

bool DynamicBatcher::SpinForWork() {
  if (options_.idle_spin.count() <= 0 || spinning_.exchange(true)) return false;
  mutex_.Unlock();
  const Clock::time_point until = Clock::now() + options_.idle_spin;
  while (queued_.load(std::memory_order_relaxed) == 0 && !stopping_.load() &&
         Clock::now() < until) {
    CpuRelax();
  }
  mutex_.Lock();
  // Cleared under the lock: a Submit either queued before this (seen by the caller's check)
  // or sees no poller afterwards and notifies.
  spinning_.store(false);
  return true;
}

void DynamicBatcher::WorkLoop() {
  options_.prepare_worker();
  while (true) {
    std::vector<BatchJob> batch;
    {
      common::MutexLock lock(&mutex_);
      batch = TakeBatch();
    }
    if (batch.empty()) return;
    run_(std::move(batch));
  }
}

}  // namespace cleave::edge_server

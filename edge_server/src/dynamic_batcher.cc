#include "cleave/edge_server/dynamic_batcher.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::edge_server {
namespace {

using Clock = RequestContext::Clock;

uint64_t Micros(Clock::duration duration) {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(duration).count()));
}

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

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

// Splits each batched output back into the requests' parts along dimension 0. Returns false
// when an output has no batch dimension to split (the caller then runs requests one by one).
bool SplitOutputs(const std::vector<at::Tensor>& outputs, const std::vector<int64_t>& sizes,
                  int64_t total, std::vector<std::vector<at::Tensor>>* parts) {
  for (const at::Tensor& output : outputs) {
    if (output.dim() == 0 || output.size(0) != total) return false;
  }
  parts->assign(sizes.size(), {});
  for (const at::Tensor& output : outputs) {
    int64_t offset = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      (*parts)[r].push_back(output.slice(0, offset, offset + sizes[r]));
      offset += sizes[r];
    }
  }
  return true;
}

absl::StatusOr<std::vector<at::Tensor>> Forward(const common::Bundle& bundle, size_t first,
                                                const at::Tensor& input) {
  CLEAVE_ASSIGN_OR_RETURN(c10::IValue output,
                          bundle.RunSegments(first, bundle.num_loaded_segments() - 1, {input}));
  std::vector<at::Tensor> tensors;
  CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(output, &tensors));
  return tensors;
}

}  // namespace

DynamicBatcher::DynamicBatcher(Options options, EdgeMetrics* metrics)
    : options_(std::move(options)), metrics_(metrics) {
  for (size_t i = 0; i < std::max<size_t>(1, options_.workers); ++i) {
    workers_.emplace_back([this] { WorkLoop(); });
  }
}

DynamicBatcher::~DynamicBatcher() { Shutdown(); }

bool DynamicBatcher::Submit(DynamicBatcher::Job job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || queued_ >= options_.max_queue) return false;
    const Key key(job.bundle->id(), job.request->cut_id());
    queues_[key].push_back(std::move(job));
    ++queued_;
  }
  if (!spinning_.load()) wake_.notify_one();
  return true;
}

void DynamicBatcher::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

const BatchingOptions& DynamicBatcher::BatchingFor(const common::Bundle& bundle) const {
  auto it = options_.batching_by_model.find(bundle.manifest().name);
  return it == options_.batching_by_model.end() ? options_.default_batching : it->second;
}

std::vector<DynamicBatcher::Job> DynamicBatcher::TakeBatch(std::unique_lock<std::mutex>& lock) {
  while (true) {
    if (queued_ == 0) {
      if (stopping_) return {};
      // Sleep only when polling found nothing (or another worker polls): a Submit that saw
      // this worker polling did not notify.
      if (!SpinForWork(lock) || (queued_ == 0 && !stopping_)) wake_.wait(lock);
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
      wake_.wait_until(lock, chosen_ready);
      continue;
    }
    const auto size = static_cast<size_t>(
        std::max(1, BatchingFor(*chosen->second.front().bundle).max_batch_size));
    std::vector<DynamicBatcher::Job> batch;
    while (!chosen->second.empty() && batch.size() < size) {
      batch.push_back(std::move(chosen->second.front()));
      chosen->second.pop_front();
    }
    queued_ -= batch.size();
    if (chosen->second.empty()) queues_.erase(chosen);
    // Requests a polling worker took the place of a wake-up for may be left for another.
    if (queued_ > 0) wake_.notify_one();
    return batch;
  }
}

bool DynamicBatcher::SpinForWork(std::unique_lock<std::mutex>& lock) {
  if (options_.idle_spin.count() <= 0 || spinning_.exchange(true)) return false;
  lock.unlock();
  const Clock::time_point until = Clock::now() + options_.idle_spin;
  while (queued_.load(std::memory_order_relaxed) == 0 && !stopping_.load() &&
         Clock::now() < until) {
    CpuRelax();
  }
  lock.lock();
  // Cleared under the lock: a Submit either queued before this (seen by the caller's check)
  // or sees no poller afterwards and notifies.
  spinning_.store(false);
  return true;
}

void DynamicBatcher::WorkLoop() {
  // OpenMP's thread count is per thread: without this a worker's oneDNN convolutions would
  // use every core, not --intra-op-threads, and fight the other workers and gRPC for them.
  at::init_num_threads();
  while (true) {
    std::vector<DynamicBatcher::Job> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      batch = TakeBatch(lock);
    }
    if (batch.empty()) return;
    RunBatch(std::move(batch));
  }
}

void DynamicBatcher::RunBatch(std::vector<DynamicBatcher::Job> batch) {
  const Clock::time_point start = Clock::now();
  const common::Bundle& bundle = *batch.front().bundle;
  const std::string& model = bundle.manifest().name;
  const int cut = batch.front().request->cut_id();
  auto finish = [&](DynamicBatcher::Job& work, const absl::Status& status) {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest(model, cut, absl::StatusCodeToString(status.code()),
                              Seconds(Clock::now() - work.context.arrival));
    }
    work.done(status);
  };

  // Admission: expired, cancelled and malformed requests are answered without computing.
  std::vector<DynamicBatcher::Job*> ready;
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> sizes;
  for (DynamicBatcher::Job& work : batch) {
    v1::ServerTimings* timings = work.response->mutable_timings();
    timings->set_queue_us(Micros(start - work.context.arrival));
    if (work.context.cancelled()) {
      finish(work, absl::CancelledError(
                       absl::StrCat("request ", work.request->request_id(), " cancelled")));
      continue;
    }
    if (start > work.context.deadline) {
      finish(work, absl::DeadlineExceededError(absl::StrCat("request ", work.request->request_id(),
                                                            " expired after ", timings->queue_us(),
                                                            " us in the queue; not computed")));
      continue;
    }
    const Clock::time_point decode_start = Clock::now();
    auto activation = common::DecodeFrame(work.request->activation(), options_.limits);
    if (!activation.ok()) {
      finish(work, absl::InvalidArgumentError(absl::StrCat("activation for cut ", cut, ": ",
                                                           activation.status().message())));
      continue;
    }
    timings->set_decode_us(Micros(Clock::now() - decode_start));
    if (absl::Status fits = bundle.CheckActivation(cut, *activation); !fits.ok()) {
      finish(work, fits);
      continue;
    }
    if (metrics_ != nullptr) {
      metrics_->RecordBytes(model, static_cast<double>(work.request->activation().size()),
                            static_cast<double>(activation->numel() * activation->element_size()));
    }
    sizes.push_back(activation->dim() > 0 ? activation->size(0) : 1);
    inputs.push_back(*std::move(activation));
    ready.push_back(&work);
  }
  if (ready.empty()) return;
  auto first = bundle.SegmentStartingAt(cut);
  if (!first.ok()) {
    for (DynamicBatcher::Job* work : ready) finish(*work, first.status());
    return;
  }

  // One forward for the whole batch; requests whose outputs cannot be split run one by one.
  const Clock::time_point compute_start = Clock::now();
  std::vector<absl::StatusOr<std::vector<at::Tensor>>> results;
  std::vector<std::vector<at::Tensor>> parts;
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  bool batched = false;
  if (ready.size() > 1) {
    auto outputs = Forward(bundle, *first, at::cat(inputs, 0));
    batched = outputs.ok() && SplitOutputs(*outputs, sizes, total, &parts);
  }
  if (batched) {
    for (auto& part : parts) results.emplace_back(std::move(part));
  } else {
    for (const at::Tensor& input : inputs) results.push_back(Forward(bundle, *first, input));
  }
  const Clock::time_point compute_end = Clock::now();
  if (metrics_ != nullptr)
    metrics_->RecordBatch(model, batched ? static_cast<int>(ready.size()) : 1);

  for (size_t r = 0; r < ready.size(); ++r) {
    DynamicBatcher::Job& work = *ready[r];
    v1::ServerTimings* timings = work.response->mutable_timings();
    timings->set_compute_us(Micros(compute_end - compute_start));
    timings->set_batch_size(batched ? static_cast<uint32_t>(ready.size()) : 1);
    if (metrics_ != nullptr) {
      metrics_->RecordComputed(model, Seconds(compute_start - work.context.arrival),
                               Seconds(compute_end - compute_start));
    }
    if (!results[r].ok()) {
      finish(work, results[r].status());
      continue;
    }
    const Clock::time_point encode_start = Clock::now();
    absl::Status encoded = absl::OkStatus();
    for (const at::Tensor& tensor : *results[r]) {
      auto frame = common::EncodeFrame(tensor);
      if (!frame.ok()) {
        encoded = frame.status();
        break;
      }
      work.response->add_outputs(*std::move(frame));
    }
    timings->set_encode_us(Micros(Clock::now() - encode_start));
    finish(work, encoded);
  }
}

}  // namespace cleave::edge_server

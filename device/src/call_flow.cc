// Runtime::Impl's call flow: where a request runs (the policy's decision), the device segments
// and exits, the offload and the edge's answer, one retry, the local fallback and completion.
// The send path and probing are in edge_send.cc.
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cleave/common/confidence.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"
#include "device/src/runtime_impl.h"

namespace cleave::device {
namespace {

// Decodes an edge's outputs, accepting only what the bundle declares for a request of `batch`
// samples: their number, dtypes and shapes are checked on the frames' headers before anything
// is decoded, so an edge cannot make the device allocate more than the model's answer.
absl::StatusOr<std::vector<at::Tensor>> DecodeOutputs(const common::Bundle& bundle, int64_t batch,
                                                      const std::vector<std::string>& frames) {
  const std::vector<common::TensorSpec> expected = bundle.OutputsFor(batch);
  if (frames.size() != expected.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(frames.size(), " outputs; the bundle declares ", expected.size()));
  }
  std::vector<at::Tensor> outputs;
  for (size_t i = 0; i < expected.size(); ++i) {
    auto header = common::ParseFrameHeader(frames[i]);
    if (!header.ok()) return header.status();
    if (absl::Status fits = common::CheckBatchedTensor("output", common::DeclaredTensor(*header),
                                                       expected[i], batch, batch);
        !fits.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("output ", i, ": ", fits.message()));
    }
    CLEAVE_ASSIGN_OR_RETURN(at::Tensor tensor, common::DecodeFrame(frames[i]));
    outputs.push_back(std::move(tensor));
  }
  return outputs;
}

}  // namespace

absl::StatusOr<Result> Runtime::Impl::Infer(const at::Tensor& input, const InferOptions& options) {
  // The caller's thread runs the device segments itself (no hand-off to the pool and back),
  // and it also decodes the edge's answer: the gRPC thread that receives it only hands it over.
  // Decoding on the gRPC thread before waking the caller measured about 15 us slower per
  // request. The answering thread shares the waiter, so it can let go of the lock before it
  // notifies: the woken caller then never finds the lock still held and goes back to sleep.
  struct Waiter {
    common::Mutex mutex;
    common::CondVar ready;
    std::optional<absl::StatusOr<Result>> result ABSL_GUARDED_BY(mutex);
    // For this thread to run while it waits.
    std::vector<std::function<void()>> work ABSL_GUARDED_BY(mutex);
  };
  auto waiter = std::make_shared<Waiter>();
  std::shared_ptr<Call> call = NewCall(input, options, [waiter](absl::StatusOr<Result> result) {
    {
      common::MutexLock lock(&waiter->mutex);
      waiter->result = std::move(result);
    }
    waiter->ready.Signal();
  });
  call->run_on_caller = [waiter](std::function<void()> work) {
    {
      common::MutexLock lock(&waiter->mutex);
      waiter->work.push_back(std::move(work));
    }
    waiter->ready.Signal();
  };
  Start(std::move(call));
  common::MutexLock lock(&waiter->mutex);
  for (;;) {
    while (!waiter->result.has_value() && waiter->work.empty()) waiter->ready.Wait(&waiter->mutex);
    if (waiter->result.has_value()) {
      // Nothing is handed over after the answer (an attempt settles once, before the answer),
      // but a step holds the call, which holds this waiter: never leave one behind.
      waiter->work.clear();
      return *std::move(waiter->result);
    }
    std::vector<std::function<void()>> work = std::move(waiter->work);
    waiter->work.clear();
    lock.Unlock();
    for (std::function<void()>& step : work) step();
    lock.Lock();
  }
}

void Runtime::Impl::InferAsync(at::Tensor input, InferOptions options,
                               std::function<void(absl::StatusOr<Result>)> done) {
  std::shared_ptr<Call> call = NewCall(std::move(input), std::move(options), std::move(done));
  Post([this, call] { Start(call); });
}

std::shared_ptr<Runtime::Impl::Call> Runtime::Impl::NewCall(
    at::Tensor input, InferOptions options, std::function<void(absl::StatusOr<Result>)> done) {
  auto call = std::make_shared<Call>();
  call->start = Clock::now();
  call->deadline = call->start + options.deadline.value_or(options_.deadline);
  call->value = std::move(input);
  call->options = std::move(options);
  call->done = std::move(done);
  AddInFlight();
  return call;
}

PolicyInput Runtime::Impl::MakePolicyInput(double budget_ms) const {
  PolicyInput input;
  input.manifest = &bundle_->manifest();
  input.device_segments = bundle_->num_loaded_segments();
  input.link = link_->Current();
  input.budget_ms = budget_ms;
  input.edge_available = NextAvailableEdge(0).has_value();
  estimates_->Fill(&input);
  return input;
}

std::optional<size_t> Runtime::Impl::NextAvailableEdge(size_t from) const {
  for (size_t i = from; i < edges_.size(); ++i) {
    if (edges_[i]->breaker().Available()) return i;
  }
  return std::nullopt;
}

void Runtime::Impl::Start(std::shared_ptr<Call> call) {
  const common::BundleManifest& manifest = bundle_->manifest();
  const size_t held = bundle_->num_loaded_segments();
  const size_t last = manifest.segments.size() - 1;
  std::optional<size_t> offload;
  if (call->options.offload_cut.has_value()) {
    auto segment = bundle_->SegmentStartingAt(*call->options.offload_cut);
    if (!segment.ok()) return Complete(call, segment.status());
    if (*segment > held) {
      return Complete(call, absl::InvalidArgumentError(absl::StrCat(
                                "cut ", *call->options.offload_cut, " lies beyond the ", held,
                                " segments the device holds")));
    }
    if (!edges_.empty()) offload = *segment;
  } else if (fixed_offload_.has_value()) {
    // What FixedCutPolicy decides, without gathering the estimates it does not use.
    if (NextAvailableEdge(0).has_value()) offload = fixed_offload_;
  } else if (!edges_.empty()) {
    offload = policy_->Decide(MakePolicyInput(MillisUntil(call->deadline))).offload_segment;
  }
  if (options_.probe_interval.count() > 0 && !edges_.empty()) {
    // One call per interval claims the probe (the compare-exchange settles races).
    const int64_t now = Clock::now().time_since_epoch().count();
    int64_t last_probe = last_probe_ns_.load();
    const bool due = now - last_probe >=
                     std::chrono::duration_cast<Clock::duration>(options_.probe_interval).count();
    call->probe_prior_ns = last_probe;
    call->probe_due = due && last_probe_ns_.compare_exchange_strong(last_probe, now);
    call->probe_claimed_ns = now;
  }
  if (!offload.has_value()) {
    // Stay on the device: all held segments (degraded when it does not hold them all). With
    // edges configured and none available that is a fallback, not the policy's choice.
    const bool no_edge = !edges_.empty() && !NextAvailableEdge(0).has_value();
    call->split = held;
    auto exited = RunOnDevice(*call, 0, held - 1);
    if (!exited.ok()) return Complete(call, exited.status());
    MaybeProbe(*call);
    if (*exited) return Complete(call, std::move(call->result));
    if (held <= last || no_edge) {
      return FinishLocally(call, "no edge available (each is backing off or its circuit is open)");
    }
    call->result.placement = Placement::kDevice;
    call->result.cut_id = common::kInputCutId;
    if (absl::Status flat = common::FlattenTensors(call->value, &call->result.outputs);
        !flat.ok()) {
      return Complete(call, flat);
    }
    return Complete(call, std::move(call->result));
  }
  call->split = *offload;
  call->result.cut_id = manifest.segments[*offload].begin_cut;
  if (*offload > 0) {
    auto exited = RunOnDevice(*call, 0, *offload - 1);
    if (!exited.ok()) return Complete(call, exited.status());
    if (*exited) {
      MaybeProbe(*call);
      return Complete(call, std::move(call->result));
    }
  }
  const Clock::time_point encode_start = Clock::now();
  auto frame = common::EncodeFrame(call->value.toTensor(), CodecFor(call->result.cut_id));
  if (!frame.ok()) return Complete(call, frame.status());
  call->frame = *std::move(frame);
  call->result.timings.encode_ms = MillisSince(encode_start);
  const std::optional<size_t> edge = NextAvailableEdge(0);
  if (!edge.has_value()) return FinishLocally(call, "no edge available (all in backoff)");
  Offload(call, *edge);
}

size_t Runtime::Impl::LastInOneCall(const Call& call, size_t first, size_t last) const {
  if (first == last || call.probe_due || options_.device_slowdown > 1.0) return first;
  for (size_t segment = first; segment <= last; ++segment) {
    if (exit_after_[segment]) return first;
  }
  return estimates_->DeviceTimesKnown(first, last) ? last : first;
}

absl::StatusOr<bool> Runtime::Impl::RunOnDevice(Call& call, size_t first, size_t last) {
  const common::BundleManifest& manifest = bundle_->manifest();
  if (call.probe_due) call.probe_candidates.emplace_back(first, call.value.toTensor());
  for (size_t segment = first; segment <= last; ++segment) {
    const size_t through = LastInOneCall(call, segment, last);
    const Clock::time_point start = Clock::now();
    CLEAVE_ASSIGN_OR_RETURN(call.value, bundle_->RunSegments(segment, through, {call.value}));
    double elapsed = MillisSince(start);
    if (options_.device_slowdown > 1.0) {
      std::this_thread::sleep_for(
          std::chrono::duration<double, std::milli>(elapsed * (options_.device_slowdown - 1.0)));
      elapsed *= options_.device_slowdown;
    }
    call.result.timings.device_compute_ms += elapsed;
    estimates_->LearnDeviceTime(segment, through, elapsed);
    segment = through;  // from here on: the last segment of the run
    const std::optional<int> end = manifest.segments[segment].end_cut;
    if (call.probe_due && end && segment + 1 < manifest.segments.size()) {
      call.probe_candidates.emplace_back(segment + 1, call.value.toTensor());
    }
    if (!exit_after_[segment]) continue;
    const common::ExitInfo* exit = manifest.FindExit(*end);
    const Clock::time_point exit_start = Clock::now();
    CLEAVE_ASSIGN_OR_RETURN(at::Tensor logits, bundle_->RunExit(*end, call.value.toTensor()));
    CLEAVE_ASSIGN_OR_RETURN(common::ExitScore score, common::ParseExitScore(exit->score));
    // A batch leaves only when every sample in it is confident enough.
    const double confidence =
        common::Confidence(logits, exit->temperature, score).min().item<double>();
    call.result.timings.device_compute_ms += MillisSince(exit_start);
    call.result.confidence = confidence;
    call.best_logits = logits;
    call.best_exit_cut = *end;
    if (confidence >= *exit->threshold) {
      call.result.outputs = {logits};
      call.result.exit_cut = *end;
      call.result.cut_id = *end;
      call.result.placement = Placement::kDeviceExit;
      return true;
    }
  }
  return false;
}

void Runtime::Impl::Offload(std::shared_ptr<Call> call, size_t edge_index) {
  const Clock::time_point edge_deadline = EdgeDeadline(*call);
  if (MillisUntil(edge_deadline) <= 0) return FinishLocally(call, "no time left for the edge");
  call->result.bytes_sent += call->frame.size();
  metrics_->RecordOffload(call->result.cut_id, call->frame.size());
  // The deadline holds the call weakly (as its owner): an answered call frees its tensors and
  // frame at once. An unanswered call is still held by the edge client's pending callback.
  const std::weak_ptr<Call> weak_call = call;
  SendToEdge(
      edge_index, call->result.cut_id, call->frame, edge_deadline, weak_call,
      [this, call](const Attempt& attempt, absl::StatusOr<EdgeAnswer> answer) {
        if (!call->run_on_caller) {
          return OnEdgeAnswer(call, attempt.edge, attempt.sent, std::move(answer));
        }
        call->run_on_caller([this, call, edge = attempt.edge, sent = attempt.sent,
                             answer = std::move(answer)]() mutable {
          OnEdgeAnswer(call, edge, sent, std::move(answer));
        });
      },
      [this, weak_call](const Attempt& attempt) {
        std::shared_ptr<Call> call = weak_call.lock();
        if (call == nullptr) return;
        const std::string& target = edges_[attempt.edge]->target();
        metrics_->RecordEdgeFailure(target);
        FinishLocally(call, absl::StrCat("edge ", target, " did not answer within the deadline"));
      });
}

void Runtime::Impl::OnEdgeAnswer(std::shared_ptr<Call> call, size_t edge_index,
                                 Clock::time_point sent, absl::StatusOr<EdgeAnswer> answer) {
  EdgeClient& edge = *edges_[edge_index];
  absl::Status status = answer.status();
  if (status.ok()) {
    const at::Tensor& sent_activation = call->value.toTensor();
    auto outputs = DecodeOutputs(*bundle_, sent_activation.dim() > 0 ? sent_activation.size(0) : 1,
                                 answer->outputs);
    if (!outputs.ok()) {
      status = absl::DataLossError(absl::StrCat(
          "edge ", edge.target(), " returned a bad answer: ", outputs.status().message()));
    } else {
      const RoundTrip trip =
          MeasureRoundTrip(sent, static_cast<double>(call->frame.size()), *answer);
      Timings& timings = call->result.timings;
      timings.edge_queue_ms = trip.edge_queue_ms;
      timings.edge_compute_ms = trip.edge_compute_ms;
      timings.network_ms = trip.network_ms;
      call->result.outputs = *std::move(outputs);
      call->result.placement = Placement::kEdge;
      call->result.edge = edge.target();
      edge.breaker().ReportSuccess();
      // Learn from the round trip once the caller has its answer: the next request may
      // decide on estimates one answer old. (A synchronous Infer's own thread runs this: it
      // learns just before it returns, a few microseconds.)
      const size_t split = call->split;
      return Complete(call, std::move(call->result), [&] { Learn(split, trip); });
    }
  }
  if (!EdgeClient::IsRefusal(status)) {  // a refusal: the edge began backing off meanwhile
    edge.breaker().ReportFailure();
    metrics_->RecordEdgeFailure(edge.target());
  }
  // One retry, on the next available edge (or this one again after a new stream), when time
  // allows; then the device answers.
  if (!call->retried && MillisUntil(call->deadline) > 0) {
    std::optional<size_t> next = NextAvailableEdge(edge_index + 1);
    if (!next.has_value()) next = NextAvailableEdge(0);
    if (next.has_value()) {
      call->retried = true;
      Post([this, call, next = *next] { Offload(call, next); });
      return;
    }
  }
  FinishLocally(call, std::string(status.message()));
}

Runtime::Impl::Clock::time_point Runtime::Impl::EdgeDeadline(const Call& call) const {
  const size_t segments = bundle_->manifest().segments.size();
  if (!options_.local_fallback || bundle_->num_loaded_segments() < segments) {
    return call.deadline;  // a late answer is all the device would have
  }
  // Leave the device the time it needs to finish the request itself, so a fallback still
  // answers by the deadline.
  const double local_ms = estimates_->DeviceMsFrom(call.split);
  return call.deadline - std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double, std::milli>(local_ms));
}

void Runtime::Impl::FinishLocally(std::shared_ptr<Call> call, std::string reason) {
  Post([this, call, reason = std::move(reason)]() mutable {
    if (call->completed) return;  // a probe, or already answered
    call->result.fallback_reason = std::move(reason);
    const size_t held = bundle_->num_loaded_segments();
    const size_t last = bundle_->manifest().segments.size() - 1;
    if (options_.local_fallback && held > last) {
      if (call->split <= last) {
        absl::StatusOr<bool> exited = RunOnDevice(*call, call->split, last);
        if (!exited.ok()) return Complete(call, exited.status());
        if (*exited) return Complete(call, std::move(call->result));
      }
      call->result.outputs.clear();
      if (absl::Status flat = common::FlattenTensors(call->value, &call->result.outputs);
          !flat.ok()) {
        return Complete(call, flat);
      }
      call->result.placement = Placement::kDeviceFallback;
      return Complete(call, std::move(call->result));
    }
    if (call->best_logits.has_value()) {
      call->result.outputs = {*call->best_logits};
      call->result.exit_cut = call->best_exit_cut;
      call->result.placement = Placement::kDegraded;
      return Complete(call, std::move(call->result));
    }
    Complete(call, absl::UnavailableError(absl::StrCat(
                       "no answer: ", call->result.fallback_reason,
                       options_.local_fallback ? "; the device holds too few segments to finish"
                                               : "; local fallback is off")));
  });
}

void Runtime::Impl::Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result) {
  Complete(call, std::move(result), [] {});
}

void Runtime::Impl::Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result,
                             absl::FunctionRef<void()> after) {
  if (call->completed.exchange(true)) return;
  if (result.ok()) result->timings.total_ms = MillisSince(call->start);
  // Counted first (an atomic add each), so telemetry read after an answer includes it.
  metrics_->RecordAnswer(result);
  call->done(std::move(result));
  // Learning follows off the caller's critical path; the runtime stays alive until the
  // in-flight count drops.
  after();
  RemoveInFlight();
}

}  // namespace cleave::device

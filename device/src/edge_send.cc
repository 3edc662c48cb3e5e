// Runtime's one path to an edge, shared by offloads and probes, what an answer teaches the
// estimates, and the background probes that keep them fresh while requests stay local.
#include <algorithm>

#include "cleave/common/tensor_frame.h"
#include "device/src/runtime_impl.h"

namespace cleave::device {

void Runtime::Impl::SendToEdge(size_t edge_index, int cut_id, std::string frame,
                               Clock::time_point deadline, std::weak_ptr<const void> owner,
                               AnswerFn on_answer, LateFn on_late) {
  auto attempt = std::make_shared<Attempt>();
  attempt->edge = edge_index;
  EdgeRequest request;
  request.bundle_id = bundle_->id();
  request.cut_id = cut_id;
  request.frame = std::move(frame);
  request.timeout = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
  EdgeClient& edge = *edges_[edge_index];
  attempt->request_id = edge.NewRequestId();
  // The deadline first: once Send has the request, the answer may complete the call and let
  // the runtime be destroyed, so nothing of the runtime is touched after Send. The entry is
  // not cancelled when the answer comes first: it is owned by the attempt, which only the
  // pending callback holds, so once that has run (or been abandoned) the entry is dropped
  // unrun.
  const std::weak_ptr<Attempt> weak_attempt = attempt;
  const bool owned = !owner.expired();
  deadlines_->Schedule(
      deadline,
      [this, weak_attempt, owned, owner = std::move(owner), on_late = std::move(on_late)] {
        // The owner is locked before the attempt settles: once an answer has settled it and its
        // callback has been dropped, the owner may be gone, and a late attempt must still find
        // it. A gone owner was answered.
        const std::shared_ptr<const void> held = owner.lock();
        const std::shared_ptr<Attempt> attempt = weak_attempt.lock();
        if (attempt == nullptr || (owned && held == nullptr) || attempt->settled.exchange(true)) {
          return;  // answered first
        }
        EdgeClient& edge = *edges_[attempt->edge];
        // The abandoned callback may hold the last reference to what `on_late` needs (the
        // call): it is dropped only after `on_late` has run.
        const EdgeClient::Callback abandoned = edge.Abandon(attempt->request_id);
        edge.breaker().ReportFailure();
        on_late(*attempt);
      },
      weak_attempt);
  attempt->sent = Clock::now();
  const uint64_t request_id = attempt->request_id;
  edge.Send(request_id, std::move(request),
            [attempt = std::move(attempt),
             on_answer = std::move(on_answer)](absl::StatusOr<EdgeAnswer> answer) {
              if (attempt->settled.exchange(true)) return;  // the deadline came first
              on_answer(*attempt, std::move(answer));
            });
}

RoundTrip Runtime::Impl::MeasureRoundTrip(Clock::time_point sent, double frame_bytes,
                                          const EdgeAnswer& answer) const {
  RoundTrip trip;
  trip.edge_queue_ms = static_cast<double>(answer.queue_us) / 1000.0;
  trip.edge_compute_ms = static_cast<double>(answer.compute_us) / 1000.0;
  trip.network_ms = std::max(0.0, MillisSince(sent) - answer.edge_ms());
  trip.frame_bytes = frame_bytes;
  trip.bytes = frame_bytes + static_cast<double>(answer.output_bytes());
  metrics_->ObserveNetworkMs(trip.network_ms);
  return trip;
}

void Runtime::Impl::Learn(size_t split, const RoundTrip& trip) {
  link_->Record(trip.bytes, trip.network_ms);
  estimates_->LearnRoundTrip(split, trip);
}

void Runtime::Impl::MaybeProbe(const Call& call) {
  if (!call.probe_due) return;
  if (call.result.placement == Placement::kDeviceExit) {
    // A confident sample never leaves the device, not even as a probe: the next call that
    // stays local probes instead (unless another one has probed meanwhile).
    int64_t claimed = call.probe_claimed_ns;
    last_probe_ns_.compare_exchange_strong(claimed, call.probe_prior_ns);
    return;
  }
  if (call.probe_candidates.empty()) return;
  const std::optional<size_t> edge = NextAvailableEdge(0);
  if (!edge.has_value()) return metrics_->RecordProbe("no-edge");
  // Alternate between the candidate activations so the link sees several sizes.
  const auto& [segment, activation] =
      call.probe_candidates[probes_sent_.fetch_add(1) % call.probe_candidates.size()];
  const int cut = bundle_->manifest().segments[segment].begin_cut;
  auto frame = common::EncodeFrame(activation, CodecFor(cut));
  if (!frame.ok()) return;
  const Clock::time_point deadline =
      Clock::now() + std::max(options_.deadline, std::chrono::milliseconds(1000));
  const auto frame_bytes = static_cast<double>(frame->size());
  AddInFlight();  // the destructor waits for probes too
  auto finish = [this](const char* outcome) {
    metrics_->RecordProbe(outcome);
    RemoveInFlight();
  };
  SendToEdge(
      *edge, cut, *std::move(frame), deadline, /*owner=*/{},
      [this, segment = segment, frame_bytes, finish](const Attempt& attempt,
                                                     absl::StatusOr<EdgeAnswer> answer) {
        EdgeClient& edge = *edges_[attempt.edge];
        if (answer.ok()) {
          // Learn from it as from a real answer; nobody needs the answer itself.
          const RoundTrip trip = MeasureRoundTrip(attempt.sent, frame_bytes, *answer);
          edge.breaker().ReportSuccess();
          Learn(segment, trip);
        } else if (!EdgeClient::IsRefusal(answer.status())) {
          edge.breaker().ReportFailure();
        }
        finish(answer.ok() ? "ok" : "failed");
      },
      [finish](const Attempt&) { finish("late"); });
}

}  // namespace cleave::device

// Runtime's state and the steps of one call (device/include/cleave/device/runtime.h is the
// API). Setup is in runtime.cc, the call flow in call_flow.cc, the shared send path and probing
// in edge_send.cc; the running estimates (runtime_estimates.h), the telemetry
// (runtime_metrics.h) and the wire (edge_client.h) are units of their own.
//
// Thread-safety: as Runtime's; each step of a call runs on a pool, gRPC, deadline or caller
// thread, and a Call is touched by one step at a time.
#ifndef CLEAVE_DEVICE_SRC_RUNTIME_IMPL_H_
#define CLEAVE_DEVICE_SRC_RUNTIME_IMPL_H_

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "cleave/common/bundle.h"
#include "cleave/common/mutex.h"
#include "cleave/device/runtime.h"
#include "device/src/deadline_queue.h"
#include "device/src/edge_client.h"
#include "device/src/runtime_estimates.h"
#include "device/src/runtime_metrics.h"

namespace cleave::device {

// Milliseconds from `start` to now, and from now to `end`.
inline double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}
inline double MillisUntil(std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - std::chrono::steady_clock::now()).count();
}

class Runtime::Impl {
 public:
  using Clock = std::chrono::steady_clock;

  // Loads the bundle, checks `options` against it and warms the held segments up.
  static absl::StatusOr<std::unique_ptr<Impl>> Create(const std::string& bundle_dir,
                                                      const RuntimeOptions& options);
  ~Impl();

  absl::StatusOr<Result> Infer(const at::Tensor& input, const InferOptions& options);
  void InferAsync(at::Tensor input, InferOptions options,
                  std::function<void(absl::StatusOr<Result>)> done);
  std::string TelemetryJson() const { return metrics_->Json(link_->Current()); }
  std::string TelemetryPrometheus() const { return metrics_->Prometheus(link_->Current()); }
  LinkEstimate link() const { return link_->Current(); }
  const common::Bundle& bundle() const { return *bundle_; }

 private:
  // One request in flight.
  struct Call {
    InferOptions options;
    std::function<void(absl::StatusOr<Result>)> done;
    Clock::time_point start;
    Clock::time_point deadline;
    Result result;
    c10::IValue value;  // the input, then the activation where the device stopped
    size_t split = 0;   // the edge resumes at this segment
    std::optional<at::Tensor> best_logits;  // last exit head's answer, for a degraded result
    std::optional<int> best_exit_cut;
    std::string frame;
    bool retried = false;
    bool probe_due = false;
    int64_t probe_claimed_ns = 0, probe_prior_ns = 0;  // last_probe_ns_ after and before the claim
    std::vector<std::pair<size_t, at::Tensor>> probe_candidates;  // (segment, activation)
    std::atomic<bool> completed{false};
    // Set for a synchronous Infer: runs a step on the caller's waiting thread (the decode of
    // the edge's answer and what follows it).
    std::function<void(std::function<void()>)> run_on_caller;
  };
  // One send to one edge: settled exactly once, by the answer or at its deadline.
  struct Attempt {
    std::atomic<bool> settled{false};
    uint64_t request_id = 0;
    size_t edge = 0;
    Clock::time_point sent;
  };
  using AnswerFn = std::function<void(const Attempt&, absl::StatusOr<EdgeAnswer>)>;
  using LateFn = std::function<void(const Attempt&)>;

  Impl() = default;
  absl::Status Initialize(const std::string& bundle_dir, const RuntimeOptions& options);
  // Measures the held segments on the bundle's verification sample.
  void WarmUp();

  // Steps of one call (call_flow.cc).
  std::shared_ptr<Call> NewCall(at::Tensor input, InferOptions options,
                                std::function<void(absl::StatusOr<Result>)> done);
  void Start(std::shared_ptr<Call> call);
  void Offload(std::shared_ptr<Call> call, size_t edge_index);
  void OnEdgeAnswer(std::shared_ptr<Call> call, size_t edge_index, Clock::time_point sent,
                    absl::StatusOr<EdgeAnswer> answer);
  void FinishLocally(std::shared_ptr<Call> call, std::string reason);
  // When the edge's answer must be in: the call's deadline, less the time the device needs to
  // finish the request itself when it can.
  Clock::time_point EdgeDeadline(const Call& call) const;
  void Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result);
  // Hands `result` to the caller (once: later completions are ignored), then runs `after`
  // before the call stops counting as in flight.
  void Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result,
                absl::FunctionRef<void()> after);

  // Runs segments [first, last] on the device, evaluating calibrated exits on the way.
  // Returns true when an exit answered (the call's result is then filled).
  absl::StatusOr<bool> RunOnDevice(Call& call, size_t first, size_t last);
  // Where a run of segments starting at `first` ends: `last` when all of [first, last] can go
  // in one call (no exit head to evaluate, no probe, no emulated slowdown, every segment's time
  // known), else `first` alone.
  size_t LastInOneCall(const Call& call, size_t first, size_t last) const;
  PolicyInput MakePolicyInput(double budget_ms) const;
  // How the activation at `cut_id` is encoded: RuntimeOptions::codec, else the bundle's.
  const common::CodecSpec& CodecFor(int cut_id) const;
  std::optional<size_t> NextAvailableEdge(size_t from) const;

  // The one send path of offloads and probes (edge_send.cc): sends the activation `frame` at
  // cut `cut_id` to edge `edge_index`, due by `deadline`. Exactly one of `on_answer` (on a gRPC
  // thread, or at once on this one when the edge refuses it unsent) or `on_late` (on the
  // deadline thread, after the attempt is abandoned and the edge charged with a failure) runs;
  // when an `owner` is given (the call), `on_late` runs only while it is alive and holds it.
  void SendToEdge(size_t edge_index, int cut_id, std::string frame, Clock::time_point deadline,
                  std::weak_ptr<const void> owner, AnswerFn on_answer, LateFn on_late);
  // What a good edge answer says about the round trip (also observed as network time).
  RoundTrip MeasureRoundTrip(Clock::time_point sent, double frame_bytes,
                             const EdgeAnswer& answer) const;
  // Feeds a round trip from segment `split` on into the link and edge estimates.
  void Learn(size_t split, const RoundTrip& trip);
  // Sends one of the call's probe candidates in the background when a probe is due.
  void MaybeProbe(const Call& call);
  // Counts a call (or probe) in flight, which the destructor waits for.
  void AddInFlight();
  void RemoveInFlight();

  void Post(std::function<void()> work);

  RuntimeOptions options_;
  std::shared_ptr<const common::Bundle> bundle_;
  std::shared_ptr<const OffloadPolicy> policy_;
  std::vector<std::unique_ptr<EdgeClient>> edges_;
  std::unique_ptr<LinkEstimator> link_;
  std::unique_ptr<RuntimeEstimates> estimates_;
  std::unique_ptr<RuntimeMetrics> metrics_;
  std::vector<bool> exit_after_;  // whether RunOnDevice evaluates an exit after segment i
  // RuntimeOptions::offload_cut's segment when the device holds the segments before it: that
  // decision needs no estimates.
  std::optional<size_t> fixed_offload_;
  std::unique_ptr<boost::asio::thread_pool> pool_;
  std::unique_ptr<DeadlineQueue> deadlines_;  // edge deadlines
  std::atomic<uint64_t> probes_sent_{0};      // picks among a probe's candidate activations
  std::atomic<int64_t> last_probe_ns_{0};

  common::Mutex calls_mutex_;
  common::CondVar calls_done_;
  int calls_in_flight_ ABSL_GUARDED_BY(calls_mutex_) = 0;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_RUNTIME_IMPL_H_

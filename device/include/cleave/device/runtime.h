// cleave::device::Runtime — what a robotics stack links against. It loads a bundle, and for
// each input runs segments on the device, evaluating exit heads on the way (a confident one
// answers locally, without the network); otherwise it encodes the activation at the cut its
// policy picks from live estimates of the link, the edge and its own speed, streams it to an
// edge over one long-lived gRPC stream, and returns the edge's answer. When no edge can answer
// within the deadline it finishes on the device, or returns its best local answer marked
// degraded: a control loop never waits on the network past its deadline.
//
// Thread-safety: every public method may be called from many threads at once.
#ifndef CLEAVE_DEVICE_RUNTIME_H_
#define CLEAVE_DEVICE_RUNTIME_H_

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/trust.h"
#include "cleave/device/edge_options.h"
#include "cleave/device/link_estimator.h"
#include "cleave/device/offload_policy.h"

namespace cleave::common {
class Bundle;  // cleave/common/bundle.h
}  // namespace cleave::common

namespace cleave::device {

struct RuntimeOptions {
  // Edges in order of preference; each host:port or any gRPC target ("ipv4:a:p,b:p" with
  // edge_client.load_balancing = "round_robin" spreads over several). Empty: device only.
  std::vector<std::string> edges;
  EdgeClientOptions edge_client;
  // Where to split. Default: LatencyPolicy. `offload_cut` is a shorthand for FixedCutPolicy.
  std::shared_ptr<const OffloadPolicy> policy;
  std::optional<int> offload_cut;
  // Default per-call budget: the time by which the edge's answer must be in.
  std::chrono::milliseconds deadline{1000};
  // The device holds only the first N segments (default: all). With all of them it can
  // always finish a request itself; with fewer, a failed offload returns a degraded answer.
  std::optional<size_t> device_segments;
  // When the edge fails, finish on the device if it can (otherwise return the error).
  bool local_fallback = true;
  // Optimize the loaded segments and exit heads for inference (conv-bn folding, oneDNN):
  // several times faster at batch 1; results differ from the unoptimized model in the last
  // bits only.
  bool optimize_segments = true;
  // Which bundles the device runs: with a trust folder, only signed ones that pass its checks
  // (common/trust.h), the same as an edge's.
  common::TrustOptions trust;
  // Key file opening an encrypted bundle in memory (common/bundle_crypto.h); empty: none.
  std::string bundle_key_file;
  // Evaluate the bundle's calibrated exit heads (off: every request runs to the split).
  bool use_exits = true;
  // How activations are encoded; defaults to the codec the bundle records for each cut.
  std::optional<common::CodecSpec> codec;
  // Threads running device segments for InferAsync (and Infer).
  size_t threads = 2;
  // What the runtime assumes before measuring: the link, and how much faster the edge
  // computes than this device.
  LinkEstimate link_prior{5.0, 2500.0};  // 5 ms, 20 Mbit/s
  double edge_speedup_prior = 4.0;
  // While requests stay on the device, one in this interval is also sent to the edge in the
  // background (its answer unused) so the link estimate stays fresh and a recovered link is
  // noticed. 0 disables probing.
  std::chrono::milliseconds probe_interval{250};
  // Emulation knob for evaluations: device compute takes this many times longer (the extra
  // time is slept). 1 in production.
  double device_slowdown = 1.0;
};

struct InferOptions {
  std::optional<std::chrono::milliseconds> deadline;  // overrides RuntimeOptions::deadline
  std::optional<int> offload_cut;                     // overrides the policy for this call
};

// Where a request's answer was computed.
enum class Placement {
  kDevice,          // every segment on the device: the policy (or no edge) said so
  kEdge,            // the edge ran the segments after the offload cut
  kDeviceFallback,  // the edge failed or was too slow; the device finished the model
  kDeviceExit,      // an exit head on the device was confident enough: no network at all
  kDegraded,        // the edge failed and the device holds too few segments: best local answer
};

// Returns "device", "edge", "device-fallback", "device-exit" or "degraded".
[[nodiscard]] const char* PlacementName(Placement placement);

struct Timings {
  double device_compute_ms = 0;
  double encode_ms = 0;
  double network_ms = 0;  // round trip minus the edge's own time
  double edge_queue_ms = 0;
  double edge_compute_ms = 0;
  double total_ms = 0;
};

struct Result {
  std::vector<at::Tensor> outputs;  // the model's output flattened, or the exit head's logits
  int cut_id = 0;                   // the offload cut (for kEdge), else where the device stopped
  std::optional<int> exit_cut;      // the exit that answered (kDeviceExit, kDegraded)
  Placement placement = Placement::kDevice;
  double confidence = 0;  // of the last exit head evaluated (0 if none)
  Timings timings;
  uint64_t bytes_sent = 0;
  std::string fallback_reason;  // why the edge's answer was not used (fallback, degraded)
  std::string edge;             // the edge that answered (kEdge)
};

class Runtime {
 public:
  // Loads the bundle at `bundle_dir` (hash-checked), warms its segments up on a sample (which
  // also measures them), and prepares one client per edge. INVALID_ARGUMENT for options the
  // bundle cannot honour (an offload cut it cannot resume from, zero device segments).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Runtime>> Create(
      const std::string& bundle_dir, const RuntimeOptions& options);
  // Waits for requests still running (each ends by its deadline), then closes the edges.
  ~Runtime();

  // Runs one input ([N, ...] as the bundle's input) and returns its result. INVALID_ARGUMENT
  // for an input the model rejects; UNAVAILABLE / DEADLINE_EXCEEDED when no edge answered
  // and the device can give no answer of its own.
  [[nodiscard]] absl::StatusOr<Result> Infer(const at::Tensor& input,
                                             const InferOptions& options = {});

  // The same, asynchronously: device segments run on the runtime's thread pool, the network
  // wait occupies no thread. `done` is called exactly once, on a runtime or gRPC thread; it
  // must not block.
  void InferAsync(at::Tensor input, InferOptions options,
                  std::function<void(absl::StatusOr<Result>)> done);
  [[nodiscard]] std::future<absl::StatusOr<Result>> InferAsync(at::Tensor input,
                                                               InferOptions options = {});

  // Counters and histograms of what the runtime did (placements, exits, offload cuts, edge
  // failures, latency, bytes, link estimate). Never any input, activation or output value.
  [[nodiscard]] std::string TelemetryJson() const;
  [[nodiscard]] std::string TelemetryPrometheus() const;

  // The runtime's current estimate of the link to its edges.
  [[nodiscard]] LinkEstimate link() const;
  // The loaded bundle (include cleave/common/bundle.h to use it).
  const common::Bundle& bundle() const;

 private:
  class Impl;  // device/src/runtime_impl.h
  explicit Runtime(std::unique_ptr<Impl> impl);

  const std::unique_ptr<Impl> impl_;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_RUNTIME_H_

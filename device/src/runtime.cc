#include "cleave/device/runtime.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "cleave/common/confidence.h"
#include "cleave/common/files.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"
#include "device/src/deadline_queue.h"

namespace cleave::device {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double MillisUntil(Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - Clock::now()).count();
}

// Telemetry never fails a request: label lists here are fixed and valid.
void Count(common::CounterFamily* family, std::vector<std::string> labels) {
  if (auto child = family->WithLabels(std::move(labels)); child.ok()) (*child)->Increment();
}

// The children of a one-label counter family for small integer keys (placements, cut ids),
// looked up once each: after that, counting is an atomic load and a relaxed add, with no label
// strings and no family lock on the request path.
class CounterSlots {
 public:
  CounterSlots(common::CounterFamily* family, size_t keys)
      : family_(family),
        slots_(std::make_unique<std::atomic<common::Counter*>[]>(keys)),
        keys_(keys) {}

  // `label()` names key `key` the first time it is counted.
  template <typename Label>
  void Increment(size_t key, Label label) {
    if (key >= keys_) return Count(family_, {label()});
    common::Counter* counter = slots_[key].load(std::memory_order_acquire);
    if (counter == nullptr) {
      auto child = family_->WithLabels({label()});
      if (!child.ok()) return;
      counter = *child;
      slots_[key].store(counter, std::memory_order_release);
    }
    counter->Increment();
  }

 private:
  common::CounterFamily* family_;
  std::unique_ptr<std::atomic<common::Counter*>[]> slots_;
  size_t keys_;
};

constexpr size_t kPlacements = 5;   // Placement's values
constexpr double kSmoothing = 0.2;  // weight of a new sample in the running estimates

void Smooth(double* estimate, double sample, bool* known) {
  *estimate = *known ? (1 - kSmoothing) * *estimate + kSmoothing * sample : sample;
  *known = true;
}

// The same for element `i` of a per-segment estimate and its known flags.
void Smooth(std::vector<double>* estimates, std::vector<bool>* known, size_t i, double sample) {
  bool was_known = (*known)[i];
  Smooth(&(*estimates)[i], sample, &was_known);
  (*known)[i] = was_known;
}

// Bytes a frame of `elements` float32 values takes with `spec`, before measuring: the codec's
// symbols plus a header, and a guess at what zstd saves.
double GuessFrameBytes(double elements, const common::CodecSpec& spec) {
  double per_element = 4.0;
  switch (spec.codec) {
    case common::Codec::kRaw:
      per_element = 4.0;
      break;
    case common::Codec::kFloat16:
    case common::Codec::kBFloat16:
      per_element = 2.0;
      break;
    case common::Codec::kInt8:
    case common::Codec::kInt8PerChannel:
      per_element = 1.0;
      break;
    case common::Codec::kInt4:
      per_element = 0.5;
      break;
  }
  return 64.0 + elements * per_element * (spec.zstd_level != 0 ? 0.6 : 1.0);
}

// Decodes an edge's outputs, accepting only what the bundle declares for a request of `batch`
// samples: their number, dtypes and shapes are checked on the frames' headers before anything
// is decoded, so an edge cannot make the device allocate more than the model's answer.
absl::StatusOr<std::vector<at::Tensor>> DecodeOutputs(
    const common::Bundle& bundle, int64_t batch,
    const google::protobuf::RepeatedPtrField<std::string>& frames) {
  const std::vector<common::TensorSpec> expected = bundle.OutputsFor(batch);
  if (static_cast<size_t>(frames.size()) != expected.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(frames.size(), " outputs; the bundle declares ", expected.size()));
  }
  std::vector<at::Tensor> outputs;
  for (size_t i = 0; i < expected.size(); ++i) {
    auto header = common::ParseFrameHeader(frames[static_cast<int>(i)]);
    if (!header.ok()) return header.status();
    if (absl::Status fits = common::CheckBatchedTensor("output", common::DeclaredTensor(*header),
                                                       expected[i], batch, batch);
        !fits.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("output ", i, ": ", fits.message()));
    }
    CLEAVE_ASSIGN_OR_RETURN(at::Tensor tensor, common::DecodeFrame(frames[static_cast<int>(i)]));
    outputs.push_back(std::move(tensor));
  }
  return outputs;
}

}  // namespace

const char* PlacementName(Placement placement) {
  switch (placement) {
    case Placement::kDevice:
      return "device";
    case Placement::kEdge:
      return "edge";
    case Placement::kDeviceFallback:
      return "device-fallback";
    case Placement::kDeviceExit:
      return "device-exit";
    case Placement::kDegraded:
      return "degraded";
  }
  return "unknown";
}

// Running estimates the policy decides on, updated by every request.
struct Runtime::Estimates {
  std::mutex mutex;
  std::vector<double> device_ms;  // per segment
  std::vector<bool> device_known;
  std::vector<double> edge_tail_ms;  // edge compute from segment i to the end
  std::vector<bool> edge_tail_known;
  std::vector<double> frame_bytes;  // request bytes when offloading before segment i
  std::vector<bool> frame_known;
  std::vector<double> tail_macs;  // manifest MACs from segment i to the end
  double edge_ms_per_mac = 0;
  bool edge_speed_known = false;
  double response_bytes = 0;
  double edge_queue_ms = 0;
  bool queue_known = false;
};

struct Runtime::Instruments {
  common::CounterFamily* requests = nullptr;
  common::CounterFamily* exits = nullptr;
  common::CounterFamily* offloads = nullptr;
  common::CounterFamily* edge_failures = nullptr;
  common::CounterFamily* probes = nullptr;
  common::Counter* bytes_sent = nullptr;
  common::Histogram* latency = nullptr;
  common::Histogram* device_compute = nullptr;
  common::Histogram* network = nullptr;
  common::Gauge* rtt = nullptr;
  common::Gauge* bandwidth = nullptr;
  std::unique_ptr<CounterSlots> requests_by_placement;  // by Placement
  std::unique_ptr<CounterSlots> offloads_by_cut;        // by cut id
  std::unique_ptr<CounterSlots> exits_by_cut;           // by cut id
};

// One request in flight.
struct Runtime::Call {
  InferOptions options;
  std::function<void(absl::StatusOr<Result>)> done;
  Clock::time_point start;
  Clock::time_point deadline;
  Result result;
  c10::IValue value;                      // the input, then the activation where the device stopped
  size_t split = 0;                       // the edge resumes at this segment
  std::optional<at::Tensor> best_logits;  // last exit head's answer, for a degraded result
  std::optional<int> best_exit_cut;
  std::string frame;
  bool retried = false;
  bool probe_due = false;
  int64_t probe_claimed_ns = 0, probe_prior_ns = 0;  // last_probe_ns_ after and before the claim
  std::vector<std::pair<size_t, at::Tensor>> probe_candidates;  // (segment, activation)
  std::atomic<bool> completed{false};
  // Set for a synchronous Infer: runs a step on the caller's waiting thread (the decode of the
  // edge's answer and what follows it).
  std::function<void(std::function<void()>)> run_on_caller;
};

// One send to one edge: settled exactly once, by the answer or at its deadline.
struct Attempt {
  std::atomic<bool> settled{false};
  uint64_t request_id = 0;
  size_t edge = 0;
  Clock::time_point sent;
};

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const std::string& bundle_dir,
                                                         const RuntimeOptions& options) {
  std::unique_ptr<Runtime> runtime(new Runtime());
  CLEAVE_RETURN_IF_ERROR(runtime->Initialize(bundle_dir, options));
  return runtime;
}

absl::Status Runtime::Initialize(const std::string& bundle_dir, const RuntimeOptions& options) {
  options_ = options;
  common::Bundle::LoadOptions load;
  load.max_segments = options.device_segments;
  load.optimize_for_inference = options.optimize_segments;
  CLEAVE_ASSIGN_OR_RETURN(bundle_, common::Bundle::Load(bundle_dir, load));
  const common::BundleManifest& manifest = bundle_->manifest();
  const size_t segments = manifest.segments.size();
  if (bundle_->num_loaded_segments() == 0) {
    return absl::InvalidArgumentError("device_segments must be at least 1");
  }
  if (options.offload_cut.has_value()) {
    CLEAVE_ASSIGN_OR_RETURN(const size_t segment, bundle_->SegmentStartingAt(*options.offload_cut));
    policy_ = std::make_shared<FixedCutPolicy>(*options.offload_cut);
    if (segment <= bundle_->num_loaded_segments()) fixed_offload_ = segment;
  } else {
    policy_ = options.policy != nullptr ? options.policy : std::make_shared<LatencyPolicy>();
  }
  if (bundle_->num_loaded_segments() < segments && options.edges.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the device holds ", bundle_->num_loaded_segments(), " of ", segments,
                     " segments and no edge is configured: it could never finish a request"));
  }
  for (const std::string& target : options.edges) {
    edges_.push_back(std::make_unique<EdgeClient>(target, options.edge_client));
  }
  link_ = std::make_unique<LinkEstimator>(options.link_prior);
  pool_ = std::make_unique<boost::asio::thread_pool>(std::max<size_t>(1, options.threads));
  deadlines_ = std::make_unique<DeadlineQueue>();

  // Telemetry.
  instruments_ = std::make_unique<Instruments>();
  auto& m = metrics_;
  CLEAVE_ASSIGN_OR_RETURN(instruments_->requests,
                          m.AddCounter("cleave_device_requests_total",
                                       "Requests answered, by where they ran.", {"placement"}));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->exits,
                          m.AddCounter("cleave_device_exits_total",
                                       "Requests answered by an exit head, by cut.", {"cut"}));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->offloads,
                          m.AddCounter("cleave_device_offloads_total",
                                       "Activations sent to an edge, by cut.", {"cut"}));
  CLEAVE_ASSIGN_OR_RETURN(
      instruments_->edge_failures,
      m.AddCounter("cleave_device_edge_failures_total",
                   "Edge attempts that failed or came too late, by edge.", {"edge"}));
  CLEAVE_ASSIGN_OR_RETURN(
      instruments_->probes,
      m.AddCounter("cleave_device_probes_total",
                   "Background requests sent to keep estimates fresh.", {"outcome"}));
  CLEAVE_ASSIGN_OR_RETURN(auto* bytes, m.AddCounter("cleave_device_sent_bytes_total",
                                                    "Activation bytes sent to edges."));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->bytes_sent, bytes->WithLabels({}));
  const std::vector<double> buckets = common::ExponentialBuckets(0.00005, 2, 18);
  CLEAVE_ASSIGN_OR_RETURN(auto* latency, m.AddHistogram("cleave_device_request_seconds",
                                                        "Time to answer a request.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->latency, latency->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* compute, m.AddHistogram("cleave_device_compute_seconds",
                                                        "Device compute per request.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->device_compute, compute->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* network,
                          m.AddHistogram("cleave_device_network_seconds",
                                         "Network time of edge round trips.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->network, network->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* rtt, m.AddGauge("cleave_device_link_rtt_seconds",
                                                "Estimated round-trip time to the edge."));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->rtt, rtt->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* bandwidth,
                          m.AddGauge("cleave_device_link_bandwidth_bytes_per_second",
                                     "Estimated bandwidth to the edge."));
  CLEAVE_ASSIGN_OR_RETURN(instruments_->bandwidth, bandwidth->WithLabels({}));
  int max_cut = 0;
  for (const common::CutInfo& cut : manifest.cuts) max_cut = std::max(max_cut, cut.id);
  const auto cut_keys = static_cast<size_t>(max_cut) + 1;
  instruments_->requests_by_placement =
      std::make_unique<CounterSlots>(instruments_->requests, kPlacements);
  instruments_->offloads_by_cut = std::make_unique<CounterSlots>(instruments_->offloads, cut_keys);
  instruments_->exits_by_cut = std::make_unique<CounterSlots>(instruments_->exits, cut_keys);

  for (const common::SegmentInfo& segment : manifest.segments) {
    const common::ExitInfo* exit =
        segment.end_cut && options.use_exits ? manifest.FindExit(*segment.end_cut) : nullptr;
    exit_after_.push_back(exit != nullptr && exit->threshold.has_value());
  }

  // Estimates: sizes from the manifest, device times from a warm-up run of the stored sample
  // (which also takes TorchScript's first-run cost out of the first real request).
  estimates_ = std::make_unique<Estimates>();
  Estimates& e = *estimates_;
  e.device_ms.assign(segments, 0);
  e.device_known.assign(segments, false);
  e.edge_tail_ms.assign(segments, 0);
  e.edge_tail_known.assign(segments, false);
  e.frame_bytes.assign(segments, 0);
  e.frame_known.assign(segments, false);
  e.tail_macs.assign(segments + 1, 0);
  for (size_t i = segments; i-- > 0;) {
    e.tail_macs[i] = e.tail_macs[i + 1] + static_cast<double>(manifest.segments[i].macs);
  }
  for (size_t i = 0; i < segments; ++i) {
    const common::TensorSpec& in = manifest.segments[i].inputs.at(0);
    e.frame_bytes[i] = GuessFrameBytes(static_cast<double>(common::NumElements(in.shape)),
                                       CodecFor(manifest.segments[i].begin_cut));
  }
  for (const common::TensorSpec& out : manifest.segments.back().outputs) {
    e.response_bytes += 64.0 + 4.0 * static_cast<double>(common::NumElements(out.shape));
  }
  const size_t held = bundle_->num_loaded_segments();
  if (!manifest.verification.inputs.empty()) {
    // The warm-up runs the stored sample through the held segments a few times: TorchScript
    // optimizes a graph over its first runs, so only the median of the later rounds speaks for
    // the device's speed. An estimate that starts too high would keep the policy offloading
    // and never be corrected by a local run.
    constexpr int kRounds = 6, kSettling = 2;
    auto sample = common::ReadFile(
        (std::filesystem::path(bundle_dir) / manifest.verification.inputs[0].file).string());
    if (sample.ok()) {
      if (auto input = common::DecodeFrame(*sample); input.ok()) {
        std::vector<std::vector<double>> rounds(held);
        for (int round = 0; round < kRounds; ++round) {
          c10::IValue value = *input;
          for (size_t i = 0; i < held; ++i) {
            const Clock::time_point start = Clock::now();
            auto out = bundle_->RunSegments(i, i, {value});
            if (!out.ok()) break;
            value = *out;
            if (round >= kSettling) rounds[i].push_back(MillisSince(start));
          }
        }
        for (size_t i = 0; i < held; ++i) {
          if (rounds[i].empty()) continue;
          e.device_ms[i] = common::Percentile(rounds[i], 0.5) * options.device_slowdown;
          e.device_known[i] = true;
        }
      }
    }
  }
  return absl::OkStatus();
}

const common::CodecSpec& Runtime::CodecFor(int cut_id) const {
  return options_.codec.has_value() ? *options_.codec : bundle_->manifest().CodecAt(cut_id);
}

Runtime::~Runtime() {
  {
    std::unique_lock<std::mutex> lock(calls_mutex_);
    calls_done_.wait(lock, [this] { return calls_in_flight_ == 0; });
  }
  deadlines_.reset();  // only settled attempts are left in it
  if (pool_ != nullptr) pool_->join();
  edges_.clear();
}

std::string Runtime::TelemetryJson() const {
  RefreshLinkGauges();
  return metrics_.RenderJson();
}

std::string Runtime::TelemetryPrometheus() const {
  RefreshLinkGauges();
  return metrics_.RenderPrometheusText();
}

void Runtime::RefreshLinkGauges() const {
  const LinkEstimate link = link_->Current();
  instruments_->rtt->Set(link.rtt_ms / 1000.0);
  instruments_->bandwidth->Set(link.bytes_per_ms * 1000.0);
}

void Runtime::Post(std::function<void()> work) {
  boost::asio::post(*pool_, [work = std::move(work)] {
    // OpenMP's thread count is per thread: make pool threads honour at::set_num_threads.
    at::init_num_threads();
    work();
  });
}

absl::StatusOr<Result> Runtime::Infer(const at::Tensor& input, const InferOptions& options) {
  // The caller's thread runs the device segments itself (no hand-off to the pool and back),
  // and it also decodes the edge's answer: the gRPC thread that receives it only hands it over.
  // Decoding on the gRPC thread before waking the caller measured about 15 us slower per
  // request. The answering thread shares the waiter, so it can let go of the lock before it
  // notifies: the woken caller then never finds the lock still held and goes back to sleep.
  struct Waiter {
    std::mutex mutex;
    std::condition_variable ready;
    std::optional<absl::StatusOr<Result>> result;
    std::vector<std::function<void()>> work;  // for this thread to run while it waits
  };
  auto waiter = std::make_shared<Waiter>();
  std::shared_ptr<Call> call = NewCall(input, options, [waiter](absl::StatusOr<Result> result) {
    {
      std::lock_guard<std::mutex> lock(waiter->mutex);
      waiter->result = std::move(result);
    }
    waiter->ready.notify_one();
  });
  call->run_on_caller = [waiter](std::function<void()> work) {
    {
      std::lock_guard<std::mutex> lock(waiter->mutex);
      waiter->work.push_back(std::move(work));
    }
    waiter->ready.notify_one();
  };
  Start(std::move(call));
  std::unique_lock<std::mutex> lock(waiter->mutex);
  for (;;) {
    waiter->ready.wait(lock, [&waiter] { return waiter->result || !waiter->work.empty(); });
    if (waiter->result.has_value()) {
      // Nothing is handed over after the answer (an attempt settles once, before the answer),
      // but a step holds the call, which holds this waiter: never leave one behind.
      waiter->work.clear();
      return *std::move(waiter->result);
    }
    std::vector<std::function<void()>> work = std::move(waiter->work);
    waiter->work.clear();
    lock.unlock();
    for (std::function<void()>& step : work) step();
    lock.lock();
  }
}

std::future<absl::StatusOr<Result>> Runtime::InferAsync(at::Tensor input, InferOptions options) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<Result>>>();
  std::future<absl::StatusOr<Result>> future = promise->get_future();
  InferAsync(std::move(input), std::move(options),
             [promise](absl::StatusOr<Result> result) { promise->set_value(std::move(result)); });
  return future;
}

void Runtime::InferAsync(at::Tensor input, InferOptions options,
                         std::function<void(absl::StatusOr<Result>)> done) {
  std::shared_ptr<Call> call = NewCall(std::move(input), std::move(options), std::move(done));
  Post([this, call] { Start(call); });
}

std::shared_ptr<Runtime::Call> Runtime::NewCall(at::Tensor input, InferOptions options,
                                                std::function<void(absl::StatusOr<Result>)> done) {
  auto call = std::make_shared<Call>();
  call->start = Clock::now();
  call->deadline = call->start + options.deadline.value_or(options_.deadline);
  call->value = std::move(input);
  call->options = std::move(options);
  call->done = std::move(done);
  std::lock_guard<std::mutex> lock(calls_mutex_);
  ++calls_in_flight_;
  return call;
}

PolicyInput Runtime::MakePolicyInput(double budget_ms) const {
  PolicyInput input;
  input.manifest = &bundle_->manifest();
  input.device_segments = bundle_->num_loaded_segments();
  input.link = link_->Current();
  input.budget_ms = budget_ms;
  input.edge_available = NextAvailableEdge(0).has_value();
  Estimates& e = *estimates_;
  std::lock_guard<std::mutex> lock(e.mutex);
  const size_t segments = e.device_ms.size();
  // Device times of segments the device does not hold (it cannot run them) stay as measured
  // or zero; the policy never uses them because it cannot finish locally.
  input.device_segment_ms = e.device_ms;
  // Edge tail times: measured, or scaled from the measured edge speed per MAC, or from the
  // device's own times and the assumed speedup.
  double device_tail = 0;
  input.edge_tail_ms.assign(segments, 0);
  for (size_t i = segments; i-- > 0;) {
    device_tail += e.device_ms[i];
    if (e.edge_tail_known[i]) {
      input.edge_tail_ms[i] = e.edge_tail_ms[i];
    } else if (e.edge_speed_known && e.tail_macs[i] > 0) {
      input.edge_tail_ms[i] = e.tail_macs[i] * e.edge_ms_per_mac;
    } else {
      input.edge_tail_ms[i] = device_tail / options_.edge_speedup_prior;
    }
  }
  input.frame_bytes = e.frame_bytes;
  input.response_bytes = e.response_bytes;
  input.edge_queue_ms = e.edge_queue_ms;
  return input;
}

std::optional<size_t> Runtime::NextAvailableEdge(size_t from) const {
  for (size_t i = from; i < edges_.size(); ++i) {
    if (edges_[i]->Available()) return i;
  }
  return std::nullopt;
}

void Runtime::Start(std::shared_ptr<Call> call) {
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

size_t Runtime::LastInOneCall(const Call& call, size_t first, size_t last) const {
  if (first == last || call.probe_due || options_.device_slowdown > 1.0) return first;
  for (size_t segment = first; segment <= last; ++segment) {
    if (exit_after_[segment]) return first;
  }
  Estimates& e = *estimates_;
  std::lock_guard<std::mutex> lock(e.mutex);
  double estimated = 0;
  for (size_t segment = first; segment <= last; ++segment) {
    if (!e.device_known[segment]) return first;
    estimated += e.device_ms[segment];
  }
  return estimated > 0 ? last : first;
}

void Runtime::LearnDeviceTime(size_t first, size_t last, double elapsed) {
  Estimates& e = *estimates_;
  std::lock_guard<std::mutex> lock(e.mutex);
  double estimated = 0;
  for (size_t segment = first; segment <= last; ++segment) estimated += e.device_ms[segment];
  for (size_t segment = first; segment <= last; ++segment) {
    const double sample = first == last ? elapsed : e.device_ms[segment] * elapsed / estimated;
    Smooth(&e.device_ms, &e.device_known, segment, sample);
  }
}

absl::StatusOr<bool> Runtime::RunOnDevice(Call& call, size_t first, size_t last) {
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
    LearnDeviceTime(segment, through, elapsed);
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

void Runtime::Offload(std::shared_ptr<Call> call, size_t edge_index) {
  auto attempt = std::make_shared<Attempt>();
  attempt->request_id = next_request_id_.fetch_add(1);
  attempt->edge = edge_index;
  const Clock::time_point edge_deadline = EdgeDeadline(*call);
  const double budget_ms = MillisUntil(edge_deadline);
  if (budget_ms <= 0) return FinishLocally(call, "no time left for the edge");
  v1::InferRequest request;
  request.set_request_id(attempt->request_id);
  request.set_bundle_id(bundle_->id());
  request.set_cut_id(call->result.cut_id);
  request.set_activation(call->frame);
  request.set_timeout_us(static_cast<uint64_t>(budget_ms * 1000));
  call->result.bytes_sent += call->frame.size();
  const int cut = call->result.cut_id;
  instruments_->offloads_by_cut->Increment(static_cast<size_t>(cut),
                                           [cut] { return absl::StrCat(cut); });
  instruments_->bytes_sent->Add(static_cast<double>(call->frame.size()));
  // The entry is not cancelled when the answer comes first, so it holds the call weakly: an
  // answered call frees its tensors and frame at once, and its entry, owned by the call, is
  // then dropped unrun. An unanswered call is still held by the edge client's pending callback.
  const std::weak_ptr<Call> weak_call = call;
  deadlines_->Schedule(
      edge_deadline,
      [this, weak_call, attempt] {
        // Lock first: once the answer's callback has run and been dropped the call may be gone.
        std::shared_ptr<Call> call = weak_call.lock();
        if (call == nullptr || attempt->settled.exchange(true)) return;  // answered first
        edges_[attempt->edge]->Abandon(attempt->request_id);
        edges_[attempt->edge]->ReportFailure();
        Count(instruments_->edge_failures, {edges_[attempt->edge]->target()});
        FinishLocally(call, absl::StrCat("edge ", edges_[attempt->edge]->target(),
                                         " did not answer within the deadline"));
      },
      weak_call);
  attempt->sent = Clock::now();
  edges_[edge_index]->Send(
      std::move(request), [this, call, attempt](absl::StatusOr<v1::InferResponse> response) {
        if (attempt->settled.exchange(true)) return;  // deadline passed
        if (!call->run_on_caller) {
          return OnEdgeAnswer(call, attempt->edge, attempt->sent, std::move(response));
        }
        call->run_on_caller([this, call, attempt, response = std::move(response)]() mutable {
          OnEdgeAnswer(call, attempt->edge, attempt->sent, std::move(response));
        });
      });
}

void Runtime::OnEdgeAnswer(std::shared_ptr<Call> call, size_t edge_index, Clock::time_point sent,
                           absl::StatusOr<v1::InferResponse> response) {
  EdgeClient& edge = *edges_[edge_index];
  absl::Status status = response.status();
  if (status.ok() && response->status_code() != 0) {
    status = absl::Status(static_cast<absl::StatusCode>(response->status_code()),
                          absl::StrCat("edge ", edge.target(), ": ", response->status_message()));
  }
  if (status.ok()) {
    const at::Tensor& sent_activation = call->value.toTensor();
    auto outputs = DecodeOutputs(*bundle_, sent_activation.dim() > 0 ? sent_activation.size(0) : 1,
                                 response->outputs());
    if (!outputs.ok()) {
      status = absl::DataLossError(absl::StrCat(
          "edge ", edge.target(), " returned a bad answer: ", outputs.status().message()));
    } else {
      const RoundTrip trip =
          MeasureRoundTrip(sent, static_cast<double>(call->frame.size()), *response);
      Timings& timings = call->result.timings;
      timings.edge_queue_ms = trip.edge_queue_ms;
      timings.edge_compute_ms = trip.edge_compute_ms;
      timings.network_ms = trip.network_ms;
      call->result.outputs = *std::move(outputs);
      call->result.placement = Placement::kEdge;
      call->result.edge = edge.target();
      edge.ReportSuccess();
      // Learn from the round trip once the caller has its answer: the next request may
      // decide on estimates one answer old. (A synchronous Infer's own thread runs this: it
      // learns just before it returns, a few microseconds.)
      const size_t split = call->split;
      return Complete(call, std::move(call->result), [&] { Learn(split, trip); });
    }
  }
  if (!EdgeClient::IsRefusal(status)) {  // a refusal: the edge began backing off meanwhile
    edge.ReportFailure();
    Count(instruments_->edge_failures, {edge.target()});
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

Runtime::RoundTrip Runtime::MeasureRoundTrip(Clock::time_point sent, double frame_bytes,
                                             const v1::InferResponse& response) const {
  const v1::ServerTimings& server = response.timings();
  RoundTrip trip;
  trip.edge_queue_ms = static_cast<double>(server.queue_us()) / 1000.0;
  trip.edge_compute_ms = static_cast<double>(server.compute_us()) / 1000.0;
  const double edge_ms = static_cast<double>(server.queue_us() + server.decode_us() +
                                             server.compute_us() + server.encode_us()) /
                         1000.0;
  trip.network_ms = std::max(0.0, MillisSince(sent) - edge_ms);
  trip.frame_bytes = frame_bytes;
  trip.bytes = frame_bytes;
  for (const std::string& bytes : response.outputs()) trip.bytes += bytes.size();
  instruments_->network->Observe(trip.network_ms / 1000.0);
  return trip;
}

void Runtime::Learn(size_t split, const RoundTrip& trip) {
  link_->Record(trip.bytes, trip.network_ms);
  Estimates& e = *estimates_;
  std::lock_guard<std::mutex> lock(e.mutex);
  Smooth(&e.edge_tail_ms, &e.edge_tail_known, split, trip.edge_compute_ms);
  if (e.tail_macs[split] > 0) {
    Smooth(&e.edge_ms_per_mac, trip.edge_compute_ms / e.tail_macs[split], &e.edge_speed_known);
  }
  Smooth(&e.edge_queue_ms, trip.edge_queue_ms, &e.queue_known);
  Smooth(&e.frame_bytes, &e.frame_known, split, trip.frame_bytes);
}

Clock::time_point Runtime::EdgeDeadline(const Call& call) const {
  const size_t segments = bundle_->manifest().segments.size();
  if (!options_.local_fallback || bundle_->num_loaded_segments() < segments) {
    return call.deadline;  // a late answer is all the device would have
  }
  // Leave the device the time it needs to finish the request itself, so a fallback still
  // answers by the deadline.
  double local_ms = 0;
  {
    std::lock_guard<std::mutex> lock(estimates_->mutex);
    for (size_t i = call.split; i < segments; ++i) local_ms += estimates_->device_ms[i];
  }
  return call.deadline - std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double, std::milli>(local_ms));
}

void Runtime::FinishLocally(std::shared_ptr<Call> call, std::string reason) {
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

void Runtime::MaybeProbe(const Call& call) {
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
  if (!edge.has_value()) {
    Count(instruments_->probes, {"no-edge"});
    return;
  }
  // Alternate between the candidate activations so the link sees several sizes.
  const auto& [segment, activation] =
      call.probe_candidates[next_request_id_.load() % call.probe_candidates.size()];
  const common::BundleManifest& manifest = bundle_->manifest();
  const int cut = manifest.segments[segment].begin_cut;
  auto frame = common::EncodeFrame(activation, CodecFor(cut));
  if (!frame.ok()) return;
  const Clock::time_point deadline =
      Clock::now() + std::max(options_.deadline, std::chrono::milliseconds(1000));
  const auto frame_bytes = static_cast<double>(frame->size());
  auto attempt = std::make_shared<Attempt>();
  attempt->request_id = next_request_id_.fetch_add(1);
  attempt->edge = *edge;
  attempt->sent = Clock::now();
  v1::InferRequest request;
  request.set_request_id(attempt->request_id);
  request.set_bundle_id(bundle_->id());
  request.set_cut_id(cut);
  request.set_activation(*std::move(frame));
  request.set_timeout_us(static_cast<uint64_t>(MillisUntil(deadline) * 1000));
  {
    std::lock_guard<std::mutex> lock(calls_mutex_);
    ++calls_in_flight_;  // the destructor waits for probes too
  }
  auto finish = [this](const char* outcome) {
    Count(instruments_->probes, {outcome});
    std::lock_guard<std::mutex> lock(calls_mutex_);
    --calls_in_flight_;
    calls_done_.notify_all();
  };
  deadlines_->Schedule(deadline, [this, attempt, finish] {
    if (attempt->settled.exchange(true)) return;
    edges_[attempt->edge]->Abandon(attempt->request_id);
    edges_[attempt->edge]->ReportFailure();
    finish("late");
  });
  edges_[*edge]->Send(std::move(request), [this, segment = segment, frame_bytes, attempt,
                                           finish](absl::StatusOr<v1::InferResponse> response) {
    if (attempt->settled.exchange(true)) return;
    const bool ok = response.ok() && response->status_code() == 0;
    EdgeClient& edge = *edges_[attempt->edge];
    if (ok) {
      // Learn from it as from a real answer; nobody needs the answer itself.
      const RoundTrip trip = MeasureRoundTrip(attempt->sent, frame_bytes, *response);
      edge.ReportSuccess();
      Learn(segment, trip);
    } else if (!EdgeClient::IsRefusal(response.status())) {
      edge.ReportFailure();
    }
    finish(ok ? "ok" : "failed");
  });
}

void Runtime::Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result) {
  Complete(call, std::move(result), [] {});
}

void Runtime::Complete(const std::shared_ptr<Call>& call, absl::StatusOr<Result> result,
                       absl::FunctionRef<void()> after) {
  if (call->completed.exchange(true)) return;
  // Counters first (an atomic add each), so telemetry read after an answer includes it.
  if (result.ok()) {
    result->timings.total_ms = MillisSince(call->start);
    const Placement placement = result->placement;
    instruments_->requests_by_placement->Increment(static_cast<size_t>(placement), [placement] {
      return std::string(PlacementName(placement));
    });
    if (placement == Placement::kDeviceExit && result->exit_cut) {
      const int cut = *result->exit_cut;
      instruments_->exits_by_cut->Increment(static_cast<size_t>(cut),
                                            [cut] { return absl::StrCat(cut); });
    }
    instruments_->latency->Observe(result->timings.total_ms / 1000.0);
    instruments_->device_compute->Observe(result->timings.device_compute_ms / 1000.0);
  } else {
    Count(instruments_->requests, {"error"});
  }
  call->done(std::move(result));
  // Learning follows off the caller's critical path; the runtime stays alive until the
  // in-flight count drops.
  after();
  std::lock_guard<std::mutex> lock(calls_mutex_);
  --calls_in_flight_;
  calls_done_.notify_all();
}

}  // namespace cleave::device

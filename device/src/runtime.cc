// Runtime: the API forwarding to Runtime::Impl, and the Impl's setup (bundle, options, edges,
// telemetry, estimates and the warm-up that measures the device) and teardown. A call's flow is
// in call_flow.cc, the send path and probing in edge_send.cc.
#include "cleave/device/runtime.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/mutex.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "device/src/runtime_impl.h"

namespace cleave::device {

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

// The API forwards to the implementation.
Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const std::string& bundle_dir,
                                                         const RuntimeOptions& options) {
  CLEAVE_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Create(bundle_dir, options));
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

absl::StatusOr<Result> Runtime::Infer(const at::Tensor& input, const InferOptions& options) {
  return impl_->Infer(input, options);
}

void Runtime::InferAsync(at::Tensor input, InferOptions options,
                         std::function<void(absl::StatusOr<Result>)> done) {
  impl_->InferAsync(std::move(input), std::move(options), std::move(done));
}

std::future<absl::StatusOr<Result>> Runtime::InferAsync(at::Tensor input, InferOptions options) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<Result>>>();
  std::future<absl::StatusOr<Result>> future = promise->get_future();
  impl_->InferAsync(std::move(input), std::move(options), [promise](absl::StatusOr<Result> result) {
    promise->set_value(std::move(result));
  });
  return future;
}

std::string Runtime::TelemetryJson() const { return impl_->TelemetryJson(); }
std::string Runtime::TelemetryPrometheus() const { return impl_->TelemetryPrometheus(); }
LinkEstimate Runtime::link() const { return impl_->link(); }
const common::Bundle& Runtime::bundle() const { return impl_->bundle(); }

absl::StatusOr<std::unique_ptr<Runtime::Impl>> Runtime::Impl::Create(
    const std::string& bundle_dir, const RuntimeOptions& options) {
  std::unique_ptr<Impl> impl(new Impl());
  CLEAVE_RETURN_IF_ERROR(impl->Initialize(bundle_dir, options));
  return impl;
}

absl::Status Runtime::Impl::Initialize(const std::string& bundle_dir,
                                       const RuntimeOptions& options) {
  options_ = options;
  common::Bundle::LoadOptions load;
  load.max_segments = options.device_segments;
  load.optimize_for_inference = options.optimize_segments;
  if (options.trust.enabled()) {
    CLEAVE_ASSIGN_OR_RETURN(load.trust, common::TrustPolicy::Create(options.trust));
  }
  if (!options.bundle_key_file.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(load.key, common::BundleKey::Read(options.bundle_key_file));
  }
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
  int max_cut = 0;
  for (const common::CutInfo& cut : manifest.cuts) max_cut = std::max(max_cut, cut.id);
  CLEAVE_ASSIGN_OR_RETURN(metrics_, RuntimeMetrics::Create(max_cut));
  for (const common::SegmentInfo& segment : manifest.segments) {
    const common::ExitInfo* exit =
        segment.end_cut && options.use_exits ? manifest.FindExit(*segment.end_cut) : nullptr;
    exit_after_.push_back(exit != nullptr && exit->threshold.has_value());
  }
  estimates_ = std::make_unique<RuntimeEstimates>(
      manifest, [this](int cut) -> const common::CodecSpec& { return CodecFor(cut); },
      options.edge_speedup_prior);
  WarmUp();
  // Every check passed: the version is recorded as accepted right before the runtime serves it.
  if (load.trust != nullptr) CLEAVE_RETURN_IF_ERROR(load.trust->Accept(manifest, bundle_->id()));
  return absl::OkStatus();
}

void Runtime::Impl::WarmUp() {
  // The warm-up runs the stored sample through the held segments a few times: TorchScript
  // optimizes a graph over its first runs, so only the median of the later rounds speaks for
  // the device's speed. An estimate that starts too high would keep the policy offloading and
  // never be corrected by a local run. It also takes TorchScript's first-run cost out of the
  // first real request.
  auto inputs = bundle_->ReadVerificationInputs();
  if (!inputs.ok() || inputs->empty()) return;
  const at::Tensor& input = inputs->front();
  constexpr int kRounds = 6, kSettling = 2;
  const size_t held = bundle_->num_loaded_segments();
  std::vector<std::vector<double>> rounds(held);
  for (int round = 0; round < kRounds; ++round) {
    c10::IValue value = input;
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
    estimates_->SetDeviceMs(i, common::Percentile(rounds[i], 0.5) * options_.device_slowdown);
  }
}

const common::CodecSpec& Runtime::Impl::CodecFor(int cut_id) const {
  return options_.codec.has_value() ? *options_.codec : bundle_->manifest().CodecAt(cut_id);
}

Runtime::Impl::~Impl() {
  {
    common::MutexLock lock(&calls_mutex_);
    while (calls_in_flight_ > 0) calls_done_.Wait(&calls_mutex_);
  }
  deadlines_.reset();  // only settled attempts are left in it
  if (pool_ != nullptr) pool_->join();
  edges_.clear();
}

void Runtime::Impl::AddInFlight() {
  common::MutexLock lock(&calls_mutex_);
  ++calls_in_flight_;
}

void Runtime::Impl::RemoveInFlight() {
  common::MutexLock lock(&calls_mutex_);
  --calls_in_flight_;
  calls_done_.SignalAll();
}

void Runtime::Impl::Post(std::function<void()> work) {
  boost::asio::post(*pool_, [work = std::move(work)] {
    // OpenMP's thread count is per thread: make pool threads honour at::set_num_threads.
    at::init_num_threads();
    work();
  });
}

}  // namespace cleave::device

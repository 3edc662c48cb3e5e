// soak_device: one process of bench/soak.sh's fleet. Runs --runtimes device runtimes, each a
// sensing loop submitting a Fashion-MNIST image --rate-hz times a second through its own
// Pipeline, against the edges in failover order, for --duration-s; then waits for every
// answer. Writes what happened as JSON: requests by placement and outcome (answered, failed,
// late — later than the deadline plus --margin-ms —, lost, answered twice), latency
// percentiles, answers per edge per Unix second (the timeline soak_report.py reads return
// times from) and this process's resident memory every second. Exits 1 if any request was lost,
// answered twice or failed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "bench/bench_report.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/manifest.h"
#include "cleave/common/stats.h"
#include "cleave/device/pipeline.h"
#include "cleave/device/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string bundle;
  std::vector<std::string> edges;
  std::string cut;  // offload at this cut (name or id); empty: the adaptive policy
  int runtimes = 16;
  double rate_hz = 10;
  double duration_s = 60;
  int deadline_ms = 100;
  int margin_ms = 100;
  int warmup = 3;  // uncounted requests per runtime before the loop starts
  std::string json;
};

// Resident memory of this process, bytes (VmRSS).
uint64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  uint64_t kib = 0;
  while (status >> key) {
    if (key == "VmRSS:" && status >> kib) return kib * 1024;
    status.ignore(1 << 20, '\n');
  }
  return 0;
}

// The id of cut `cut` (a name such as "stem", or an id) of the bundle in `dir`; -1 (which the
// runtime then refuses) when it has no such cut.
int CutId(const std::string& dir, const std::string& cut) {
  int id = 0;
  if (absl::SimpleAtoi(cut, &id)) return id;
  auto text = cleave::common::ReadFile(dir + "/manifest.json", cleave::common::kMaxTextFileBytes);
  if (!text.ok()) return -1;
  auto manifest = cleave::common::BundleManifest::FromJson(*text, dir);
  if (!manifest.ok()) return -1;
  const cleave::common::CutInfo* found = manifest->FindCutNamed(cut);
  return found != nullptr ? found->id : -1;
}

// What the runtimes' callbacks record, under one lock (a few hundred answers a second).
struct Record {
  std::mutex mutex;
  std::map<std::string, int64_t> placements;
  int64_t submitted = 0, answered = 0, failed = 0, late = 0, refused = 0;
  uint64_t duplicates = 0, lost = 0;
  std::vector<double> latencies_ms;
  // Unix second -> where ("device" or the edge target) -> answers; and late answers.
  std::map<int64_t, std::map<std::string, int64_t>> by_second;
  std::map<int64_t, int64_t> late_by_second;
  std::string first_error;
};

// One robot: a loop at the rate through a pipeline of one frame in flight, so that a frame
// whose answer is slow delays the next one as it would on a robot, and every answer is
// counted by sequence number.
// Long on purpose: one simulated device's whole loop (pace, infer, check, tally) in the order
// it happens, so what the soak counts as late or wrong is in one place.
void RunDevice(const Options& options, const cleave::common::LabeledImages& images, int index,
               Clock::time_point start, Record* record) {
  cleave::device::RuntimeOptions runtime_options;
  runtime_options.edges = options.edges;
  runtime_options.deadline = std::chrono::milliseconds(options.deadline_ms);
  if (!options.cut.empty()) runtime_options.offload_cut = CutId(options.bundle, options.cut);
  auto runtime = cleave::device::Runtime::Create(options.bundle, runtime_options);
  if (!runtime.ok()) {
    std::lock_guard<std::mutex> lock(record->mutex);
    ++record->failed;
    if (record->first_error.empty()) record->first_error = std::string(runtime.status().message());
    return;
  }
  // A robot warms its runtime up before its control loop relies on it: the first forwards of
  // a TorchScript module (profiling runs, allocations) and a new stream take far longer than
  // the steady state. These requests are not counted; the loop starts at `start`.
  for (int i = 0; i < options.warmup; ++i) {
    (void)(*runtime)->Infer(images.images.slice(0, i, i + 1));
  }
  const auto limit = std::chrono::milliseconds(options.deadline_ms + options.margin_ms);
  std::mutex mutex;
  std::map<uint64_t, Clock::time_point> started;  // by sequence, until answered
  auto on_result = [&](uint64_t sequence, absl::StatusOr<cleave::device::Result> result) {
    const Clock::time_point now = Clock::now();
    Clock::time_point began;
    {
      std::lock_guard<std::mutex> guard(mutex);
      began = started[sequence];
      started.erase(sequence);
    }
    const double latency_ms = std::chrono::duration<double, std::milli>(now - began).count();
    // Wall-clock seconds, so soak_report.py can line answers up with soak.sh's fault times.
    const int64_t second = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    std::lock_guard<std::mutex> lock(record->mutex);
    ++record->answered;
    record->latencies_ms.push_back(latency_ms);
    if (now - began > limit) {
      ++record->late;
      ++record->late_by_second[second];
    }
    if (!result.ok()) {
      ++record->failed;
      if (record->first_error.empty()) record->first_error = result.status().ToString();
      return;
    }
    ++record->placements[cleave::device::PlacementName(result->placement)];
    ++record->by_second[second][result->placement == cleave::device::Placement::kEdge ? result->edge
                                                                                      : "device"];
  };
  cleave::device::Pipeline pipeline(runtime->get(), 1, on_result);
  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / options.rate_hz));
  const Clock::time_point end = start + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(options.duration_s));
  // Robots start spread over one period, not in lockstep.
  Clock::time_point next = start + period * index / std::max(1, options.runtimes);
  for (int64_t i = 0; next < end; ++i, next += period) {
    std::this_thread::sleep_until(next);
    const Clock::time_point before = Clock::now();
    const int64_t image = (i * options.runtimes + index) % images.images.size(0);
    {
      std::lock_guard<std::mutex> guard(mutex);
      started[static_cast<uint64_t>(i)] = before;
    }
    auto sequence = pipeline.Submit(images.images.slice(0, image, image + 1), {}, limit * 4);
    std::lock_guard<std::mutex> lock(record->mutex);
    ++record->submitted;
    if (!sequence.ok()) {  // the previous frame took four times its limit: counted, not lost
      ++record->refused;
      std::lock_guard<std::mutex> guard(mutex);
      started.erase(static_cast<uint64_t>(i));
      --i;
    }
  }
  const bool drained = pipeline.DrainFor(limit * 2);
  std::lock_guard<std::mutex> lock(record->mutex);
  record->duplicates += pipeline.duplicate_results();
  if (!drained) {
    std::lock_guard<std::mutex> guard(mutex);
    record->lost += started.size();
    std::cerr << "soak_device: runtime " << index << ": " << started.size()
              << " requests never answered\n";
    std::_Exit(2);  // the pipeline would wait for them forever
  }
}

}  // namespace

// Flags, then the fleet of devices and the report: one statement per flag, in --help order.
int main(int argc, char** argv) {
  CLI::App app{"soak_device: device runtimes in a sensing loop for bench/soak.sh"};
  Options options;
  double warmup_s = 5;
  app.add_option("--bundle", options.bundle, "bundle folder")->required();
  app.add_option("--edge", options.edges, "edge targets in failover order (repeatable)");
  app.add_option("--cut", options.cut, "offload at this cut, name or id (default: adaptive)");
  app.add_option("--runtimes", options.runtimes, "device runtimes in this process")
      ->check(CLI::PositiveNumber);
  app.add_option("--rate-hz", options.rate_hz, "frames per second per runtime")
      ->check(CLI::PositiveNumber);
  app.add_option("--duration-s", options.duration_s, "how long to submit")
      ->check(CLI::PositiveNumber);
  app.add_option("--deadline-ms", options.deadline_ms, "per-request deadline")
      ->check(CLI::PositiveNumber);
  app.add_option("--margin-ms", options.margin_ms, "an answer later than deadline + this is late")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup", options.warmup, "uncounted requests per runtime before the loop")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup-s", warmup_s, "the loops start this long after the process")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--json", options.json, "where to write the report")->required();
  CLI11_PARSE(app, argc, argv);

  auto images = cleave::common::LoadFashionMnist(cleave::common::kFashionMnistDir, "t10k", 1000);
  if (!images.ok()) {
    std::cerr << "soak_device: " << images.status().message() << "\n";
    return 1;
  }
  Record record;
  // Every runtime warms up first; the loops start together after the warm-up time.
  const Clock::time_point start = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(warmup_s));
  std::vector<std::pair<double, uint64_t>> memory;  // (s, resident bytes)
  std::atomic<bool> running{true};
  std::thread sampler([&] {
    for (Clock::time_point next = start; running; next += std::chrono::seconds(1)) {
      memory.emplace_back(std::chrono::duration<double>(Clock::now() - start).count(),
                          ResidentBytes());
      std::this_thread::sleep_until(next + std::chrono::seconds(1));
    }
  });
  std::vector<std::thread> devices;
  for (int i = 0; i < options.runtimes; ++i) {
    devices.emplace_back(RunDevice, std::cref(options), std::cref(*images), i, start, &record);
  }
  for (std::thread& device : devices) device.join();
  running = false;
  sampler.join();

  nlohmann::json report = cleave::bench::ReportHeader("soak_device", argc, argv);
  std::lock_guard<std::mutex> lock(record.mutex);
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& [second, where] : record.by_second) {
    auto late = record.late_by_second.find(second);
    timeline.push_back({{"second", second},
                        {"answers", where},
                        {"late", late == record.late_by_second.end() ? 0 : late->second}});
  }
  nlohmann::json rss = nlohmann::json::array();
  for (const auto& [seconds, bytes] : memory) rss.push_back({seconds, bytes});
  report["runtimes"] = options.runtimes;
  report["deadline_ms"] = options.deadline_ms;
  report["margin_ms"] = options.margin_ms;
  report["submitted"] = record.submitted;
  report["answered"] = record.answered;
  report["failed"] = record.failed;
  report["late"] = record.late;
  report["lost"] = record.lost;
  report["duplicates"] = record.duplicates;
  report["refused_by_pipeline"] = record.refused;
  report["placements"] = record.placements;
  report["latency_ms"] = {
      {"p50", cleave::common::Percentile(record.latencies_ms, 0.50)},
      {"p99", cleave::common::Percentile(record.latencies_ms, 0.99)},
      {"max", record.latencies_ms.empty()
                  ? 0.0
                  : *std::max_element(record.latencies_ms.begin(), record.latencies_ms.end())}};
  report["timeline"] = timeline;
  report["resident_bytes"] = rss;
  if (!record.first_error.empty()) report["first_error"] = record.first_error;
  if (!cleave::bench::WriteJsonReport(report, options.json)) return 1;
  const bool clean = record.lost == 0 && record.duplicates == 0 && record.failed == 0 &&
                     record.answered == record.submitted - record.refused;
  return clean ? 0 : 1;
}

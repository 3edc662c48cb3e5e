// The device runtime against real cleave-edge processes over loopback, some behind the link
// emulator: whatever the edge does — absent, killed mid-run, slower than the deadline — every
// request gets exactly one answer by its deadline, measured by the caller's clock, plus a
// margin derived from this machine's scheduling jitter (tens of milliseconds); failover moves
// to the next edge; the adaptive policy moves its cut when the link changes. Answers are
// counted by sequence number: a duplicate or a missing one fails the test by name.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "cleave/device/pipeline.h"
#include "cleave/device/runtime.h"
#include "cleave/link_emulator/link_emulator.h"
#include "tests/support/test_support.h"

namespace cleave::device {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class ResilienceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    margin_ = test::SchedulingMargin();  // measured now: it sleeps, so never mid-measurement
    original_ = test::ResidualModel();
    ASSERT_FALSE(
        test::WriteTestBundle(original_, dir_.path(), "bundles/residual", {"stem", "block1"})
            .empty());
    bundle_dir_ = dir_.File("bundles/residual");
    first_cut_ = test::ReadManifest(bundle_dir_).cuts[0].id;
  }

  std::unique_ptr<Runtime> MakeRuntime(const RuntimeOptions& options) {
    auto runtime = Runtime::Create(bundle_dir_, options);
    EXPECT_TRUE(runtime.ok()) << runtime.status();
    return runtime.ok() ? *std::move(runtime) : nullptr;
  }

  // Options that always offload at the first cut, against `edges`, with `deadline`.
  RuntimeOptions Offloading(std::vector<std::string> edges, milliseconds deadline) const {
    RuntimeOptions options;
    options.edges = std::move(edges);
    options.offload_cut = first_cut_;
    options.deadline = deadline;
    return options;
  }

  // What an answer may exceed its deadline by here (test::SchedulingMargin).
  milliseconds Margin() const { return margin_; }

  // Runs `count` inputs through a pipeline with `in_flight` frames at once, calling
  // `after_each(i)` once frame i is submitted. Returns every result in order and checks that
  // each frame was answered exactly once (the pipeline rejects and counts a second answer),
  // with the unsplit model's output, within its deadline plus Margin() of its start by this
  // thread's clock. A frame not answered by then fails the test by name at once.
  std::vector<Result> RunAll(Runtime& runtime, int count, size_t in_flight, milliseconds deadline,
                             const std::function<void(int)>& after_each = {}) {
    std::mutex mutex;
    std::map<uint64_t, Result> results;
    std::map<uint64_t, int> deliveries;
    std::map<uint64_t, Clock::time_point> started, answered;
    std::vector<at::Tensor> inputs;
    for (int i = 0; i < count; ++i) inputs.push_back(at::rand({1, 3, 8, 8}));
    // Held by pointer: if a frame is never answered, its destructor would wait forever.
    auto pipeline = std::make_unique<Pipeline>(
        &runtime, in_flight, [&](uint64_t sequence, absl::StatusOr<Result> result) {
          std::lock_guard<std::mutex> lock(mutex);
          answered[sequence] = Clock::now();
          ++deliveries[sequence];
          EXPECT_TRUE(result.ok()) << "request " << sequence << ": " << result.status();
          if (result.ok()) results.emplace(sequence, *std::move(result));
        });
    for (int i = 0; i < count; ++i) {
      // A slot frees within a deadline unless a frame is stuck: then fail at once, by name.
      auto sequence = pipeline->Submit(inputs[i], {}, deadline + Margin());
      if (!sequence.ok()) test::AbortStuckTest(std::string(sequence.status().message()));
      {
        std::lock_guard<std::mutex> lock(mutex);
        started[static_cast<uint64_t>(i)] = Clock::now();
      }
      if (after_each) after_each(i);
    }
    // Frames run at most `in_flight` at a time, each within its deadline.
    const auto rounds = static_cast<int>((count + in_flight - 1) / in_flight);
    if (!pipeline->DrainFor(rounds * (deadline + Margin()))) {
      std::lock_guard<std::mutex> lock(mutex);
      std::string missing;
      for (int i = 0; i < count; ++i) {
        if (deliveries.count(i) == 0) missing += " " + std::to_string(i);
      }
      test::AbortStuckTest("requests never answered:" + missing);
    }
    EXPECT_EQ(pipeline->duplicate_results(), 0u) << "a request was answered more than once";
    pipeline.reset();
    std::vector<Result> ordered;
    for (int i = 0; i < count; ++i) {
      EXPECT_EQ(deliveries[i], 1) << "request " << i << " answered " << deliveries[i] << " times";
      auto found = results.find(i);
      if (found == results.end()) continue;
      const Result& result = found->second;
      // A frame starts when Submit returns at the latest; its answer may wait for the frame
      // before it (in-order delivery), whose deadline passes no later than its own.
      EXPECT_LE(answered[i] - started[i], deadline + Margin())
          << "request " << i << " ran on " << PlacementName(result.placement);
      EXPECT_EQ(result.outputs.size(), 1u);
      if (result.outputs.size() != 1) continue;
      EXPECT_TRUE(
          at::allclose(result.outputs[0], test::RunFlat(original_, inputs[i])[0], 1e-4, 1e-5))
          << "request " << i << " ran on " << PlacementName(result.placement);
      ordered.push_back(result);
    }
    return ordered;
  }

  // A cleave-edge process serving `bundles_dir` behind a link emulator that delays each way
  // by `delay` (a round trip takes twice it); the runtime connects to address(). running() is
  // false (and the test has failed) when either cannot start.
  struct DelayedEdge {
    DelayedEdge(const std::string& bundles_dir, milliseconds delay) : edge(bundles_dir) {
      EXPECT_TRUE(edge.running()) << edge.Log();
      if (!edge.running()) return;
      link_emulator::LinkEmulatorOptions options;
      options.upstream = edge.address();
      options.upstream_shape.delay = delay;
      options.downstream_shape.delay = delay;
      auto started = link_emulator::LinkEmulator::Start(options);
      EXPECT_TRUE(started.ok()) << started.status();
      if (started.ok()) link = *std::move(started);
    }
    bool running() const { return link != nullptr; }
    std::string address() const { return "127.0.0.1:" + std::to_string(link->port()); }

    test::EdgeProcess edge;
    std::unique_ptr<link_emulator::LinkEmulator> link;
  };

  static std::map<Placement, int> CountPlacements(const std::vector<Result>& results) {
    std::map<Placement, int> counts;
    for (const Result& result : results) ++counts[result.placement];
    return counts;
  }

  test::TempDir dir_;
  torch::jit::Module original_;
  std::string bundle_dir_;
  int first_cut_ = 0;
  milliseconds margin_{0};
};

TEST_F(ResilienceTest, EdgeDownAtStartEveryRequestIsAnsweredOnTheDevice) {
  auto runtime = MakeRuntime(Offloading({"127.0.0.1:1"}, milliseconds(300)));
  ASSERT_NE(runtime, nullptr);
  const auto results = RunAll(*runtime, 30, 4, milliseconds(300));
  EXPECT_EQ(CountPlacements(results)[Placement::kDeviceFallback], 30);
}

TEST_F(ResilienceTest, EdgeKilledMidRunEveryRequestStillGetsExactlyOneAnswer) {
  test::EdgeProcess edge(dir_.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  const milliseconds deadline(2000);
  auto runtime = MakeRuntime(Offloading({edge.address()}, deadline));
  ASSERT_NE(runtime, nullptr);
  const auto results = RunAll(*runtime, 120, 8, deadline, [&](int i) {
    if (i == 40) edge.Kill();  // a crash, with requests in flight
  });
  ASSERT_EQ(results.size(), 120u);
  const auto placements = CountPlacements(results);
  EXPECT_GT(placements.at(Placement::kEdge), 0);
  EXPECT_GT(placements.at(Placement::kDeviceFallback), 0);
  EXPECT_EQ(placements.at(Placement::kEdge) + placements.at(Placement::kDeviceFallback), 120);
}

TEST_F(ResilienceTest, EdgeSlowerThanTheDeadlineIsAnsweredOnTheDeviceInTime) {
  DelayedEdge late(dir_.File("bundles"), milliseconds(400));  // 800 ms round trips
  ASSERT_TRUE(late.running());
  const milliseconds deadline(250);
  auto runtime = MakeRuntime(Offloading({late.address()}, deadline));
  ASSERT_NE(runtime, nullptr);
  const auto results = RunAll(*runtime, 12, 2, deadline);
  ASSERT_EQ(results.size(), 12u);
  for (const Result& result : results) {
    EXPECT_EQ(result.placement, Placement::kDeviceFallback);
    EXPECT_FALSE(result.fallback_reason.empty());
  }
}

TEST_F(ResilienceTest, WithFewerSegmentsAGoneOrLateEdgeGivesADegradedExitAnswer) {
  // The device holds only the stem (and an exit head there that is never confident): when
  // the edge is gone or late it cannot finish, so it answers with its exit head, marked
  // degraded, by the deadline.
  test::AddUntrainedExit(bundle_dir_, /*threshold=*/1.0);
  DelayedEdge late(dir_.File("bundles"), milliseconds(400));  // 800 ms round trips
  ASSERT_TRUE(late.running());
  const milliseconds deadline(300);
  for (const std::string& target : {std::string("127.0.0.1:1"), late.address()}) {
    SCOPED_TRACE(target);
    RuntimeOptions options = Offloading({target}, deadline);
    options.device_segments = 1;
    auto runtime = MakeRuntime(options);
    ASSERT_NE(runtime, nullptr);
    const auto start = Clock::now();
    auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
    EXPECT_LE(Clock::now() - start, deadline + Margin());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->placement, Placement::kDegraded);
    EXPECT_EQ(result->exit_cut, first_cut_);
    EXPECT_EQ(result->outputs.at(0).sizes(), (std::vector<int64_t>{1, 10}));
    EXPECT_FALSE(result->fallback_reason.empty());
  }
}

TEST_F(ResilienceTest, APerCallDeadlineOverridesTheRuntimes) {
  // The runtime would wait 30 s for this edge's 800 ms round trip; the call allows 250 ms.
  DelayedEdge late(dir_.File("bundles"), milliseconds(400));
  ASSERT_TRUE(late.running());
  auto runtime = MakeRuntime(Offloading({late.address()}, milliseconds(30000)));
  ASSERT_NE(runtime, nullptr);
  InferOptions call;
  call.deadline = milliseconds(250);
  const auto start = Clock::now();
  auto result = runtime->Infer(at::rand({1, 3, 8, 8}), call);
  EXPECT_LE(Clock::now() - start, *call.deadline + Margin());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, Placement::kDeviceFallback);
  EXPECT_THAT(result->fallback_reason, ::testing::HasSubstr("deadline"));
  // Without it the same runtime waits for the edge, once the edge's backoff after that late
  // answer (100 ms +-20%) has passed.
  std::this_thread::sleep_for(milliseconds(500));
  auto patient = runtime->InferAsync(at::rand({1, 3, 8, 8})).get();
  ASSERT_TRUE(patient.ok()) << patient.status();
  EXPECT_EQ(patient->placement, Placement::kEdge) << patient->fallback_reason;
}

TEST_F(ResilienceTest, PipelineHoldsAtMostItsBoundInFlight) {
  // Every frame spends a 300 ms round trip on the link: frames overlap up to the bound, a
  // frame that finds no slot in time is refused, and results come out in submission order.
  DelayedEdge slow(dir_.File("bundles"), milliseconds(150));
  ASSERT_TRUE(slow.running());
  auto runtime = MakeRuntime(Offloading({slow.address()}, milliseconds(30000)));
  ASSERT_NE(runtime, nullptr);
  std::mutex mutex;
  std::vector<uint64_t> delivered;
  std::vector<Placement> placements;
  size_t most_in_flight = 0;
  {
    Pipeline pipeline(runtime.get(), 3, [&](uint64_t sequence, absl::StatusOr<Result> result) {
      std::lock_guard<std::mutex> lock(mutex);
      delivered.push_back(sequence);
      placements.push_back(result.ok() ? result->placement : Placement::kDegraded);
    });
    for (int i = 0; i < 9; ++i) {
      ASSERT_TRUE(pipeline.Submit(at::rand({1, 3, 8, 8})).ok());
      most_in_flight = std::max(most_in_flight, pipeline.in_flight());
    }
    // The last three frames went in together when the three before them came back: their
    // slots free a round trip later, not within 10 ms.
    auto refused = pipeline.Submit(at::rand({1, 3, 8, 8}), {}, milliseconds(10));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("3 frames"));
    pipeline.Drain();
    EXPECT_EQ(pipeline.in_flight(), 0u);
  }
  EXPECT_EQ(most_in_flight, 3u);
  ASSERT_EQ(delivered.size(), 9u);
  for (size_t i = 0; i < delivered.size(); ++i) EXPECT_EQ(delivered[i], i);
  for (Placement placement : placements) EXPECT_EQ(placement, Placement::kEdge);
}

TEST_F(ResilienceTest, PipelineDeliversInOrderWhatCompletesOutOfOrder) {
  // Even frames wait for a 300 ms round trip; odd ones allow 100 ms, so the device answers
  // them itself and they finish before the frame submitted ahead of them. Results still come
  // out in submission order, each once.
  DelayedEdge slow(dir_.File("bundles"), milliseconds(150));
  ASSERT_TRUE(slow.running());
  auto runtime = MakeRuntime(Offloading({slow.address()}, milliseconds(30000)));
  ASSERT_NE(runtime, nullptr);
  constexpr int kFrames = 8;
  std::mutex mutex;
  std::vector<uint64_t> delivered;
  std::map<uint64_t, Result> results;
  auto pipeline = std::make_unique<Pipeline>(runtime.get(), 2,
                                             [&](uint64_t sequence, absl::StatusOr<Result> result) {
                                               std::lock_guard<std::mutex> lock(mutex);
                                               delivered.push_back(sequence);
                                               ASSERT_TRUE(result.ok()) << result.status();
                                               results.emplace(sequence, *std::move(result));
                                             });
  for (int i = 0; i < kFrames; ++i) {
    InferOptions call;
    if (i % 2 == 1) call.deadline = milliseconds(100);
    // A frame never answered holds its slot: a refused Submit means the pipeline is stuck, and
    // returning would hang in its destructor.
    if (auto sequence = pipeline->Submit(at::rand({1, 3, 8, 8}), call); !sequence.ok()) {
      test::AbortStuckTest(std::string(sequence.status().message()));
    }
  }
  if (!pipeline->DrainFor(kFrames * (milliseconds(300) + Margin()))) {
    test::AbortStuckTest("the pipeline did not deliver every frame");
  }
  EXPECT_EQ(pipeline->duplicate_results(), 0u);
  pipeline.reset();
  std::vector<uint64_t> in_order(kFrames);
  std::iota(in_order.begin(), in_order.end(), 0);
  EXPECT_EQ(delivered, in_order);
  ASSERT_EQ(results.size(), static_cast<size_t>(kFrames));
  for (int i = 0; i < kFrames; i += 2) {
    EXPECT_EQ(results[i].placement, Placement::kEdge) << "frame " << i;
    EXPECT_EQ(results[i + 1].placement, Placement::kDeviceFallback) << "frame " << i + 1;
    // Started together, the later frame finished first: its own run was the shorter.
    EXPECT_LT(results[i + 1].timings.total_ms + 50, results[i].timings.total_ms)
        << "frames " << i << " and " << i + 1;
  }
}

TEST_F(ResilienceTest, APartitionAndABandwidthCollapseWithDeviceAndEdgeInTheLoop) {
  // A device offloading every frame through the link emulator: the link is partitioned for
  // 1.5 s, healed, collapsed to 50 kbit/s (a frame then takes far longer than the deadline)
  // for 2 s, and restored. Every frame is answered once by its deadline; none comes from the
  // edge while the link cannot carry it; and after each fault the device is back on the edge
  // within the circuit breaker's open time plus its jitter and a margin.
  DelayedEdge edge(dir_.File("bundles"), milliseconds(5));
  ASSERT_TRUE(edge.running());
  const milliseconds deadline(300);
  auto runtime = MakeRuntime(Offloading({edge.address()}, deadline));
  ASSERT_NE(runtime, nullptr);
  const EdgeClientOptions client;  // the runtime's defaults: backoff and circuit breaker
  const milliseconds back_within = client.open_for + client.open_for / 5 + milliseconds(1000);
  enum Phase { kClear, kPartitioned, kHealed, kCollapsed, kRestored, kDone };
  const std::vector<std::pair<Phase, milliseconds>> schedule = {
      {kClear, milliseconds(1000)},
      {kPartitioned, milliseconds(1500)},
      {kHealed, back_within + milliseconds(1000)},
      {kCollapsed, milliseconds(2000)},
      {kRestored, back_within + milliseconds(1000)}};
  std::mutex mutex;
  std::map<uint64_t, std::pair<Phase, Clock::time_point>> submitted;  // phase, start
  std::map<uint64_t, Result> results;
  std::map<uint64_t, int> deliveries;
  std::map<uint64_t, Clock::time_point> answered;
  auto pipeline = std::make_unique<Pipeline>(
      runtime.get(), 2, [&](uint64_t sequence, absl::StatusOr<Result> result) {
        std::lock_guard<std::mutex> lock(mutex);
        ++deliveries[sequence];
        answered[sequence] = Clock::now();
        EXPECT_TRUE(result.ok()) << "request " << sequence << ": " << result.status();
        if (result.ok()) results.emplace(sequence, *std::move(result));
      });
  std::map<Phase, Clock::time_point> began;
  for (const auto& [phase, length] : schedule) {
    began[phase] = Clock::now();
    if (phase == kPartitioned) edge.link->SetPartitioned(true);
    if (phase == kHealed) edge.link->SetPartitioned(false);
    if (phase == kCollapsed) edge.link->SetBandwidth(link_emulator::Direction::kBoth, 50'000);
    if (phase == kRestored) edge.link->SetBandwidth(link_emulator::Direction::kBoth, 0);
    while (Clock::now() - began[phase] < length) {
      auto sequence = pipeline->Submit(at::rand({1, 3, 8, 8}), {}, deadline + Margin());
      if (!sequence.ok()) test::AbortStuckTest(std::string(sequence.status().message()));
      std::lock_guard<std::mutex> lock(mutex);
      submitted[*sequence] = {phase, Clock::now()};
    }
  }
  if (!pipeline->DrainFor(deadline + Margin())) test::AbortStuckTest("frames never answered");
  EXPECT_EQ(pipeline->duplicate_results(), 0u);
  pipeline.reset();
  std::map<Phase, int> edge_answers;
  std::map<Phase, Clock::time_point> first_edge_answer;
  for (const auto& [sequence, entry] : submitted) {
    const auto [phase, start] = entry;
    EXPECT_EQ(deliveries[sequence], 1) << "request " << sequence;
    EXPECT_LE(answered[sequence] - start, deadline + Margin()) << "request " << sequence;
    auto result = results.find(sequence);
    if (result == results.end() || result->second.placement != Placement::kEdge) continue;
    ++edge_answers[phase];
    if (first_edge_answer.count(phase) == 0) first_edge_answer[phase] = answered[sequence];
  }
  EXPECT_GT(edge_answers[kClear], 0);
  EXPECT_EQ(edge_answers[kPartitioned], 0);
  // The emulator's token bucket lets a short burst through at the new rate: one frame may
  // still cross in time, no more.
  EXPECT_LE(edge_answers[kCollapsed], 1);
  for (Phase after : {kHealed, kRestored}) {
    ASSERT_GT(edge_answers[after], 0) << "never back on the edge after phase " << after;
    const auto back = first_edge_answer[after] - began[after];
    std::cerr << "back on the edge " << std::chrono::duration<double>(back).count()
              << " s after phase " << after << " began\n";
    EXPECT_LE(back, back_within) << "phase " << after;
  }
}

TEST_F(ResilienceTest, FailsOverToTheNextEdgeWhenTheFirstDies) {
  test::EdgeProcess first(dir_.File("bundles"));
  test::EdgeProcess second(dir_.File("bundles"));
  ASSERT_TRUE(first.running() && second.running()) << first.Log() << second.Log();
  const milliseconds deadline(3000);
  const std::string first_address = first.address(), second_address = second.address();
  RuntimeOptions options = Offloading({first_address, second_address}, deadline);
  options.local_fallback = false;  // every answer must come from an edge
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  std::map<std::string, int> by_edge;
  const auto results = RunAll(*runtime, 60, 4, deadline, [&](int i) {
    if (i == 20) first.Kill();
  });
  ASSERT_EQ(results.size(), 60u);
  for (const Result& result : results) {
    ASSERT_EQ(result.placement, Placement::kEdge) << result.fallback_reason;
    ++by_edge[result.edge];
  }
  EXPECT_GT(by_edge[first_address], 0);
  EXPECT_GT(by_edge[second_address], 0);
}

TEST_F(ResilienceTest, RoundRobinTargetKeepsAnsweringWhenOneOfItsAddressesDies) {
  test::EdgeProcess first(dir_.File("bundles"));
  test::EdgeProcess second(dir_.File("bundles"));
  ASSERT_TRUE(first.running() && second.running()) << first.Log() << second.Log();
  RuntimeOptions options =
      Offloading({"ipv4:" + first.address() + "," + second.address()}, milliseconds(5000));
  options.edge_client.load_balancing = "round_robin";
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  EXPECT_EQ(CountPlacements(RunAll(*runtime, 10, 2, milliseconds(5000)))[Placement::kEdge], 10);
  // Whichever address carried the stream, the other one takes over once the breakage is seen.
  first.Kill();
  bool edge_again = false;
  for (int i = 0; i < 100 && !edge_again; ++i) {
    auto result = runtime->Infer(at::rand({1, 3, 8, 8}));
    ASSERT_TRUE(result.ok()) << result.status();
    edge_again = result->placement == Placement::kEdge;
    if (!edge_again) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(edge_again);
}

// The funnel model's stem output is 10x its input; the pool shrinks it 16-fold. With a device
// 100x slower than the edge, a fast link says "send the raw input", a slow one "stay local".
TEST(AdaptiveSplitTest, MovesItsCutWhenTheEmulatedBandwidthDropsAndBackWhenItRecovers) {
  test::TempDir dir;
  const torch::jit::Module model = test::FunnelModel();
  ASSERT_FALSE(
      test::WriteTestBundle(model, dir.path(), "bundles/funnel", {"stem", "mid"}, {1, 3, 32, 32})
          .empty());
  test::EdgeProcess edge(dir.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  link_emulator::LinkEmulatorOptions link;
  link.upstream = edge.address();
  link.upstream_shape.delay = milliseconds(1);
  link.downstream_shape.delay = milliseconds(1);
  auto emulator = link_emulator::LinkEmulator::Start(link);
  ASSERT_TRUE(emulator.ok()) << emulator.status();

  RuntimeOptions options;
  options.edges = {"127.0.0.1:" + std::to_string((*emulator)->port())};
  options.deadline = milliseconds(10000);
  options.device_slowdown = 100;
  options.probe_interval = milliseconds(50);
  auto runtime = Runtime::Create(dir.File("bundles/funnel"), options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();

  // Runs requests until `wanted` holds for 5 in a row (or 300 requests); returns whether it did.
  auto settles_on = [&](const std::function<bool(const Result&)>& wanted, const char* phase) {
    int in_a_row = 0;
    for (int i = 0; i < 300 && in_a_row < 5; ++i) {
      auto result = (*runtime)->Infer(at::rand({1, 3, 32, 32}));
      EXPECT_TRUE(result.ok()) << result.status();
      if (!result.ok()) return false;
      in_a_row = wanted(*result) ? in_a_row + 1 : 0;
    }
    const LinkEstimate estimate = (*runtime)->link();
    std::cerr << phase << ": link estimate " << estimate.rtt_ms << " ms, "
              << estimate.bytes_per_ms * 8e-3 << " Mbit/s\n";
    return in_a_row >= 5;
  };
  const auto raw_input_to_edge = [](const Result& r) {
    return r.placement == Placement::kEdge && r.cut_id == common::kInputCutId;
  };
  EXPECT_TRUE(settles_on(raw_input_to_edge, "fast link"));
  (*emulator)->SetBandwidth(link_emulator::Direction::kBoth, 200'000);  // 0.2 Mbit/s
  EXPECT_TRUE(settles_on([&](const Result& r) { return !raw_input_to_edge(r); }, "0.2 Mbit/s"));
  (*emulator)->SetBandwidth(link_emulator::Direction::kBoth, 0);  // unlimited again
  EXPECT_TRUE(settles_on(raw_input_to_edge, "recovered"));
}

}  // namespace
}  // namespace cleave::device

// The decision and the estimates behind it, without a network: the link estimator separates
// RTT from bandwidth, and the latency policy picks the cut a Neurosurgeon-style model says is
// fastest and follows the link.
#include "cleave/device/offload_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <future>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/device/link_estimator.h"

namespace cleave::device {
namespace {

using ::testing::HasSubstr;

TEST(LinkEstimatorTest, UsesThePriorUntilItHasSamples) {
  LinkEstimator estimator({5.0, 2500.0});
  const LinkEstimate estimate = estimator.Current();
  EXPECT_EQ(estimate.rtt_ms, 5.0);
  EXPECT_EQ(estimate.bytes_per_ms, 2500.0);
  EXPECT_EQ(estimate.samples, 0);
}

TEST(LinkEstimatorTest, SeparatesRttFromBandwidthWithRequestsOfDifferentSizes) {
  LinkEstimator estimator({50.0, 10.0});  // a wrong prior
  // 2 ms RTT, 1000 bytes/ms (8 Mbit/s).
  for (int i = 0; i < 16; ++i) {
    const double bytes = i % 2 == 0 ? 1000.0 : 20000.0;
    estimator.Record(bytes, 2.0 + bytes / 1000.0);
  }
  const LinkEstimate estimate = estimator.Current();
  EXPECT_NEAR(estimate.rtt_ms, 2.0, 1e-6);
  EXPECT_NEAR(estimate.bytes_per_ms, 1000.0, 1e-3);
  EXPECT_NEAR(estimate.TransferMs(5000), 7.0, 1e-6);
}

TEST(LinkEstimatorTest, SameSizedSamplesKeepThePriorRttAndMeasureBandwidth) {
  LinkEstimator estimator({2.0, 10.0});
  for (int i = 0; i < 8; ++i) estimator.Record(4000.0, 6.0);
  const LinkEstimate estimate = estimator.Current();
  EXPECT_NEAR(estimate.rtt_ms, 2.0, 1e-9);
  EXPECT_NEAR(estimate.bytes_per_ms, 1000.0, 1e-6);
}

TEST(LinkEstimatorTest, FollowsABandwidthDropWithinAFewSamples) {
  LinkEstimator estimator({1.0, 10000.0});
  for (int i = 0; i < 64; ++i)
    estimator.Record(i % 2 ? 1000.0 : 10000.0, 1.0 + (i % 2 ? 0.1 : 1.0));
  EXPECT_NEAR(estimator.Current().bytes_per_ms, 10000.0, 1.0);
  // The link drops to a tenth.
  for (int i = 0; i < 32; ++i) {
    estimator.Record(i % 2 ? 1000.0 : 10000.0, 1.0 + (i % 2 ? 1.0 : 10.0));
  }
  EXPECT_NEAR(estimator.Current().bytes_per_ms, 1000.0, 1.0);
}

TEST(LinkEstimatorTest, ALinkThatChangesIsFollowedWithinFourSamples) {
  LinkEstimator estimator({1.0, 10000.0});
  for (int i = 0; i < 64; ++i) estimator.Record(10000.0, 2.0);  // 1 ms + 10 kB at 10 kB/ms
  // The bandwidth drops to a twentieth: 1 ms + 10 kB at 500 B/ms = 21 ms.
  for (int i = 0; i < 3; ++i) estimator.Record(10000.0, 21.0);
  EXPECT_LT(estimator.Current().bytes_per_ms, 600.0);
  EXPECT_NEAR(estimator.Current().TransferMs(10000.0), 21.0, 0.5);
  // And back.
  for (int i = 0; i < 3; ++i) estimator.Record(10000.0, 2.0);
  EXPECT_NEAR(estimator.Current().TransferMs(10000.0), 2.0, 0.2);
}

TEST(LinkEstimatorTest, IgnoresNonsenseSamples) {
  LinkEstimator estimator({3.0, 100.0});
  estimator.Record(-1, 5);
  estimator.Record(100, -5);
  estimator.Record(100, std::numeric_limits<double>::infinity());
  estimator.Record(100, std::nan(""));
  EXPECT_EQ(estimator.Current().samples, 0);
}

// Three segments: a cheap stem whose output is large, a pool that shrinks it, and an
// expensive tail; the device is 10x slower than the edge.
PolicyInput ThreeSegmentInput(double bytes_per_ms) {
  PolicyInput input;
  input.device_segments = 3;
  input.device_segment_ms = {2.0, 1.0, 20.0};
  input.edge_tail_ms = {2.3, 2.1, 2.0};
  input.frame_bytes = {12000, 128000, 8000};
  input.response_bytes = 100;
  input.link = {2.0, bytes_per_ms};
  input.edge_available = true;
  return input;
}

TEST(LatencyPolicyTest, PredictsDeviceTransferAndEdgeTimes) {
  const PolicyInput input = ThreeSegmentInput(1000);
  // Offload before segment 2: device 2 + 1, link 2 + 8100 / 1000, edge 2.
  EXPECT_NEAR(LatencyPolicy::PredictOffloadMs(input, 2), 3.0 + 10.1 + 2.0, 1e-9);
  EXPECT_NEAR(LatencyPolicy::PredictLocalMs(input), 23.0, 1e-9);
}

TEST(LatencyPolicyTest, MovesTheCutLaterAsTheLinkSlowsDown) {
  const LatencyPolicy policy;
  // Fast link: send the raw input, the edge does everything.
  EXPECT_EQ(policy.Decide(ThreeSegmentInput(100000)).offload_segment, 0u);
  // 8 Mbit/s: the 12 kB input costs 12 ms, the 8 kB pooled activation 8 ms after 3 ms on the
  // device: the later cut wins.
  EXPECT_EQ(policy.Decide(ThreeSegmentInput(1000)).offload_segment, 2u);
  // 0.8 Mbit/s: nothing is worth sending.
  EXPECT_EQ(policy.Decide(ThreeSegmentInput(100)).offload_segment, std::nullopt);
}

TEST(LatencyPolicyTest, ABusyEdgeQueueKeepsTheRequestLocal) {
  // At 8 Mbit/s offloading before segment 2 predicts 15.1 ms against 23 ms locally; an edge
  // whose answers report 10 ms of queueing tips it the other way.
  PolicyInput input = ThreeSegmentInput(1000);
  EXPECT_EQ(LatencyPolicy().Decide(input).offload_segment, 2u);
  input.edge_queue_ms = 10;
  EXPECT_NEAR(LatencyPolicy::PredictOffloadMs(input, 2), 25.1, 1e-9);
  EXPECT_EQ(LatencyPolicy().Decide(input).offload_segment, std::nullopt);
}

TEST(LatencyPolicyTest, StaysLocalWhenTheEdgeIsUnavailable) {
  PolicyInput input = ThreeSegmentInput(100000);
  input.edge_available = false;
  const PolicyDecision decision = LatencyPolicy().Decide(input);
  EXPECT_EQ(decision.offload_segment, std::nullopt);
  EXPECT_NEAR(decision.predicted_ms, 23.0, 1e-9);
}

TEST(LatencyPolicyTest, ADeviceHoldingAPrefixMustOffloadWithinIt) {
  PolicyInput input = ThreeSegmentInput(100);  // local would win if it could
  input.device_segments = 1;
  const PolicyDecision decision = LatencyPolicy().Decide(input);
  ASSERT_TRUE(decision.offload_segment.has_value());
  EXPECT_LE(*decision.offload_segment, 1u);
}

TEST(FixedCutPolicyTest, OffloadsAtItsCutOnlyWhenTheEdgeIsAvailable) {
  common::BundleManifest manifest;
  manifest.segments.resize(3);
  manifest.segments[0].begin_cut = 0;
  manifest.segments[1].begin_cut = 4;
  manifest.segments[2].begin_cut = 9;
  PolicyInput input = ThreeSegmentInput(1000);
  input.manifest = &manifest;
  EXPECT_EQ(FixedCutPolicy(9).Decide(input).offload_segment, 2u);
  EXPECT_EQ(FixedCutPolicy(0).Decide(input).offload_segment, 0u);
  input.edge_available = false;
  EXPECT_EQ(FixedCutPolicy(9).Decide(input).offload_segment, std::nullopt);
}

}  // namespace
}  // namespace cleave::device

// The running estimates behind the runtime's policy, on their own: what they assume before any
// measurement, how a run of several segments is apportioned, and how one edge answer informs
// the edge's time at every other cut.
#include "device/src/runtime_estimates.h"

#include <gtest/gtest.h>

#include <vector>

namespace cleave::device {
namespace {

// Three segments of 1000, 3000 and 1000 MACs; cut 0 is the input, cuts 4 and 9 follow.
common::BundleManifest ThreeSegments() {
  common::BundleManifest manifest;
  const std::vector<int> begins = {common::kInputCutId, 4, 9};
  const std::vector<int64_t> macs = {1000, 3000, 1000};
  for (size_t i = 0; i < 3; ++i) {
    common::SegmentInfo segment;
    segment.begin_cut = begins[i];
    if (i + 1 < 3) segment.end_cut = begins[i + 1];
    segment.inputs = {common::TensorSpec{{1, 8, 10, 10}}};  // 800 elements
    segment.macs = macs[i];
    manifest.segments.push_back(segment);
  }
  manifest.segments.back().outputs = {common::TensorSpec{{1, 10}}};
  return manifest;
}

class RuntimeEstimatesTest : public ::testing::Test {
 protected:
  const common::BundleManifest manifest_ = ThreeSegments();
  const common::CodecSpec raw_{common::Codec::kRaw};
  const common::CodecSpec int8_zstd_{common::Codec::kInt8, 3};
};

TEST_F(RuntimeEstimatesTest, StartsFromTheManifestAndTheAssumedSpeedup) {
  // The input travels raw, activations as int8+zstd.
  RuntimeEstimates estimates(
      manifest_,
      [&](int cut) -> const common::CodecSpec& {
        return cut == common::kInputCutId ? raw_ : int8_zstd_;
      },
      /*edge_speedup=*/4.0);
  for (size_t i = 0; i < 3; ++i) estimates.SetDeviceMs(i, 8.0);
  PolicyInput input;
  estimates.Fill(&input);
  EXPECT_EQ(input.frame_bytes, (std::vector<double>{64 + 3200, 64 + 800 * 0.6, 64 + 800 * 0.6}));
  EXPECT_EQ(input.response_bytes, 64 + 40);
  EXPECT_EQ(input.device_segment_ms, (std::vector<double>{8, 8, 8}));
  // Nothing measured on the edge: the device's tail divided by the speedup.
  EXPECT_EQ(input.edge_tail_ms, (std::vector<double>{6, 4, 2}));
  EXPECT_EQ(input.edge_queue_ms, 0);
}

TEST_F(RuntimeEstimatesTest, ARunOfSegmentsIsSharedInProportionToTheirEstimates) {
  RuntimeEstimates estimates(
      manifest_, [&](int) -> const common::CodecSpec& { return raw_; }, 4.0);
  EXPECT_FALSE(estimates.DeviceTimesKnown(0, 2));
  estimates.SetDeviceMs(0, 1.0);
  estimates.SetDeviceMs(1, 3.0);
  EXPECT_TRUE(estimates.DeviceTimesKnown(0, 1));
  EXPECT_FALSE(estimates.DeviceTimesKnown(0, 2));  // segment 2 never measured
  // The two ran together in 8 ms: 2 and 6 ms are the samples, each smoothed in at 0.2.
  estimates.LearnDeviceTime(0, 1, 8.0);
  PolicyInput input;
  estimates.Fill(&input);
  EXPECT_DOUBLE_EQ(input.device_segment_ms[0], 0.8 * 1.0 + 0.2 * 2.0);
  EXPECT_DOUBLE_EQ(input.device_segment_ms[1], 0.8 * 3.0 + 0.2 * 6.0);
  EXPECT_DOUBLE_EQ(estimates.DeviceMsFrom(1), input.device_segment_ms[1]);
  // A segment measured for the first time takes its sample as it is.
  estimates.LearnDeviceTime(2, 2, 5.0);
  EXPECT_TRUE(estimates.DeviceTimesKnown(0, 2));
  EXPECT_DOUBLE_EQ(estimates.DeviceMsFrom(2), 5.0);
}

TEST_F(RuntimeEstimatesTest, OneEdgeAnswerScalesTheEdgeTimeAtEveryCutByItsMacs) {
  RuntimeEstimates estimates(
      manifest_, [&](int) -> const common::CodecSpec& { return raw_; }, 4.0);
  RoundTrip trip;
  trip.edge_compute_ms = 2.0;  // segments 1 and 2: 4000 MACs
  trip.edge_queue_ms = 0.5;
  trip.frame_bytes = 900;
  estimates.LearnRoundTrip(1, trip);
  PolicyInput input;
  estimates.Fill(&input);
  EXPECT_DOUBLE_EQ(input.edge_tail_ms[1], 2.0);                // measured
  EXPECT_DOUBLE_EQ(input.edge_tail_ms[0], 5000 * 2.0 / 4000);  // scaled by MACs
  EXPECT_DOUBLE_EQ(input.edge_tail_ms[2], 1000 * 2.0 / 4000);
  EXPECT_DOUBLE_EQ(input.edge_queue_ms, 0.5);
  EXPECT_DOUBLE_EQ(input.frame_bytes[1], 900);  // the real frame replaces the guess
  EXPECT_DOUBLE_EQ(input.frame_bytes[0], 64 + 3200);
}

}  // namespace
}  // namespace cleave::device

// Profiles and plans: the profiler times every segment of a real TorchScript model, profiles
// survive a JSON round trip and bad files are refused by name; the planner's cost model picks
// the cut the arithmetic says, follows the link, respects deadlines and counts exits in.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/profiler.h"
#include "cleave/partitioner/split_planner.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace cleave::partitioner {
namespace {

using ::testing::HasSubstr;

class ProfilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = test::SaveModel(test::ResidualModel(), dir_.File("net.pt"));
    auto model = ModelGraph::Load(path_, {{1, 3, 8, 8}});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }

  test::TempDir dir_;
  std::string path_;
  std::unique_ptr<ModelGraph> model_;
};

TEST_F(ProfilerTest, TimesEverySegmentBetweenCandidateCutsAtEachBatchSize) {
  ProfileOptions options;
  options.runs = 5;
  options.warmup = 1;
  options.batch_sizes = {1, 3};
  int64_t progress = 0;
  options.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 2 * (5 + 1));
    progress = done;
  };
  auto profile = ProfileModel(*model_, options);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(progress, 12);
  const auto cuts = model_->Cuts(Granularity::kModule);
  ASSERT_EQ(profile->cuts.size(), cuts.size());  // the input and every module-level cut
  ASSERT_EQ(profile->segments.size(), profile->cuts.size());
  int64_t macs = 0;
  for (size_t i = 0; i < profile->segments.size(); ++i) {
    const SegmentProfile& segment = profile->segments[i];
    EXPECT_EQ(segment.begin_cut, profile->cuts[i].id);
    ASSERT_EQ(segment.by_batch.size(), 2u);
    for (const auto& [batch, stats] : segment.by_batch) {
      EXPECT_EQ(stats.runs, 5);
      EXPECT_GT(stats.median_ms, 0.0);
      EXPECT_LE(stats.p10_ms, stats.median_ms);
      EXPECT_LE(stats.median_ms, stats.p90_ms);
    }
    macs += segment.macs;
  }
  EXPECT_EQ(macs, model_->total_macs());
  EXPECT_FALSE(profile->segments.back().end_cut.has_value());
  EXPECT_EQ(profile->output_bytes, (std::vector<int64_t>{40}));  // [1, 10] float32
  EXPECT_TRUE(profile->MedianMs(1, 0).ok());
  EXPECT_EQ(profile->MedianMs(8, 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProfilerTest, ProfileJsonRoundTripsAndBadFilesAreRefusedByName) {
  ProfileOptions options;
  options.runs = 2;
  options.warmup = 0;
  options.batch_sizes = {1};
  auto profile = ProfileModel(*model_, options);
  ASSERT_TRUE(profile.ok()) << profile.status();
  const std::string json = profile->ToJson();
  auto parsed = ModelProfile::FromJson(json, "p.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToJson(), json);

  EXPECT_THAT(std::string(ModelProfile::FromJson("not json", "p.json").status().message()),
              HasSubstr("p.json is not a valid cleave profile"));
  EXPECT_THAT(std::string(ModelProfile::FromJson("{\"cuts\": []}", "p.json").status().message()),
              HasSubstr("p.json is not a cleave profile"));
  // A segment list that does not chain through the cuts.
  nlohmann::json broken = nlohmann::json::parse(json);
  broken["segments"].erase(1);
  EXPECT_THAT(std::string(ModelProfile::FromJson(broken.dump(), "p.json").status().message()),
              HasSubstr("segments for"));
}

TEST_F(ProfilerTest, RejectsNoRunsAndModelsWithoutACut) {
  ProfileOptions options;
  options.runs = 0;
  EXPECT_EQ(ProfileModel(*model_, options).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string single = test::SaveModel(test::SingleOpModel(), dir_.File("one.pt"));
  auto model = ModelGraph::Load(single, {{1, 3, 8, 8}});
  ASSERT_TRUE(model.ok());
  auto profile = ProfileModel(**model, ProfileOptions{});
  EXPECT_THAT(std::string(profile.status().message()), HasSubstr("no cut inside"));
}

// Three candidate cuts (input, a, b) and three segments: a cheap stem with a large output, a
// pool, an expensive tail. The device is 10x slower than the edge.
ModelProfile SyntheticProfile(std::vector<double> segment_ms) {
  ModelProfile profile;
  profile.model_file = "m.pt";
  profile.model_sha256 = "abc";
  const std::vector<std::string> names = {"input", "stem", "pool"};
  for (int i = 0; i < 3; ++i) {
    common::CutInfo cut;
    cut.id = i * 4;
    cut.name = names[i];
    profile.cuts.push_back(cut);
    SegmentProfile segment;
    segment.begin_cut = cut.id;
    if (i < 2) segment.end_cut = (i + 1) * 4;
    segment.macs = 1000;
    segment.by_batch[1].median_ms = segment_ms[i];
    profile.segments.push_back(segment);
  }
  profile.output_bytes = {40};
  return profile;
}

std::vector<CutTransfer> Transfers() {
  // The input goes as 12 kB encoded, 48 kB raw (the all-on-edge baseline).
  return {{0, 12000, 0, 0, 48000}, {4, 128000, 0.1, 0.1, 512000}, {8, 8000, 0.05, 0.05, 32000}};
}

PlanOptions Links(std::vector<double> mbits) {
  PlanOptions options;
  for (double rate : mbits) options.links.push_back({rate * 1e6, 2.0});
  return options;
}

TEST(SplitPlannerTest, CostsAddUpAndTheChosenCutFollowsTheLink) {
  const ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  const ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  auto plan = PlanSplit(device, edge, Transfers(), Links({800, 8, 0.8}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->links.size(), 3u);
  // 8 Mbit/s, offloading at "pool": device 3 + encode 0.05 + (8000 + 104) bytes at 1 byte/us
  // + rtt 2 + decode 0.05 + edge 2.
  const LinkPlan& middle = plan->links[1];
  const auto pool = std::find_if(middle.ranked.begin(), middle.ranked.end(),
                                 [](const CutCost& c) { return c.cut_id == 8; });
  ASSERT_NE(pool, middle.ranked.end());
  EXPECT_NEAR(pool->total_ms, 3.0 + 0.05 + 8.104 + 2.0 + 0.05 + 2.0, 1e-9);
  EXPECT_EQ(middle.chosen.cut_id, 8);
  EXPECT_NEAR(middle.all_device_ms, 23.0, 1e-9);
  EXPECT_NEAR(middle.all_edge_ms, 0.2 + 0.1 + 2.0 + 2.0 + 48.104, 1e-9);  // raw input
  // Fast link: everything on the edge. Slow link: everything on the device.
  EXPECT_EQ(plan->links[0].chosen.cut_id, 0);
  EXPECT_FALSE(plan->links[2].chosen.cut_id.has_value());
  // Ranked fastest first.
  for (size_t i = 1; i < middle.ranked.size(); ++i) {
    EXPECT_LE(middle.ranked[i - 1].expected_ms, middle.ranked[i].expected_ms);
  }
  // The bundle carries the interior cut some link chose.
  EXPECT_EQ(plan->bundle_cuts, (std::vector<int>{8}));
  EXPECT_TRUE(plan->note.empty());
}

TEST(SplitPlannerTest, WhenNoLinkChoosesAnInteriorCutTheBundleStillGetsOne) {
  const ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  const ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  auto plan = PlanSplit(device, edge, Transfers(), Links({800}));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->links[0].chosen.cut_id, 0);
  ASSERT_EQ(plan->bundle_cuts.size(), 1u);
  EXPECT_THAT(plan->note, HasSubstr("every link keeps the whole model on one side"));
}

TEST(SplitPlannerTest, DeadlineAndDeviceScaleChangeTheChoice) {
  const ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  const ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  PlanOptions options = Links({0.8});
  auto slow = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(slow.ok());
  EXPECT_FALSE(slow->links[0].chosen.cut_id.has_value());  // 23 ms locally beats the link
  options.device_scale = 10;                               // now 230 ms locally
  auto scaled = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(scaled.ok());
  // Offloading the 8 kB pooled activation (115 ms) now beats the 12 kB input (125 ms).
  EXPECT_EQ(scaled->links[0].chosen.cut_id, 8);
  options.deadline_ms = 50;  // nothing fits: the fastest is chosen and marked
  auto tight = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(tight.ok());
  EXPECT_FALSE(tight->links[0].chosen.feasible);
  EXPECT_EQ(tight->links[0].chosen.cut_id, 8);
  options.deadline_ms = 120;  // only the pooled cut fits
  auto fits = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(fits.ok());
  EXPECT_TRUE(fits->links[0].chosen.feasible);
  EXPECT_EQ(fits->links[0].chosen.cut_id, 8);
  EXPECT_FALSE(fits->links[0].ranked.back().feasible);
}

TEST(SplitPlannerTest, ExitsMakeEarlierWorkCheaperInExpectation) {
  const ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  const ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  PlanOptions options = Links({8});
  options.exits = {{4, 0.6, 0}};  // 60% leave after the stem
  auto plan = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const auto& ranked = plan->links[0].ranked;
  const auto pool =
      std::find_if(ranked.begin(), ranked.end(), [](const CutCost& c) { return c.cut_id == 8; });
  ASSERT_NE(pool, ranked.end());
  // 60% pay 2 ms; 40% pay the full offload cost.
  EXPECT_NEAR(pool->expected_ms, 0.6 * 2.0 + 0.4 * pool->total_ms, 1e-9);
  EXPECT_NEAR(pool->offload_share, 0.4, 1e-12);
  options.exits = {{5, 0.6, 0}};
  EXPECT_THAT(std::string(PlanSplit(device, edge, Transfers(), options).status().message()),
              HasSubstr("exit at cut 5 is not one of the profiled candidate cuts"));
}

TEST(SplitPlannerTest, AllowedCutsRestrictTheChoice) {
  const ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  const ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  PlanOptions options = Links({8});
  options.allowed_cuts = {4};  // "pool" (cut 8), the best at 8 Mbit/s, is not allowed
  auto plan = PlanSplit(device, edge, Transfers(), options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->links[0].chosen.cut_id, 0);  // the input is always allowed
  for (const CutCost& cost : plan->links[0].ranked) EXPECT_NE(cost.cut_id, 8);
  options.allowed_cuts = {7};
  EXPECT_THAT(std::string(PlanSplit(device, edge, Transfers(), options).status().message()),
              HasSubstr("cut 7 is not one of the profiled candidate cuts"));
}

TEST(SplitPlannerTest, ProfilesOfDifferentModelsAreRefused) {
  ModelProfile device = SyntheticProfile({2.0, 1.0, 20.0});
  ModelProfile edge = SyntheticProfile({0.2, 0.1, 2.0});
  edge.model_sha256 = "def";
  EXPECT_THAT(std::string(PlanSplit(device, edge, Transfers(), Links({8})).status().message()),
              HasSubstr("profile the same model on both"));
}

TEST(SplitPlannerTest, PlanJsonRoundTrips) {
  auto plan = PlanSplit(SyntheticProfile({2.0, 1.0, 20.0}), SyntheticProfile({0.2, 0.1, 2.0}),
                        Transfers(), Links({800, 8}));
  ASSERT_TRUE(plan.ok());
  plan->calibrated = true;
  const std::string json = plan->ToJson();
  EXPECT_THAT(json, HasSubstr("\"calibrated\": true"));
  auto parsed = SplitPlan::FromJson(json, "plan.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->calibrated);
  EXPECT_EQ(parsed->ToJson(), json);
  EXPECT_THAT(std::string(SplitPlan::FromJson("[]", "plan.json").status().message()),
              HasSubstr("plan.json is not a cleave plan"));
}

TEST_F(ProfilerTest, MeasuredTransfersShrinkWithTheCodec) {
  ProfileOptions options;
  options.runs = 1;
  options.warmup = 0;
  options.batch_sizes = {1};
  auto profile = ProfileModel(*model_, options);
  ASSERT_TRUE(profile.ok());
  const auto samples = SampleBatch(*model_, 4);
  auto raw =
      MeasureCutTransfers(*model_, *profile, samples, [](int) { return common::CodecSpec{}; });
  auto int8 = MeasureCutTransfers(*model_, *profile, samples, [](int) {
    return common::CodecSpec{common::Codec::kInt8, 0, {}};
  });
  ASSERT_TRUE(raw.ok() && int8.ok()) << raw.status() << int8.status();
  ASSERT_EQ(raw->size(), profile->cuts.size());
  for (size_t i = 0; i < raw->size(); ++i) {  // the input (cut 0) is encoded too
    EXPECT_EQ((*int8)[i].raw_frame_bytes, (*raw)[i].frame_bytes) << "cut " << (*raw)[i].cut_id;
    if ((*raw)[i].frame_bytes < 1000) continue;  // the header dominates tiny tensors
    EXPECT_LT((*int8)[i].frame_bytes, (*raw)[i].frame_bytes / 3) << "cut " << (*raw)[i].cut_id;
  }
}

}  // namespace
}  // namespace cleave::partitioner

// The model repository on its own, without a server: what it loads from a folder tree, what
// Rescan changes, what it refuses, and the metrics each bundle is served with.
#include "cleave/edge_server/bundle_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cleave/common/metrics.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::HasSubstr;

class BundleRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    residual_id_ = test::WriteTestBundle(test::ResidualModel(), dir_.path(), "bundles/residual/1",
                                         {"stem", "block1"});
    ASSERT_FALSE(residual_id_.empty());
    auto metrics = EdgeMetrics::Create(&metrics_registry_);
    ASSERT_TRUE(metrics.ok());
    metrics_ = *std::move(metrics);
  }

  std::unique_ptr<BundleRegistry> Load(const EdgeMetrics* metrics = nullptr) {
    auto registry = BundleRegistry::LoadFrom(dir_.File("bundles"), {}, metrics);
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }

  test::TempDir dir_;
  std::string residual_id_;
  common::MetricsRegistry metrics_registry_;
  std::unique_ptr<EdgeMetrics> metrics_;
};

TEST_F(BundleRegistryTest, MissingRootIsNotFound) {
  auto registry = BundleRegistry::LoadFrom(dir_.File("nowhere"));
  EXPECT_TRUE(absl::IsNotFound(registry.status())) << registry.status();
  EXPECT_THAT(std::string(registry.status().message()), HasSubstr(dir_.File("nowhere")));
}

TEST_F(BundleRegistryTest, LoadsEveryBundleBelowTheRootListedById) {
  const std::string concat_id =
      test::WriteTestBundle(test::ConcatModel(), dir_.path(), "bundles/concat/7", {"stem"});
  auto registry = Load();
  ASSERT_NE(registry, nullptr);
  const auto list = registry->List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_LT(list[0]->id(), list[1]->id());
  EXPECT_EQ(registry->Find(residual_id_).bundle->manifest().name, "residual");
  EXPECT_EQ(registry->Find(concat_id).bundle->manifest().name, "concat");
  EXPECT_EQ(registry->Find("feedface").bundle, nullptr);
  EXPECT_EQ(registry->Find(residual_id_).metrics, nullptr);  // no metrics given
}

TEST_F(BundleRegistryTest, EachBundleIsServedWithItsMetricChildren) {
  auto registry = Load(metrics_.get());
  ASSERT_NE(registry, nullptr);
  const ServedBundle served = registry->Find(residual_id_);
  ASSERT_NE(served.metrics, nullptr);
  const int cut = served.bundle->manifest().cuts.at(0).id;
  served.metrics->RecordRequest(cut, absl::StatusCode::kOk, 0.001);
  served.metrics->RecordRequest(99, absl::StatusCode::kInvalidArgument, 0.001);
  const std::string text = metrics_registry_.RenderPrometheusText();
  EXPECT_THAT(text, HasSubstr("cleave_edge_requests_total{model=\"residual\",cut=\"" +
                              std::to_string(cut) + "\",status=\"OK\"} 1"));
  EXPECT_THAT(text, HasSubstr("{model=\"residual\",cut=\"other\",status=\"INVALID_ARGUMENT\"} 1"));
  // Created at load: the bundle's series read 0 before its first forward.
  EXPECT_THAT(text, HasSubstr("cleave_edge_queue_seconds_count{model=\"residual\"} 0"));
}

TEST_F(BundleRegistryTest, RescanKeepsWhatDidNotChangeAndReplacesWhatDid) {
  auto registry = Load();
  ASSERT_NE(registry, nullptr);
  const std::shared_ptr<const common::Bundle> before = registry->Find(residual_id_).bundle;
  BundleRegistry::Changes unchanged = registry->Rescan();
  EXPECT_FALSE(unchanged.any());
  EXPECT_EQ(unchanged.refused, 0);
  EXPECT_EQ(registry->Find(residual_id_).bundle, before);  // not reloaded

  // The same folder re-split elsewhere: a new id replaces the old; a holder keeps the old.
  test::TempDir staging;
  const std::string new_id =
      test::WriteTestBundle(test::ResidualModel(), staging.path(), "b", {"block1"});
  std::filesystem::remove_all(dir_.File("bundles/residual/1"));
  std::filesystem::copy(staging.File("b"), dir_.File("bundles/residual/1"),
                        std::filesystem::copy_options::recursive);
  const BundleRegistry::Changes changes = registry->Rescan();
  EXPECT_EQ(changes.added, 1);
  EXPECT_EQ(changes.removed, 1);
  EXPECT_EQ(registry->Find(residual_id_).bundle, nullptr);
  EXPECT_NE(registry->Find(new_id).bundle, nullptr);
  EXPECT_EQ(before->id(), residual_id_);

  std::filesystem::remove_all(dir_.File("bundles/residual"));
  EXPECT_EQ(registry->Rescan().removed, 1);
  EXPECT_TRUE(registry->List().empty());
}

TEST_F(BundleRegistryTest, ABrokenBundleIsRefusedOnEveryScanAndTheOldOneKeepsServing) {
  auto registry = Load();
  ASSERT_NE(registry, nullptr);
  test::TempDir staging;
  test::WriteTestBundle(test::ResidualModel(), staging.path(), "b", {"block1"});
  std::ofstream(staging.File("b/segment_1.pt"), std::ios::app) << "corrupt";
  std::filesystem::copy(
      staging.File("b"), dir_.File("bundles/residual/1"),
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
  for (int scan = 0; scan < 2; ++scan) {
    const BundleRegistry::Changes changes = registry->Rescan();
    EXPECT_EQ(changes.refused, 1);
    EXPECT_FALSE(changes.any());
    EXPECT_NE(registry->Find(residual_id_).bundle, nullptr);
  }
  // A broken bundle in a new folder is refused and nothing else changes.
  std::filesystem::create_directories(dir_.File("bundles/other/1"));
  std::filesystem::copy(staging.File("b"), dir_.File("bundles/other/1"),
                        std::filesystem::copy_options::recursive);
  EXPECT_EQ(registry->Rescan().refused, 2);
  EXPECT_EQ(registry->List().size(), 1u);
}

}  // namespace
}  // namespace cleave::edge_server

#include "cleave/common/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cleave::common {
namespace {

using ::testing::HasSubstr;

const std::string kHash(64, 'a');

BundleManifest TwoSegmentManifest() {
  BundleManifest manifest;
  manifest.name = "net";
  manifest.source = {"net.pt", kHash};
  manifest.inputs = {{{1, 3, 8, 8}, c10::ScalarType::Float}};
  manifest.cuts = {{4, "block1", {{1, 8, 8, 8}, c10::ScalarType::Float}, 2048}};
  SegmentInfo first;
  first.module = {"segment_0.pt", kHash};
  first.begin_cut = 0;
  first.end_cut = 4;
  first.inputs = manifest.inputs;
  first.outputs = {manifest.cuts[0].tensor};
  SegmentInfo second;
  second.module = {"segment_1.pt", kHash};
  second.begin_cut = 4;
  second.inputs = {manifest.cuts[0].tensor};
  second.outputs = {{{1, 10}, c10::ScalarType::Float}};
  manifest.segments = {first, second};
  manifest.verification.inputs = {{"verify/input_0.frame", kHash}};
  manifest.verification.outputs = {{"verify/output_0.frame", kHash}};
  return manifest;
}

TEST(ManifestTest, JsonRoundTripIsCanonical) {
  const BundleManifest manifest = TwoSegmentManifest();
  const std::string json = manifest.ToJson();
  auto parsed = BundleManifest::FromJson(json, "manifest.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToJson(), json);
  EXPECT_EQ(parsed->segments[1].begin_cut, 4);
  EXPECT_FALSE(parsed->segments[1].end_cut.has_value());
  EXPECT_EQ(parsed->cuts[0].name, "block1");
  EXPECT_EQ(BundleIdOf(json), BundleIdOf(parsed->ToJson()));
  EXPECT_EQ(BundleIdOf(json).size(), 64u);
}

TEST(ManifestTest, DescribesResumableCuts) {
  EXPECT_EQ(TwoSegmentManifest().DescribeResumableCuts(), "0, 4");
  EXPECT_NE(TwoSegmentManifest().FindCut(4), nullptr);
  EXPECT_EQ(TwoSegmentManifest().FindCut(5), nullptr);
}

TEST(ManifestTest, RejectsPathsLeavingTheBundle) {
  BundleManifest manifest = TwoSegmentManifest();
  manifest.segments[0].module.file = "../../etc/passwd";
  EXPECT_THAT(std::string(manifest.Validate().message()), HasSubstr("must not leave"));
  manifest.segments[0].module.file = "/etc/passwd";
  EXPECT_THAT(std::string(manifest.Validate().message()), HasSubstr("relative path"));
}

TEST(ManifestTest, RejectsBrokenSegmentChain) {
  BundleManifest manifest = TwoSegmentManifest();
  manifest.segments[1].begin_cut = 3;
  EXPECT_THAT(std::string(manifest.Validate().message()), HasSubstr("segment 1 runs from cut 3"));
}

TEST(ManifestTest, RejectsMalformedHash) {
  BundleManifest manifest = TwoSegmentManifest();
  manifest.segments[1].module.sha256 = "xyz";
  EXPECT_THAT(std::string(manifest.Validate().message()), HasSubstr("malformed sha256"));
}

TEST(ManifestTest, RejectsJsonThatIsNotAManifest) {
  for (const char* text : {"not json", "{}", R"({"format": "cleave.bundle"})",
                           R"({"format": "cleave.bundle", "format_version": 99})"}) {
    auto parsed = BundleManifest::FromJson(text, "m.json");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("m.json"));
  }
}

TEST(ManifestTest, RejectsWrongTypesWithAMessage) {
  std::string json = TwoSegmentManifest().ToJson();
  json.replace(json.find("\"bytes\": 2048"), 13, "\"bytes\": \"many\"");
  auto parsed = BundleManifest::FromJson(json, "m.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("malformed manifest"));
}

}  // namespace
}  // namespace cleave::common

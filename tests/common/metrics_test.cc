#include "cleave/common/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.h"

namespace cleave::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Registers a family and returns it, failing the test on error.
template <typename Family>
Family* Must(absl::StatusOr<Family*> family) {
  EXPECT_TRUE(family.ok()) << family.status();
  return family.ok() ? *family : nullptr;
}

TEST(MetricsTest, RendersCountersWithLabelsInExpositionFormat) {
  MetricsRegistry registry;
  CounterFamily* requests = Must(registry.AddCounter(
      "cleave_requests_total", "Requests answered by the edge.", {"model", "cut", "status"}));
  Must(requests->WithLabels({"fashion", "5", "OK"}))->Increment();
  Must(requests->WithLabels({"fashion", "5", "OK"}))->Increment();
  Must(requests->WithLabels({"fashion", "12", "DEADLINE_EXCEEDED"}))->Add(3);
  CounterFamily* bytes =
      Must(registry.AddCounter("cleave_received_bytes_total", "Activation bytes received."));
  Must(bytes->WithLabels({}))->Add(1.5e6);

  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_received_bytes_total Activation bytes received.\n"
            "# TYPE cleave_received_bytes_total counter\n"
            "cleave_received_bytes_total 1500000\n"
            "# HELP cleave_requests_total Requests answered by the edge.\n"
            "# TYPE cleave_requests_total counter\n"
            "cleave_requests_total{model=\"fashion\",cut=\"12\",status=\"DEADLINE_EXCEEDED\"} 3\n"
            "cleave_requests_total{model=\"fashion\",cut=\"5\",status=\"OK\"} 2\n");
}

TEST(MetricsTest, RendersGaugesAndUnlabelledFamiliesFromZero) {
  MetricsRegistry registry;
  GaugeFamily* queued = Must(registry.AddGauge("cleave_queue_depth", "Requests waiting."));
  GaugeFamily* loaded =
      Must(registry.AddGauge("cleave_bundles_loaded", "Bundles being served.", {"model"}));
  // A labelled family renders nothing until it has a child.
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_queue_depth Requests waiting.\n"
            "# TYPE cleave_queue_depth gauge\n"
            "cleave_queue_depth 0\n");

  Gauge* depth = Must(queued->WithLabels({}));
  depth->Set(7);
  depth->Decrement();
  depth->Add(-0.5);
  Must(loaded->WithLabels({"fashion"}))->Increment();
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_bundles_loaded Bundles being served.\n"
            "# TYPE cleave_bundles_loaded gauge\n"
            "cleave_bundles_loaded{model=\"fashion\"} 1\n"
            "# HELP cleave_queue_depth Requests waiting.\n"
            "# TYPE cleave_queue_depth gauge\n"
            "cleave_queue_depth 5.5\n");
}

TEST(MetricsTest, RendersHistogramBucketsCumulativelyWithSumAndCount) {
  MetricsRegistry registry;
  HistogramFamily* latency = Must(registry.AddHistogram(
      "cleave_request_duration_seconds", "Time to answer a request.", {0.125, 0.5, 1}, {"model"}));
  Histogram* fashion = Must(latency->WithLabels({"fashion"}));
  // 0.125 sits exactly on a bound: buckets are "less than or equal".
  for (double seconds : {0.0625, 0.125, 0.25, 2.0}) fashion->Observe(seconds);
  Must(latency->WithLabels({"digits"}))->Observe(0.75);

  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_request_duration_seconds Time to answer a request.\n"
            "# TYPE cleave_request_duration_seconds histogram\n"
            "cleave_request_duration_seconds_count{model=\"digits\"} 1\n"
            "cleave_request_duration_seconds_sum{model=\"digits\"} 0.75\n"
            "cleave_request_duration_seconds_bucket{model=\"digits\",le=\"0.125\"} 0\n"
            "cleave_request_duration_seconds_bucket{model=\"digits\",le=\"0.5\"} 0\n"
            "cleave_request_duration_seconds_bucket{model=\"digits\",le=\"1\"} 1\n"
            "cleave_request_duration_seconds_bucket{model=\"digits\",le=\"+Inf\"} 1\n"
            "cleave_request_duration_seconds_count{model=\"fashion\"} 4\n"
            "cleave_request_duration_seconds_sum{model=\"fashion\"} 2.4375\n"
            "cleave_request_duration_seconds_bucket{model=\"fashion\",le=\"0.125\"} 2\n"
            "cleave_request_duration_seconds_bucket{model=\"fashion\",le=\"0.5\"} 3\n"
            "cleave_request_duration_seconds_bucket{model=\"fashion\",le=\"1\"} 3\n"
            "cleave_request_duration_seconds_bucket{model=\"fashion\",le=\"+Inf\"} 4\n");

  const HistogramSnapshot snapshot = fashion->Snapshot();
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(2u, 3u, 3u, 4u));
  EXPECT_EQ(snapshot.count, 4u);
  EXPECT_EQ(snapshot.sum, 2.4375);
}

TEST(MetricsTest, UnlabelledHistogramHasOnlyTheLeLabel) {
  MetricsRegistry registry;
  HistogramFamily* sizes =
      Must(registry.AddHistogram("cleave_frame_size_bytes", "Encoded frame sizes.", {1024}));
  Must(sizes->WithLabels({}))->Observe(4096);
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_frame_size_bytes Encoded frame sizes.\n"
            "# TYPE cleave_frame_size_bytes histogram\n"
            "cleave_frame_size_bytes_count 1\n"
            "cleave_frame_size_bytes_sum 4096\n"
            "cleave_frame_size_bytes_bucket{le=\"1024\"} 0\n"
            "cleave_frame_size_bytes_bucket{le=\"+Inf\"} 1\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelpText) {
  MetricsRegistry registry;
  CounterFamily* errors = Must(registry.AddCounter(
      "cleave_errors_total", "Errors by \"kind\", see C:\\docs\nand more.", {"message"}));
  Must(errors->WithLabels({"bad \"frame\" at C:\\tmp\nline 2"}))->Increment();
  EXPECT_EQ(registry.RenderPrometheusText(),
            "# HELP cleave_errors_total Errors by \"kind\", see C:\\\\docs\\nand more.\n"
            "# TYPE cleave_errors_total counter\n"
            "cleave_errors_total{message=\"bad \\\"frame\\\" at C:\\\\tmp\\nline 2\"} 1\n");
}

TEST(MetricsTest, FormatsValuesLikePrometheusClients) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(42), "42");
  EXPECT_EQ(FormatMetricValue(100000), "100000");
  EXPECT_EQ(FormatMetricValue(1234567), "1.234567e+06");
  EXPECT_EQ(FormatMetricValue(0.0001), "0.0001");
  EXPECT_EQ(FormatMetricValue(0.00001), "1e-05");
  EXPECT_EQ(FormatMetricValue(-2.5), "-2.5");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
}

TEST(MetricsTest, CountersNeverDecrease) {
  MetricsRegistry registry;
  Counter* counter = Must(Must(registry.AddCounter("a_total", "A."))->WithLabels({}));
  counter->Add(-1);
  counter->Add(std::nan(""));
  EXPECT_EQ(counter->value(), 0);
  counter->Add(0.25);
  counter->Add(2);
  counter->Increment();
  EXPECT_EQ(counter->value(), 3.25);
}

TEST(MetricsTest, HistogramIgnoresNaNAndCountsInfinityInTheLastBucket) {
  MetricsRegistry registry;
  Histogram* histogram =
      Must(Must(registry.AddHistogram("a_seconds", "A.", {1.0}))->WithLabels({}));
  histogram->Observe(std::nan(""));
  histogram->Observe(-std::numeric_limits<double>::infinity());
  histogram->Observe(std::numeric_limits<double>::infinity());
  const HistogramSnapshot snapshot = histogram->Snapshot();
  EXPECT_THAT(snapshot.upper_bounds, ElementsAre(1.0));
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(1u, 2u));
  EXPECT_EQ(snapshot.count, 2u);
}

TEST(MetricsTest, ConcurrentUpdatesGiveExactTotals) {
  MetricsRegistry registry;
  CounterFamily* requests =
      Must(registry.AddCounter("cleave_requests_total", "Requests.", {"status"}));
  GaugeFamily* in_flight = Must(registry.AddGauge("cleave_in_flight", "In flight."));
  HistogramFamily* latency =
      Must(registry.AddHistogram("cleave_latency_seconds", "Latency.", {0.5, 1}));
  constexpr uint64_t kThreads = 4;
  constexpr uint64_t kIterations = 50000;
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread looks the children up itself: every lookup must find the same child.
      Counter* ok = Must(requests->WithLabels({"OK"}));
      Counter* thread_own = Must(requests->WithLabels({"thread" + std::to_string(t)}));
      Gauge* gauge = Must(in_flight->WithLabels({}));
      Histogram* histogram = Must(latency->WithLabels({}));
      for (uint64_t i = 0; i < kIterations; ++i) {
        ok->Increment();
        ok->Add(0.5);
        thread_own->Increment();
        gauge->Increment();
        histogram->Observe(i % 2 == 0 ? 0.25 : 0.75);
        gauge->Decrement();
        if (i % 10000 == 0) {
          EXPECT_FALSE(registry.RenderPrometheusText().empty());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(Must(requests->WithLabels({"OK"}))->value(), kThreads * kIterations * 1.5);
  for (uint64_t t = 0; t < kThreads; ++t) {
    EXPECT_EQ(Must(requests->WithLabels({"thread" + std::to_string(t)}))->value(), kIterations);
  }
  EXPECT_EQ(Must(in_flight->WithLabels({}))->value(), 0);
  const HistogramSnapshot snapshot = Must(latency->WithLabels({}))->Snapshot();
  EXPECT_THAT(
      snapshot.cumulative_counts,
      ElementsAre(kThreads * kIterations / 2, kThreads * kIterations, kThreads * kIterations));
  EXPECT_EQ(snapshot.sum, kThreads * kIterations * 0.5);
  // One series per distinct label values, whichever thread asked first.
  const std::string text = registry.RenderPrometheusText();
  size_t series = 0;
  for (size_t at = text.find("\ncleave_requests_total{"); at != std::string::npos;
       at = text.find("\ncleave_requests_total{", at + 1)) {
    ++series;
  }
  EXPECT_EQ(series, 1u + kThreads);
}

TEST(MetricsTest, LookupReturnsTheSameChildAndChecksLabelValues) {
  MetricsRegistry registry;
  CounterFamily* requests =
      Must(registry.AddCounter("cleave_requests_total", "Requests.", {"model", "status"}));
  EXPECT_EQ(Must(requests->WithLabels({"a", "OK"})), Must(requests->WithLabels({"a", "OK"})));
  EXPECT_NE(Must(requests->WithLabels({"a", "OK"})), Must(requests->WithLabels({"b", "OK"})));

  auto too_few = requests->WithLabels({"a"});
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_few.status().message(), HasSubstr("takes 2 label values, got 1"));
  auto not_utf8 = requests->WithLabels({"caf\xe9", "OK"});
  EXPECT_EQ(not_utf8.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_utf8.status().message(), HasSubstr("label \"model\""));
  EXPECT_TRUE(requests->WithLabels({"caf\xc3\xa9", "\xf0\x9f\xa4\x96"}).ok());  // é, robot emoji
  EXPECT_FALSE(requests->WithLabels({"\xed\xa0\x80", "OK"}).ok());              // a surrogate
  EXPECT_FALSE(requests->WithLabels({"\xc0\xaf", "OK"}).ok());                  // overlong '/'
}

TEST(MetricsTest, RejectsDefinitionsThatPrometheusWouldNot) {
  MetricsRegistry registry;
  struct Case {
    absl::Status status;
    const char* expected_message;
  };
  const Case cases[] = {
      {registry.AddCounter("requests", "x").status(), "must end in \"_total\""},
      {registry.AddGauge("depth_total", "x").status(), "must not end in \"_total\""},
      {registry.AddGauge("latency_count", "x").status(), "reserved for histograms"},
      {registry.AddCounter("requestsTotal_total", "x").status(), "lowercase snake_case"},
      {registry.AddCounter("cleave:requests_total", "x").status(), "lowercase snake_case"},
      {registry.AddCounter("9lives_total", "x").status(), "lowercase snake_case"},
      {registry.AddCounter("a_total", "").status(), "help text"},
      {registry.AddCounter("a_total", "x", {"Model"}).status(), "label name \"Model\""},
      {registry.AddCounter("a_total", "x", {"__name"}).status(), "reserved"},
      {registry.AddCounter("a_total", "x", {"le"}).status(), "reserved"},
      {registry.AddHistogram("a_seconds", "x", {1}, {"le"}).status(), "reserved"},
      {registry.AddCounter("a_total", "x", {"model", "model"}).status(), "repeated"},
      {registry.AddHistogram("a_seconds", "x", {}).status(), "at least one bucket"},
      {registry.AddHistogram("a_seconds", "x", {1, 1}).status(), "strictly increasing"},
      {registry.AddHistogram("a_seconds", "x", {1, std::numeric_limits<double>::infinity()})
           .status(),
       "must be finite"},
      {registry.AddHistogram("a_seconds", "x", {std::nan("")}).status(), "must be finite"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_THAT(c.status.message(), HasSubstr(c.expected_message));
  }
  EXPECT_EQ(registry.RenderPrometheusText(), "");
}

TEST(MetricsTest, RejectsNamesThatClashInTheExposition) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddCounter("cleave_requests_total", "Requests.").ok());
  EXPECT_EQ(registry.AddCounter("cleave_requests_total", "Again.").status().code(),
            absl::StatusCode::kAlreadyExists);
  // A histogram renders its name plus _bucket, _sum and _count: each is taken.
  ASSERT_TRUE(registry.AddHistogram("cleave_latency", "Latency.", {1}).ok());
  auto clash = registry.AddGauge("cleave_latency", "Latency too.");
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(clash.status().message(), HasSubstr("already used by metric \"cleave_latency\""));
  // This one's TYPE line would name cleave_latency_sum, a series of the first histogram.
  EXPECT_EQ(registry.AddHistogram("cleave_latency_sum", "x", {1}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(registry.AddHistogram("cleave_latency_seconds", "x", {1}).ok());
}

TEST(MetricsTest, RendersJsonWithTheSameSamples) {
  MetricsRegistry registry;
  CounterFamily* requests =
      Must(registry.AddCounter("cleave_requests_total", "Requests.", {"status"}));
  Must(requests->WithLabels({"OK"}))->Add(3);
  GaugeFamily* temperature = Must(registry.AddGauge("cleave_temperature_celsius", "Heat."));
  Must(temperature->WithLabels({}))->Set(std::numeric_limits<double>::infinity());
  HistogramFamily* latency =
      Must(registry.AddHistogram("cleave_latency_seconds", "Latency.", {0.5}, {"model"}));
  Histogram* fashion = Must(latency->WithLabels({"fashion"}));
  fashion->Observe(0.25);
  fashion->Observe(1);
  ASSERT_TRUE(registry.AddGauge("cleave_unused", "No children yet.", {"model"}).ok());

  EXPECT_EQ(registry.RenderJson(),
            R"({"metrics":[)"
            R"({"help":"Latency.","name":"cleave_latency_seconds","samples":[)"
            R"({"buckets":[{"count":1,"le":0.5},{"count":2,"le":"+Inf"}],"count":2,)"
            R"("labels":{"model":"fashion"},"sum":1.25}],"type":"histogram"},)"
            R"({"help":"Requests.","name":"cleave_requests_total","samples":[)"
            R"({"labels":{"status":"OK"},"value":3.0}],"type":"counter"},)"
            R"({"help":"Heat.","name":"cleave_temperature_celsius","samples":[)"
            R"({"labels":{},"value":"+Inf"}],"type":"gauge"}]})");
}

TEST(MetricsTest, BucketHelpersGiveReadableBounds) {
  EXPECT_THAT(ExponentialBuckets(0.001, 10, 4), ElementsAre(0.001, 0.01, 0.1, 1));
  EXPECT_THAT(LinearBuckets(0.1, 0.1, 3), ElementsAre(0.1, 0.2, 0.3));
  const std::vector<double> serving = ServingLatencyBuckets();
  ASSERT_EQ(serving.size(), 18u);
  EXPECT_EQ(serving.front(), 0.00005);
  EXPECT_EQ(serving.back(), 6.5536);
  EXPECT_THAT(BatchSizeBuckets(), ElementsAre(1, 2, 4, 8, 16, 32, 64, 128));
  EXPECT_THAT(LatencyBuckets(), ElementsAre(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10));
  MetricsRegistry registry;
  EXPECT_TRUE(registry.AddHistogram("a_seconds", "x", LatencyBuckets()).ok());
  // Invalid helper arguments give bounds that registration rejects.
  EXPECT_FALSE(registry.AddHistogram("b_seconds", "x", ExponentialBuckets(0, 2, 3)).ok());
  EXPECT_FALSE(registry.AddHistogram("c_seconds", "x", LinearBuckets(1, -1, 3)).ok());
}

// promtool (Debian package `prometheus`) is the reference parser and linter for the format.
class MetricsPromtoolTest : public ::testing::Test {
 protected:
  // A missing promtool fails the tests rather than skipping them: scripts/setup.sh installs it.
  void SetUp() override {
    ASSERT_EQ(test::RunCommand("command -v promtool").exit_code, 0)
        << "promtool not installed: scripts/setup.sh installs it (Debian package prometheus)";
  }

  // Runs `promtool check metrics` over `exposition`.
  test::CommandResult Check(const std::string& exposition) const {
    const std::string path = dir_.File("metrics.txt");
    std::ofstream(path, std::ios::binary) << exposition;
    return test::RunCommand("promtool check metrics < " + path);
  }

  test::TempDir dir_;
};

TEST_F(MetricsPromtoolTest, AcceptsTheRenderedExposition) {
  MetricsRegistry registry;
  CounterFamily* requests = Must(registry.AddCounter(
      "cleave_requests_total", "Requests \"answered\"\\nby the edge.", {"model", "status"}));
  Must(requests->WithLabels({"fashion", "OK"}))->Increment();
  Must(requests->WithLabels({"we\"ird\\\nname", "caf\xc3\xa9"}))->Add(2.5);
  GaugeFamily* depth = Must(registry.AddGauge("cleave_queue_depth", "Requests waiting."));
  Must(depth->WithLabels({}))->Set(-std::numeric_limits<double>::infinity());
  HistogramFamily* latency = Must(registry.AddHistogram(
      "cleave_request_duration_seconds", "Time to answer.", LatencyBuckets(), {"model"}));
  for (double seconds : {0.0002, 0.03, 7.0, 12.0}) {
    Must(latency->WithLabels({"fashion"}))->Observe(seconds);
  }
  HistogramFamily* sizes = Must(registry.AddHistogram("cleave_frame_size_bytes", "Frame sizes.",
                                                      ExponentialBuckets(256, 4, 6)));
  Must(sizes->WithLabels({}))->Observe(1e5);

  const test::CommandResult result = Check(registry.RenderPrometheusText());
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n" << registry.RenderPrometheusText();
}

TEST_F(MetricsPromtoolTest, RejectsABrokenExposition) {
  // Guards the test above: promtool must actually fail on a malformed label value.
  const test::CommandResult result =
      Check("# HELP a_total A.\n# TYPE a_total counter\na_total{model=\"x} 1\n");
  EXPECT_NE(result.exit_code, 0) << result.output;
}

}  // namespace
}  // namespace cleave::common

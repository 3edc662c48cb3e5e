// Metrics primitives shared by the edge server and the device runtime: counters, gauges and
// histograms with labels, kept in a MetricsRegistry that renders them in the Prometheus text
// exposition format 0.0.4 (for scrapes) and as JSON (for telemetry export). The values, the
// children and the exposition are prometheus-cpp's (Debian's prometheus-cpp-dev 1.0.1: its
// Registry, Family and TextSerializer); this layer adds what cleave promises on top: names
// and labels checked at registration so that every exposition passes `promtool check
// metrics`, a status instead of an exception, families and children in a stable order with
// labels in the order they were declared, and JSON.
//
//   MetricsRegistry registry;
//   CLEAVE_ASSIGN_OR_RETURN(CounterFamily* requests,
//                           registry.AddCounter("cleave_requests_total", "Requests answered.",
//                                               {"model", "status"}));
//   CLEAVE_ASSIGN_OR_RETURN(Counter* fashion_ok, requests->WithLabels({"fashion", "OK"}));
//   fashion_ok->Increment();  // hot path: no lookup; keep the child
//
// Thread-safety: every method of every class here is thread-safe. Updating a Counter or Gauge
// is an atomic compare-and-swap; a Histogram observation takes its own child's mutex
// (prometheus-cpp's); WithLabels takes its family's mutex; registration and rendering take
// the registry's.
#ifndef CLEAVE_COMMON_METRICS_H_
#define CLEAVE_COMMON_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cleave/common/mutex.h"

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
struct MetricFamily;
template <typename T>
class Family;
}  // namespace prometheus

namespace cleave::common {

template <typename Metric>
class MetricFamily;

// A value that only goes up, such as requests served or bytes received.
class Counter {
 public:
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds one.
  void Increment();
  // Adds `amount`. Negative and NaN amounts are ignored: a counter never decreases. The total
  // is a double: whole amounts stay exact up to 2^53.
  void Add(double amount);
  // Returns the current total.
  [[nodiscard]] double value() const;

 private:
  friend class MetricFamily<Counter>;
  explicit Counter(prometheus::Counter* metric) : metric_(metric) {}
  prometheus::Counter* const metric_;  // owned by its prometheus::Family
};

// A value that goes up and down, such as queue depth or bundles loaded.
class Gauge {
 public:
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  // Replaces the value.
  void Set(double value);
  // Adds `delta` (which may be negative).
  void Add(double delta);
  void Increment() { Add(1.0); }
  void Decrement() { Add(-1.0); }
  // Returns the current value.
  [[nodiscard]] double value() const;

 private:
  friend class MetricFamily<Gauge>;
  explicit Gauge(prometheus::Gauge* metric) : metric_(metric) {}
  prometheus::Gauge* const metric_;
};

// A consistent copy of a Histogram: `count` always equals the last cumulative count.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;         // finite bounds, ascending
  std::vector<uint64_t> cumulative_counts;  // one per bound, then one for +Inf
  double sum = 0.0;
  uint64_t count = 0;
};

// Counts observations (latencies, sizes) into buckets with fixed upper bounds, plus their sum.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records `value` in the first bucket whose bound is >= value. NaN is ignored.
  void Observe(double value);
  // Returns the cumulative bucket counts, sum and count.
  [[nodiscard]] HistogramSnapshot Snapshot() const;

 private:
  friend class MetricFamily<Histogram>;
  explicit Histogram(prometheus::Histogram* metric) : metric_(metric) {}
  prometheus::Histogram* const metric_;
};

// Orders label-value lists; transparent so that a lookup with a Span allocates nothing.
struct LabelValuesLess {
  using is_transparent = void;
  bool operator()(absl::Span<const std::string> a, absl::Span<const std::string> b) const;
};

// One named metric with fixed label names and one child Metric per distinct label values,
// e.g. family `cleave_requests_total` {model, status} with child {"fashion", "OK"}.
template <typename Metric>
class MetricFamily {
 public:
  using MetricType = Metric;

  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Returns the child for `label_values` (in the order of label_names()), created at zero on
  // first use. The pointer stays valid for the life of the registry; keep it to update the
  // metric without a lookup. Returns INVALID_ARGUMENT when the number of values differs from
  // the number of label names or a value is not valid UTF-8.
  [[nodiscard]] absl::StatusOr<Metric*> WithLabels(absl::Span<const std::string> label_values);

 private:
  friend class MetricsRegistry;

  // The prometheus-cpp metric type behind Metric.
  using Backend = std::conditional_t<
      std::is_same_v<Metric, Counter>, prometheus::Counter,
      std::conditional_t<std::is_same_v<Metric, Gauge>, prometheus::Gauge, prometheus::Histogram>>;

  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names,
               std::vector<double> upper_bounds, prometheus::Family<Backend>* backend);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> upper_bounds_;      // histograms only
  prometheus::Family<Backend>* const backend_;  // owned by the registry's prometheus::Registry
  mutable Mutex mutex_;
  // Our handle on each child, by label values in the order of label_names_.
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, LabelValuesLess> children_
      ABSL_GUARDED_BY(mutex_);
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;

// Owns metric families by name and renders them. Families are never removed.
class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Each Add* registers a family; a family without labels starts with its one child at zero.
  // Returns INVALID_ARGUMENT when the name is not lowercase snake_case ([a-z_][a-z0-9_]*), a
  // counter's name does not end in "_total" or another type's does, the help text is empty or
  // not UTF-8, a label name is invalid, reserved ("__" prefix; "le" for histograms) or
  // repeated, or histogram bounds are empty, not finite or not strictly increasing; and
  // ALREADY_EXISTS when a rendered series name (including a histogram's _bucket, _sum and
  // _count) is taken.
  [[nodiscard]] absl::StatusOr<CounterFamily*> AddCounter(
      const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
  [[nodiscard]] absl::StatusOr<GaugeFamily*> AddGauge(const std::string& name,
                                                      const std::string& help,
                                                      std::vector<std::string> label_names = {});
  [[nodiscard]] absl::StatusOr<HistogramFamily*> AddHistogram(
      const std::string& name, const std::string& help, std::vector<double> upper_bounds,
      std::vector<std::string> label_names = {});

  // Returns every family in the Prometheus text exposition format 0.0.4: families ordered by
  // name, children by label values, each family with its HELP and TYPE lines. Families with
  // labels but no children yet are left out.
  [[nodiscard]] std::string RenderPrometheusText() const;

  // The prometheus-cpp registry behind this one, for a prometheus::Exposer or another
  // serializer (its exposition has prometheus-cpp's own order and label order).
  [[nodiscard]] std::shared_ptr<prometheus::Collectable> collectable() const;

  // Returns the same families and samples as one JSON object:
  //   {"metrics": [{"name", "help", "type", "samples": [{"labels": {...}, "value"}]}]}
  // where a histogram sample holds "buckets" [{"le", "count"}] (cumulative), "sum" and
  // "count" instead of "value". NaN and infinities are the strings "NaN", "+Inf", "-Inf".
  [[nodiscard]] std::string RenderJson() const;

 private:
  using AnyFamily = std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
                                 std::unique_ptr<HistogramFamily>>;

  // Validates the definition, then creates and stores the family (what every Add* does).
  template <typename Metric>
  absl::StatusOr<MetricFamily<Metric>*> Add(const std::string& name, const std::string& help,
                                            std::vector<std::string> label_names,
                                            std::vector<double> upper_bounds);

  // The collected families in name order, each child's labels in declared order and the
  // children ordered by them, without families that have no children; `helps` (when not
  // null) receives each one's help text as registered.
  std::vector<prometheus::MetricFamily> Collect(std::vector<const std::string*>* helps) const;

  const std::shared_ptr<prometheus::Registry> backend_;
  mutable Mutex mutex_;
  std::map<std::string, AnyFamily> families_ ABSL_GUARDED_BY(mutex_);
  // Every series name rendered (a histogram renders three), mapped to its family's name.
  std::map<std::string, std::string> series_names_ ABSL_GUARDED_BY(mutex_);
};

// Bucket bounds start, start·factor, start·factor², … (`count` bounds), each rounded to 15
// significant digits so that `le` labels read "0.3", not "0.30000000000000004". Invalid
// arguments yield bounds that AddHistogram rejects.
[[nodiscard]] std::vector<double> ExponentialBuckets(double start, double factor, size_t count);

// Bucket bounds start, start + width, … (`count` bounds), rounded like ExponentialBuckets.
[[nodiscard]] std::vector<double> LinearBuckets(double start, double width, size_t count);

// The buckets every cleave latency histogram uses (device and edge alike, so their quantiles
// compare): 50 µs to 6.5 s, factor 2.
[[nodiscard]] std::vector<double> ServingLatencyBuckets();
// Batch sizes: 1, 2, 4, … 128.
[[nodiscard]] std::vector<double> BatchSizeBuckets();

// Latency bounds in seconds from 100 µs to 10 s in a 1-2.5-5 series: the range of a
// split-inference request from a local exit to a slow edge round trip.
[[nodiscard]] std::vector<double> LatencyBuckets();

// Formats a sample value as Prometheus clients do: shortest round-trip "%g"-style, and
// "NaN", "+Inf", "-Inf".
[[nodiscard]] std::string FormatMetricValue(double value);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_METRICS_H_

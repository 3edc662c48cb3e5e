#include "cleave/common/metrics.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "nlohmann/json.hpp"
#include "prometheus/client_metric.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace cleave::common {
namespace {

// Returns true when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF): the exposition format and JSON both require it.
bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto continuation = static_cast<unsigned char>(text[i + k]);
      if ((continuation & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (continuation & 0x3F);
    }
    constexpr std::array<uint32_t, 5> kSmallestForLength = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < kSmallestForLength[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

// Metric and label names: lowercase snake_case, a stricter form of Prometheus'
// [a-zA-Z_:][a-zA-Z0-9_:]* that also satisfies promtool's camelCase and colon lints.
bool IsSnakeCaseName(absl::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

enum class FamilyType { kCounter, kGauge, kHistogram };

const char* TypeName(FamilyType type) {
  switch (type) {
    case FamilyType::kCounter:
      return "counter";
    case FamilyType::kGauge:
      return "gauge";
    case FamilyType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

absl::Status ValidateDefinition(FamilyType type, const std::string& name, const std::string& help,
                                const std::vector<std::string>& label_names) {
  if (!IsSnakeCaseName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("metric name \"", name,
                                                   "\" is invalid: expected lowercase "
                                                   "snake_case ([a-z_][a-z0-9_]*)"));
  }
  const bool ends_in_total = absl::EndsWith(name, "_total");
  if (type == FamilyType::kCounter && !ends_in_total) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter name \"", name, "\" must end in \"_total\""));
  }
  if (type != FamilyType::kCounter && ends_in_total) {
    return absl::InvalidArgumentError(absl::StrCat(TypeName(type), " name \"", name,
                                                   "\" must not end in \"_total\" (counters "
                                                   "only)"));
  }
  if (type != FamilyType::kHistogram) {
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(name, suffix)) {
        return absl::InvalidArgumentError(absl::StrCat(TypeName(type), " name \"", name,
                                                       "\" must not end in \"", suffix,
                                                       "\" (reserved for histograms)"));
      }
    }
  }
  if (help.empty() || !IsValidUtf8(help)) {
    return absl::InvalidArgumentError(
        absl::StrCat("help text of metric \"", name, "\" must be non-empty UTF-8"));
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsSnakeCaseName(label)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name \"", label, "\" of metric \"", name,
                       "\" is invalid: expected lowercase snake_case ([a-z_][a-z0-9_]*)"));
    }
    if (absl::StartsWith(label, "__") || label == "le" || label == "quantile") {
      return absl::InvalidArgumentError(absl::StrCat(
          "label name \"", label, "\" of metric \"", name,
          "\" is reserved (\"__\" prefix for Prometheus, \"le\" for histogram buckets, "
          "\"quantile\" for summaries)"));
    }
    if (std::find(label_names.begin(), label_names.begin() + i, label) != label_names.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name \"", label, "\" repeated in metric \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBounds(const std::string& name, const std::vector<double>& upper_bounds) {
  if (upper_bounds.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram \"", name, "\" needs at least one bucket bound"));
  }
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i])) {
      return absl::InvalidArgumentError(absl::StrCat("bucket bound ", i, " of histogram \"", name,
                                                     "\" is ", FormatMetricValue(upper_bounds[i]),
                                                     ": bounds must be finite (the +Inf "
                                                     "bucket is implicit)"));
    }
    if (i > 0 && upper_bounds[i] <= upper_bounds[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bucket bounds of histogram \"", name, "\" must be strictly increasing: bound ", i, " (",
          FormatMetricValue(upper_bounds[i]), ") follows ",
          FormatMetricValue(upper_bounds[i - 1])));
    }
  }
  return absl::OkStatus();
}

// The series names a family renders: its name and, for a histogram, the three derived ones.
std::vector<std::string> SeriesNames(FamilyType type, const std::string& name) {
  if (type != FamilyType::kHistogram) return {name};
  // The bare name too: another family's TYPE line for it would clash with this one's.
  return {name, name + "_bucket", name + "_sum", name + "_count"};
}

double RoundToSignificantDigits(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.15g", value);
  return std::strtod(text, nullptr);
}

// Appends `text` escaped for the exposition format: backslash and newline always, double
// quotes only inside label values.
void AppendEscaped(std::string* out, absl::string_view text, bool escape_quotes) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && escape_quotes) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

// The escaped help text, as the exposition wants it: prometheus-cpp 1.0.1 writes help as given.
std::string EscapedHelp(absl::string_view help) {
  std::string escaped;
  AppendEscaped(&escaped, help, /*escape_quotes=*/false);
  return escaped;
}

// JSON has no NaN or infinity: those become the strings the exposition format uses.
nlohmann::json JsonNumber(double value) {
  if (std::isfinite(value)) return value;
  return FormatMetricValue(value);
}

nlohmann::json JsonSample(const prometheus::MetricFamily& family,
                          const prometheus::ClientMetric& metric) {
  nlohmann::json labels = nlohmann::json::object();
  for (const prometheus::ClientMetric::Label& label : metric.label)
    labels[label.name] = label.value;
  nlohmann::json sample = {{"labels", std::move(labels)}};
  switch (family.type) {
    case prometheus::MetricType::Counter:
      sample["value"] = JsonNumber(metric.counter.value);
      break;
    case prometheus::MetricType::Gauge:
      sample["value"] = JsonNumber(metric.gauge.value);
      break;
    default: {
      nlohmann::json buckets = nlohmann::json::array();
      for (const prometheus::ClientMetric::Bucket& bucket : metric.histogram.bucket) {
        nlohmann::json le = std::isfinite(bucket.upper_bound) ? nlohmann::json(bucket.upper_bound)
                                                              : nlohmann::json("+Inf");
        buckets.push_back({{"le", std::move(le)}, {"count", bucket.cumulative_count}});
      }
      sample["buckets"] = std::move(buckets);
      sample["sum"] = JsonNumber(metric.histogram.sample_sum);
      sample["count"] = metric.histogram.sample_count;
    }
  }
  return sample;
}

// Puts each child's labels in the order the family declared them and orders the children by
// those values (prometheus-cpp keeps labels sorted by name and children unordered).
void OrderChildren(const std::vector<std::string>& label_names, prometheus::MetricFamily* family) {
  for (prometheus::ClientMetric& metric : family->metric) {
    std::vector<prometheus::ClientMetric::Label> ordered;
    ordered.reserve(metric.label.size());
    for (const std::string& name : label_names) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == name) ordered.push_back(label);
      }
    }
    metric.label = std::move(ordered);
  }
  std::sort(family->metric.begin(), family->metric.end(),
            [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) {
              return std::lexicographical_compare(
                  a.label.begin(), a.label.end(), b.label.begin(), b.label.end(),
                  [](const auto& x, const auto& y) { return x.value < y.value; });
            });
}

template <typename Metric>
constexpr FamilyType TypeOf() {
  if constexpr (std::is_same_v<Metric, Counter>) {
    return FamilyType::kCounter;
  } else if constexpr (std::is_same_v<Metric, Gauge>) {
    return FamilyType::kGauge;
  } else {
    return FamilyType::kHistogram;
  }
}

}  // namespace

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Shortest round-trip digits, in %g style: what Go's strconv.FormatFloat(v, 'g', -1, 64)
  // gives, which is what the reference Prometheus clients write.
  char text[32];
  const auto result = std::to_chars(text, text + sizeof(text), value, std::chars_format::general);
  return std::string(text, result.ptr);
}

void Counter::Increment() { metric_->Increment(); }

void Counter::Add(double amount) {
  if (amount >= 0.0) metric_->Increment(amount);  // not negative, not NaN
}

double Counter::value() const { return metric_->Value(); }

void Gauge::Set(double value) { metric_->Set(value); }

void Gauge::Add(double delta) { metric_->Increment(delta); }

double Gauge::value() const { return metric_->Value(); }

void Histogram::Observe(double value) {
  if (!std::isnan(value)) metric_->Observe(value);
}

HistogramSnapshot Histogram::Snapshot() const {
  const prometheus::ClientMetric collected = metric_->Collect();
  HistogramSnapshot snapshot;
  for (const prometheus::ClientMetric::Bucket& bucket : collected.histogram.bucket) {
    if (std::isfinite(bucket.upper_bound)) snapshot.upper_bounds.push_back(bucket.upper_bound);
    snapshot.cumulative_counts.push_back(bucket.cumulative_count);
  }
  snapshot.count = collected.histogram.sample_count;
  snapshot.sum = collected.histogram.sample_sum;
  return snapshot;
}

bool LabelValuesLess::operator()(absl::Span<const std::string> a,
                                 absl::Span<const std::string> b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}

template <typename Metric>
MetricFamily<Metric>::MetricFamily(std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::vector<double> upper_bounds,
                                   prometheus::Family<Backend>* backend)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)),
      backend_(backend) {}

template <typename Metric>
absl::StatusOr<Metric*> MetricFamily<Metric>::WithLabels(
    absl::Span<const std::string> label_values) {
  if (label_values.size() != label_names_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metric \"", name_, "\" takes ",
                                                   label_names_.size(), " label values, got ",
                                                   label_values.size()));
  }
  MutexLock lock(&mutex_);
  if (auto found = children_.find(label_values); found != children_.end()) {
    return found->second.get();
  }
  prometheus::Labels labels;
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (!IsValidUtf8(label_values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value of label \"", label_names_[i], "\" of metric \"", name_, "\" is not valid UTF-8"));
    }
    labels.emplace(label_names_[i], label_values[i]);
  }
  Backend* backend = nullptr;
  try {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      backend = &backend_->Add(labels, upper_bounds_);
    } else {
      backend = &backend_->Add(labels);
    }
  } catch (const std::exception& e) {  // prometheus-cpp reports problems by throwing
    return absl::InvalidArgumentError(
        absl::StrCat("metric \"", name_, "\": prometheus-cpp refused the labels: ", e.what()));
  }
  std::unique_ptr<Metric> child(new Metric(backend));
  Metric* result = child.get();
  children_.emplace(std::vector<std::string>(label_values.begin(), label_values.end()),
                    std::move(child));
  return result;
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

MetricsRegistry::MetricsRegistry() : backend_(std::make_shared<prometheus::Registry>()) {}

MetricsRegistry::~MetricsRegistry() = default;

std::shared_ptr<prometheus::Collectable> MetricsRegistry::collectable() const { return backend_; }

template <typename Metric>
absl::StatusOr<MetricFamily<Metric>*> MetricsRegistry::Add(const std::string& name,
                                                           const std::string& help,
                                                           std::vector<std::string> label_names,
                                                           std::vector<double> upper_bounds) {
  constexpr FamilyType kType = TypeOf<Metric>();
  CLEAVE_RETURN_IF_ERROR(ValidateDefinition(kType, name, help, label_names));
  if (kType == FamilyType::kHistogram) CLEAVE_RETURN_IF_ERROR(ValidateBounds(name, upper_bounds));

  MutexLock lock(&mutex_);
  const std::vector<std::string> series = SeriesNames(kType, name);
  for (const std::string& series_name : series) {
    if (auto taken = series_names_.find(series_name); taken != series_names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "metric name \"", series_name, "\" is already used by metric \"", taken->second, "\""));
    }
  }
  using Backend = typename MetricFamily<Metric>::Backend;
  prometheus::Family<Backend>* backend = nullptr;
  try {
    if constexpr (kType == FamilyType::kCounter) {
      backend = &prometheus::BuildCounter().Name(name).Help(EscapedHelp(help)).Register(*backend_);
    } else if constexpr (kType == FamilyType::kGauge) {
      backend = &prometheus::BuildGauge().Name(name).Help(EscapedHelp(help)).Register(*backend_);
    } else {
      backend =
          &prometheus::BuildHistogram().Name(name).Help(EscapedHelp(help)).Register(*backend_);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric \"", name, "\": prometheus-cpp refused it: ", e.what()));
  }
  std::unique_ptr<MetricFamily<Metric>> family(new MetricFamily<Metric>(
      name, help, std::move(label_names), std::move(upper_bounds), backend));
  MetricFamily<Metric>* result = family.get();
  // A family without labels has exactly one child: create it so that it renders from the start.
  if (result->label_names().empty()) CLEAVE_RETURN_IF_ERROR(result->WithLabels({}).status());
  for (const std::string& series_name : series) series_names_.emplace(series_name, name);
  families_.emplace(name, std::move(family));
  return result;
}

absl::StatusOr<CounterFamily*> MetricsRegistry::AddCounter(const std::string& name,
                                                           const std::string& help,
                                                           std::vector<std::string> label_names) {
  return Add<Counter>(name, help, std::move(label_names), {});
}

absl::StatusOr<GaugeFamily*> MetricsRegistry::AddGauge(const std::string& name,
                                                       const std::string& help,
                                                       std::vector<std::string> label_names) {
  return Add<Gauge>(name, help, std::move(label_names), {});
}

absl::StatusOr<HistogramFamily*> MetricsRegistry::AddHistogram(
    const std::string& name, const std::string& help, std::vector<double> upper_bounds,
    std::vector<std::string> label_names) {
  return Add<Histogram>(name, help, std::move(label_names), std::move(upper_bounds));
}

std::vector<prometheus::MetricFamily> MetricsRegistry::Collect(
    std::vector<const std::string*>* helps) const {
  std::map<std::string, prometheus::MetricFamily> collected;
  for (prometheus::MetricFamily& family : backend_->Collect()) {
    if (!family.metric.empty()) collected.emplace(family.name, std::move(family));
  }
  MutexLock lock(&mutex_);
  std::vector<prometheus::MetricFamily> ordered;
  for (const auto& [name, ours] : families_) {  // a std::map: in name order
    auto found = collected.find(name);
    if (found == collected.end()) continue;
    std::visit(
        [&](const auto& family) {
          OrderChildren(family->label_names(), &found->second);
          if (helps != nullptr) helps->push_back(&family->help());
        },
        ours);
    ordered.push_back(std::move(found->second));
  }
  return ordered;
}

std::string MetricsRegistry::RenderPrometheusText() const {
  std::ostringstream text;
  text.precision(15);  // prometheus-cpp writes what the stream asks: 6 digits by default
  prometheus::TextSerializer().Serialize(text, Collect(nullptr));
  return text.str();
}

std::string MetricsRegistry::RenderJson() const {
  std::vector<const std::string*> helps;
  const std::vector<prometheus::MetricFamily> families = Collect(&helps);
  nlohmann::json metrics = nlohmann::json::array();
  for (size_t i = 0; i < families.size(); ++i) {
    const prometheus::MetricFamily& family = families[i];
    nlohmann::json samples = nlohmann::json::array();
    for (const prometheus::ClientMetric& metric : family.metric) {
      samples.push_back(JsonSample(family, metric));
    }
    const char* type = family.type == prometheus::MetricType::Counter ? "counter"
                       : family.type == prometheus::MetricType::Gauge ? "gauge"
                                                                      : "histogram";
    metrics.push_back(
        {{"name", family.name}, {"help", *helps[i]}, {"type", type}, {"samples", samples}});
  }
  return nlohmann::json{{"metrics", std::move(metrics)}}.dump();
}

std::vector<double> ExponentialBuckets(double start, double factor, size_t count) {
  std::vector<double> bounds;
  bounds.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    bounds.push_back(RoundToSignificantDigits(start * std::pow(factor, static_cast<double>(i))));
  }
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, size_t count) {
  std::vector<double> bounds;
  bounds.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    bounds.push_back(RoundToSignificantDigits(start + width * static_cast<double>(i)));
  }
  return bounds;
}

std::vector<double> ServingLatencyBuckets() { return ExponentialBuckets(0.00005, 2, 18); }

std::vector<double> BatchSizeBuckets() { return ExponentialBuckets(1, 2, 8); }

std::vector<double> LatencyBuckets() {
  std::vector<double> bounds;
  for (double decade : {1e-4, 1e-3, 1e-2, 1e-1, 1.0}) {
    for (double step : {1.0, 2.5, 5.0}) bounds.push_back(RoundToSignificantDigits(decade * step));
  }
  bounds.push_back(10.0);
  return bounds;
}

}  // namespace cleave::common

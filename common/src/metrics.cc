#include "cleave/common/metrics.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "nlohmann/json.hpp"

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

// Appends one sample line: name{labels[,le="…"]} value.
void AppendSample(std::string* out, absl::string_view series, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const std::string* le, double value) {
  out->append(series.data(), series.size());
  if (!names.empty() || le != nullptr) {
    out->push_back('{');
    for (size_t i = 0; i < names.size(); ++i) {
      if (i > 0) out->push_back(',');
      absl::StrAppend(out, names[i], "=\"");
      AppendEscaped(out, values[i], /*escape_quotes=*/true);
      out->push_back('"');
    }
    if (le != nullptr) absl::StrAppend(out, names.empty() ? "" : ",", "le=\"", *le, "\"");
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatMetricValue(value), "\n");
}

// Counters and gauges: one sample per child.
template <typename Metric>
void AppendFamilyText(std::string* out, const MetricFamily<Metric>& family) {
  for (const auto& [values, metric] : family.Children()) {
    AppendSample(out, family.name(), family.label_names(), values, nullptr, metric->value());
  }
}

void AppendFamilyText(std::string* out, const HistogramFamily& family) {
  const std::string bucket = family.name() + "_bucket";
  const std::string sum = family.name() + "_sum";
  const std::string count = family.name() + "_count";
  for (const auto& [values, histogram] : family.Children()) {
    const HistogramSnapshot snapshot = histogram->Snapshot();
    for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
      const std::string le = i < snapshot.upper_bounds.size()
                                 ? FormatMetricValue(snapshot.upper_bounds[i])
                                 : std::string("+Inf");
      AppendSample(out, bucket, family.label_names(), values, &le,
                   static_cast<double>(snapshot.cumulative_counts[i]));
    }
    AppendSample(out, sum, family.label_names(), values, nullptr, snapshot.sum);
    AppendSample(out, count, family.label_names(), values, nullptr,
                 static_cast<double>(snapshot.count));
  }
}

// JSON has no NaN or infinity: those become the strings the exposition format uses.
nlohmann::json JsonNumber(double value) {
  if (std::isfinite(value)) return value;
  return FormatMetricValue(value);
}

nlohmann::json JsonLabels(const std::vector<std::string>& names,
                          const std::vector<std::string>& values) {
  nlohmann::json labels = nlohmann::json::object();
  for (size_t i = 0; i < names.size(); ++i) labels[names[i]] = values[i];
  return labels;
}

template <typename Metric>  // Counter or Gauge
nlohmann::json JsonSample(const Metric& metric) {
  return {{"value", JsonNumber(metric.value())}};
}

nlohmann::json JsonSample(const Histogram& histogram) {
  const HistogramSnapshot snapshot = histogram.Snapshot();
  nlohmann::json buckets = nlohmann::json::array();
  for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
    nlohmann::json le = i < snapshot.upper_bounds.size() ? nlohmann::json(snapshot.upper_bounds[i])
                                                         : nlohmann::json("+Inf");
    buckets.push_back({{"le", std::move(le)}, {"count", snapshot.cumulative_counts[i]}});
  }
  return {{"buckets", std::move(buckets)},
          {"sum", JsonNumber(snapshot.sum)},
          {"count", snapshot.count}};
}

template <typename Metric>
nlohmann::json JsonFamily(const MetricFamily<Metric>& family, const char* type) {
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& [values, metric] : family.Children()) {
    nlohmann::json sample = JsonSample(*metric);
    sample["labels"] = JsonLabels(family.label_names(), values);
    samples.push_back(std::move(sample));
  }
  return {{"name", family.name()}, {"help", family.help()}, {"type", type}, {"samples", samples}};
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

void Counter::Add(double amount) {
  if (!(amount >= 0.0)) return;  // negative or NaN
  // Whole amounts go to the integer part (exact); 2^64 itself does not fit a uint64_t.
  if (amount < 18446744073709551616.0 && amount == std::floor(amount)) {
    whole_.fetch_add(static_cast<uint64_t>(amount), std::memory_order_relaxed);
  } else {
    metrics_internal::AtomicAdd(fractional_, amount);
  }
}

double Counter::value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fractional_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      bucket_counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) bucket_counts_[i].store(0);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const size_t bucket =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  metrics_internal::AtomicAdd(sum_, value);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  snapshot.cumulative_counts.reserve(upper_bounds_.size() + 1);
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    snapshot.count += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(snapshot.count);
  }
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

bool LabelValuesLess::operator()(absl::Span<const std::string> a,
                                 absl::Span<const std::string> b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}

template <typename Metric>
MetricFamily<Metric>::MetricFamily(std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::vector<double> upper_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

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
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (!IsValidUtf8(label_values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value of label \"", label_names_[i], "\" of metric \"", name_, "\" is not valid UTF-8"));
    }
  }
  std::unique_ptr<Metric> child;
  if constexpr (std::is_same_v<Metric, Histogram>) {
    child = std::make_unique<Histogram>(upper_bounds_);
  } else {
    child = std::make_unique<Metric>();
  }
  Metric* result = child.get();
  children_.emplace(std::vector<std::string>(label_values.begin(), label_values.end()),
                    std::move(child));
  return result;
}

template <typename Metric>
std::vector<std::pair<std::vector<std::string>, const Metric*>> MetricFamily<Metric>::Children()
    const {
  MutexLock lock(&mutex_);
  std::vector<std::pair<std::vector<std::string>, const Metric*>> children;
  children.reserve(children_.size());
  for (const auto& [values, metric] : children_) children.emplace_back(values, metric.get());
  return children;
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

template <typename Metric>
absl::StatusOr<MetricFamily<Metric>*> MetricsRegistry::Add(const std::string& name,
                                                           const std::string& help,
                                                           std::vector<std::string> label_names,
                                                           std::vector<double> upper_bounds) {
  constexpr FamilyType kType = TypeOf<Metric>();
  CLEAVE_RETURN_IF_ERROR(ValidateDefinition(kType, name, help, label_names));
  if (kType == FamilyType::kHistogram) CLEAVE_RETURN_IF_ERROR(ValidateBounds(name, upper_bounds));
  std::unique_ptr<MetricFamily<Metric>> family(
      new MetricFamily<Metric>(name, help, std::move(label_names), std::move(upper_bounds)));
  MetricFamily<Metric>* result = family.get();
  // A family without labels has exactly one child: create it so that it renders from the start.
  if (result->label_names().empty()) CLEAVE_RETURN_IF_ERROR(result->WithLabels({}).status());

  MutexLock lock(&mutex_);
  const std::vector<std::string> series = SeriesNames(kType, name);
  for (const std::string& series_name : series) {
    if (auto taken = series_names_.find(series_name); taken != series_names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "metric name \"", series_name, "\" is already used by metric \"", taken->second, "\""));
    }
  }
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

std::string MetricsRegistry::RenderPrometheusText() const {
  MutexLock lock(&mutex_);
  std::string text;
  for (const auto& entry : families_) {
    std::visit(
        [&text](const auto& family) {
          using Metric = typename std::decay_t<decltype(*family)>::MetricType;
          std::string samples;
          AppendFamilyText(&samples, *family);
          if (samples.empty()) return;
          absl::StrAppend(&text, "# HELP ", family->name(), " ");
          AppendEscaped(&text, family->help(), /*escape_quotes=*/false);
          absl::StrAppend(&text, "\n# TYPE ", family->name(), " ", TypeName(TypeOf<Metric>()), "\n",
                          samples);
        },
        entry.second);
  }
  return text;
}

std::string MetricsRegistry::RenderJson() const {
  MutexLock lock(&mutex_);
  nlohmann::json metrics = nlohmann::json::array();
  for (const auto& entry : families_) {
    std::visit(
        [&](const auto& family) {
          using Metric = typename std::decay_t<decltype(*family)>::MetricType;
          nlohmann::json json = JsonFamily(*family, TypeName(TypeOf<Metric>()));
          if (!json["samples"].empty()) metrics.push_back(std::move(json));
        },
        entry.second);
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

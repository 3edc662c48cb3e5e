#include "cleave/common/units.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace cleave::common {
namespace {

struct BitRateUnit {
  absl::string_view suffix;
  double bits;
};

// Longest suffix first so that "kbit" is not read as "bit".
constexpr BitRateUnit kBitRateUnits[] = {{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}};

}  // namespace

absl::StatusOr<uint64_t> ParseBitRate(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "unlimited" || lower == "0") return 0;
  for (const BitRateUnit& unit : kBitRateUnits) {
    if (!absl::EndsWith(lower, unit.suffix)) continue;
    double value = 0;
    const absl::string_view number(lower.data(), lower.size() - unit.suffix.size());
    if (!absl::SimpleAtod(number, &value) || !std::isfinite(value) || value < 0) break;
    const double bits = value * unit.bits;
    if (bits >= static_cast<double>(std::numeric_limits<uint64_t>::max())) break;
    if (bits > 0 && bits < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bit rate '", text, "' is below 1 bit/s; use 0 or 'unlimited' for none"));
    }
    return static_cast<uint64_t>(std::llround(bits));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad bit rate '", text,
                   "': expected a number with a unit bit, kbit, mbit or gbit (e.g. 20mbit), or "
                   "'unlimited'"));
}

std::string FormatBitRate(uint64_t bits_per_second) {
  if (bits_per_second == 0) return "unlimited";
  for (const BitRateUnit& unit : kBitRateUnits) {
    if (static_cast<double>(bits_per_second) >= unit.bits) {
      return absl::StrCat(static_cast<double>(bits_per_second) / unit.bits, unit.suffix);
    }
  }
  return absl::StrCat(bits_per_second, "bit");
}

absl::StatusOr<std::chrono::nanoseconds> ParseDuration(absl::string_view text) {
  absl::Duration duration;
  const absl::string_view stripped = absl::StripAsciiWhitespace(text);
  // absl accepts "inf" and negative durations; a link delay is neither.
  if (!absl::ParseDuration(stripped, &duration) || duration < absl::ZeroDuration() ||
      duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad duration '", text, "': expected a non-negative number with a unit (e.g. 10ms, 1.5s)"));
  }
  return absl::ToChronoNanoseconds(duration);
}

std::string FormatDuration(std::chrono::nanoseconds duration) {
  return absl::FormatDuration(absl::FromChrono(duration));
}

}  // namespace cleave::common

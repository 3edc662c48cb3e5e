// Text forms of a link's quantities, as flags, control commands and traces spell them:
// bit rates ("20mbit", "1.5gbit", "unlimited") and durations ("10ms", "1.5s"). Shared by the
// link emulator and `cleave plan`; LibTorch-free (target cleave_units).
#ifndef CLEAVE_COMMON_UNITS_H_
#define CLEAVE_COMMON_UNITS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Parses a bit rate: a non-negative decimal number followed by bit, kbit, mbit or gbit
// (case-insensitive, SI multiples of 1000), or "unlimited". Returns bits per second, where 0
// means unlimited; INVALID_ARGUMENT naming `text` otherwise.
[[nodiscard]] absl::StatusOr<uint64_t> ParseBitRate(absl::string_view text);

// Returns `bits_per_second` in the unit ParseBitRate reads back ("20mbit", "unlimited").
std::string FormatBitRate(uint64_t bits_per_second);

// Parses a non-negative duration with a unit ("10ms", "250us", "1.5s", "0"); INVALID_ARGUMENT
// naming `text` otherwise.
[[nodiscard]] absl::StatusOr<std::chrono::nanoseconds> ParseDuration(absl::string_view text);

// Returns `duration` in the form ParseDuration reads back ("10ms", "1.5s").
std::string FormatDuration(std::chrono::nanoseconds duration);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_UNITS_H_

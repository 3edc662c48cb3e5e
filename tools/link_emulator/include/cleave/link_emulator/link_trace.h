// A link trace: a schedule of bandwidth changes and partitions replayed against a running
// LinkEmulator, so a benchmark can drive a device through a realistic, repeatable link (a
// cellular drive, a Wi-Fi hand-over, a two-second outage).
//
// Text format, one event per line, '#' starts a comment, times in seconds since the replay
// started, non-decreasing:
//
//   <seconds> <mbit_per_second | unlimited> [up | down | both]   # default: both
//   <seconds> partition on | off
//
// A rate holds until the next line that changes it; after the last line the last settings stay.
#ifndef CLEAVE_LINK_EMULATOR_LINK_TRACE_H_
#define CLEAVE_LINK_EMULATOR_LINK_TRACE_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/link_emulator/direction.h"

namespace cleave::link_emulator {

struct LinkTraceEvent {
  enum class Kind { kBandwidth, kPartition };

  std::chrono::nanoseconds at{0};  // since the replay started
  Kind kind = Kind::kBandwidth;
  Direction direction = Direction::kBoth;  // kBandwidth only
  uint64_t bits_per_second = 0;            // kBandwidth only; 0 is unlimited
  bool partitioned = false;                // kPartition only
};

struct LinkTrace {
  std::vector<LinkTraceEvent> events;  // ordered by `at`

  // Adds a partition from `start` lasting `duration`, keeping `events` ordered (an event at
  // the same time as an existing one runs after it).
  void AddPartition(std::chrono::nanoseconds start, std::chrono::nanoseconds duration);
};

// Parses the text format above. `source` names the text in errors ("trace.txt:3: ...").
// Returns INVALID_ARGUMENT with the line number and the expected form on a bad line.
[[nodiscard]] absl::StatusOr<LinkTrace> ParseLinkTrace(absl::string_view text,
                                                       absl::string_view source);

// Reads and parses the trace file `path`; NOT_FOUND when it cannot be opened.
[[nodiscard]] absl::StatusOr<LinkTrace> ReadLinkTrace(const std::string& path);

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_LINK_TRACE_H_

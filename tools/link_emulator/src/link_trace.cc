#include "cleave/link_emulator/link_trace.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cleave/common/files.h"

namespace cleave::link_emulator {
namespace {

constexpr absl::string_view kExpectedForms =
    "expected '<seconds> <mbit_per_second|unlimited> [up|down|both]' or "
    "'<seconds> partition on|off'";

// Parses one non-comment line; `error` is the prefix of every error ("trace.txt:3: ").
absl::StatusOr<LinkTraceEvent> ParseEvent(const std::vector<absl::string_view>& fields,
                                          const std::string& error) {
  if (fields.size() < 2 || fields.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat(error, kExpectedForms));
  }
  LinkTraceEvent event;
  double seconds = 0;
  if (!absl::SimpleAtod(fields[0], &seconds) || !std::isfinite(seconds) || seconds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(error, "bad time '", fields[0], "': expected non-negative seconds"));
  }
  event.at =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
  if (fields[1] == "partition") {
    event.kind = LinkTraceEvent::Kind::kPartition;
    if (fields.size() != 3 || (fields[2] != "on" && fields[2] != "off")) {
      return absl::InvalidArgumentError(absl::StrCat(error, "expected 'partition on|off'"));
    }
    event.partitioned = fields[2] == "on";
    return event;
  }
  event.kind = LinkTraceEvent::Kind::kBandwidth;
  double mbit_per_second = 0;
  if (fields[1] == "unlimited") {
    event.bits_per_second = 0;
  } else if (absl::SimpleAtod(fields[1], &mbit_per_second) && std::isfinite(mbit_per_second) &&
             mbit_per_second > 0) {
    event.bits_per_second = static_cast<uint64_t>(std::llround(mbit_per_second * 1e6));
  } else {
    // 0 is refused: in a trace it would read as "no link", but the emulator would make it
    // unlimited. An outage is a partition.
    return absl::InvalidArgumentError(
        absl::StrCat(error, "bad rate '", fields[1],
                     "': expected Mbit/s > 0 or 'unlimited' (use 'partition on' for an outage)"));
  }
  if (fields.size() == 3) {
    auto direction = ParseDirection(fields[2]);
    if (!direction.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(error, direction.status().message()));
    }
    event.direction = *direction;
  }
  return event;
}

}  // namespace

void LinkTrace::AddPartition(std::chrono::nanoseconds start, std::chrono::nanoseconds duration) {
  auto insert = [this](LinkTraceEvent event) {
    auto after = std::upper_bound(
        events.begin(), events.end(), event.at,
        [](std::chrono::nanoseconds at, const LinkTraceEvent& other) { return at < other.at; });
    events.insert(after, event);
  };
  LinkTraceEvent event;
  event.kind = LinkTraceEvent::Kind::kPartition;
  event.at = start;
  event.partitioned = true;
  insert(event);
  event.at = start + duration;
  event.partitioned = false;
  insert(event);
}

absl::StatusOr<LinkTrace> ParseLinkTrace(absl::string_view text, absl::string_view source) {
  LinkTrace trace;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (auto comment = line.find('#'); comment != absl::string_view::npos) {
      line = line.substr(0, comment);
    }
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    const std::string error = absl::StrCat(source, ":", line_number, ": ");
    auto event = ParseEvent(fields, error);
    if (!event.ok()) return event.status();
    if (!trace.events.empty() && event->at < trace.events.back().at) {
      return absl::InvalidArgumentError(absl::StrCat(
          error, "time ", fields[0], " is before the previous line's: times must not decrease"));
    }
    trace.events.push_back(*event);
  }
  return trace;
}

absl::StatusOr<LinkTrace> ReadLinkTrace(const std::string& path) {
  // A regular file of bounded size only: the path may come from the control socket.
  auto text = common::ReadFile(path, common::kMaxTextFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("trace file: ", text.status().message()));
  }
  return ParseLinkTrace(*text, path);
}

}  // namespace cleave::link_emulator

#include "cleave/link_emulator/control_command.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cleave/common/units.h"

namespace cleave::link_emulator {
namespace {

using common::FormatBitRate;
using common::FormatDuration;
using common::ParseBitRate;
using common::ParseDuration;

constexpr absl::string_view kHelp =
    "commands: bandwidth <rate> [up|down|both]; delay <delay> [<jitter>] [up|down|both]; "
    "partition on|off; drop; drop on|off; trace <file>; status; help";

absl::Status Usage(absl::string_view command, absl::string_view form) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad '", command, "' command: expected '", form, "'"));
}

// Parses "on" / "off".
absl::StatusOr<bool> ParseSwitch(absl::string_view text, absl::string_view command) {
  if (text == "on") return true;
  if (text == "off") return false;
  return Usage(command, absl::StrCat(command, " on|off"));
}

// The optional trailing direction of `args` (default both); removes it when present.
Direction TakeDirection(std::vector<absl::string_view>& args) {
  if (args.empty()) return Direction::kBoth;
  if (auto direction = ParseDirection(args.back()); direction.ok()) {
    args.pop_back();
    return *direction;
  }
  return Direction::kBoth;
}

std::string ShapeText(const DirectionShape& shape, absl::string_view prefix) {
  return absl::StrCat(prefix, "_bandwidth=", FormatBitRate(shape.bits_per_second), " ", prefix,
                      "_delay=", FormatDuration(shape.delay), " ", prefix,
                      "_jitter=", FormatDuration(shape.jitter));
}

std::string Status(const LinkEmulator& emulator) {
  const LinkCounters counters = emulator.counters();
  return absl::StrCat("ok ", ShapeText(emulator.shape(Direction::kUpstream), "up"), " ",
                      ShapeText(emulator.shape(Direction::kDownstream), "down"),
                      " partitioned=", emulator.partitioned() ? "on" : "off",
                      " dropping=", emulator.dropping() ? "on" : "off",
                      " up_bytes_received=", counters.upstream.bytes_received,
                      " up_bytes_delivered=", counters.upstream.bytes_delivered,
                      " down_bytes_received=", counters.downstream.bytes_received,
                      " down_bytes_delivered=", counters.downstream.bytes_delivered,
                      " connections_accepted=", counters.connections_accepted,
                      " connections_open=", counters.connections_open,
                      " connections_reset=", counters.connections_reset,
                      " connections_refused=", counters.connections_refused,
                      " upstream_connect_failures=", counters.upstream_connect_failures);
}

}  // namespace

absl::StatusOr<std::string> ExecuteControlCommand(LinkEmulator& emulator, absl::string_view line) {
  std::vector<absl::string_view> args =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
  if (args.empty()) return absl::InvalidArgumentError(absl::StrCat("empty command; ", kHelp));
  const absl::string_view command = args.front();
  args.erase(args.begin());

  if (command == "bandwidth") {
    const Direction direction = TakeDirection(args);
    if (args.size() != 1) return Usage(command, "bandwidth <rate> [up|down|both]");
    auto rate = ParseBitRate(args[0]);
    if (!rate.ok()) return rate.status();
    emulator.SetBandwidth(direction, *rate);
    return std::string("ok");
  }
  if (command == "delay") {
    const Direction direction = TakeDirection(args);
    if (args.empty() || args.size() > 2) {
      return Usage(command, "delay <delay> [<jitter>] [up|down|both]");
    }
    auto delay = ParseDuration(args[0]);
    if (!delay.ok()) return delay.status();
    std::chrono::nanoseconds jitter(0);
    if (args.size() == 2) {
      auto parsed = ParseDuration(args[1]);
      if (!parsed.ok()) return parsed.status();
      jitter = *parsed;
    }
    emulator.SetDelay(direction, *delay, jitter);
    return std::string("ok");
  }
  if (command == "partition") {
    if (args.size() != 1) return Usage(command, "partition on|off");
    auto on = ParseSwitch(args[0], command);
    if (!on.ok()) return on.status();
    emulator.SetPartitioned(*on);
    return std::string("ok");
  }
  if (command == "drop") {
    if (args.empty()) {
      emulator.DropAll();
      return std::string("ok");
    }
    if (args.size() != 1) return Usage(command, "drop [on|off]");
    auto on = ParseSwitch(args[0], command);
    if (!on.ok()) return on.status();
    emulator.SetDropping(*on);
    return std::string("ok");
  }
  if (command == "trace") {
    if (args.size() != 1) return Usage(command, "trace <file>");
    auto trace = ReadLinkTrace(std::string(args[0]));
    if (!trace.ok()) return trace.status();
    emulator.PlayTrace(*std::move(trace));
    return std::string("ok");
  }
  if (command == "status") {
    if (!args.empty()) return Usage(command, "status");
    return Status(emulator);
  }
  if (command == "help") return absl::StrCat("ok ", kHelp);
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'; ", kHelp));
}

}  // namespace cleave::link_emulator

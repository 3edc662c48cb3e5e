// The emulator's line-based control language, spoken on its control socket (one command per
// line, one reply line per command) so a test script can change the link on cue:
//
//   bandwidth <rate> [up|down|both]          e.g. "bandwidth 5mbit", "bandwidth unlimited up"
//   delay <delay> [<jitter>] [up|down|both]  e.g. "delay 20ms 5ms"
//   partition on|off                         hold / release every byte
//   drop                                     reset every open connection once
//   drop on|off                              drop mode: also reset new connections
//   trace <file>                             replay a trace file (link_trace.h) from now
//   status                                   the current shape and counters
//   help                                     this list
//
// Replies are "ok" (status: "ok" followed by key=value pairs) or "error: <message>".
#ifndef CLEAVE_LINK_EMULATOR_CONTROL_COMMAND_H_
#define CLEAVE_LINK_EMULATOR_CONTROL_COMMAND_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/link_emulator/link_emulator.h"

namespace cleave::link_emulator {

// Runs one command `line` against `emulator` and returns its reply line (without newline);
// INVALID_ARGUMENT naming the command and the expected form when `line` is not a command.
[[nodiscard]] absl::StatusOr<std::string> ExecuteControlCommand(LinkEmulator& emulator,
                                                                absl::string_view line);

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_CONTROL_COMMAND_H_

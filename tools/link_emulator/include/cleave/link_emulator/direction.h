// The two directions of an emulated link, named from the device's side: upstream carries
// what the client (device) sends to the server (edge), downstream the replies.
#ifndef CLEAVE_LINK_EMULATOR_DIRECTION_H_
#define CLEAVE_LINK_EMULATOR_DIRECTION_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::link_emulator {

enum class Direction {
  kUpstream,    // client -> server
  kDownstream,  // server -> client
  kBoth,        // for setters: both of the above
};

// Parses "up", "down" or "both" (also "upstream", "downstream"); INVALID_ARGUMENT otherwise.
[[nodiscard]] absl::StatusOr<Direction> ParseDirection(absl::string_view text);

// Returns "up", "down" or "both".
absl::string_view DirectionName(Direction direction);

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_DIRECTION_H_

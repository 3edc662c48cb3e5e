#include "cleave/link_emulator/direction.h"

#include "absl/strings/str_cat.h"

namespace cleave::link_emulator {

absl::StatusOr<Direction> ParseDirection(absl::string_view text) {
  if (text == "up" || text == "upstream") return Direction::kUpstream;
  if (text == "down" || text == "downstream") return Direction::kDownstream;
  if (text == "both") return Direction::kBoth;
  return absl::InvalidArgumentError(
      absl::StrCat("bad direction '", text, "': expected up, down or both"));
}

absl::string_view DirectionName(Direction direction) {
  switch (direction) {
    case Direction::kUpstream:
      return "up";
    case Direction::kDownstream:
      return "down";
    case Direction::kBoth:
      break;
  }
  return "both";
}

}  // namespace cleave::link_emulator

// Whole-file reads and atomic writes with errors that name the path.
#ifndef CLEAVE_COMMON_FILES_H_
#define CLEAVE_COMMON_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Returns the contents of `path`; NOT_FOUND when it does not exist.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` through a temporary file and a rename, so readers (such as an
// edge server watching a bundle folder) never see a half-written file.
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_FILES_H_

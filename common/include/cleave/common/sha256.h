// SHA-256 content hashes (OpenSSL), as lowercase hex. Bundles name segments and themselves by
// these hashes, so a fleet can trace exactly what it runs.
#ifndef CLEAVE_COMMON_SHA256_H_
#define CLEAVE_COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace cleave::common {

// Returns the 64-character lowercase hex SHA-256 of `bytes`.
[[nodiscard]] std::string Sha256Hex(absl::string_view bytes);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_SHA256_H_

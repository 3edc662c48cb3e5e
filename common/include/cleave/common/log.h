// Structured logs: one logfmt line per event on stderr, e.g.
//   ts=2026-11-24T10:00:00.123Z level=info event=bundle_loaded name=fmnist id=3f2a...
// Values are never tensors or activations: logs must not leak a robot's data.
//
// Thread-safety: Log may be called from any thread; lines never interleave.
#ifndef CLEAVE_COMMON_LOG_H_
#define CLEAVE_COMMON_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace cleave::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogField = std::pair<absl::string_view, std::string>;

// Writes one event with its fields, when `level` is at or above the threshold.
void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields = {});

// Sets the minimum level written (default kInfo).
void SetLogLevel(LogLevel level);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_LOG_H_

#include "cleave/common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cleave/common/mutex.h"

namespace cleave::common {
namespace {

std::atomic<LogLevel> g_threshold{LogLevel::kInfo};
Mutex g_mutex;  // one line at a time on stderr: it guards the stream, not data of ours

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// logfmt: quote values with spaces, quotes or '=' so every line parses back.
std::string Quote(absl::string_view value) {
  if (!value.empty() && value.find_first_of(" \"=\n\t") == absl::string_view::npos) {
    return std::string(value);
  }
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c == '\n' ? ' ' : c);
  }
  return quoted + "\"";
}

}  // namespace

void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields) {
  if (level < g_threshold.load(std::memory_order_relaxed)) return;
  std::string line = absl::StrCat(
      "ts=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " level=", LevelName(level), " event=", Quote(event));
  for (const auto& [key, value] : fields) absl::StrAppend(&line, " ", key, "=", Quote(value));
  line.push_back('\n');
  MutexLock lock(&g_mutex);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

void SetLogLevel(LogLevel level) { g_threshold.store(level, std::memory_order_relaxed); }

}  // namespace cleave::common

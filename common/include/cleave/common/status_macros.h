// Status plumbing shared by every cleave component: early-return macros for absl::Status and
// absl::StatusOr, and the conversion of LibTorch's exceptions into Status at our boundary.
#ifndef CLEAVE_COMMON_STATUS_MACROS_H_
#define CLEAVE_COMMON_STATUS_MACROS_H_

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#define CLEAVE_STATUS_CONCAT_INNER_(a, b) a##b
#define CLEAVE_STATUS_CONCAT_(a, b) CLEAVE_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define CLEAVE_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status cleave_status_ = (expr);          \
    if (!cleave_status_.ok()) return cleave_status_; \
  } while (0)

// `lhs = value of expr` when the absl::StatusOr `expr` is OK, otherwise returns its status.
#define CLEAVE_ASSIGN_OR_RETURN(lhs, expr) \
  CLEAVE_ASSIGN_OR_RETURN_IMPL_(CLEAVE_STATUS_CONCAT_(cleave_statusor_, __LINE__), lhs, expr)
#define CLEAVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return statusor.status();            \
  lhs = std::move(statusor).value()

namespace cleave::common {

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// Runs `fn` and turns any exception it throws (c10::Error from LibTorch, std::exception) into
// a Status with `code` whose message starts with `context`. `fn` returns a value, a Status or
// a StatusOr; the result type is StatusOr<value> (or Status for void and Status). `context`
// is a string, or a callable returning one that runs only on error (for contexts that would
// be formatted on every call of a hot path).
template <typename Context, typename Fn>
auto GuardTorch(absl::StatusCode code, const Context& context, Fn&& fn) {
  using Result = std::invoke_result_t<Fn>;
  using Wrapped = std::conditional_t<
      std::is_void_v<Result> || std::is_same_v<Result, absl::Status>, absl::Status,
      std::conditional_t<IsStatusOr<Result>::value, Result, absl::StatusOr<Result>>>;
  auto error = [&](const char* what) -> Wrapped {
    std::string message(what);
    // LibTorch appends a C++ backtrace after the first blank line; users need the first part.
    if (auto cut = message.find("\nException raised from"); cut != std::string::npos) {
      message.resize(cut);
    }
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
      message.pop_back();
    }
    // TorchScript interpreter errors carry two tracebacks; the last line says what failed.
    if (message.find("Traceback of TorchScript") != std::string::npos) {
      message = message.substr(message.rfind('\n') + 1);
    }
    if constexpr (std::is_invocable_v<const Context&>) {
      return absl::Status(code, absl::StrCat(context(), ": ", message));
    } else {
      return absl::Status(code, absl::StrCat(context, ": ", message));
    }
  };
  try {
    if constexpr (std::is_void_v<Result>) {
      std::forward<Fn>(fn)();
      return Wrapped(absl::OkStatus());
    } else {
      return Wrapped(std::forward<Fn>(fn)());
    }
  } catch (const std::exception& e) {
    return error(e.what());
  }
}

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_STATUS_MACROS_H_

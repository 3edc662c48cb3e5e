// The header every JSON document cleave writes for tools starts with — {"format": NAME,
// "version": N, …} — and its check, shared by profile.json and plan.json (internal).
#ifndef CLEAVE_PARTITIONER_SRC_JSON_DOCUMENT_H_
#define CLEAVE_PARTITIONER_SRC_JSON_DOCUMENT_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace cleave::partitioner {

// OK when `document` is an object of `format` at `version`; otherwise INVALID_ARGUMENT
// naming `origin`, what it should have been (`what`, e.g. "profile") and how to make one.
inline absl::Status CheckDocumentHeader(const nlohmann::json& document, absl::string_view format,
                                        int version, absl::string_view what,
                                        absl::string_view how_to_make, absl::string_view origin) {
  if (!document.is_object() || document.value("format", "") != format) {
    return absl::InvalidArgumentError(absl::StrCat(origin, " is not a cleave ", what,
                                                   " (no \"format\": \"", format,
                                                   "\"; make one with ", how_to_make, ")"));
  }
  if (!document.contains("version") || document["version"] != version) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": unsupported ", what, " version ",
                     document.contains("version") ? document["version"].dump() : "(none)"));
  }
  return absl::OkStatus();
}

// Parses `text`, checks its header as above and hands the document to `read` (a callable
// taking const nlohmann::json& and returning absl::Status). JSON errors on the way, missing
// fields or wrong types included, become INVALID_ARGUMENT "<origin> is not a valid cleave
// <what>: …".
template <typename Read>
absl::Status ReadDocument(absl::string_view text, absl::string_view format, int version,
                          absl::string_view what, absl::string_view how_to_make,
                          absl::string_view origin, Read read) {
  try {
    const nlohmann::json document = nlohmann::json::parse(text);
    if (absl::Status header =
            CheckDocumentHeader(document, format, version, what, how_to_make, origin);
        !header.ok()) {
      return header;
    }
    return read(document);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, " is not a valid cleave ", what, ": ", error.what()));
  }
}

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_SRC_JSON_DOCUMENT_H_

#include "cleave/common/manifest.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cleave/common/bundle_crypto.h"
#include "cleave/common/confidence.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace cleave::common {
namespace {

using nlohmann::json;

constexpr char kFormatName[] = "cleave.bundle";
constexpr char kBundleCipher[] = "aes-256-gcm";

json ToJson(const TensorSpec& spec) {
  return json{{"shape", spec.shape}, {"dtype", DtypeName(spec.dtype)}};
}

// A file reference's fields, added to `object` (segments and exits carry them inline).
json WithFileRef(json object, const FileRef& ref) {
  object["file"] = ref.file;
  object["sha256"] = ref.sha256;
  if (ref.size) object["size"] = *ref.size;
  if (ref.encrypted_size) object["encrypted_size"] = *ref.encrypted_size;
  return object;
}

json ToJson(const FileRef& ref) { return WithFileRef(json::object(), ref); }

json CodecJson(const CodecSpec& spec) {
  json ranges = json::array();
  for (const ClipRange& range : spec.ranges) ranges.push_back({range.min, range.max});
  return json{{"name", CodecName(spec.codec)}, {"zstd_level", spec.zstd_level}, {"ranges", ranges}};
}

CodecSpec CodecSpecFromJson(const json& j) {
  CodecSpec spec;
  auto codec = ParseCodec(j.at("name").get<std::string>());
  if (!codec.ok()) throw std::invalid_argument(std::string(codec.status().message()));
  spec.codec = *codec;
  spec.zstd_level = j.at("zstd_level").get<int>();
  for (const json& range : j.at("ranges")) {
    spec.ranges.push_back({range.at(0).get<float>(), range.at(1).get<float>()});
  }
  return spec;
}

template <typename T>
json ToJsonArray(const std::vector<T>& items) {
  json array = json::array();
  for (const T& item : items) array.push_back(ToJson(item));
  return array;
}

// Parsing helpers: nlohmann throws json::exception on type errors; FromJson catches it once.
TensorSpec TensorSpecFromJson(const json& j) {
  TensorSpec spec;
  spec.shape = j.at("shape").get<Shape>();
  auto dtype = ParseDtype(j.at("dtype").get<std::string>());
  if (!dtype.ok()) throw std::invalid_argument(std::string(dtype.status().message()));
  spec.dtype = *dtype;
  return spec;
}

FileRef FileRefFromJson(const json& j) {
  FileRef ref{j.at("file").get<std::string>(), j.at("sha256").get<std::string>(), std::nullopt};
  if (j.contains("size")) ref.size = j.at("size").get<int64_t>();
  if (j.contains("encrypted_size")) ref.encrypted_size = j.at("encrypted_size").get<int64_t>();
  return ref;
}

template <typename T, typename Parse>
std::vector<T> ArrayFromJson(const json& j, Parse parse) {
  std::vector<T> items;
  for (const json& item : j) items.push_back(parse(item));
  return items;
}

absl::Status CheckFileRef(const FileRef& ref, absl::string_view what) {
  const std::filesystem::path path(ref.file);
  if (ref.file.empty() || path.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", ref.file, "' must be a relative path inside the bundle"));
  }
  for (const auto& part : path) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " file '", ref.file, "' must not leave the bundle folder"));
    }
  }
  const bool hex =
      ref.sha256.size() == 64 && std::all_of(ref.sha256.begin(), ref.sha256.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!hex) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", ref.file, "' has a malformed sha256 '", ref.sha256, "'"));
  }
  constexpr int64_t kMaxSize = static_cast<int64_t>(kMaxFileBytes);
  if ((ref.size && (*ref.size < 0 || *ref.size > kMaxSize)) ||
      (ref.encrypted_size && (*ref.encrypted_size < 0 || *ref.encrypted_size > kMaxSize))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", ref.file, "' has a size outside 0..", kMaxSize));
  }
  if (ref.encrypted_size &&
      (!ref.size || *ref.encrypted_size != *ref.size + static_cast<int64_t>(kSealOverhead))) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " file '", ref.file, "': encrypted_size must be size + ", kSealOverhead));
  }
  return absl::OkStatus();
}

std::string CutLabel(std::optional<int> cut) {
  return cut.has_value() ? absl::StrCat("cut ", *cut) : std::string("the output");
}

}  // namespace

std::string BundleManifest::ToJson() const {
  json segments_json = json::array();
  for (const SegmentInfo& segment : segments) {
    segments_json.push_back(
        WithFileRef({{"begin_cut", segment.begin_cut},
                     {"end_cut", segment.end_cut ? json(*segment.end_cut) : json()},
                     {"inputs", ToJsonArray(segment.inputs)},
                     {"outputs", ToJsonArray(segment.outputs)},
                     {"macs", segment.macs},
                     {"param_bytes", segment.param_bytes}},
                    segment.module));
  }
  json cuts_json = json::array();
  for (const CutInfo& cut : cuts) {
    cuts_json.push_back({{"id", cut.id},
                         {"name", cut.name},
                         {"shape", cut.tensor.shape},
                         {"dtype", DtypeName(cut.tensor.dtype)},
                         {"bytes", cut.bytes},
                         {"codec", CodecJson(cut.codec)}});
  }
  json exits_json = json::array();
  for (const ExitInfo& exit : exits) {
    exits_json.push_back(
        WithFileRef({{"cut", exit.cut_id},
                     {"kind", exit.kind},
                     {"macs", exit.macs},
                     {"temperature", exit.temperature},
                     {"score", exit.score},
                     {"threshold", exit.threshold ? json(*exit.threshold) : json()},
                     {"exit_rate", exit.exit_rate ? json(*exit.exit_rate) : json()}},
                    exit.head));
  }
  json document = {
      {"format", kFormatName},
      {"format_version", kFormatVersion},
      {"name", name},
      {"version", version},
      {"source", {{"file", source.file}, {"sha256", source.sha256}}},
      {"inputs", ToJsonArray(inputs)},
      {"input_codec", CodecJson(input_codec)},
      {"cuts", cuts_json},
      {"segments", segments_json},
      {"exits", exits_json},
      {"verification",
       {{"inputs", ToJsonArray(verification.inputs)},
        {"outputs", ToJsonArray(verification.outputs)},
        {"rtol", verification.rtol},
        {"atol", verification.atol}}},
  };
  if (expires) document["expires"] = FormatExpiry(*expires);
  if (!encryption_key_id.empty()) {
    document["encryption"] = {{"cipher", kBundleCipher}, {"key_id", encryption_key_id}};
  }
  return document.dump(2) + "\n";
}

absl::StatusOr<BundleManifest> BundleManifest::FromJson(absl::string_view text,
                                                        absl::string_view origin) {
  BundleManifest manifest;
  try {
    const json j = json::parse(text.begin(), text.end());
    if (j.value("format", "") != kFormatName) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": not a cleave bundle manifest (\"format\" must be \"", kFormatName, "\")"));
    }
    const int version = j.at("format_version").get<int>();
    if (version != kFormatVersion) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": format_version ", version,
                                                     " is not supported (this build reads ",
                                                     kFormatVersion, ")"));
    }
    manifest.name = j.at("name").get<std::string>();
    if (j.contains("version")) {
      if (!j.at("version").is_number_unsigned()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": \"version\" must be a positive integer"));
      }
      manifest.version = j.at("version").get<uint64_t>();
    }
    if (j.contains("expires")) {
      const std::string text = j.at("expires").get<std::string>();
      absl::Time expires;
      std::string error;
      if (!absl::ParseTime(absl::RFC3339_full, text, &expires, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": \"expires\" must be an RFC 3339 time such as 2027-06-01T00:00:00Z, not '",
            text, "'"));
      }
      manifest.expires = expires;
    }
    if (j.contains("encryption")) {
      const json& encryption = j.at("encryption");
      if (encryption.at("cipher").get<std::string>() != kBundleCipher) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": encryption.cipher must be \"", kBundleCipher, "\""));
      }
      manifest.encryption_key_id = encryption.at("key_id").get<std::string>();
    }
    manifest.source = FileRef{j.at("source").at("file").get<std::string>(),
                              j.at("source").at("sha256").get<std::string>()};
    manifest.inputs = ArrayFromJson<TensorSpec>(j.at("inputs"), TensorSpecFromJson);
    if (j.contains("input_codec")) manifest.input_codec = CodecSpecFromJson(j.at("input_codec"));
    for (const json& c : j.at("cuts")) {
      CutInfo cut;
      cut.id = c.at("id").get<int>();
      cut.name = c.at("name").get<std::string>();
      cut.tensor = TensorSpecFromJson(c);
      cut.bytes = c.at("bytes").get<int64_t>();
      cut.codec = CodecSpecFromJson(c.at("codec"));
      manifest.cuts.push_back(std::move(cut));
    }
    for (const json& s : j.at("segments")) {
      SegmentInfo segment;
      segment.module = FileRefFromJson(s);
      segment.begin_cut = s.at("begin_cut").get<int>();
      if (!s.at("end_cut").is_null()) segment.end_cut = s.at("end_cut").get<int>();
      segment.inputs = ArrayFromJson<TensorSpec>(s.at("inputs"), TensorSpecFromJson);
      segment.outputs = ArrayFromJson<TensorSpec>(s.at("outputs"), TensorSpecFromJson);
      segment.macs = s.value("macs", int64_t{0});
      segment.param_bytes = s.value("param_bytes", int64_t{0});
      manifest.segments.push_back(std::move(segment));
    }
    for (const json& e : j.value("exits", json::array())) {
      ExitInfo exit;
      exit.cut_id = e.at("cut").get<int>();
      exit.head = FileRefFromJson(e);
      exit.kind = e.at("kind").get<std::string>();
      exit.macs = e.value("macs", int64_t{0});
      exit.temperature = e.at("temperature").get<double>();
      exit.score = e.at("score").get<std::string>();
      if (!e.at("threshold").is_null()) exit.threshold = e.at("threshold").get<double>();
      if (e.contains("exit_rate") && !e.at("exit_rate").is_null()) {
        exit.exit_rate = e.at("exit_rate").get<double>();
      }
      manifest.exits.push_back(std::move(exit));
    }
    const json& v = j.at("verification");
    manifest.verification.inputs = ArrayFromJson<FileRef>(v.at("inputs"), FileRefFromJson);
    manifest.verification.outputs = ArrayFromJson<FileRef>(v.at("outputs"), FileRefFromJson);
    manifest.verification.rtol = v.at("rtol").get<double>();
    manifest.verification.atol = v.at("atol").get<double>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": malformed manifest: ", e.what()));
  }
  if (absl::Status status = manifest.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", status.message()));
  }
  return manifest;
}

absl::Status BundleManifest::Validate() const {
  if (segments.empty()) return absl::InvalidArgumentError("bundle has no segments");
  if (version == 0) return absl::InvalidArgumentError("bundle version must be at least 1");
  for (const FileRef* ref : FileRefs()) {
    if (ref->encrypted_size && encryption_key_id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "file '", ref->file, "' is encrypted but the manifest names no encryption key"));
    }
  }
  if (segments.size() != cuts.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("bundle lists ", cuts.size(), " cuts but ",
                                                   segments.size(), " segments; expected ",
                                                   cuts.size() + 1));
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentInfo& segment = segments[i];
    CLEAVE_RETURN_IF_ERROR(CheckFileRef(segment.module, absl::StrCat("segment ", i)));
    const int expected_begin = i == 0 ? kInputCutId : cuts[i - 1].id;
    const std::optional<int> expected_end =
        i + 1 < segments.size() ? std::optional<int>(cuts[i].id) : std::nullopt;
    if (segment.begin_cut != expected_begin || segment.end_cut != expected_end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "segment ", i, " runs from cut ", segment.begin_cut, " to ", CutLabel(segment.end_cut),
          "; expected cut ", expected_begin, " to ", CutLabel(expected_end)));
    }
  }
  for (size_t i = 0; i < cuts.size(); ++i) {
    if (cuts[i].id <= (i == 0 ? kInputCutId : cuts[i - 1].id)) {
      return absl::InvalidArgumentError("cut ids must be positive and strictly increasing");
    }
  }
  for (const CutInfo& cut : cuts) {
    const CodecSpec& codec = cut.codec;
    if (codec.zstd_level < kMinZstdLevel || codec.zstd_level > kMaxZstdLevel) {
      return absl::InvalidArgumentError(absl::StrCat("cut ", cut.id, ": zstd level ",
                                                     codec.zstd_level, " out of range ",
                                                     kMinZstdLevel, "..", kMaxZstdLevel));
    }
    if (!codec.ranges.empty() && !IsAffineCodec(codec.codec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cut ", cut.id, ": codec ", CodecName(codec.codec), " takes no ranges"));
    }
    for (const ClipRange& range : codec.ranges) {
      if (!(range.min <= range.max)) {
        return absl::InvalidArgumentError(absl::StrCat("cut ", cut.id, ": clip range [", range.min,
                                                       ", ", range.max, "] is empty"));
      }
    }
  }
  int previous_exit = kInputCutId;
  for (const ExitInfo& exit : exits) {
    CLEAVE_RETURN_IF_ERROR(CheckFileRef(exit.head, absl::StrCat("exit at cut ", exit.cut_id)));
    if (FindCut(exit.cut_id) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit at cut ", exit.cut_id, " is not at a cut of the bundle"));
    }
    if (exit.cut_id <= previous_exit) {
      return absl::InvalidArgumentError("exits must be in cut order, one per cut");
    }
    previous_exit = exit.cut_id;
    if (!(exit.temperature > 0) || !std::isfinite(exit.temperature)) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit at cut ", exit.cut_id, ": temperature must be positive"));
    }
    CLEAVE_RETURN_IF_ERROR(ParseExitScore(exit.score).status());
    if (exit.exit_rate && !(*exit.exit_rate >= 0.0 && *exit.exit_rate <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit at cut ", exit.cut_id, ": exit_rate must be in [0, 1]"));
    }
    if (exit.threshold && !(*exit.threshold >= 0.0 && *exit.threshold <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit at cut ", exit.cut_id, ": threshold must be in [0, 1]"));
    }
  }
  for (const FileRef& ref : verification.inputs) {
    CLEAVE_RETURN_IF_ERROR(CheckFileRef(ref, "verification input"));
  }
  for (const FileRef& ref : verification.outputs) {
    CLEAVE_RETURN_IF_ERROR(CheckFileRef(ref, "verification output"));
  }
  return absl::OkStatus();
}

std::vector<std::string> BundleManifest::Files() const {
  std::vector<std::string> files;
  for (const FileRef* ref : FileRefs()) files.push_back(ref->file);
  return files;
}

std::vector<const FileRef*> BundleManifest::FileRefs() const {
  std::vector<const FileRef*> refs;
  for (const SegmentInfo& segment : segments) refs.push_back(&segment.module);
  for (const ExitInfo& exit : exits) refs.push_back(&exit.head);
  for (const FileRef& ref : verification.inputs) refs.push_back(&ref);
  for (const FileRef& ref : verification.outputs) refs.push_back(&ref);
  return refs;
}

FileRef FileRefFor(std::string file, absl::string_view bytes) {
  return FileRef{std::move(file), Sha256Hex(bytes), static_cast<int64_t>(bytes.size())};
}

std::string FormatExpiry(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", time, absl::UTCTimeZone());
}

const CutInfo* BundleManifest::FindCut(int id) const {
  for (const CutInfo& cut : cuts) {
    if (cut.id == id) return &cut;
  }
  return nullptr;
}

const CodecSpec& BundleManifest::CodecAt(int id) const {
  static const CodecSpec kRaw;
  if (id == kInputCutId) return input_codec;
  const CutInfo* cut = FindCut(id);
  return cut != nullptr ? cut->codec : kRaw;
}

const CutInfo* BundleManifest::FindCutNamed(absl::string_view name) const {
  for (const CutInfo& cut : cuts) {
    if (cut.name == name) return &cut;
  }
  return nullptr;
}

const ExitInfo* BundleManifest::FindExit(int cut_id) const {
  for (const ExitInfo& exit : exits) {
    if (exit.cut_id == cut_id) return &exit;
  }
  return nullptr;
}

std::string BundleManifest::DescribeResumableCuts() const {
  std::vector<int> ids;
  for (const SegmentInfo& segment : segments) ids.push_back(segment.begin_cut);
  return absl::StrJoin(ids, ", ");
}

std::string BundleIdOf(absl::string_view manifest_json) { return Sha256Hex(manifest_json); }

}  // namespace cleave::common

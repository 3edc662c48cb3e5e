// The bundle manifest (manifest.json): what a bundle holds — the model's inputs, the cuts it
// was split at, the segment files in execution order with their hashes, and the sample that
// proves the segments reproduce the original model. docs/BUNDLE_FORMAT.md documents the JSON.
// The bundle id is the SHA-256 of the manifest's bytes, so it names every file transitively.
#ifndef CLEAVE_COMMON_MANIFEST_H_
#define CLEAVE_COMMON_MANIFEST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/tensor_spec.h"

namespace cleave::common {

// The cut id that stands for the model's input: resuming there runs the whole model.
inline constexpr int kInputCutId = 0;

// A file of the bundle, relative to the bundle folder, with its content hash and size. The size
// is checked before the file is read (and so bounds what reading it allocates); bundles written
// before it was recorded have none, and a trust policy refuses them.
struct FileRef {
  std::string file;
  std::string sha256;
  std::optional<int64_t> size;
  // Set when the file is stored encrypted (bundle_crypto.h): its size on disk. `sha256` and
  // `size` stay the plaintext's, so encrypting a bundle does not change what its segments are.
  std::optional<int64_t> encrypted_size;
};

// The reference to a file `file` holding `bytes`.
[[nodiscard]] FileRef FileRefFor(std::string file, absl::string_view bytes);

// A point in the model where exactly one tensor is live.
struct CutInfo {
  int id = 0;
  std::string name;  // module scope such as "layer2.1"
  TensorSpec tensor;
  int64_t bytes = 0;  // size of the tensor in its dtype at the sample batch size
  // How the device encodes the activation crossing this cut (with calibrated clip ranges for
  // the affine codecs).
  CodecSpec codec;
};

// A TorchScript file that runs the model from `begin_cut` to `end_cut` (the output when
// `end_cut` is empty).
struct SegmentInfo {
  FileRef module;
  int begin_cut = kInputCutId;
  std::optional<int> end_cut;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;  // flattened, for the last segment
  // Estimated multiply-accumulates (conv, linear, matmul) at the sample batch size, and the
  // bytes of parameters the segment holds.
  int64_t macs = 0;
  int64_t param_bytes = 0;
};

// A small classifier attached at a cut: the device evaluates it on the activation after the
// segment ending there and answers locally when it is confident enough.
struct ExitInfo {
  int cut_id = 0;
  FileRef head;                    // TorchScript: activation -> logits [N, classes]
  std::string kind;                // head architecture, e.g. "pool-linear"
  int64_t macs = 0;                // estimated multiply-accumulates per sample
  double temperature = 1.0;        // logits are divided by it before scoring
  std::string score = "max_prob";  // "max_prob" or "entropy" (confidence.h)
  // Exit when the confidence reaches this; empty = not calibrated yet (never exits).
  std::optional<double> threshold;
  // Share of all held-out inputs that left here at calibration (after earlier exits); what
  // `cleave plan` expects to save. Empty before calibration.
  std::optional<double> exit_rate;
};

// A sample input and the original model's output on it, stored as tensor frames.
struct VerificationSample {
  std::vector<FileRef> inputs;
  std::vector<FileRef> outputs;  // the original model's output, flattened
  double rtol = 1e-5;
  double atol = 1e-5;
};

struct BundleManifest {
  static constexpr int kFormatVersion = 1;

  std::string name;
  // Release metadata a signature vouches for (trust.h): versions of one name only increase, and
  // a trust policy refuses a manifest past its expiry. `cleave sign` sets both.
  uint64_t version = 1;
  std::optional<absl::Time> expires;
  // The id of the key its encrypted files were sealed with (BundleKey::id); empty when none is.
  std::string encryption_key_id;
  FileRef source;  // the model file the bundle was cut from (name only, and its hash)
  std::vector<TensorSpec> inputs;
  // How the device encodes the model's input when it offloads everything (cut 0): camera
  // frames quantize well, so this is usually the bundle's codec with a calibrated range.
  CodecSpec input_codec;
  std::vector<CutInfo> cuts;  // the cuts between segments, in execution order
  std::vector<SegmentInfo> segments;
  std::vector<ExitInfo> exits;  // in cut order; each at one of `cuts`
  VerificationSample verification;

  // Returns the canonical JSON text (sorted keys, two-space indent, trailing newline); the same
  // manifest always gives the same bytes.
  [[nodiscard]] std::string ToJson() const;

  // Parses and validates manifest JSON; `origin` names the file in error messages.
  [[nodiscard]] static absl::StatusOr<BundleManifest> FromJson(absl::string_view json,
                                                               absl::string_view origin);

  // Returns OK when the segments form one chain from the input to the output through the
  // listed cuts and every file path stays inside the bundle folder.
  [[nodiscard]] absl::Status Validate() const;

  // Every file the manifest names (segments, exit heads, verification frames), relative to the
  // bundle folder, in manifest order; manifest.json itself is not among them.
  [[nodiscard]] std::vector<std::string> Files() const;
  [[nodiscard]] std::vector<const FileRef*> FileRefs() const;

  // Returns the cut with `id`, or nullptr.
  [[nodiscard]] const CutInfo* FindCut(int id) const;

  // Returns the cut named `name` (as `cleave inspect` lists it, e.g. "layer2"), or nullptr.
  [[nodiscard]] const CutInfo* FindCutNamed(absl::string_view name) const;

  // How the tensor crossing cut `id` is encoded: `input_codec` at the input (0), the cut's
  // codec otherwise, raw fp32 for a cut the bundle does not list.
  [[nodiscard]] const CodecSpec& CodecAt(int id) const;

  // Returns the exit at cut `id`, or nullptr.
  [[nodiscard]] const ExitInfo* FindExit(int cut_id) const;

  // Lists the cut ids a request may resume from, e.g. "0, 3, 7", for error messages.
  [[nodiscard]] std::string DescribeResumableCuts() const;
};

// An expiry as the manifest writes it: RFC 3339 in UTC to the second, e.g.
// "2027-06-01T00:00:00Z".
[[nodiscard]] std::string FormatExpiry(absl::Time time);

// The bundle id for a manifest's exact bytes: lowercase hex SHA-256.
[[nodiscard]] std::string BundleIdOf(absl::string_view manifest_json);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_MANIFEST_H_

// Whole-file reads and crash-safe writes with errors that name the path. A write that is
// interrupted at any point — the process killed, the machine losing power — leaves the old or
// the new complete contents, never a mix: files through a temporary file, fsync and rename;
// folders (bundles) through a hidden staging folder swapped in whole.
#ifndef CLEAVE_COMMON_FILES_H_
#define CLEAVE_COMMON_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Files larger than this are refused by ReadFile unless the caller names a bound.
inline constexpr uint64_t kMaxFileBytes = uint64_t{4} << 30;
// Bounds for the small files cleave reads: manifests, configs, profiles, plans and traces.
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{64} << 20;

// Returns the contents of `path` when it is a regular file (or a link to one) of at most
// `max_bytes` bytes. NOT_FOUND when it does not exist; INVALID_ARGUMENT naming the path for a
// folder, a device, a FIFO or a larger file — checked before anything is read, so a path like
// /dev/zero cannot make a reader allocate without bound.
[[nodiscard]] absl::StatusOr<std::string> ReadFile(const std::string& path,
                                                   uint64_t max_bytes = kMaxFileBytes);

// Writes `contents` to `path` through a temporary file that is fsynced and renamed over it,
// then fsyncs the folder, so readers (such as an edge server watching a bundle folder) never
// see a half-written file and a crash leaves the old or the new file.
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Creates `path` with `mode` and writes `contents` (fsynced). The file is created with its mode
// (O_EXCL), never widened later, so a secret is never readable by others in between.
// ALREADY_EXISTS when `path` exists: a key is never overwritten.
[[nodiscard]] absl::Status WriteNewFile(const std::string& path, absl::string_view contents,
                                        unsigned int mode);

// Refuses a secret key file another user could read: a mode with any group or other bit, or a
// file that is not a regular file. `what` names it in the error ("signing key", "bundle key").
[[nodiscard]] absl::Status CheckPrivateFile(const std::string& path, absl::string_view what);

// A folder replaced as a whole. Its files are written into a hidden staging folder beside the
// target (".NAME.staging", which bundle scanners skip); Commit() fsyncs every file and folder
// in it, swaps it with the target in one step (renameat2 RENAME_EXCHANGE; a plain rename when
// there is no target yet), fsyncs the parent and removes the old folder. Killed at any point,
// the target holds the old or the new complete folder; the next Begin for the same target
// clears what was left. One writer per target at a time.
//
// Thread-safety: none (one writer owns it).
class StagedFolder {
 public:
  // Starts replacing `target` (which need not exist). FAILED_PRECONDITION when the target is
  // not a folder.
  [[nodiscard]] static absl::StatusOr<StagedFolder> Begin(const std::string& target);

  StagedFolder(StagedFolder&& other) noexcept;
  StagedFolder& operator=(StagedFolder&&) = delete;
  // Removes the staging folder unless Commit succeeded.
  ~StagedFolder();

  // Where to write the new folder's files.
  const std::string& path() const { return staging_; }
  const std::string& target() const { return target_; }

  // Writes the new folder's file `relative` (folders created as needed). Nothing is fsynced
  // here: Commit syncs the whole staged tree once.
  [[nodiscard]] absl::Status Write(const std::string& relative, absl::string_view contents);

  // Carries the target's file `relative` into the new folder unchanged (a hard link, or a copy
  // across file systems). NOT_FOUND when the target has no such file.
  [[nodiscard]] absl::Status Keep(const std::string& relative);

  // Makes the staged folder the target (see the class comment). Once it returns OK the
  // StagedFolder is spent.
  [[nodiscard]] absl::Status Commit();

 private:
  StagedFolder(std::string target, std::string staging, std::string old)
      : target_(std::move(target)), staging_(std::move(staging)), old_(std::move(old)) {}

  std::string target_, staging_, old_;
  bool committed_ = false;
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_FILES_H_

#include "cleave/common/files.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc, _GNU_SOURCE)
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/status_macros.h"

namespace cleave::common {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

// fsync of a file or folder by path: what makes a rename or a file's bytes survive power loss.
absl::Status SyncPath(const std::string& path, bool folder) {
  const int fd = open(path.c_str(), (folder ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path);
  const bool synced = fsync(fd) == 0;
  const int saved = errno;
  close(fd);
  errno = saved;
  return synced ? absl::OkStatus() : ErrnoError("fsync", path);
}

std::string ParentOf(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Writes `contents` to `path` as it is: no temporary file, no fsync.
absl::Status WritePlainFile(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.flush();
  if (!out) return absl::DataLossError(absl::StrCat("error writing ", path));
  return absl::OkStatus();
}

// Every file and folder under `root`, then `root` itself.
absl::Status SyncTree(const std::string& root) {
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(root, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    CLEAVE_RETURN_IF_ERROR(SyncPath(it->path().string(), it->is_directory(error)));
  }
  if (error) return absl::InternalError(absl::StrCat("cannot list ", root, ": ", error.message()));
  return SyncPath(root, /*folder=*/true);
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path, uint64_t max_bytes) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) return absl::NotFoundError(absl::StrCat("file not found: ", path));
  if (fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, expected a file"));
  }
  if (!fs::is_regular_file(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file (a device, FIFO or socket)"));
  }
  const uint64_t size = fs::file_size(path, error);
  if (!error && size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", size, " bytes, more than the ", max_bytes, " allowed"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  std::string bytes = std::move(contents).str();
  if (bytes.size() > max_bytes) {  // grew while being read
    return absl::InvalidArgumentError(
        absl::StrCat(path, " grew past the ", max_bytes, " bytes allowed while being read"));
  }
  return bytes;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  const std::string temporary = path + ".tmp";
  CLEAVE_RETURN_IF_ERROR(WritePlainFile(temporary, contents));
  CLEAVE_RETURN_IF_ERROR(SyncPath(temporary, /*folder=*/false));
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return ErrnoError(absl::StrCat("rename ", temporary, " to"), path);
  }
  return SyncPath(ParentOf(path), /*folder=*/true);
}

absl::StatusOr<StagedFolder> StagedFolder::Begin(const std::string& target) {
  const fs::path path = fs::absolute(fs::path(target)).lexically_normal();
  const std::string name = path.filename().string();
  const std::string parent = path.parent_path().string();
  std::error_code error;
  if (fs::exists(path, error) && !fs::is_directory(path, error)) {
    return absl::FailedPreconditionError(absl::StrCat(target, " exists and is not a folder"));
  }
  fs::create_directories(parent, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", parent, ": ", error.message()));
  }
  StagedFolder folder(path.string(), parent + "/." + name + ".staging",
                      parent + "/." + name + ".old");
  // An earlier write killed between its two renames (only without RENAME_EXCHANGE) left the
  // target at the old name: put it back. Anything else left over is an unfinished staging
  // folder or an old folder not yet removed.
  if (!fs::exists(path, error) && fs::exists(folder.old_, error)) {
    fs::rename(folder.old_, path, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot restore ", folder.old_, " to ", target, ": ", error.message()));
    }
  }
  fs::remove_all(folder.staging_, error);
  fs::remove_all(folder.old_, error);
  fs::create_directory(folder.staging_, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", folder.staging_, ": ", error.message()));
  }
  return folder;
}

StagedFolder::StagedFolder(StagedFolder&& other) noexcept
    : target_(std::move(other.target_)),
      staging_(std::move(other.staging_)),
      old_(std::move(other.old_)),
      committed_(std::exchange(other.committed_, true)) {}

StagedFolder::~StagedFolder() {
  if (committed_ || staging_.empty()) return;
  std::error_code error;
  fs::remove_all(staging_, error);
}

absl::Status StagedFolder::Write(const std::string& relative, absl::string_view contents) {
  const fs::path path = fs::path(staging_) / relative;
  std::error_code error;
  fs::create_directories(path.parent_path(), error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", path.parent_path().string(), ": ", error.message()));
  }
  return WritePlainFile(path.string(), contents);
}

absl::Status StagedFolder::Keep(const std::string& relative) {
  const fs::path from = fs::path(target_) / relative;
  const fs::path to = fs::path(staging_) / relative;
  std::error_code error;
  if (!fs::is_regular_file(from, error)) {
    return absl::NotFoundError(absl::StrCat("cannot keep ", from.string(), ": not a file"));
  }
  fs::create_directories(to.parent_path(), error);
  fs::create_hard_link(from, to, error);
  if (error) {
    error.clear();
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, error);
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot keep ", from.string(), " in ", staging_, ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status StagedFolder::Commit() {
  if (committed_) return absl::FailedPreconditionError("StagedFolder committed twice");
  CLEAVE_RETURN_IF_ERROR(SyncTree(staging_));
  std::error_code error;
  if (!fs::exists(target_, error)) {
    if (std::rename(staging_.c_str(), target_.c_str()) != 0) {
      return ErrnoError(absl::StrCat("rename ", staging_, " to"), target_);
    }
  } else if (renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) ==
             0) {
    // The old folder is now at the staging name; keep it under the old name until removed.
    if (std::rename(staging_.c_str(), old_.c_str()) != 0) {
      return ErrnoError(absl::StrCat("rename ", staging_, " to"), old_);
    }
  } else if (errno == EINVAL || errno == ENOSYS) {
    // No RENAME_EXCHANGE on this file system: two renames. Killed between them, the target is
    // missing and the old folder waits at `old_`, where the next Begin restores it from.
    if (std::rename(target_.c_str(), old_.c_str()) != 0) {
      return ErrnoError(absl::StrCat("rename ", target_, " to"), old_);
    }
    if (std::rename(staging_.c_str(), target_.c_str()) != 0) {
      return ErrnoError(absl::StrCat("rename ", staging_, " to"), target_);
    }
  } else {
    return ErrnoError(absl::StrCat("swap ", staging_, " with"), target_);
  }
  committed_ = true;
  CLEAVE_RETURN_IF_ERROR(SyncPath(ParentOf(target_), /*folder=*/true));
  fs::remove_all(old_, error);
  return absl::OkStatus();
}

absl::Status WriteNewFile(const std::string& path, absl::string_view contents, unsigned int mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists; refusing to overwrite it"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const bool ok = written == contents.size() && fsync(fd) == 0;
  close(fd);
  if (!ok) return absl::DataLossError(absl::StrCat("error writing ", path));
  return absl::OkStatus();
}

absl::Status CheckPrivateFile(const std::string& path, absl::string_view what) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, " cannot be read: ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is not a regular file"));
  }
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s %s is accessible to its group or others (mode %03o); chmod 600 it",
                        what, path, info.st_mode & 0777));
  }
  return absl::OkStatus();
}

}  // namespace cleave::common

#include "cleave/edge_server/bundle_registry.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/log.h"
#include "cleave/common/manifest.h"
#include "cleave/common/mutex.h"

namespace cleave::edge_server {
namespace {

namespace fs = std::filesystem;
using common::Log;
using common::LogLevel;

// Folders under `root` (itself included) that hold a manifest.json, sorted. Hidden folders
// (a name starting with '.') and what is below them are skipped: that is where writers stage a
// bundle before swapping it in (common::StagedFolder).
std::vector<std::string> BundleFolders(const std::string& root) {
  std::vector<std::string> dirs;
  std::error_code error;
  if (fs::exists(fs::path(root) / "manifest.json", error)) dirs.push_back(root);
  for (auto it = fs::recursive_directory_iterator(root, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_directory(error)) continue;
    if (it->path().filename().string().rfind('.', 0) == 0) {
      it.disable_recursion_pending();
      continue;
    }
    if (fs::exists(it->path() / "manifest.json", error)) dirs.push_back(it->path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// The cuts a request may resume `bundle` from: where its segments begin.
std::vector<int> ResumableCuts(const common::Bundle& bundle) {
  std::vector<int> cuts;
  for (const common::SegmentInfo& segment : bundle.manifest().segments) {
    cuts.push_back(segment.begin_cut);
  }
  return cuts;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BundleRegistry>> BundleRegistry::LoadFrom(
    const std::string& root, const common::Bundle::LoadOptions& load, const EdgeMetrics* metrics) {
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("bundle folder not found: ", root));
  }
  std::unique_ptr<BundleRegistry> registry(new BundleRegistry(root, load, metrics));
  registry->Rescan();
  return registry;
}

BundleRegistry::Changes BundleRegistry::Rescan() {
  Changes changes;
  std::map<std::string, std::string> seen;  // folder -> id found now
  struct Pending {
    std::string dir, id;
    uint64_t version = 0;
  };
  std::vector<Pending> pending;
  for (const std::string& dir : BundleFolders(root_)) {
    auto manifest =
        common::ReadFile((fs::path(dir) / "manifest.json").string(), common::kMaxTextFileBytes);
    if (!manifest.ok()) continue;  // removed while scanning
    const std::string id = common::BundleIdOf(*manifest);
    auto known = dir_ids_.find(dir);
    if (known != dir_ids_.end() && known->second == id) {
      seen[dir] = id;
      continue;
    }
    auto parsed = common::BundleManifest::FromJson(*manifest, dir);
    pending.push_back({dir, id, parsed.ok() ? parsed->version : 0});
  }
  // Newest versions first: under a trust policy an older version of a name is refused once a
  // newer one is accepted, so every scan (and every restart) refuses the same folders.
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Pending& a, const Pending& b) { return a.version > b.version; });
  for (const Pending& candidate : pending) {
    const std::string& dir = candidate.dir;
    const std::string& id = candidate.id;
    auto known = dir_ids_.find(dir);
    // New or changed: load and verify before it replaces anything.
    auto bundle = common::Bundle::Load(dir, load_);
    absl::Status status = bundle.status();
    if (status.ok() && (*bundle)->id() != id) {
      status = absl::AbortedError("manifest changed while loading; retrying on the next scan");
    }
    if (status.ok()) status = (*bundle)->Verify().status();
    // Every check passed: the version is recorded as accepted right before it is served.
    if (status.ok() && load_.trust != nullptr) {
      status = load_.trust->Accept((*bundle)->manifest(), id);
    }
    if (!status.ok()) {
      ++changes.refused;
      const std::string message(status.message());
      changes.refusals[dir] = message;
      if (dir_refusals_[dir] != message) {  // log each distinct problem once
        Log(LogLevel::kError, "bundle_refused", {{"dir", dir}, {"error", message}});
        dir_refusals_[dir] = message;
      }
      if (known != dir_ids_.end()) seen[dir] = known->second;  // keep serving the old one
      continue;
    }
    dir_refusals_.erase(dir);
    Log(LogLevel::kInfo, known == dir_ids_.end() ? "bundle_loaded" : "bundle_updated",
        {{"dir", dir},
         {"name", (*bundle)->manifest().name},
         {"id", id},
         {"cuts", (*bundle)->manifest().DescribeResumableCuts()},
         {"exits", absl::StrCat((*bundle)->manifest().exits.size())}});
    ServedBundle served{*bundle, nullptr};
    if (metrics_ != nullptr)
      served.metrics = metrics_->ForBundle((*bundle)->manifest().name, ResumableCuts(**bundle));
    {
      common::MutexLock lock(&mutex_);
      bundles_[id] = std::move(served);
    }
    seen[dir] = id;
    ++changes.added;
  }
  // Drop ids no folder provides any more (a folder removed, or its manifest replaced).
  std::set<std::string> live;
  for (const auto& [dir, id] : seen) live.insert(id);
  for (const auto& [dir, id] : dir_ids_) {
    if (live.count(id) > 0) continue;
    common::MutexLock lock(&mutex_);
    if (bundles_.erase(id) > 0) {
      Log(LogLevel::kInfo, "bundle_unloaded", {{"dir", dir}, {"id", id}});
      ++changes.removed;
    }
  }
  for (auto it = dir_refusals_.begin(); it != dir_refusals_.end();) {
    it = seen.count(it->first) > 0 || fs::exists(it->first) ? std::next(it)
                                                            : dir_refusals_.erase(it);
  }
  dir_ids_ = std::move(seen);
  return changes;
}

ServedBundle BundleRegistry::Find(absl::string_view id) const {
  common::MutexLock lock(&mutex_);
  auto it = bundles_.find(id);
  return it == bundles_.end() ? ServedBundle{} : it->second;
}

std::vector<std::shared_ptr<const common::Bundle>> BundleRegistry::List() const {
  common::MutexLock lock(&mutex_);
  std::vector<std::shared_ptr<const common::Bundle>> list;
  for (const auto& [id, served] : bundles_) list.push_back(served.bundle);
  return list;
}

}  // namespace cleave::edge_server

#include "cleave/edge_server/bundle_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cleave/common/log.h"

namespace cleave::edge_server {

namespace fs = std::filesystem;
using common::Log;
using common::LogLevel;

absl::StatusOr<std::unique_ptr<BundleRegistry>> BundleRegistry::LoadFrom(const std::string& root) {
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("bundle folder not found: ", root));
  }
  std::vector<std::string> dirs;
  if (fs::exists(fs::path(root) / "manifest.json")) dirs.push_back(root);
  for (auto it = fs::recursive_directory_iterator(root, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_directory() && fs::exists(it->path() / "manifest.json")) {
      dirs.push_back(it->path().string());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  auto registry = std::make_unique<BundleRegistry>();
  for (const std::string& dir : dirs) {
    auto bundle = common::Bundle::Load(dir);
    absl::Status status = bundle.status();
    if (status.ok()) status = (*bundle)->Verify().status();
    if (!status.ok()) {
      Log(LogLevel::kError, "bundle_refused",
          {{"dir", dir}, {"error", std::string(status.message())}});
      continue;
    }
    Log(LogLevel::kInfo, "bundle_loaded",
        {{"dir", dir},
         {"name", (*bundle)->manifest().name},
         {"id", (*bundle)->id()},
         {"cuts", (*bundle)->manifest().DescribeResumableCuts()}});
    registry->bundles_[(*bundle)->id()] = *bundle;
  }
  return registry;
}

std::shared_ptr<const common::Bundle> BundleRegistry::Find(absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = bundles_.find(id);
  return it == bundles_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const common::Bundle>> BundleRegistry::List() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<const common::Bundle>> list;
  for (const auto& [id, bundle] : bundles_) list.push_back(bundle);
  return list;
}

}  // namespace cleave::edge_server

// The bundles an edge server serves, keyed by bundle id. Loaded from a folder tree: every
// folder holding a manifest.json (e.g. bundles/<name>/<version>/) is a bundle. A bundle that
// fails its hash or equivalence check is refused with a log line; the rest are served.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_
#define CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/bundle.h"

namespace cleave::edge_server {

class BundleRegistry {
 public:
  // Loads every bundle under `root`. Returns NOT_FOUND when `root` does not exist.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BundleRegistry>> LoadFrom(
      const std::string& root);

  // Returns the bundle with `id`, or nullptr.
  [[nodiscard]] std::shared_ptr<const common::Bundle> Find(absl::string_view id) const;

  // Returns every loaded bundle, ordered by id.
  [[nodiscard]] std::vector<std::shared_ptr<const common::Bundle>> List() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const common::Bundle>, std::less<>> bundles_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_

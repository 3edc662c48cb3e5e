// The edge's model repository: the bundles under a folder tree (any folder holding a
// manifest.json, e.g. bundles/<name>/<version>/), keyed by bundle id. Rescan() brings it in
// line with the folder — new bundles are loaded, removed ones dropped, and a changed manifest
// (a new bundle id) replaces the old one atomically — while requests already running keep the
// bundle they started with (they hold a shared_ptr). A bundle that fails its hash, trust or
// equivalence check is refused with a log line, and the version it would have replaced keeps
// serving; the rest keep serving too. New folders load newest version first. Each bundle is served
// with its metric children, looked up once when it is loaded.
//
// Thread-safety: every method is thread-safe; Rescan calls may not overlap (one watcher).
#ifndef CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_
#define CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/bundle.h"
#include "cleave/common/mutex.h"
#include "cleave/edge_server/edge_metrics.h"

namespace cleave::edge_server {

// A bundle as the edge serves it.
struct ServedBundle {
  std::shared_ptr<const common::Bundle> bundle;  // null: not served
  std::shared_ptr<const BundleMetrics> metrics;  // null without metrics
};

class BundleRegistry {
 public:
  // Creates the registry for `root` and loads what is there. NOT_FOUND when `root` does not
  // exist. REQUIRES: `metrics` (may be null) outlives the registry.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BundleRegistry>> LoadFrom(
      const std::string& root, const common::Bundle::LoadOptions& load = {},
      const EdgeMetrics* metrics = nullptr);

  struct Changes {
    int added = 0;
    int removed = 0;
    int refused = 0;
    std::map<std::string, std::string> refusals;  // folder -> why it was refused
    bool any() const { return added > 0 || removed > 0; }
  };

  // Reloads new and changed bundles and drops removed ones.
  Changes Rescan();

  // Returns the bundle with `id` and its metrics; a null bundle when none has that id.
  [[nodiscard]] ServedBundle Find(absl::string_view id) const;

  // Returns every loaded bundle, ordered by id.
  [[nodiscard]] std::vector<std::shared_ptr<const common::Bundle>> List() const;

 private:
  BundleRegistry(std::string root, common::Bundle::LoadOptions load, const EdgeMetrics* metrics)
      : root_(std::move(root)), load_(load), metrics_(metrics) {}

  const std::string root_;
  const common::Bundle::LoadOptions load_;
  const EdgeMetrics* const metrics_;
  mutable common::Mutex mutex_;
  std::map<std::string, ServedBundle, std::less<>> bundles_ ABSL_GUARDED_BY(mutex_);  // by id
  // Scan state, touched by Rescan only.
  std::map<std::string, std::string> dir_ids_;       // folder -> id of the bundle loaded from it
  std::map<std::string, std::string> dir_refusals_;  // folder -> last error logged for it
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_BUNDLE_REGISTRY_H_

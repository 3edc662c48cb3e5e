#include "cleave/edge_server/edge_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/log.h"
#include "cleave/common/machine.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/units.h"
#include "nlohmann/json.hpp"

namespace cleave::edge_server {
namespace {

using common::Log;
using common::LogLevel;
using nlohmann::json;

absl::Status ConfigError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Reads {"max_batch_size": N, "max_queue_delay_us": N} into `batching`.
absl::Status ReadBatching(const std::string& path, const std::string& where, const json& j,
                          BatchingOptions* batching) {
  for (const auto& [key, value] : j.items()) {
    if (key == "max_batch_size") {
      batching->max_batch_size = value.get<int>();
      if (batching->max_batch_size < 1) return ConfigError(path, where + ".max_batch_size < 1");
    } else if (key == "max_request_batch") {
      batching->max_request_batch = value.get<int64_t>();
      if (batching->max_request_batch < 1) {
        return ConfigError(path, where + ".max_request_batch < 1");
      }
    } else if (key == "max_queue_delay_us") {
      batching->max_queue_delay = std::chrono::microseconds(value.get<int64_t>());
      if (value.get<int64_t>() < 0) return ConfigError(path, where + ".max_queue_delay_us < 0");
    } else if (key != "models") {
      return ConfigError(path, absl::StrCat("unknown key ", where, ".", key));
    }
  }
  return absl::OkStatus();
}

// "trust": {"dir": ..., "threshold": K, "state_file": ..., "clock_slack": "1h"}.
absl::Status ReadTrust(const std::string& path, const json& j, common::TrustOptions* trust) {
  for (const auto& [key, value] : j.items()) {
    if (key == "dir") {
      trust->dir = value.get<std::string>();
    } else if (key == "threshold") {
      trust->threshold = value.get<int>();
      if (trust->threshold < 1) return ConfigError(path, "trust.threshold < 1");
    } else if (key == "state_file") {
      trust->state_file = value.get<std::string>();
    } else if (key == "clock_slack") {
      auto slack = common::ParseDuration(value.get<std::string>());
      if (!slack.ok()) {
        return ConfigError(path, absl::StrCat("trust.clock_slack: ", slack.status().message()));
      }
      trust->clock_slack = absl::FromChrono(*slack);
    } else {
      return ConfigError(path, absl::StrCat("unknown key trust.", key));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyConfigFile(const std::string& path, EdgeServerOptions* options) {
  CLEAVE_ASSIGN_OR_RETURN(std::string text, common::ReadFile(path, common::kMaxTextFileBytes));
  try {
    const json config = json::parse(text);
    if (!config.is_object()) return ConfigError(path, "expected a JSON object");
    for (const auto& [key, value] : config.items()) {
      if (key == "bundles") {
        options->bundles_dir = value.get<std::string>();
      } else if (key == "listen") {
        options->listen = value.get<std::string>();
      } else if (key == "metrics_listen") {
        options->metrics_listen = value.get<std::string>();
      } else if (key == "workers") {
        options->workers = value.get<size_t>();
      } else if (key == "max_queue") {
        options->max_queue = value.get<size_t>();
      } else if (key == "idle_spin_us") {
        options->idle_spin = std::chrono::microseconds(value.get<int64_t>());
        if (options->idle_spin.count() < 0) return ConfigError(path, "idle_spin_us < 0");
      } else if (key == "intra_op_threads") {
        options->intra_op_threads = value.get<int>();
      } else if (key == "optimize_segments") {
        options->optimize_segments = value.get<bool>();
      } else if (key == "max_message_mb") {
        options->max_message_bytes = value.get<int>() << 20;
      } else if (key == "max_activation_elements") {
        options->limits.max_elements = value.get<uint64_t>();
      } else if (key == "max_inflight_mb") {
        options->max_inflight_bytes = value.get<uint64_t>() << 20;
        if (options->max_inflight_bytes == 0) return ConfigError(path, "max_inflight_mb < 1");
      } else if (key == "max_peer_inflight") {
        options->max_peer_inflight = value.get<size_t>();
      } else if (key == "max_stream_inflight") {
        options->max_stream_inflight = value.get<size_t>();
        if (options->max_stream_inflight < 1) return ConfigError(path, "max_stream_inflight < 1");
      } else if (key == "max_connection_streams") {
        options->max_connection_streams = value.get<int>();
        if (options->max_connection_streams < 1) {
          return ConfigError(path, "max_connection_streams < 1");
        }
      } else if (key == "watch_interval_ms") {
        options->watch_interval = std::chrono::milliseconds(value.get<int64_t>());
      } else if (key == "bundle_key") {
        options->bundle_key_file = value.get<std::string>();
      } else if (key == "trust") {
        CLEAVE_RETURN_IF_ERROR(ReadTrust(path, value, &options->trust));
      } else if (key == "batching") {
        CLEAVE_RETURN_IF_ERROR(ReadBatching(path, "batching", value, &options->default_batching));
        const json models = value.value("models", json::object());
        for (const auto& [model, entry] : models.items()) {
          BatchingOptions batching = options->default_batching;
          CLEAVE_RETURN_IF_ERROR(
              ReadBatching(path, absl::StrCat("batching.models.", model), entry, &batching));
          options->batching_by_model[model] = batching;
        }
      } else {
        return ConfigError(path, absl::StrCat("unknown key '", key, "'"));
      }
    }
  } catch (const json::exception& e) {
    return ConfigError(path, e.what());
  }
  if (options->workers < 1 || options->max_queue < 1 || options->intra_op_threads < 1 ||
      options->max_message_bytes < (1 << 20)) {
    return ConfigError(path,
                       "workers, max_queue, intra_op_threads and max_message_mb must be >= 1");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EdgeServer>> EdgeServer::Start(const EdgeServerOptions& options) {
  std::unique_ptr<EdgeServer> server(new EdgeServer());
  CLEAVE_ASSIGN_OR_RETURN(server->metrics_, EdgeMetrics::Create(&server->metrics_registry_));
  common::Bundle::LoadOptions load;
  load.optimize_for_inference = options.optimize_segments;
  load.measure_forward_memory = true;  // what admission charges requests for
  if (!options.bundle_key_file.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(load.key, common::BundleKey::Read(options.bundle_key_file));
  }
  if (options.trust.enabled()) {
    CLEAVE_ASSIGN_OR_RETURN(load.trust, common::TrustPolicy::Create(options.trust));
    common::Log(common::LogLevel::kInfo, "bundles_verified",
                {{"trust", options.trust.dir},
                 {"keys", absl::StrCat(load.trust->num_keys())},
                 {"threshold", absl::StrCat(load.trust->threshold())}});
  } else {
    common::Log(common::LogLevel::kWarning, "bundles_not_verified",
                {{"why", "no trust folder (--trust): any bundle in the folder is served"}});
  }
  CLEAVE_ASSIGN_OR_RETURN(server->registry_, BundleRegistry::LoadFrom(options.bundles_dir, load,
                                                                      server->metrics_.get()));
  AdmissionOptions admission;
  admission.max_inflight_bytes =
      options.max_inflight_bytes > 0 ? options.max_inflight_bytes : common::UsableMemoryBytes() / 4;
  admission.max_peer_inflight = options.max_peer_inflight;
  server->admission_ = std::make_unique<AdmissionControl>(admission, server->metrics_.get());
  DynamicBatcher::Options batcher;
  batcher.workers = options.workers;
  batcher.max_queue = options.max_queue;
  batcher.idle_spin = options.idle_spin;
  batcher.default_batching = options.default_batching;
  batcher.batching_by_model = options.batching_by_model;
  batcher.prepare_worker = &BatchRunner::PrepareThread;
  server->runner_ = std::make_unique<BatchRunner>(options.limits);
  server->batcher_ = std::make_unique<DynamicBatcher>(
      batcher, [runner = server->runner_.get()](std::vector<BatchJob> batch) {
        runner->Run(std::move(batch));
      });
  InferenceServiceOptions service;
  service.limits = options.limits;
  service.max_stream_inflight = options.max_stream_inflight;
  server->service_ =
      std::make_unique<InferenceService>(service, server->registry_.get(), server->batcher_.get(),
                                         server->admission_.get(), server->metrics_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_connection_streams);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use or invalid?)"));
  }
  if (!options.metrics_listen.empty()) {
    MetricsHttpServerOptions http;
    http.listen = options.metrics_listen;
    EdgeServer* self = server.get();
    CLEAVE_ASSIGN_OR_RETURN(server->http_,
                            MetricsHttpServer::Start(http, &server->metrics_registry_,
                                                     [self] { return self->ready_.load(); }));
  }
  server->PublishBundles();
  server->ready_ = true;
  if (options.watch_interval.count() > 0) {
    server->watcher_ = std::thread(
        [self = server.get(), interval = options.watch_interval] { self->Watch(interval); });
  }
  Log(LogLevel::kInfo, "serving",
      {{"listen", options.listen},
       {"port", absl::StrCat(server->port_)},
       {"metrics_port", absl::StrCat(server->metrics_port())},
       {"bundles", absl::StrCat(server->registry_->List().size())},
       {"workers", absl::StrCat(options.workers)},
       {"max_inflight_mb", absl::StrCat(admission.max_inflight_bytes >> 20)}});
  return server;
}

EdgeServer::~EdgeServer() { Shutdown(); }

int EdgeServer::metrics_port() const { return http_ != nullptr ? http_->port() : 0; }

BundleRegistry::Changes EdgeServer::RescanBundles() {
  common::MutexLock lock(&mutex_);
  if (shutting_down_) return {};
  const BundleRegistry::Changes changes = registry_->Rescan();
  if (changes.any()) {
    // Publish under the lock so a concurrent Shutdown never sees a half-updated status.
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    std::set<std::string> serving;
    for (const auto& bundle : registry_->List()) {
      serving.insert(bundle->id());
      serving.insert(bundle->manifest().name);
    }
    for (const std::string& name : published_) {
      if (serving.count(name) == 0) health->SetServingStatus(name, false);
    }
    for (const std::string& name : serving) health->SetServingStatus(name, true);
    published_ = std::move(serving);
    metrics_->SetLoadedBundles(static_cast<int>(registry_->List().size()));
  }
  return changes;
}

void EdgeServer::PublishBundles() {
  common::MutexLock lock(&mutex_);
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const auto& bundle : registry_->List()) {
    published_.insert(bundle->id());
    published_.insert(bundle->manifest().name);
  }
  for (const std::string& name : published_) health->SetServingStatus(name, true);
  metrics_->SetLoadedBundles(static_cast<int>(registry_->List().size()));
}

void EdgeServer::Watch(std::chrono::milliseconds interval) {
  common::MutexLock lock(&mutex_);
  for (;;) {
    const auto until = std::chrono::steady_clock::now() + interval;
    while (!shutting_down_ && stop_watching_.WaitUntil(&mutex_, until)) {
    }
    if (shutting_down_) return;
    lock.Unlock();
    RescanBundles();
    lock.Lock();
  }
}

void EdgeServer::Shutdown(std::chrono::milliseconds grace) {
  {
    common::MutexLock lock(&mutex_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  ready_ = false;
  stop_watching_.SignalAll();
  if (watcher_.joinable()) watcher_.join();
  if (server_ != nullptr) {
    // NOT_SERVING for checkers and watchers; then every request admitted so far is answered
    // (new ones get UNAVAILABLE, idle streams end) within the grace; then the server stops,
    // cancelling what is left, such as health watches, at once instead of waiting them out.
    server_->GetHealthCheckService()->Shutdown();
    service_->Drain();
    const bool drained = admission_->AwaitIdle(std::chrono::steady_clock::now() + grace);
    if (!drained) {
      Log(LogLevel::kWarning, "drain_timeout",
          {{"in_flight", absl::StrCat(admission_->inflight_requests())},
           {"grace_ms", absl::StrCat(grace.count())}});
    }
    server_->Shutdown(std::chrono::system_clock::now());
  }
  if (batcher_ != nullptr) batcher_->Shutdown();
  if (http_ != nullptr) http_->Shutdown();
  Log(LogLevel::kInfo, "stopped", {});
}

}  // namespace cleave::edge_server

#include "cleave/edge_server/edge_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "cleave/common/log.h"
#include "cleave/common/status_macros.h"

namespace cleave::edge_server {

using common::Log;
using common::LogLevel;

absl::StatusOr<std::unique_ptr<EdgeServer>> EdgeServer::Start(const EdgeServerOptions& options) {
  std::unique_ptr<EdgeServer> server(new EdgeServer());
  CLEAVE_ASSIGN_OR_RETURN(server->registry_, BundleRegistry::LoadFrom(options.bundles_dir));
  server->pool_ = std::make_unique<WorkerPool>(options.workers, options.max_queue);
  server->service_ =
      std::make_unique<InferenceService>(server->registry_.get(), server->pool_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use or invalid?)"));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const auto& bundle : server->registry_->List()) {
    health->SetServingStatus(bundle->id(), true);
  }
  Log(LogLevel::kInfo, "serving",
      {{"listen", options.listen},
       {"port", absl::StrCat(server->port_)},
       {"bundles", absl::StrCat(server->registry_->List().size())},
       {"workers", absl::StrCat(options.workers)}});
  return server;
}

EdgeServer::~EdgeServer() { Shutdown(); }

void EdgeServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + grace);
  }
  if (pool_ != nullptr) pool_->Shutdown();
  Log(LogLevel::kInfo, "stopped", {});
}

void EdgeServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace cleave::edge_server

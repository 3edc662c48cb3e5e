// cleave-edge: serves bundles to devices over gRPC. Flags, config file and signal wiring
// only; the server is cleave_edge_server.
#include <ATen/Parallel.h>
#include <signal.h>

#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/machine.h"
#include "cleave/edge_server/edge_server.h"
#include "common/src/trust_flags.h"

// Long on purpose: one statement per flag, declared in the order --help lists them and
// copied into EdgeServerOptions right there; the serving itself is EdgeServer's.
int main(int argc, char** argv) {
  CLI::App app{"cleave-edge: run the back segments of cleave bundles for devices"};
  cleave::edge_server::EdgeServerOptions defaults;
  std::string config, bundles, listen = defaults.listen, metrics_listen, port_file;
  size_t workers = defaults.workers, max_queue = defaults.max_queue;
  int intra_op_threads = defaults.intra_op_threads;
  int max_message_mb = defaults.max_message_bytes >> 20;
  int max_batch_size = defaults.default_batching.max_batch_size;
  int64_t max_request_batch = defaults.default_batching.max_request_batch;
  uint64_t max_inflight_mb = 0;
  size_t max_peer_inflight = defaults.max_peer_inflight;
  size_t max_stream_inflight = defaults.max_stream_inflight;
  int64_t max_queue_delay_us = 0, watch_interval_ms = defaults.watch_interval.count();
  int64_t idle_spin_us = defaults.idle_spin.count();
  app.add_option("--config", config, "JSON config file (docs/EDGE_SERVER.md); flags override it");
  app.add_option("--bundles", bundles, "folder of bundles (searched recursively)");
  app.add_option("--listen", listen, "host:port for gRPC (port 0: any free port)")
      ->default_val(listen);
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port for HTTP /metrics, /healthz, /readyz (none by default)");
  app.add_option("--workers", workers, "compute worker threads")->check(CLI::PositiveNumber);
  app.add_option("--max-queue", max_queue, "queued requests before RESOURCE_EXHAUSTED")
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-spin-us", idle_spin_us,
                 "how long an idle worker polls for work before sleeping (0: never polls)")
      ->default_val(idle_spin_us)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--intra-op-threads", intra_op_threads, "LibTorch threads per forward")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-message-mb", max_message_mb, "largest gRPC message accepted, MiB")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-batch-size", max_batch_size, "requests per forward (all bundles)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-request-batch", max_request_batch,
                 "samples one request may carry, dimension 0 (all bundles)")
      ->default_val(max_request_batch)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-inflight-mb", max_inflight_mb,
                 "budget for requests in flight, MiB (default: a quarter of memory)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-peer-inflight", max_peer_inflight,
                 "requests in flight per client connection (0: no cap)")
      ->default_val(max_peer_inflight)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-stream-inflight", max_stream_inflight,
                 "requests a stream may have unanswered before it stops reading")
      ->default_val(max_stream_inflight)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-queue-delay-us", max_queue_delay_us,
                 "how long a request may wait for its batch to fill (0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--watch-interval-ms", watch_interval_ms,
                 "rescan the bundle folder this often (0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--port-file", port_file, "write the bound gRPC port here once serving");
  cleave::common::TrustFlags trust;
  trust.AddTo(app);
  bool no_optimize = false;
  app.add_flag("--no-optimize", no_optimize,
               "run segments as stored (no conv-bn folding / oneDNN rewrite at load)");
  CLI11_PARSE(app, argc, argv);

  cleave::edge_server::EdgeServerOptions options;
  if (!config.empty()) {
    if (auto status = cleave::edge_server::ApplyConfigFile(config, &options); !status.ok()) {
      std::cerr << "cleave-edge: error: " << status.message() << "\n";
      return 1;
    }
  }
  // Flags given on the command line win over the config file.
  auto given = [&](const char* flag) { return app.count(flag) > 0; };
  if (given("--bundles")) options.bundles_dir = bundles;
  if (given("--listen") || config.empty()) options.listen = listen;
  if (given("--metrics-listen")) options.metrics_listen = metrics_listen;
  if (given("--workers")) options.workers = workers;
  if (given("--max-queue")) options.max_queue = max_queue;
  if (given("--intra-op-threads")) options.intra_op_threads = intra_op_threads;
  if (given("--idle-spin-us")) options.idle_spin = std::chrono::microseconds(idle_spin_us);
  if (no_optimize) options.optimize_segments = false;
  if (given("--max-message-mb")) options.max_message_bytes = max_message_mb << 20;
  if (given("--max-batch-size")) options.default_batching.max_batch_size = max_batch_size;
  if (given("--max-request-batch")) {
    options.default_batching.max_request_batch = max_request_batch;
  }
  if (given("--max-inflight-mb")) options.max_inflight_bytes = max_inflight_mb << 20;
  if (given("--max-peer-inflight")) options.max_peer_inflight = max_peer_inflight;
  if (given("--max-stream-inflight")) options.max_stream_inflight = max_stream_inflight;
  if (given("--max-queue-delay-us")) {
    options.default_batching.max_queue_delay = std::chrono::microseconds(max_queue_delay_us);
  }
  if (given("--watch-interval-ms")) {
    options.watch_interval = std::chrono::milliseconds(watch_interval_ms);
  }
  if (auto status = trust.ApplyTo(app, &options.trust, &options.bundle_key_file); !status.ok()) {
    std::cerr << "cleave-edge: error: " << status.message() << "\n";
    return 1;
  }
  if (options.bundles_dir.empty()) {
    std::cerr
        << "cleave-edge: error: no bundle folder: give --bundles or \"bundles\" in --config\n";
    return 1;
  }
  cleave::common::RetainFreedMemory();
  at::set_num_threads(options.intra_op_threads);

  // Block SIGTERM/SIGINT in every thread (gRPC's included) and take them in main via sigwait:
  // the orderly shutdown runs on a normal thread, not in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = cleave::edge_server::EdgeServer::Start(options);
  if (!server.ok()) {
    std::cerr << "cleave-edge: error: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "cleave-edge listening on port " << (*server)->port();
  if ((*server)->metrics_port() > 0) std::cout << ", metrics on port " << (*server)->metrics_port();
  std::cout << std::endl;
  if (!port_file.empty()) {
    auto written =
        cleave::common::WriteFileAtomically(port_file, absl::StrCat((*server)->port(), "\n"));
    if (!written.ok()) {
      std::cerr << "cleave-edge: error: " << written.message() << "\n";
      return 1;
    }
  }
  int received = 0;
  sigwait(&signals, &received);
  std::cout << "cleave-edge: signal " << received << ", draining and stopping" << std::endl;
  (*server)->Shutdown();
  return 0;
}

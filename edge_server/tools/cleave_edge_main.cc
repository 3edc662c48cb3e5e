// cleave-edge: serves bundles to devices over gRPC. Flags and signal wiring only; the server
// is cleave_edge_server.
#include <ATen/Parallel.h>
#include <signal.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/edge_server/edge_server.h"

int main(int argc, char** argv) {
  CLI::App app{"cleave-edge: run the back segments of cleave bundles for devices"};
  cleave::edge_server::EdgeServerOptions options;
  std::string port_file;
  int intra_op_threads = 1;
  int max_message_mb = options.max_message_bytes >> 20;
  app.add_option("--bundles", options.bundles_dir, "folder of bundles (searched recursively)")
      ->required();
  app.add_option("--listen", options.listen, "host:port to listen on (port 0: any free port)")
      ->default_val(options.listen);
  app.add_option("--workers", options.workers, "compute worker threads")
      ->default_val(options.workers)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-queue", options.max_queue, "queued requests before RESOURCE_EXHAUSTED")
      ->default_val(options.max_queue)
      ->check(CLI::PositiveNumber);
  app.add_option("--intra-op-threads", intra_op_threads, "LibTorch threads per forward")
      ->default_val(intra_op_threads)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-message-mb", max_message_mb, "largest gRPC message accepted, MiB")
      ->default_val(max_message_mb)
      ->check(CLI::PositiveNumber);
  app.add_option("--port-file", port_file, "write the bound port to this file once serving");
  CLI11_PARSE(app, argc, argv);
  options.max_message_bytes = max_message_mb << 20;
  at::set_num_threads(intra_op_threads);

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
  std::cout << "cleave-edge listening on port " << (*server)->port() << std::endl;
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

// A minimal sensing loop on cleave::device: frames arrive at a fixed rate, each goes through
// the split model with a 50 ms deadline, two frames may be in flight at once, and every
// result says where it ran. Here the "camera" makes random frames of the bundle's input
// shape; a robot would hand in its sensor tensors instead.
//
//   robot_loop BUNDLE_DIR [EDGE_HOST:PORT ...]
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>
#include <map>
#include <thread>

#include "cleave/common/bundle.h"
#include "cleave/device/pipeline.h"
#include "cleave/device/runtime.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: robot_loop BUNDLE_DIR [EDGE_HOST:PORT ...]\n";
    return 2;
  }
  cleave::device::RuntimeOptions options;
  for (int i = 2; i < argc; ++i) options.edges.push_back(argv[i]);  // failover order
  options.deadline = std::chrono::milliseconds(50);
  auto runtime = cleave::device::Runtime::Create(argv[1], options);
  if (!runtime.ok()) {
    std::cerr << "robot_loop: " << runtime.status().message() << "\n";
    return 1;
  }

  std::map<std::string, int> placements;
  int failed = 0;
  cleave::device::Pipeline pipeline(
      runtime->get(), /*max_in_flight=*/2,
      [&](uint64_t frame, absl::StatusOr<cleave::device::Result> result) {
        if (!result.ok()) {
          ++failed;
          std::cerr << "frame " << frame << ": " << result.status().message() << "\n";
          return;
        }
        ++placements[cleave::device::PlacementName(result->placement)];
        // A control loop would act on result->outputs here.
      });

  std::vector<int64_t> shape = (*runtime)->bundle().manifest().inputs.at(0).shape;
  shape[0] = 1;
  for (int frame = 0; frame < 20; ++frame) {
    if (!pipeline.Submit(at::rand(shape)).ok()) ++failed;        // falling behind: frame dropped
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a 100 Hz sensor
  }
  pipeline.Drain();

  for (const auto& [where, count] : placements) std::cout << where << ": " << count << "\n";
  std::cout << (*runtime)->TelemetryPrometheus();
  return failed == 0 ? 0 : 1;
}

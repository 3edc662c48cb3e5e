// A one-line progress display for long CLI steps (training, profiling, dataset runs). On a
// terminal it redraws in place; in logs (CI) it prints a line at most every few seconds.
//
// Thread-safety: not thread-safe; call from one thread.
#ifndef CLEAVE_COMMON_PROGRESS_H_
#define CLEAVE_COMMON_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace cleave::common {

class ProgressBar {
 public:
  // `label` prefixes every line; `total` is the number of steps (0: unknown).
  ProgressBar(std::string label, int64_t total, std::FILE* out = stderr);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Records that `done` steps are complete; `status` is shown after the bar ("loss 0.31").
  void Update(int64_t done, const std::string& status = "");
  // Draws the final state and ends the line.
  void Finish(const std::string& status = "");

 private:
  void Draw(bool force);

  std::string label_;
  int64_t total_;
  std::FILE* out_;
  bool terminal_;
  bool finished_ = false;
  int64_t done_ = 0;
  std::string status_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_PROGRESS_H_

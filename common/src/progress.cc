#include "cleave/common/progress.h"

#include <unistd.h>

#include <utility>

namespace cleave::common {
namespace {

constexpr int kBarWidth = 24;
constexpr auto kTerminalInterval = std::chrono::milliseconds(100);
constexpr auto kLogInterval = std::chrono::seconds(10);

}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      terminal_(isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_) Finish();
}

void ProgressBar::Update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  Draw(false);
}

void ProgressBar::Finish(const std::string& status) {
  if (!status.empty()) status_ = status;
  if (total_ > 0) done_ = total_;
  Draw(true);
  if (terminal_) std::fputc('\n', out_);
  std::fflush(out_);
  finished_ = true;
}

void ProgressBar::Draw(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < (terminal_ ? kTerminalInterval : kLogInterval)) return;
  last_draw_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  std::string bar;
  if (total_ > 0) {
    const int filled = static_cast<int>(kBarWidth * done_ / total_);
    bar = "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') + "] ";
  }
  std::fprintf(out_, "%s%s %s%lld", terminal_ ? "\r\033[K" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_));
  if (total_ > 0) std::fprintf(out_, "/%lld", static_cast<long long>(total_));
  std::fprintf(out_, "  %.1fs  %s%s", seconds, status_.c_str(), terminal_ ? "" : "\n");
  std::fflush(out_);
}

}  // namespace cleave::common

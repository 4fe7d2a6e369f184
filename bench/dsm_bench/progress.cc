#include "bench/dsm_bench/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "bench/dsm_bench/stats.h"

namespace dsm::bench {

namespace {
constexpr int64_t kPipePrintNs = 5'000'000'000;  // not a terminal: a line every 5 s
}  // namespace

Progress::Progress(bool enabled)
    : enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0), start_ns_(NowNs()) {
  if (enabled_) thread_ = std::thread([this] { Run(); });
}

Progress::~Progress() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.NotifyAll();
  if (thread_.joinable()) thread_.join();
}

void Progress::Begin(const std::string& phase, double planned_s) {
  MutexLock lock(&mu_);
  phase_ = phase;
  planned_s_ = planned_s;
  phase_start_ns_ = NowNs();
  last_print_ns_ = phase_start_ns_;
  messages_ = 0;
  errors_ = 0;
  rate_mark_messages_ = 0;
  rate_mark_ns_ = phase_start_ns_;
  rate_ = 0;
}

void Progress::End(const std::string& summary) {
  MutexLock lock(&mu_);
  if (!enabled_) return;
  const double elapsed = static_cast<double>(NowNs() - phase_start_ns_) / 1e9;
  char head[64];
  std::snprintf(head, sizeof head, "[%4.0fs] ", static_cast<double>(NowNs() - start_ns_) / 1e9);
  char tail[48];
  std::snprintf(tail, sizeof tail, " (%.1f s)", elapsed);
  Print(head + phase_ + ": " + summary + tail, true);
  phase_.clear();
}

void Progress::Note(const std::string& line) {
  MutexLock lock(&mu_);
  if (!enabled_) return;
  Print(line, true);
}

std::string Progress::Line() {
  const int64_t now = NowNs();
  const uint64_t msgs = messages_.load();
  if (now - rate_mark_ns_ >= 500'000'000) {
    rate_ = static_cast<double>(msgs - rate_mark_messages_) * 1e9 /
            static_cast<double>(now - rate_mark_ns_);
    rate_mark_ns_ = now;
    rate_mark_messages_ = msgs;
  }
  char buf[256];
  const double elapsed = static_cast<double>(now - phase_start_ns_) / 1e9;
  char planned[32] = "";
  if (planned_s_ > 0) std::snprintf(planned, sizeof planned, "/%.0f", planned_s_);
  std::snprintf(buf, sizeof buf, "[%4.0fs] %s  %.1f%s s  %llu msgs  %.0f msgs/s  errors %llu",
                static_cast<double>(now - start_ns_) / 1e9, phase_.c_str(), elapsed, planned,
                static_cast<unsigned long long>(msgs), rate_,
                static_cast<unsigned long long>(errors_.load()));
  return buf;
}

void Progress::Print(const std::string& line, bool final) {
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::Run() {
  MutexLock lock(&mu_);
  while (!stop_) {
    cv_.WaitFor(&mu_, std::chrono::milliseconds(500));
    if (stop_ || phase_.empty()) continue;
    const int64_t now = NowNs();
    std::string line = Line();
    if (tty_ || now - last_print_ns_ >= kPipePrintNs) {
      last_print_ns_ = now;
      Print(line, false);
    }
  }
}

}  // namespace dsm::bench

#include "storage/origin_positions.h"

#include <algorithm>
#include <vector>

namespace dsm {

Result<uint64_t> ResumeStart(const LogStore& log, const std::map<std::string, uint64_t>& resume) {
  // Read before the high waters: a message appended in between has a greater seq anyway.
  uint64_t start = log.LastSeq();
  for (const auto& [origin, high_water] : log.HighWaters()) {
    auto it = resume.find(origin);
    // Positions trimmed from this log (retention) cannot be read: the first held one is next.
    const uint64_t delivered =
        std::max(it == resume.end() ? 0 : it->second, log.TrimmedThrough(origin));
    if (delivered >= high_water) continue;
    // The first position not delivered; every later one has a greater local seq (each origin's
    // positions are held in order).
    Result<std::vector<Message>> next = log.ReadOrigin(origin, delivered, 1, SIZE_MAX);
    if (!next.ok()) return next.status();
    if (next->empty() || next->front().seq == 0) continue;
    start = std::min(start, next->front().seq - 1);
  }
  return start;
}

Result<std::map<std::string, uint64_t>> OriginPositionsAt(const LogStore& log, uint64_t seq) {
  std::map<std::string, uint64_t> out;
  for (const auto& [origin, high_water] : log.HighWaters()) {
    // The largest p in [0, high_water] whose message lies at a local seq <= `seq`: positions are
    // held in order, so "lies at or before seq" is true for a prefix of them. Positions the log
    // no longer holds (a trimmed prefix: their seqs were the lowest) count as before.
    uint64_t lo = std::min(log.TrimmedThrough(origin), high_water);
    uint64_t hi = high_water;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo + 1) / 2;
      Result<std::vector<Message>> m = log.ReadOrigin(origin, mid - 1, 1, SIZE_MAX);
      if (!m.ok()) return m.status();
      const bool before = m->empty() || m->front().seq <= seq;
      if (before) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    if (lo > 0) out[origin] = lo;
  }
  return out;
}

}  // namespace dsm

// Retention: trims the oldest messages of the log in bounded steps once a limit is passed and
// every peer holds them (or, over --retention-max-bytes, whether they do or not), and forgets the
// msg_ids of trimmed messages after --dedup-retention. See docs/operations.md, "Retention".
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include "core/node_impl.h"

namespace dsm {
namespace {

// What the peers are known to hold: our stream by the positions each peer's current incarnation
// acknowledged, the others by what each peer said in its last heartbeat.
class Holdings {
 public:
  // From how far each peer holds each stream (`peer_positions[i]`, absent = nothing); this node
  // holds everything in its log.
  Holdings(const std::vector<std::map<std::string, uint64_t>>& peer_positions, size_t quorum) {
    everything_ = peer_positions.empty();
    const size_t others = quorum > 1 ? quorum - 1 : 0;  // peers that must hold it besides us
    quorum_everything_ = others == 0;
    std::set<std::string> origins;
    for (const auto& positions : peer_positions) {
      for (const auto& [origin, position] : positions) origins.insert(origin);
    }
    std::vector<uint64_t> held;
    for (const std::string& origin : origins) {
      held.clear();
      for (const auto& positions : peer_positions) {
        auto it = positions.find(origin);
        held.push_back(it == positions.end() ? 0 : it->second);
      }
      std::sort(held.begin(), held.end(), std::greater<>());
      if (held.back() > 0) all_[origin] = held.back();
      if (others > 0 && others <= held.size() && held[others - 1] > 0) {
        quorum_[origin] = held[others - 1];
      }
    }
  }

  // Every peer holds it.
  bool Holds(const std::string& origin, uint64_t origin_seq) const {
    return everything_ || Within(all_, origin, origin_seq);
  }
  // At least `quorum` nodes (this one included) hold it.
  bool QuorumHolds(const std::string& origin, uint64_t origin_seq) const {
    return everything_ || quorum_everything_ || Within(quorum_, origin, origin_seq);
  }

 private:
  static bool Within(const std::map<std::string, uint64_t>& held, const std::string& origin,
                     uint64_t origin_seq) {
    auto it = held.find(origin);
    return it != held.end() && origin_seq <= it->second;
  }

  bool everything_ = false;         // no peers
  bool quorum_everything_ = false;  // a quorum of 1: this node alone
  std::map<std::string, uint64_t> all_;     // origin -> position every peer holds
  std::map<std::string, uint64_t> quorum_;  // origin -> position a quorum holds
};

}  // namespace

bool Node::Impl::RetentionDue(MonoTime now) {
  if (!options.retention_enabled() || retention_running || now < next_retention) return false;
  retention_running = true;
  return true;
}

void Node::Impl::RetentionStep() {
  const std::string& own = log->stream_id();
  std::vector<std::map<std::string, uint64_t>> peer_positions;
  {
    MutexLock lock(&mu);
    if (stopped) return;
    for (const PeerState& p : peers) {
      if (!p.active()) continue;  // removed members hold nothing back
      std::map<std::string, uint64_t>& positions = peer_positions.emplace_back();
      if (p.stream.empty()) continue;  // its incarnation is not known yet: nothing counts
      positions = p.high_waters;
      positions[own] = HoldsOwn(p, p.push_cursor) ? p.push_cursor : 0;
    }
  }
  const Holdings held(peer_positions, static_cast<size_t>(std::max(1, options.quorum)));

  const double now_wall = clock->WallSeconds();
  const uint64_t first = log->FirstSeq();
  const uint64_t last = log->LastSeq();
  const uint64_t count = last + 1 - first;
  // Records below `by_count` are over --retention-max-messages; below `forced`, over
  // --retention-max-bytes (estimated from the average stored record).
  uint64_t by_count = 0;
  if (options.retention_max_messages > 0 && count > options.retention_max_messages) {
    by_count = last + 1 - options.retention_max_messages;
  }
  uint64_t forced = 0;
  if (options.retention_max_bytes > 0 && count > 0) {
    const uint64_t stored = log->StoredBytes();
    if (stored > options.retention_max_bytes) {
      const uint64_t per_record = std::max<uint64_t>(1, stored / count);
      forced = first + (stored - options.retention_max_bytes + per_record - 1) / per_record;
    }
  }
  const bool by_age = options.retention_max_age.count() > 0;
  const double cutoff =
      by_age ? now_wall - static_cast<double>(options.retention_max_age.count()) : 0;

  TrimRequest req;
  req.before_seq = by_age ? last + 1 : std::max(by_count, forced);
  req.max_records = std::max<size_t>(1, options.retention_step_records);
  uint64_t forced_unheld = 0;
  std::string waiting;
  req.keep = [&](const Message& m) {
    const bool must = m.seq < forced;
    const bool due = must || m.seq < by_count || (by_age && m.ts < cutoff);
    if (!due) return true;
    if (held.Holds(m.origin, m.origin_seq)) return false;
    // Over --retention-max-bytes a message goes once a quorum holds it, whether every peer does
    // or not: never one that fewer than --quorum nodes hold (a quorum write still waiting for
    // it, or a message whose only copy is here).
    if (must && held.QuorumHolds(m.origin, m.origin_seq)) {
      ++forced_unheld;
      return false;
    }
    waiting = fmt::format("seq {} (position {} of {}) is due for trimming but {}", m.seq,
                          m.origin_seq, m.origin,
                          must ? fmt::format("fewer than {} nodes hold it", options.quorum)
                               : std::string("not every peer holds it yet"));
    return true;
  };
  Result<TrimResult> r = TrimResult{0, 0, first, false};
  if (req.before_seq > first) r = log->Trim(req);
  Status expired;
  if (options.dedup_retention.count() > 0) {
    expired =
        log->ExpireMsgIds(now_wall - static_cast<double>(options.dedup_retention.count()));
  }

  retention_steps.fetch_add(1, std::memory_order_relaxed);
  if (r.ok()) {
    retention_trimmed.fetch_add(r->trimmed, std::memory_order_relaxed);
    retention_trimmed_bytes.fetch_add(r->bytes, std::memory_order_relaxed);
    retention_forced.fetch_add(forced_unheld, std::memory_order_relaxed);
  }
  if (!r.ok() || !expired.ok()) retention_errors.fetch_add(1, std::memory_order_relaxed);
  // Another step at once while there is more to trim; else at the next interval.
  const bool more = r.ok() && r->trimmed == req.max_records && !r->kept;
  std::function<void()> wake;
  {
    MutexLock lock(&mu);
    retention_running = false;
    const MonoTime now = clock->Now();
    next_retention = more ? now : now + options.retention_interval;
    retention_waiting = std::move(waiting);
    if (!r.ok()) {
      Event(EventLevel::kWarning, "retention: trimming failed: " + r.status().ToString());
    } else if (forced_unheld > 0) {
      Event(EventLevel::kWarning,
            fmt::format("retention: trimmed {} messages that not every peer held yet "
                        "(--retention-max-bytes {}); those peers skip them",
                        forced_unheld, options.retention_max_bytes));
    }
    if (!expired.ok()) {
      Event(EventLevel::kWarning, "retention: forgetting old msg_ids failed: " + expired.ToString());
    }
    wake = wakeup;
  }
  if (wake) wake();
}

void Node::Impl::NoteLacks(PeerState& p, const std::string& origin, uint64_t through) {
  uint64_t& lacks = p.lacks_through[origin];
  lacks = std::max(lacks, through);
}

Result<SkipOutcome> Node::Impl::SkipUnheld(const std::string& origin, uint64_t through) {
  const uint64_t held = log->HighWater(origin);
  if (through <= held) return SkipOutcome{};
  uint64_t allowed = through;
  std::function<void()> wake;
  {
    MutexLock lock(&mu);
    // Where each peer that may hold positions of (held, through] may begin to: the skip stops
    // at the first of them, and a live peer there is asked.
    const bool removed = SelfRole() == MemberRole::kRemoved;
    auto from = [&](const PeerState& p) -> std::optional<uint64_t> {
      if (removed || !Replicating(p) || p.liveness == Liveness::kDead) return std::nullopt;
      auto lacks = p.lacks_through.find(origin);
      const uint64_t f = std::max(held, lacks == p.lacks_through.end() ? 0 : lacks->second);
      return f < through ? std::optional<uint64_t>(f) : std::nullopt;
    };
    for (const PeerState& p : peers) {
      if (auto f = from(p)) allowed = std::min(allowed, *f);
    }
    for (PeerState& p : peers) {
      if (p.liveness != Liveness::kAlive || from(p) != allowed || allowed == through) continue;
      // A peer being read already (this may be its answer) is asked again by the next push.
      if (!p.repair_wanted && !p.repairing) {
        p.repair_wanted = StreamRepair{origin, allowed, through};
        Event(EventLevel::kInfo,
              fmt::format("positions {}..{} of stream {} were trimmed by a sender's retention; "
                          "asking peer {} for them before skipping what no peer holds",
                          allowed + 1, through, origin, p.url));
        wake = wakeup;
      }
      break;
    }
  }
  if (wake) wake();
  if (allowed <= held) return SkipOutcome{};
  Result<uint64_t> skipped = log->SkipTrimmed(origin, allowed);
  if (!skipped.ok()) return skipped.status();
  return SkipOutcome{*skipped, allowed};
}

void Node::Impl::NoteSkipped(const std::string& origin, uint64_t through, uint64_t skipped) {
  MutexLock lock(&mu);
  auto holder = std::find_if(peers.begin(), peers.end(),
                             [&](const PeerState& p) { return p.stream == origin; });
  if (holder != peers.end()) {
    holder->trimmed_skipped += skipped;
  } else {
    skipped_unattributed.fetch_add(skipped, std::memory_order_relaxed);
  }
  Event(EventLevel::kWarning,
        fmt::format("positions {}..{} of stream {} were trimmed by its node's retention before "
                    "this node got them; skipped ({} messages)",
                    through - skipped + 1, through, origin, skipped));
}

}  // namespace dsm

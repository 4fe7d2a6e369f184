// Catch-up: pulls each peer's log (its seq space) page by page after a durable cursor, applies
// pages idempotently with the new cursor in the same write, and repairs gaps from origin streams.
#include <fmt/format.h>

#include <algorithm>

#include "common/planted_bugs.h"
#include "core/node_impl.h"

namespace dsm {
namespace {

// A pull tells the peer how far it holds at most this many streams (the peer caps the map at
// 4096); the others are simply sent again and deduplicated.
constexpr size_t kMaxHaveStreams = 1024;

// Pages of one chain out at a time: one being written, one waiting to be, one requested.
constexpr int kMaxPullPages = 3;

}  // namespace

// The peer seq a pull answer moves the cursor to (see OnSync).
// A `next` beyond the peer's last seq is not believed.
uint64_t Node::Impl::next_cursor_seq(const Result<SyncReply>& r, const PullCursor& cursor) {
  if (r->stream != cursor.peer_stream && cursor.seq != 0) return 0;
  const uint64_t reached = r->messages.empty() ? cursor.seq : r->messages.back().seq;
  return r->next <= r->last_seq ? std::max(reached, r->next) : reached;
}

// Tracks a run of pull pages from `p` and logs the progress of long catch-ups.
// REQUIRES: mu held.
void Node::Impl::NoteCatchUp(PeerState& p, MonoTime now, uint64_t applied, uint64_t peer_last_seq,
                             uint64_t at, bool more) {
  constexpr uint64_t kLongCatchUp = 1000;  // messages
  if (p.catchup_applied == 0 && applied > 0) {
    p.catchup_started = now;
    p.catchup_logged = now;
  }
  p.catchup_applied += applied;
  p.pulled += applied;
  p.peer_last_seq = peer_last_seq;
  const double secs = std::chrono::duration<double>(now - p.catchup_started).count();
  if (more && p.catchup_applied > 0 && now - p.catchup_logged >= std::chrono::seconds(2)) {
    p.catchup_logged = now;
    Event(EventLevel::kInfo,
          fmt::format("catching up from {}: {} messages applied in {:.1f} s, at its seq {} of {}",
                      p.url, p.catchup_applied, secs, at, peer_last_seq));
  }
  if (!more) {
    if (p.catchup_applied >= kLongCatchUp) {
      Event(EventLevel::kInfo, fmt::format("caught up from {}: {} messages in {:.1f} s", p.url,
                                           p.catchup_applied, secs));
    }
    p.catchup_applied = 0;
  }
}

// How far this node holds each stream, for a pull: the peer leaves out what it covers. At most
// kMaxHaveStreams of them, so the request stays bounded however many streams wiped nodes left
// behind: the live ones (ours and each peer's current stream, which grow and arrive by push),
// then those held furthest. A stream left out is a stream of a former incarnation, which no
// longer grows: what the peer holds of it beyond the pull cursor is rare, and is sent again and
// deduplicated.
std::map<std::string, uint64_t> Node::Impl::HaveMap() const {
  std::map<std::string, uint64_t> all = log->HighWaters();
  if (all.size() <= kMaxHaveStreams) return all;
  std::map<std::string, uint64_t> have;
  auto take = [&](const std::string& stream) {
    if (auto it = all.find(stream); it != all.end()) {
      have.insert(*it);
      all.erase(it);
    }
  };
  take(log->stream_id());
  {
    MutexLock lock(&mu);
    for (const PeerState& p : peers) take(p.stream);
  }
  std::vector<std::pair<uint64_t, std::string>> by_size;
  by_size.reserve(all.size());
  for (auto& [origin, hw] : all) by_size.emplace_back(hw, origin);
  const size_t rest = std::min(by_size.size(), kMaxHaveStreams - have.size());
  std::nth_element(by_size.begin(), by_size.begin() + rest, by_size.end(), std::greater<>());
  for (size_t i = 0; i < rest; ++i) have.emplace(by_size[i].second, by_size[i].first);
  return have;
}

bool Node::Impl::ArrivesByPush(std::string_view origin, MonoTime now) const {
  auto it = pushed_streams.find(origin);
  return it != pushed_streams.end() && now - it->second < options.heartbeat_timeout;
}

void Node::Impl::NotePushed(const std::string& origin) {
  const MonoTime now = clock->Now();
  MutexLock lock(&mu);
  if (pushed_streams.insert_or_assign(origin, now).second) {
    // A new stream: those whose pushes stopped long ago are forgotten, so the map holds about
    // the live peers' streams.
    std::erase_if(pushed_streams,
                  [&](const auto& e) { return now - e.second >= 2 * options.heartbeat_timeout; });
  }
}

// The first entry of a page at a position this node lacks of a stream that arrives by push, or
// msgs.size(). A pull that wrote such positions would race the pushes over them, and a node far
// behind would receive each message twice or three times (the pushes, and pages from every peer,
// all of which hold every stream): the page is written only up to there.
size_t Node::Impl::FirstPushedPosition(const std::vector<Message>& msgs) const {
  const MonoTime now = clock->Now();
  std::map<std::string_view, uint64_t> held;  // high waters of the pushed streams met so far
  MutexLock lock(&mu);
  if (pushed_streams.empty()) return msgs.size();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    if (!ArrivesByPush(m.origin, now)) continue;
    auto it = held.find(m.origin);
    if (it == held.end()) it = held.emplace(m.origin, log->HighWater(m.origin)).first;
    if (m.origin_seq > it->second) return i;
  }
  return msgs.size();
}

// Checks a /sync answer against the request: its messages are entries of the peer's log after
// `cursor.seq`, in strictly increasing seq order, none beyond the peer's last seq, each with an
// origin position. Returns what is wrong, "" when nothing is.
static std::string CheckSyncReply(const SyncReply& r, const PullCursor& cursor) {
  uint64_t prev = cursor.seq;
  for (const Message& m : r.messages) {
    if (m.seq <= prev) {
      return fmt::format("seq {} is not after {} (the request's since, or the entry before)", m.seq,
                         prev);
    }
    if (m.seq > r.last_seq) {
      return fmt::format("seq {} is beyond the peer's last seq {}", m.seq, r.last_seq);
    }
    if (m.origin.empty() || m.origin_seq == 0) {
      return fmt::format("the entry at seq {} has no origin position", m.seq);
    }
    prev = m.seq;
  }
  return "";
}

// One /sync page from a peer: apply it with the new cursor in ONE write. A page can show a gap
// in some origin stream when the peer holds positions of that stream whose message it stores
// under another origin (a msg_id accepted by two nodes): the store then writes the cursor just
// before the gap (LogStore::Apply), and the stream is repaired from the peer first
// (SyncStream), after which the pull resumes.
//
// Runs on the owner thread: checks the answer, hands the write to the storage executor (the
// fsync never holds up the other peers' events), and takes the outcome back in FinishSync.
void Node::Impl::SendPull(size_t peer, PullCursor cursor, uint64_t epoch) {
  transport->Sync(peer, cursor.seq, options.batch_messages, HaveMap(),
                  [this, peer, cursor, epoch](Result<SyncReply> r) {
                    Post([this, peer, cursor, epoch, r = std::move(r)]() mutable {
                      OnSync(peer, cursor, epoch, std::move(r));
                    });
                  });
}

void Node::Impl::OnSync(size_t peer, PullCursor cursor, uint64_t epoch, Result<SyncReply> r) {
  PullOutcome o;
  o.epoch = epoch;
  o.status = r.ok() ? Status::Ok() : r.status();
  if (!r.ok()) return FinishSync(peer, std::move(o));
  o.new_stream = r->stream != cursor.peer_stream && cursor.seq != 0;
  if (!o.new_stream) o.bad = CheckSyncReply(*r, cursor);
  if (!o.bad.empty()) return FinishSync(peer, std::move(o));
  o.stream = r->stream;
  o.last_seq = r->last_seq;
  o.at = next_cursor_seq(r, cursor);
  PullCursor next;
  next.peer_stream = r->stream;
  std::vector<Message> msgs;
  if (o.new_stream) {
    // The peer's data directory was replaced: its seq space restarted. Start over from 0.
    next.seq = 0;
    o.more = true;
  } else {
    next.seq = o.at;
    o.more = r->more;
    msgs = std::move(r->messages);
    // The page ends before the first position the pushes are bringing, and so does the chain:
    // every entry of the peer's log up to the cursor is still held or covered here. The pull
    // goes on at the next anti-entropy tick, or when a heartbeat shows more of a stream that
    // does not arrive by push; a stream whose pushes stopped for the heartbeat timeout is
    // pulled like any other again.
    if (size_t cut = FirstPushedPosition(msgs); cut < msgs.size()) {
      next.seq = msgs[cut].seq - 1;
      msgs.resize(cut);
      o.at = next.seq;
      o.more = false;
    }
  }
  if (msgs.empty() && next == cursor) return FinishSync(peer, std::move(o));
  // Pipelining: the next page is requested now, while this one is written.
  bool ahead = false;
  if (o.more && !o.new_stream) {
    MutexLock lock(&mu);
    PeerState& p = peers[peer];
    if (!stopped && epoch == p.pull_epoch && p.pull_pages < kMaxPullPages) {
      ++p.pull_pages;
      ahead = true;
    }
  }
  if (ahead) SendPull(peer, next, epoch);
  Store([this, peer, o = std::move(o), msgs = std::move(msgs), cursor, next]() mutable {
    // Written only where the last written page ended: a page before it that failed, or stopped
    // at a gap, left the cursor elsewhere, and writing this one would skip what lies between.
    const std::string url = PeerUrl(peer);
    if (log->GetPullCursor(url) != cursor) {
      o.stale = true;
      Post([this, peer, o = std::move(o)]() mutable { FinishSync(peer, std::move(o)); });
      return;
    }
    Result<std::vector<WriteOutcome>> w = log->Apply(std::move(msgs), url, &next);
    if (!w.ok()) {
      o.applied_ok = false;
      o.apply_error = w.status().ToString();
    } else {
      CountOutcomes(kPull, *w);
      for (const WriteOutcome& out : *w) {
        if (out.kind == WriteOutcome::Kind::kAppended) ++o.applied;
        if (out.kind == WriteOutcome::Kind::kConflict) ++o.conflicts;
        if (out.kind == WriteOutcome::Kind::kGap && !o.repair) {
          o.repair.emplace(out.origin, out.expected_origin_seq - 1);
        }
      }
    }
    Post([this, peer, o = std::move(o)]() mutable { FinishSync(peer, std::move(o)); });
  });
}

// What a pulled page changed, once it is written (or was not to be written).
void Node::Impl::FinishSync(size_t peer, PullOutcome o) {
  const bool ok = o.status.ok();
  const bool usable = ok && o.bad.empty();
  AfterExchange(peer, ok, [&](PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu) {
    p.pull_pages = std::max(0, p.pull_pages - 1);
    if (o.epoch != p.pull_epoch || o.stale) {
      return;  // a page of a broken chain: the page before it decided what comes next
    }
    if (!ok) {
      ++p.pull_errors;
      NotePullFailure(p, now, o.status);
    } else if (!o.bad.empty()) {
      ++p.bad_replies;
      p.pull_problem = "ignored its /sync answer: " + o.bad;
      ErrorEvent(p, now, fmt::format("pull from {}: {}", p.url, p.pull_problem));
    } else {
      p.pull_problem = o.applied_ok ? "" : "applying a pulled page failed: " + o.apply_error;
      NoteCatchUp(p, now, o.applied, o.last_seq, o.at, o.more && o.applied_ok);
      if (o.new_stream) {
        Event(EventLevel::kWarning,
              fmt::format("peer {} has a new data directory ({}): pulling it from the start", p.url,
                          o.stream));
      }
      if (!o.applied_ok) {
        ++p.apply_errors;
        ErrorEvent(p, now, fmt::format("pull from {}: {}", p.url, p.pull_problem));
      }
      if (o.conflicts > 0) {
        p.conflicts += o.conflicts;
        ErrorEvent(p, now,
                   fmt::format("{} messages pulled from {} conflict with ours (another msg_id at "
                               "a position we hold): refused",
                               o.conflicts, p.url));
      }
      if (o.repair && o.applied_ok) {
        Event(EventLevel::kInfo,
              fmt::format("pull from {} stopped at a gap in stream {}: repairing it from the "
                          "peer's stream",
                          p.url, o.repair->first));
      }
    }
    const bool clean = usable && o.applied_ok;
    if (clean && o.repair) {
      ++p.pull_epoch;  // pages requested past the gap wait for the repair: void them
      p.repairing = true;
      a.repairs.push_back({peer, {o.repair->first, o.repair->second}});
    } else if (clean && o.more && p.pull_pages > 0) {
      // The next page is out already: the chain goes on with it.
    } else if (auto stuck = clean && !o.more ? StuckStream(p) : std::nullopt) {
      // The chain reached the end of the peer's log, yet its heartbeat still shows a stream
      // further than this node holds, as it did at the end of the last chain: no page can
      // bring those positions (the peer's retention trimmed them from its log, or the peer
      // holds them as positions consumed by messages of other streams). The peer's stream
      // answers for them.
      if (p.pull_pages > 0) ++p.pull_epoch;
      p.repairing = true;
      a.repairs.push_back({peer, {stuck->first, stuck->second}});
    } else {
      if (p.pull_pages > 0) ++p.pull_epoch;  // the chain broke: its pages still out are void
      const bool again = p.pull_again;
      p.pull_again = false;
      if (clean && (o.more || again)) {
        p.pull_wanted = true;
      } else {
        // An unusable answer or a failed write is retried soon; an unreachable peer waits for
        // the next tick (or for turning alive again).
        p.next_pull = now + (o.applied_ok && o.bad.empty() ? options.anti_entropy_interval
                                                           : options.retry_max);
      }
    }
  });
}

std::optional<std::pair<std::string, uint64_t>> Node::Impl::StuckStream(PeerState& p) {
  std::map<std::string, uint64_t> behind;
  std::optional<std::pair<std::string, uint64_t>> stuck;
  for (const auto& [origin, shown] : p.high_waters) {
    // The peer's own stream comes by its pushes and pages: a gap there is found by a page.
    if (origin == p.stream) continue;
    const uint64_t held = log->HighWater(origin);
    if (shown <= held) continue;
    auto before = p.behind_at_chain_end.find(origin);
    if (!stuck && before != p.behind_at_chain_end.end() && before->second == held) {
      stuck.emplace(origin, held);
    }
    behind.emplace(origin, held);
  }
  p.behind_at_chain_end = std::move(behind);
  if (stuck) p.behind_at_chain_end.erase(stuck->first);
  return stuck;
}

// A pull or repair request that failed. Unreachable peers are the failure detector's business;
// any other failure (a refusal, an answer that cannot be read, e.g. a message larger than this
// node's --max-message-bytes) stops the pull from this peer until it is fixed: named and logged.
void Node::Impl::NotePullFailure(PeerState& p, MonoTime now, const Status& s) {
  if (s.code() == Code::kUnavailable || s.code() == Code::kTimeout) return;
  p.pull_problem = "pull failed: " + s.ToString();
  ErrorEvent(p, now, fmt::format("pull from {}: {}", p.url, p.pull_problem));
}

// One page of an origin stream read from a peer to fill a gap (see OnSync). The write goes to
// the storage executor; FinishRepair takes its outcome on the owner thread.
void Node::Impl::OnRepair(size_t peer, StreamRepair what, Result<SyncReply> r) {
  RepairOutcome o;
  o.origin = what.origin;
  o.skip_through = what.skip_through;
  o.status = r.ok() ? Status::Ok() : r.status();
  if (r.ok()) {
    // What the page shows the peer cannot supply (lacks_through): what it trimmed, and, read
    // from no further than this node holds, the positions before its first message, or when it
    // sent none, the trimmed positions it was read for.
    const uint64_t held = log->HighWater(o.origin);
    MutexLock lock(&mu);
    PeerState& p = peers[peer];
    if (r->stream == p.stream || p.stream.empty()) {
      uint64_t lacks = r->trimmed_through;
      if (what.since <= held && !r->messages.empty()) {
        lacks = std::max(lacks, r->messages.front().origin_seq - 1);
      } else if (what.since <= held && !r->more) {
        lacks = std::max(lacks, what.skip_through);
      }
      if (lacks > 0) NoteLacks(p, o.origin, lacks);
    }
  }
  if (!r.ok() || (r->messages.empty() && r->trimmed_through == 0)) {
    return FinishRepair(peer, std::move(o));
  }
  o.more = r->more;
  Store([this, peer, o = std::move(o), msgs = std::move(r->messages),
         trimmed_through = r->trimmed_through]() mutable {
    const uint64_t before = log->HighWater(o.origin);
    if (trimmed_through > 0) {
      // The peer's retention trimmed these positions before this node got them: skipped, as
      // far as no other peer may still hold them.
      Result<SkipOutcome> skipped = SkipUnheld(o.origin, trimmed_through);
      if (skipped.ok()) {
        o.skipped = skipped->skipped;
        o.trimmed_through = skipped->through;
      } else {
        o.error = "skipping the positions the peer trimmed failed: " + skipped.status().ToString();
      }
    }
    Result<std::vector<WriteOutcome>> w = std::vector<WriteOutcome>();
    if (o.error.empty() && !msgs.empty()) w = log->Apply(std::move(msgs));
    if (w.ok()) {
      CountOutcomes(kPull, *w);
    } else {
      o.error = "applying it failed: " + w.status().ToString();
    }
    // The next page starts where this node holds the stream now: a page that met a gap (the
    // positions a skip left for another peer to supply) is not passed over.
    o.last = log->HighWater(o.origin);
    o.progressed = o.error.empty() && o.last > before;
    Post([this, peer, o = std::move(o)]() mutable { FinishRepair(peer, std::move(o)); });
  });
}

void Node::Impl::FinishRepair(size_t peer, RepairOutcome o) {
  AfterExchange(peer, o.status.ok(),
                [&](PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu) {
                  if (!o.status.ok()) {
                    ++p.pull_errors;
                    NotePullFailure(p, now, o.status);
                  }
                  if (o.skipped > 0) {
                    p.trimmed_skipped += o.skipped;
                    Event(EventLevel::kWarning,
                          fmt::format("pull from {}: positions {}..{} of stream {} were trimmed "
                                      "by the peer's retention before this node got them; "
                                      "skipped ({} messages)",
                                      p.url, o.trimmed_through - o.skipped + 1,
                                      o.trimmed_through, o.origin, o.skipped));
                  }
                  if (!o.error.empty()) {
                    ++p.apply_errors;
                    p.pull_problem = fmt::format("repair of stream {}: {}", o.origin, o.error);
                    ErrorEvent(p, now, fmt::format("pull from {}: {}", p.url, p.pull_problem));
                  }
                  if (o.progressed && o.more) {
                    a.repairs.push_back({peer, {o.origin, o.last, o.skip_through}});
                  } else {
                    p.repairing = false;
                    if (o.progressed) {
                      p.pull_wanted = true;  // resume the pull before the gap
                    } else {
                      p.next_pull = now + (o.error.empty() ? options.anti_entropy_interval
                                                           : options.retry_max);
                    }
                  }
                });
}

}  // namespace dsm

// The failure detector: each peer's liveness (heartbeats, with any successful exchange counting),
// its incarnation (the stream id it reports) and the checks of its heartbeat answers.
#include <fmt/format.h>

#include <algorithm>

#include "common/planted_bugs.h"
#include "core/node_impl.h"

namespace dsm {
namespace {

// A peer's heartbeat or /sync answer naming more streams than this is not believed.
constexpr size_t kMaxPeerStreams = 1 << 16;

}  // namespace

// The peer's own stream as it just told us (a heartbeat or a push answer). A new one means
// its data directory was replaced: what it acknowledged before is gone, so the push cursor
// restarts from what this incarnation acknowledges. A stream that was replaced never becomes
// current again: an answer naming it is a late answer of a former incarnation (sent before a
// wipe, delivered after), and believing it would count what that incarnation held.
// REQUIRES: mu held.
bool Node::Impl::NoteStream(PeerState& p, const std::string& stream, MonoTime now, Actions* a) {
  if (stream.empty() || stream == p.stream) return true;
  if (std::find(p.former_streams.begin(), p.former_streams.end(), stream) !=
      p.former_streams.end()) {
    ++p.bad_replies;
    ErrorEvent(p, now,
               fmt::format("ignored an answer of {} from its former data directory (stream {}; "
                           "its current one is {})",
                           p.url, stream, p.stream));
    return false;
  }
  for (const std::string* old : {&p.stream, &p.push_stream}) {
    if (old->empty() || *old == stream) continue;
    if (std::find(p.former_streams.begin(), p.former_streams.end(), *old) ==
        p.former_streams.end()) {
      p.former_streams.push_back(*old);
    }
  }
  constexpr size_t kMaxFormerStreams = 16;
  if (p.former_streams.size() > kMaxFormerStreams) {
    p.former_streams.erase(p.former_streams.begin(), p.former_streams.end() - kMaxFormerStreams);
  }
  if (!p.stream.empty()) {
    Event(EventLevel::kWarning,
          fmt::format("peer {} has a new data directory (stream {}, was {}): it no longer "
                      "holds what it acknowledged; pushing our stream to it from the start",
                      p.url, stream, p.stream));
  }
  if (!p.stream.empty()) {
    // What the former incarnation lacked says nothing of the new one.
    p.lacks_through.clear();
    p.repair_wanted.reset();
  }
  p.stream = stream;
  p.high_waters.clear();
  if (p.push_stream != stream) {
    p.push_stream = stream;
    p.push_cursor = 0;
    RewindPush(p);
    p.push_not_before = now;
    p.push_problem.clear();
    a->persist_push.emplace_back(p.index, PushCursor{p.push_stream, 0});
  }
  return true;
}

void Node::Impl::UpdateLiveness(PeerState& p, MonoTime now) {
  if (p.liveness == Liveness::kDead) return;
  MonoTime since = p.ever_ok ? p.last_ok : p.known_since;
  if (now - since >= options.heartbeat_timeout) {
    p.liveness = Liveness::kDead;
    Event(EventLevel::kWarning,
          fmt::format("peer {} is dead: no successful exchange for {} ms", p.url,
                      std::chrono::duration_cast<Millis>(now - since).count()));
  }
}

void Node::Impl::MarkSuccess(PeerState& p, MonoTime now) {
  p.ever_ok = true;
  p.last_ok = now;
  p.last_ok_wall = clock->WallSeconds();
  p.consecutive_failures = 0;
  if (p.liveness != Liveness::kAlive) {
    // Back (or seen for the first time): catch up from it and push to it without waiting.
    Event(EventLevel::kInfo,
          fmt::format("peer {} is alive{}", p.url, p.liveness == Liveness::kDead ? " again" : ""));
    p.liveness = Liveness::kAlive;
    p.pull_wanted = true;
    p.push_backoff = Millis(0);
    p.push_not_before = now;
  }
}

void Node::Impl::HeardFrom(const std::string& stream) {
  Actions a;
  {
    MutexLock lock(&mu);
    if (!started || stopped) return;
    const MonoTime now = clock->Now();
    bool due = false;  // something is due now that was not
    for (PeerState& p : peers) {
      if (!p.active() || p.stream != stream) continue;
      // At most once per retry_min: a peer (or whoever names its stream) that calls often does
      // not make this node retry faster than its shortest backoff.
      if (p.heard_from && now - *p.heard_from < options.retry_min) continue;
      p.heard_from = now;
      if (p.push_unreachable && p.push_not_before > now) {
        p.push_backoff = Millis(0);
        p.push_not_before = now;
        due = true;
      }
      if (p.liveness != Liveness::kAlive && !p.heartbeat_in_flight) {
        p.next_heartbeat = now;
        due = true;
      }
    }
    if (!due) return;  // the usual heartbeat of a live peer
    CollectDue(now, &a);
  }
  Run(std::move(a));
}

void Node::Impl::MarkFailure(PeerState& p, MonoTime now) {
  ++p.consecutive_failures;
  UpdateLiveness(p, now);
}

void Node::Impl::OnHeartbeat(size_t peer, Result<HeartbeatReply> r) {
  AfterExchange(
      peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu) {
        p.heartbeat_in_flight = false;
        if (!r.ok()) return;
        // Peer input is checked like client input: a bad answer changes nothing.
        std::string bad;
        if (r->stream.empty()) {
          bad = "no stream id";
        } else if (r->high_waters.size() > kMaxPeerStreams) {
          bad = fmt::format("{} streams (at most {} are believed)", r->high_waters.size(),
                            kMaxPeerStreams);
        } else if (r->stream == p.stream) {
          // One incarnation's high waters only grow.
          for (const auto& [origin, hw] : p.high_waters) {
            auto it = r->high_waters.find(origin);
            if (it != r->high_waters.end() && it->second < hw) {
              bad = fmt::format("its high water of {} went down from {} to {}", origin, hw,
                                it->second);
              break;
            }
          }
        }
        if (!bad.empty()) {
          ++p.bad_replies;
          ErrorEvent(p, now, fmt::format("ignored a heartbeat answer of {}: {}", p.url, bad));
          return;
        }
        if (r->stream == log->stream_id() && r->node_id == options.id) {
          // The URL reaches this very node (a membership change named this node's own URL).
          self_url = p.url;
          ApplyMembership(now, membership.version > 0, &a);
          return;
        }
        if (!NoteStream(p, r->stream, now, &a)) return;
        p.high_waters = std::move(r->high_waters);
        if (r->max_request_bytes > 0) p.peer_max_request = r->max_request_bytes;
        NoteMembership(p, *r, now, &a);
        // The peer holds messages we lack (of a stream that does not arrive by push, e.g. that
        // of a node that does not push to us): pull now rather than at the next anti-entropy
        // tick.
        for (const auto& [origin, hw] : p.high_waters) {
          if (hw > log->HighWater(origin) && !ArrivesByPush(origin, now)) {
            (p.pull_in_flight() ? p.pull_again : p.pull_wanted) = true;
            break;
          }
        }
        CollectSatisfied(&a);
      });
}

}  // namespace dsm

// Client writes and their acknowledgement: local (after the fsync) or quorum (once enough
// current incarnations hold every message, 503 up front, 504 at the deadline).
#include <fmt/format.h>

#include <algorithm>

#include "common/planted_bugs.h"
#include "core/node_impl.h"

namespace dsm {
namespace {

constexpr char kQuorumNotAchieved[] = "replication quorum not achieved";

}  // namespace

// Whether `p`'s current incarnation acknowledged our stream up to `origin_seq`: a push cursor
// counts only once the peer has told this process its stream id and the cursor was
// acknowledged by that very incarnation (a wiped peer holds nothing it acknowledged before).
bool Node::Impl::HoldsOwn(const PeerState& p, uint64_t origin_seq) const {
  if (Planted(PlantedBug::kQuorumFromStaleCursor)) return p.push_cursor >= origin_seq;
  return !p.stream.empty() && p.push_stream == p.stream && p.push_cursor >= origin_seq;
}

// Nodes (this one included) known to hold our stream up to `origin_seq`.
int Node::Impl::OwnHolders(uint64_t origin_seq) const {
  int n = 1;
  for (const PeerState& p : peers) {
    if (p.counts() && HoldsOwn(p, origin_seq)) ++n;
  }
  return n;
}

// Nodes (this one included) whose current incarnation said, in its last heartbeat, that it
// holds stream `origin` up to `origin_seq`.
int Node::Impl::ForeignHolders(const std::string& origin, uint64_t origin_seq) const {
  int n = 1;
  for (const PeerState& p : peers) {
    if (!p.counts() || p.stream.empty()) continue;
    auto it = p.high_waters.find(origin);
    if (it != p.high_waters.end() && it->second >= origin_seq) ++n;
  }
  return n;
}

bool Node::Impl::Satisfied(const QuorumWaiter& w) const {
  if (w.own_needed > 0 && OwnHolders(w.own_needed) < options.quorum) return false;
  for (const auto& [origin, seq] : w.foreign_needed) {
    if (ForeignHolders(origin, seq) < options.quorum) return false;
  }
  return true;
}

// Refuse a quorum write up front only when the failure detector already knows that fewer than
// `quorum` nodes are reachable; unknown peers (not heard from yet) get the benefit of the doubt.
bool Node::Impl::QuorumReachable() const {
  int reachable = 1;
  for (const PeerState& p : peers) {
    if (p.counts() && p.liveness != Liveness::kDead) ++reachable;
  }
  return reachable >= options.quorum;
}

void Node::Impl::CollectSatisfied(Actions* a) {
  if (waiters.empty()) return;
  const MonoTime now = clock->Now();
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (Satisfied(**it)) {
      quorum_wait_seconds.Observe(std::chrono::duration<double>(now - (*it)->durable_at).count());
      a->completions.emplace_back(std::move((*it)->done), std::move((*it)->result));
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
}

void Node::Send(std::vector<Message> msgs, AckMode ack, std::function<void(SendResult)> done) {
  Impl& d = *impl_;
  const bool quorum = ack == AckMode::kQuorum ||
                      (ack == AckMode::kDefault && options_.mode == ReplicationMode::kSyncQuorum);
  // Count every answer and time it from here.
  done = [&d, quorum, start = d.clock->Now(), done = std::move(done)](SendResult r) {
    const double secs = std::chrono::duration<double>(d.clock->Now() - start).count();
    (quorum ? d.send_quorum_seconds : d.send_local_seconds).Observe(secs);
    if (quorum) {
      if (r.status.ok()) {
        d.quorum_ok.fetch_add(1, std::memory_order_relaxed);
      } else if (r.status.code() == Code::kTimeout) {
        d.quorum_timeout.fetch_add(1, std::memory_order_relaxed);
      } else if (r.status.code() == Code::kUnavailable) {
        d.quorum_refused.fetch_add(1, std::memory_order_relaxed);
      }
    }
    done(std::move(r));
  };
  Status refusal;
  bool unreachable = false;
  {
    MutexLock lock(&d.mu);
    if (d.stopped) {
      refusal = Status::Unavailable("shutting down");
    } else if (d.SelfRole() == MemberRole::kRemoved) {
      refusal = Status::Unavailable(fmt::format(
          "this node was removed from the cluster (membership version {}): its writes would "
          "reach no member; send them to a member (GET /cluster on one lists them)",
          d.membership.version));
    } else if (quorum && !d.QuorumReachable()) {
      unreachable = true;
    } else {
      ++d.appends_in_flight;
    }
  }
  if (unreachable) {
    // A retry of messages that are all stored already: 503 would say that nothing was written,
    // which is false. It is answered as the write it repeats: 200 once `quorum` current holders
    // hold them (at once if they do already), 504 at the deadline otherwise.
    if (std::optional<std::vector<WriteOutcome>> stored = d.AllStored(msgs)) {
      d.OnAppended(true, msgs.front().msg_id, std::move(*stored), std::move(done));
      return;
    }
    refusal = Status::Unavailable(kQuorumNotAchieved);
  }
  if (!refusal.ok()) {
    SendResult res;
    res.status = std::move(refusal);
    done(std::move(res));
    return;
  }
  std::string first_msg_id = msgs.empty() ? std::string() : msgs.front().msg_id;
  // The write completes here or later on the store's commit thread; this thread goes on.
  d.log->AppendAsync(std::move(msgs), [&d, quorum, first_msg_id = std::move(first_msg_id),
                                       write_start = d.clock->Now(), done = std::move(done)](
                                          Result<std::vector<WriteOutcome>> written) mutable {
    const MonoTime written_at = d.clock->Now();
    d.log_write_seconds.Observe(std::chrono::duration<double>(written_at - write_start).count());
    // Off the thread that led the group commit: it has other writers to wake.
    d.Post([&d, quorum, first_msg_id = std::move(first_msg_id), written = std::move(written),
            written_at, done = std::move(done)]() mutable {
      Impl::WriteInFlight in_flight{d};
      d.core_queue_seconds.Observe(
          std::chrono::duration<double>(d.clock->Now() - written_at).count());
      d.OnAppended(quorum, std::move(first_msg_id), std::move(written), std::move(done));
    });
  });
}

std::optional<std::vector<WriteOutcome>> Node::Impl::AllStored(const std::vector<Message>& msgs) {
  if (msgs.empty()) return std::nullopt;
  std::vector<WriteOutcome> outcomes;
  for (const Message& m : msgs) {
    Result<std::optional<Message>> stored = log->FindByMsgId(m.msg_id);
    if (!stored.ok() || !stored->has_value()) return std::nullopt;
    const Message& s = **stored;
    outcomes.push_back(
        WriteOutcome{WriteOutcome::Kind::kDuplicate, s.seq, s.origin, s.origin_seq, 0});
  }
  return outcomes;
}

void Node::Impl::OnAppended(bool quorum, std::string first_msg_id,
                            Result<std::vector<WriteOutcome>> written,
                            std::function<void(SendResult)> done) {
  Impl& d = *this;
  SendResult res;
  if (!written.ok()) {
    res.status = written.status();
    done(std::move(res));
    return;
  }
  res.outcomes = std::move(written.value());
  d.CountOutcomes(Impl::kClient, res.outcomes);

  auto waiter = std::make_shared<QuorumWaiter>();
  waiter->first_msg_id = std::move(first_msg_id);
  const std::string& own = d.log->stream_id();
  for (const WriteOutcome& o : res.outcomes) {
    // A retry of a trimmed message (its position is gone): retention trimmed it once every peer
    // held it, or --retention-max-bytes did regardless (logged and counted then). Nothing to
    // wait for.
    if (o.origin.empty()) continue;
    if (o.origin == own) {
      waiter->own_needed = std::max(waiter->own_needed, o.origin_seq);
    } else {
      waiter->foreign_needed.emplace_back(o.origin, o.origin_seq);
    }
  }
  Actions a;
  {
    MutexLock lock(&d.mu);
    MonoTime now = d.clock->Now();
    if (!quorum || d.Satisfied(*waiter)) {
      if (quorum) d.quorum_wait_seconds.Observe(0);
      a.completions.emplace_back(std::move(done), std::move(res));
    } else if (d.stopped) {
      res.status = Status::Unavailable("shutting down");
      a.completions.emplace_back(std::move(done), std::move(res));
    } else {
      waiter->deadline = now + options.quorum_timeout;
      waiter->durable_at = now;
      waiter->result = std::move(res);
      waiter->done = std::move(done);
      d.waiters.push_back(std::move(waiter));
      a.wake = true;
    }
    d.CollectDue(now, &a);
  }
  d.Run(std::move(a));
}

}  // namespace dsm

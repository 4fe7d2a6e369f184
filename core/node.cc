// The Node API (core/node.h) and the scheduler of the replication core: what is due when
// (CollectDue, NextDeadline) and carrying out decided work (Run). See core/node_impl.h.
#include <fmt/format.h>

#include <algorithm>

#include "common/planted_bugs.h"
#include "core/node_impl.h"

namespace dsm {
namespace {

// The same replication error of one peer is logged at most this often (it is always counted).
constexpr auto kErrorLogInterval = std::chrono::seconds(10);

}  // namespace

// Logs a replication error of `p` unless one was logged within kErrorLogInterval (every error
// is counted by the caller). REQUIRES: mu held.
void Node::Impl::ErrorEvent(PeerState& p, MonoTime now, std::string text) {
  if (p.last_error_logged != MonoTime{} && now - p.last_error_logged < kErrorLogInterval) return;
  p.last_error_logged = now;
  Event(EventLevel::kWarning, std::move(text));
}

// Decides which requests are due now. Marks them in flight.
void Node::Impl::CollectDue(MonoTime now, Actions* a) {
  CollectDueWork(now, a);
  a->events.insert(a->events.end(), std::make_move_iterator(pending_events.begin()),
                   std::make_move_iterator(pending_events.end()));
  pending_events.clear();
}

void Node::Impl::CollectDueWork(MonoTime now, Actions* a) {
  if (!started || stopped) return;
  const uint64_t own_hw = log->HighWater(log->stream_id());
  // A node removed from the cluster only keeps hearing the members (a new add reaches it so).
  const bool removed = SelfRole() == MemberRole::kRemoved;
  for (PeerState& p : peers) {
    if (!p.active()) continue;
    UpdateLiveness(p, now);
    if (!p.heartbeat_in_flight && now >= p.next_heartbeat) {
      p.heartbeat_in_flight = true;
      p.next_heartbeat = now + options.heartbeat_interval;
      a->heartbeats.push_back(p.index);
      // Membership travels both ways: in the heartbeat and in its answer.
      if (membership.version > 0 && !a->membership) a->membership = membership;
    }
    if (removed || !Replicating(p)) continue;
    if (PushDue(p, own_hw, now)) {
      p.push_reading = true;
      const size_t limit = p.peer_max_request > 0 ? p.peer_max_request : MaxRequestBytes(options);
      a->pushes.push_back({p.index, p.push_sent, p.push_epoch, p.push_max_messages,
                           std::min(p.push_max_bytes, limit)});
    }
    if (p.repair_due()) {
      // A skip waits for positions this peer may hold: they come first.
      p.repairing = true;
      a->repairs.push_back({p.index, std::move(*p.repair_wanted)});
      p.repair_wanted.reset();
    }
    if (!p.pull_in_flight() && (p.pull_wanted || now >= p.next_pull)) {
      p.pull_wanted = false;
      p.pull_pages = 1;
      a->pulls.push_back({p.index, log->GetPullCursor(p.url), p.pull_epoch});
    }
  }
  if (RetentionDue(now)) a->retention = true;
  for (auto it = waiters.begin(); it != waiters.end();) {
    QuorumWaiter& w = **it;
    if (now < w.deadline) {
      ++it;
      continue;
    }
    w.result.status = Status::Timeout(fmt::format(
        "quorum of {} not reached within {} ms: message {} is stored at seq {} and keeps "
        "replicating; retry with the same msg_id to wait for it again",
        options.quorum, options.quorum_timeout.count(), w.first_msg_id,
        w.result.outcomes.front().seq));
    a->completions.emplace_back(std::move(w.done), std::move(w.result));
    it = waiters.erase(it);
  }
}

MonoTime Node::Impl::NextDeadline() const {
  MonoTime next = MonoTime::max();
  if (!started || stopped) return next;
  const uint64_t own_hw = log->HighWater(log->stream_id());
  const bool removed = SelfRole() == MemberRole::kRemoved;
  for (const PeerState& p : peers) {
    if (!p.active()) continue;
    if (!p.heartbeat_in_flight) next = std::min(next, p.next_heartbeat);
    if (p.liveness != Liveness::kDead) {
      next = std::min(next, (p.ever_ok ? p.last_ok : p.known_since) + options.heartbeat_timeout);
    }
    if (removed || !Replicating(p)) continue;
    if (PushDue(p, own_hw, MonoTime::max())) next = std::min(next, p.push_not_before);
    if (!p.pull_in_flight()) {
      next = std::min(next, p.pull_wanted || p.repair_due() ? MonoTime::min() : p.next_pull);
    }
  }
  for (const auto& w : waiters) next = std::min(next, w->deadline);
  if (options.retention_enabled() && !retention_running) next = std::min(next, next_retention);
  return next;
}

Node::Node(NodeOptions options, LogStore* log, Transport* transport, Clock* clock)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_, log, transport, clock)) {
  for (size_t i = 0; i < options_.peers.size(); ++i) {
    MutexLock lock(&impl_->mu);
    impl_->peers.push_back(impl_->NewPeer(i, options_.peers[i]));
  }
  impl_->LoadMembership();
}

Node::~Node() {
  MutexLock lock(&impl_->mu);
  while (impl_->appends_in_flight > 0) impl_->appends_done.Wait(&impl_->mu);
}

void Node::Start() {
  const uint64_t own_hw = impl_->log->HighWater(impl_->log->stream_id());
  std::function<void()> wake;
  {
    MutexLock lock(&impl_->mu);
    if (impl_->started) return;
    impl_->started = true;
    impl_->started_at = impl_->clock->Now();
    for (PeerState& p : impl_->peers) impl_->StartPeer(p, impl_->started_at, own_hw);
    // The first check waits a heartbeat: until peers answer, none is known to hold anything.
    impl_->next_retention = impl_->started_at + impl_->options.heartbeat_interval;
    wake = impl_->wakeup;
  }
  if (wake) wake();
}

void Node::Stop() {
  std::list<std::shared_ptr<QuorumWaiter>> waiters;
  {
    MutexLock lock(&impl_->mu);
    impl_->stopped = true;
    waiters.swap(impl_->waiters);
  }
  for (auto& w : waiters) {
    w->result.status = Status::Unavailable("shutting down");
    w->done(std::move(w->result));
  }
}

void Node::SetExecutor(std::function<void(std::function<void()>)> executor) {
  impl_->executor = std::move(executor);
}

void Node::SetStorageExecutor(std::function<void(std::function<void()>)> executor) {
  impl_->storage_executor = std::move(executor);
}

void Node::SetWakeup(std::function<void()> wakeup) {
  MutexLock lock(&impl_->mu);
  impl_->wakeup = std::move(wakeup);
}

void Node::SetEventLog(std::function<void(EventLevel, const std::string&)> log) {
  MutexLock lock(&impl_->mu);
  impl_->event_log = std::move(log);
}

void Node::WriteMetrics(MetricsWriter& w) const {
  Impl& d = *impl_;
  const NodeStatus st = GetStatus();
  struct PeerCounters {
    uint64_t pushed, push_errors, pull_errors, pulled, peer_last_seq, conflicts, too_large,
        bad_replies, read_errors, apply_errors, cursor_errors, push_rewinds, push_in_flight;
  };
  std::vector<PeerCounters> counters;
  std::vector<std::shared_ptr<Histogram>> round_trips;
  {
    MutexLock lock(&d.mu);
    for (const PeerState& p : d.peers) {
      if (!p.active()) continue;  // as in GetStatus
      round_trips.push_back(p.push_round_trip);
      counters.push_back({p.pushed, p.push_errors, p.pull_errors, p.pulled, p.peer_last_seq,
                          p.conflicts, p.too_large, p.bad_replies, p.read_errors, p.apply_errors,
                          p.cursor_errors, p.push_rewinds, p.push_window.size()});
    }
  }
  static constexpr const char* kSourceNames[] = {"client", "replicate", "pull"};
  w.Family("dsm_messages_appended_total", "counter",
           "Messages written to the log, by how they arrived (client /send, a peer's /replicate "
           "push, or this node's /sync pull).");
  for (int s = 0; s < Impl::kSources; ++s) {
    w.Sample("dsm_messages_appended_total", {{"source", kSourceNames[s]}},
             static_cast<double>(d.appended[s].load()));
  }
  w.Family("dsm_messages_deduplicated_total", "counter",
           "Messages not written because this node already held them (msg_id or stream position).");
  for (int s = 0; s < Impl::kSources; ++s) {
    w.Sample("dsm_messages_deduplicated_total", {{"source", kSourceNames[s]}},
             static_cast<double>(d.deduplicated[s].load()));
  }
  w.Family("dsm_send_duration_seconds", "histogram",
           "Time from a /send reaching the core to its answer, by acknowledgement mode.");
  w.HistogramSamples("dsm_send_duration_seconds", {{"ack", "local"}}, d.send_local_seconds.Read());
  w.HistogramSamples("dsm_send_duration_seconds", {{"ack", "quorum"}},
                     d.send_quorum_seconds.Read());
  w.Family("dsm_log_write_duration_seconds", "histogram",
           "Time of a /send's log write: group commit wait plus the fsynced RocksDB write.");
  w.HistogramSamples("dsm_log_write_duration_seconds", {}, d.log_write_seconds.Read());
  w.Family("dsm_send_stage_duration_seconds", "histogram",
           "Where a /send's time goes: log_write (group commit wait plus the fsynced write), "
           "core_queue (from the write's completion until the replication thread takes it), "
           "quorum_wait (from there until enough peers acknowledged it; quorum writes only).");
  w.HistogramSamples("dsm_send_stage_duration_seconds", {{"stage", "log_write"}},
                     d.log_write_seconds.Read());
  w.HistogramSamples("dsm_send_stage_duration_seconds", {{"stage", "core_queue"}},
                     d.core_queue_seconds.Read());
  w.HistogramSamples("dsm_send_stage_duration_seconds", {{"stage", "quorum_wait"}},
                     d.quorum_wait_seconds.Read());
  w.Family("dsm_replicate_write_duration_seconds", "histogram",
           "Time of the log write (group commit wait plus the fsynced write) of a /replicate batch "
           "this node received: the peer's fsync in its sender's push round trip.");
  w.HistogramSamples("dsm_replicate_write_duration_seconds", {}, d.replicate_write_seconds.Read());
  w.Family("dsm_peer_push_round_trip_seconds", "histogram",
           "From sending a push batch to the peer until its answer arrived.");
  for (size_t i = 0; i < round_trips.size() && i < st.peers.size(); ++i) {
    w.HistogramSamples("dsm_peer_push_round_trip_seconds", {{"peer", st.peers[i].url}},
                       round_trips[i]->Read());
  }
  w.Family("dsm_quorum_writes_total", "counter",
           "Quorum /send outcomes: ok, refused (503, nothing written) or timeout (504).");
  w.Sample("dsm_quorum_writes_total", {{"outcome", "ok"}}, static_cast<double>(d.quorum_ok.load()));
  w.Sample("dsm_quorum_writes_total", {{"outcome", "refused"}},
           static_cast<double>(d.quorum_refused.load()));
  w.Sample("dsm_quorum_writes_total", {{"outcome", "timeout"}},
           static_cast<double>(d.quorum_timeout.load()));
  w.Family("dsm_log_last_seq", "gauge", "Highest seq in this node's log.");
  w.Sample("dsm_log_last_seq", static_cast<double>(st.last_seq));
  w.Family("dsm_own_stream_high_water", "gauge", "Messages accepted by this node's own stream.");
  w.Sample("dsm_own_stream_high_water", static_cast<double>(st.own_high_water));
  w.Family("dsm_log_writable", "gauge", "1 while the log accepts writes, 0 after a disk failure.");
  w.Sample("dsm_log_writable", st.write_health.ok() ? 1 : 0);
  w.Family("dsm_log_first_seq", "gauge",
           "First seq of the log: retention trimmed every message below it (1 when none).");
  w.Sample("dsm_log_first_seq", static_cast<double>(st.first_seq));
  w.Family("dsm_log_stored_bytes", "gauge",
           "About how many bytes the log's retained records take as stored (indexes excluded).");
  w.Sample("dsm_log_stored_bytes", static_cast<double>(d.log->StoredBytes()));
  if (const StoreMemory mem = d.log->Memory(); mem.budget_bytes > 0) {
    w.Family("dsm_storage_memory_bytes", "gauge",
             "The storage engine's memory: its budget (--memory-mb); the block cache's use "
             "(cached blocks and the memtables charged to it), of which pinned (not evictable); "
             "the memtables; the open table files' readers (outside the budget).");
    const std::pair<const char*, uint64_t> parts[] = {
        {"budget", mem.budget_bytes},          {"block_cache", mem.block_cache_usage},
        {"block_cache_pinned", mem.block_cache_pinned}, {"memtables", mem.memtable_bytes},
        {"table_readers", mem.table_readers_bytes}};
    for (const auto& [part, bytes] : parts) {
      w.Sample("dsm_storage_memory_bytes", {{"part", part}}, static_cast<double>(bytes));
    }
  }
  w.Family("dsm_retention_trimmed_messages_total", "counter",
           "Messages removed by retention (--retention-max-age/-messages/-bytes).");
  w.Sample("dsm_retention_trimmed_messages_total", static_cast<double>(d.retention_trimmed.load()));
  w.Family("dsm_retention_trimmed_bytes_total", "counter",
           "Stored bytes of the records retention removed.");
  w.Sample("dsm_retention_trimmed_bytes_total",
           static_cast<double>(d.retention_trimmed_bytes.load()));
  w.Family("dsm_retention_forced_total", "counter",
           "Messages trimmed over --retention-max-bytes before every peer held them.");
  w.Sample("dsm_retention_forced_total", static_cast<double>(d.retention_forced.load()));
  w.Family("dsm_retention_errors_total", "counter", "Retention steps that failed (retried).");
  w.Sample("dsm_retention_errors_total", static_cast<double>(d.retention_errors.load()));
  w.Family("dsm_retention_waiting", "gauge",
           "1 while retention waits for peers to hold messages a limit asks to trim.");
  w.Sample("dsm_retention_waiting", st.retention_waiting.empty() ? 0 : 1);
  w.Family("dsm_trimmed_skipped_unattributed_total", "counter",
           "Positions skipped because a node that is not a peer had trimmed them.");
  w.Sample("dsm_trimmed_skipped_unattributed_total",
           static_cast<double>(d.skipped_unattributed.load()));

  auto per_peer = [&](const char* name, const char* type, const char* help, auto value) {
    w.Family(name, type, help);
    for (size_t i = 0; i < st.peers.size(); ++i) {
      w.Sample(name, {{"peer", st.peers[i].url}}, static_cast<double>(value(i)));
    }
  };
  per_peer("dsm_peer_alive", "gauge", "1 when the failure detector sees the peer alive.",
           [&](size_t i) { return st.peers[i].alive ? 1 : 0; });
  per_peer("dsm_peer_consecutive_failures", "gauge", "Failed exchanges since the last success.",
           [&](size_t i) { return st.peers[i].consecutive_failures; });
  per_peer("dsm_peer_push_cursor", "gauge", "Position of this node's stream the peer acknowledged.",
           [&](size_t i) { return st.peers[i].push_cursor; });
  per_peer("dsm_peer_lag_messages", "gauge", "Own messages the peer has not acknowledged yet.",
           [&](size_t i) { return st.peers[i].lag_messages; });
  per_peer("dsm_peer_lag_seconds", "gauge",
           "Age of the oldest own message the peer has not acknowledged (0 when none).",
           [&](size_t i) { return st.peers[i].lag_seconds; });
  per_peer("dsm_peer_replicated_messages_total", "counter",
           "Own messages the peer acknowledged (push).",
           [&](size_t i) { return counters[i].pushed; });
  per_peer("dsm_peer_replication_errors_total", "counter", "Failed pushes to the peer.",
           [&](size_t i) { return counters[i].push_errors; });
  per_peer("dsm_peer_push_in_flight", "gauge",
           "Push batches sent to the peer and not answered yet (the window).",
           [&](size_t i) { return counters[i].push_in_flight; });
  per_peer("dsm_peer_push_rewinds_total", "counter",
           "Times pushes to the peer restarted from its cursor (a failed or refused batch, a new "
           "incarnation, a batch that arrived before the one ahead of it).",
           [&](size_t i) { return counters[i].push_rewinds; });
  per_peer("dsm_peer_pull_errors_total", "counter", "Failed catch-up pulls from the peer.",
           [&](size_t i) { return counters[i].pull_errors; });
  per_peer("dsm_peer_pulled_messages_total", "counter",
           "Messages applied from the peer's log by catch-up pulls.",
           [&](size_t i) { return counters[i].pulled; });
  per_peer("dsm_peer_pull_cursor", "gauge", "Last peer seq applied by catch-up (peer's seq space).",
           [&](size_t i) { return st.peers[i].pull_cursor.seq; });
  per_peer("dsm_peer_last_seq", "gauge", "The peer's last seq, as of its last /sync answer.",
           [&](size_t i) { return counters[i].peer_last_seq; });
  per_peer("dsm_peer_conflicts_total", "counter",
           "Messages the peer and this node hold differently: another msg_id at one position "
           "(refused both ways, never counted toward a quorum).",
           [&](size_t i) { return counters[i].conflicts; });
  per_peer("dsm_peer_push_too_large_total", "counter",
           "Pushes the peer refused as too large (413); each halves the next batch.",
           [&](size_t i) { return counters[i].too_large; });
  per_peer("dsm_peer_bad_replies_total", "counter",
           "Answers of the peer that broke the protocol's rules (ignored, nothing changed).",
           [&](size_t i) { return counters[i].bad_replies; });
  per_peer("dsm_peer_read_errors_total", "counter",
           "Failed reads of this node's log for a push to the peer (retried).",
           [&](size_t i) { return counters[i].read_errors; });
  per_peer("dsm_peer_apply_errors_total", "counter",
           "Failed writes of messages pulled or repaired from the peer (retried).",
           [&](size_t i) { return counters[i].apply_errors; });
  per_peer("dsm_peer_cursor_errors_total", "counter",
           "Failed writes of the peer's push cursor (the push is resent).",
           [&](size_t i) { return counters[i].cursor_errors; });
  per_peer("dsm_peer_push_blocked", "gauge",
           "1 while pushes to the peer make no progress for a named reason (see /status).",
           [&](size_t i) { return st.peers[i].push_problem.empty() ? 0 : 1; });
  per_peer("dsm_peer_trimmed_skipped_total", "counter",
           "Positions of other streams skipped because the peer's retention had trimmed them "
           "before this node got them.",
           [&](size_t i) { return st.peers[i].trimmed_skipped; });
  per_peer("dsm_peer_push_trimmed_total", "counter",
           "Positions of this node's stream the peer lacked when retention trimmed them (the "
           "peer was told to skip them).",
           [&](size_t i) { return st.peers[i].push_trimmed; });
  per_peer("dsm_peer_pull_blocked", "gauge",
           "1 while pulls from the peer make no progress for a reason named in /status.",
           [&](size_t i) { return st.peers[i].pull_problem.empty() ? 0 : 1; });
  w.Family("dsm_conflicts_total", "counter",
           "/replicate batches refused because another msg_id holds a pushed position.");
  w.Sample("dsm_conflicts_total", static_cast<double>(d.conflicts.load()));
}

MonoTime Node::NextDeadline() const {
  MutexLock lock(&impl_->mu);
  return impl_->NextDeadline();
}

// Carries out the actions decided under the lock. Must be called without the lock.
void Node::Impl::Run(Actions actions) {
  if (!actions.events.empty()) {
    std::function<void(EventLevel, const std::string&)> sink;
    {
      MutexLock lock(&mu);
      sink = event_log;
    }
    if (sink) {
      for (const auto& [level, text] : actions.events) sink(level, text);
    }
  }
  for (auto& [done, result] : actions.completions) done(std::move(result));
  if (actions.retention) Store([this] { RetentionStep(); });
  if (actions.persist_membership) {
    // The latest membership is written, whichever change asked.
    Store([this] {
      MutexLock change(&change_mu);
      Status st = PersistMembership();
      if (!st.ok()) {
        MutexLock lock(&mu);
        Event(EventLevel::kWarning, "writing the membership failed: " + st.ToString());
      }
    });
  }
  for (size_t peer : actions.heartbeats) {
    transport->Heartbeat(peer, actions.membership, [this, peer](Result<HeartbeatReply> r) {
      Post([this, peer, r = std::move(r)]() mutable { OnHeartbeat(peer, std::move(r)); });
    });
  }
  // Log writes and disk reads go to the storage executor, in order (StartPush reads a batch still
  // in memory here).
  for (const auto& [peer, cursor] : actions.persist_push) {
    Store([this, peer = peer, cursor = cursor] {
      Status st = log->SetPushCursor(PeerUrl(peer), cursor);
      if (!st.ok()) {
        // Not fatal (a lost cursor only causes a resend), but never silent.
        MutexLock lock(&mu);
        PeerState& p = peers[peer];
        ++p.cursor_errors;
        ErrorEvent(p, clock->Now(),
                   fmt::format("writing the push cursor of {} failed: {}", p.url, st.ToString()));
      }
    });
  }
  for (const Actions::Push& push : actions.pushes) StartPush(push);
  for (const Actions::Pull& pull : actions.pulls) SendPull(pull.peer, pull.cursor, pull.epoch);
  for (auto& rep : actions.repairs) {
    transport->SyncStream(rep.peer, rep.what.origin, rep.what.since, options.batch_messages,
                          [this, peer = rep.peer, what = rep.what](Result<SyncReply> r) {
                            Post([this, peer, what, r = std::move(r)]() mutable {
                              OnRepair(peer, std::move(what), std::move(r));
                            });
                          });
  }
  if (actions.wake) {
    std::function<void()> wake;
    {
      MutexLock lock(&mu);
      wake = wakeup;
    }
    if (wake) wake();
  }
}

void Node::Tick() { impl_->Tick(); }

void Node::Impl::Tick() {
  Actions a;
  {
    MutexLock lock(&mu);
    CollectDue(clock->Now(), &a);
  }
  Run(std::move(a));
}

Result<ReplicateResult> Node::Replicate(std::vector<Message> msgs, const PushSkip& skip) {
  Impl& d = *impl_;
  Result<std::string> origin = d.BeginReplicate(msgs, skip);
  if (!origin.ok()) return origin.status();
  const MonoTime write_start = d.clock->Now();
  return d.EndReplicate(*origin, skip, write_start, d.log->Apply(std::move(msgs)));
}

void Node::ReplicateAsync(std::vector<Message> msgs, const PushSkip& skip,
                          std::function<void(Result<ReplicateResult>)> done) {
  Impl& d = *impl_;
  Result<std::string> origin = d.BeginReplicate(msgs, skip);
  if (!origin.ok()) return done(origin.status());
  {
    MutexLock lock(&d.mu);
    ++d.appends_in_flight;
  }
  // The write completes here or later on the thread that leads its group commit (the log's
  // commit thread, or a waiting writer's), which then answers the sender at once (EndReplicate
  // takes no lock that is held across a write).
  d.log->ApplyAsync(std::move(msgs), [&d, origin = std::move(origin).value(), skip,
                                      write_start = d.clock->Now(), done = std::move(done)](
                                         Result<std::vector<WriteOutcome>> written) mutable {
    Impl::WriteInFlight in_flight{d};
    done(d.EndReplicate(origin, skip, write_start, std::move(written)));
  });
}

Result<std::string> Node::Impl::BeginReplicate(const std::vector<Message>& msgs,
                                               const PushSkip& skip) {
  Impl& d = *this;
  // One origin stream per batch (or none: seed-style messages to adopt), so that the answer's
  // high water and gap describe the one stream the sender pushes. Pushes (push.cc) read one
  // stream, so only a hand-made request mixes them.
  std::string origin =
      skip.trimmed_through > 0 ? skip.origin : (msgs.empty() ? std::string() : msgs.front().origin);
  if (skip.trimmed_through > 0 && (origin.empty() || origin == d.log->stream_id())) {
    return Status::InvalidArgument("'origin' must name another node's stream to skip in");
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].origin != origin) {
      auto name = [](const std::string& o) { return o.empty() ? std::string("none") : o; };
      return Status::InvalidArgument("a batch carries messages of one origin stream: msgs[" +
                                     std::to_string(i) + "] has origin " + name(msgs[i].origin) +
                                     ", msgs[0] " + name(origin));
    }
  }
  if (skip.trimmed_through > 0) {
    // The sender trimmed these positions before this node got them: skipped, unless a peer may
    // still hold them (then the messages after them are a gap until it supplied them).
    {
      MutexLock lock(&d.mu);
      for (PeerState& p : d.peers) {
        if (p.stream == origin) d.NoteLacks(p, origin, skip.trimmed_through);
      }
    }
    Result<SkipOutcome> skipped = d.SkipUnheld(origin, skip.trimmed_through);
    if (!skipped.ok()) return skipped.status();
    if (skipped->skipped > 0) d.NoteSkipped(origin, skipped->through, skipped->skipped);
  }
  return origin;
}

Result<ReplicateResult> Node::Impl::EndReplicate(const std::string& origin, const PushSkip& skip,
                                                 MonoTime write_start,
                                                 Result<std::vector<WriteOutcome>> written) {
  Impl& d = *this;
  d.replicate_write_seconds.Observe(
      std::chrono::duration<double>(d.clock->Now() - write_start).count());
  if (!written.ok()) return written.status();
  ReplicateResult res;
  res.outcomes = std::move(written.value());
  d.CountOutcomes(Impl::kReplicate, res.outcomes);
  bool adopted = false;
  bool appended = false;        // a message of `origin` was written now
  uint64_t first_conflict = 0;  // origin_seq of the first conflicting position of `origin`
  for (const WriteOutcome& o : res.outcomes) {
    if (o.kind == WriteOutcome::Kind::kGap) res.gap = true;
    if (o.kind == WriteOutcome::Kind::kConflict) {
      res.conflict = true;
      if (o.origin == origin && (first_conflict == 0 || o.origin_seq < first_conflict)) {
        first_conflict = o.origin_seq;
      }
    }
    if (o.kind == WriteOutcome::Kind::kAppended && o.origin == d.log->stream_id()) adopted = true;
    if (o.kind == WriteOutcome::Kind::kAppended && o.origin == origin) appended = true;
  }
  // Positions the sender trimmed that this node did not skip yet (another peer may hold them):
  // what follows them is a gap, also when nothing follows (the sender backs off, push.cc).
  if (skip.trimmed_through > 0 && d.log->HighWater(origin) < skip.trimmed_through) res.gap = true;
  // The stream arrives by push (pulls leave it to the pushes, pull.cc) only while pushes bring
  // something new: a push of positions this node already holds (a sender resending from an old
  // cursor after a long cut, while pulls brought them) must not hold back the pulls.
  if (appended && !res.gap && !res.conflict && origin != d.log->stream_id()) d.NotePushed(origin);
  res.high_water = d.log->HighWater(origin.empty() ? d.log->stream_id() : origin);
  // A conflict: the sender's stream is held as it wrote it only up to the position before.
  if (first_conflict > 0) res.high_water = std::min(res.high_water, first_conflict - 1);
  if (res.conflict) d.conflicts.fetch_add(1, std::memory_order_relaxed);
  if (adopted) {
    // Messages without an origin became our own: the replication thread ships them like a /send.
    d.Post([&d] { d.Tick(); });
  }
  return res;
}

// Both pages read at most `limit` entries and about batch_bytes of payload (at least one entry),
// so a page stays bounded in memory; `more` compares where the page ended with the end of the
// log (or of the stream) as it was when the page began.
Result<SyncPage> Node::Sync(uint64_t since, size_t limit,
                            const std::map<std::string, uint64_t>& have) {
  Impl& d = *impl_;
  SyncPage page;
  page.stream = d.log->stream_id();
  page.last_seq = d.log->LastSeq();
  page.next = since;
  ScanOptions scan;
  scan.after = since;
  const size_t max_visits = limit > SIZE_MAX / kSyncScanFactor ? SIZE_MAX : limit * kSyncScanFactor;
  size_t visits = 0;
  size_t bytes = 0;
  Status s = d.log->Scan(scan, [&](const Message& m) {
    if (page.messages.size() >= limit || visits >= max_visits) return false;
    if (auto it = have.find(m.origin); it != have.end() && m.origin_seq <= it->second) {
      ++visits;
      page.next = m.seq;  // the puller holds it
      return true;
    }
    if (!page.messages.empty() && bytes + m.payload.size() > options_.batch_bytes) return false;
    ++visits;
    bytes += m.payload.size();
    page.next = m.seq;
    page.messages.push_back(m);
    return true;
  });
  if (!s.ok()) return s;
  page.more = page.next < page.last_seq;
  // Entries appended while the page was read can lie beyond the last seq read first. Without
  // any entry looked at, `next` is the request's `since`: not a seq of this log.
  if (page.next > since) page.last_seq = std::max(page.last_seq, page.next);
  return page;
}

Result<SyncPage> Node::SyncStream(const std::string& origin, uint64_t since, size_t limit) {
  Impl& d = *impl_;
  SyncPage page;
  page.stream = d.log->stream_id();
  page.last_seq = d.log->LastSeq();
  const uint64_t high_water = d.log->HighWater(origin);
  Result<std::vector<Message>> msgs = d.log->ReadOrigin(origin, since, limit, options_.batch_bytes);
  if (!msgs.ok() && msgs.status().code() == Code::kTrimmed) {
    // The positions after `since` are gone: say how far, and go on after them.
    Result<uint64_t> run = d.log->TrimmedRun(origin, since);
    if (!run.ok()) return run.status();
    if (*run <= since) return msgs.status();  // held again: cannot happen
    page.trimmed_through = *run;
    msgs = d.log->ReadOrigin(origin, *run, limit, options_.batch_bytes);
    if (!msgs.ok() && msgs.status().code() == Code::kTrimmed) msgs = std::vector<Message>();
  }
  if (!msgs.ok()) return msgs.status();
  page.messages = std::move(msgs.value());
  const uint64_t reached = page.messages.empty() ? std::max(since, page.trimmed_through)
                                                 : page.messages.back().origin_seq;
  page.more = reached < high_water;
  return page;
}

const std::string& Node::stream_id() const { return impl_->log->stream_id(); }

HeartbeatReply Node::Heartbeat(const Membership* from_peer, std::string caller_stream) {
  if (from_peer != nullptr && from_peer->version > 0) {
    // Merged on the replication thread, like everything peers say.
    impl_->Post([this, m = *from_peer] { impl_->HearMembership(m); });
  }
  if (!caller_stream.empty()) {
    impl_->Post([this, stream = std::move(caller_stream)] { impl_->HeardFrom(stream); });
  }
  HeartbeatReply r;
  r.node_id = options_.id;
  r.time = impl_->clock->WallSeconds();
  r.stream = impl_->log->stream_id();
  // Bounded like a pull's map (the streams held furthest, and always our own): peers use it
  // for the quorum of retried messages of other streams and to see what this node holds.
  r.high_waters = impl_->HaveMap();
  r.high_waters[r.stream] = impl_->log->HighWater(r.stream);
  r.max_request_bytes = MaxRequestBytes(options_);
  MutexLock lock(&impl_->mu);
  if (impl_->membership.version > 0) r.membership = impl_->membership;
  return r;
}

NodeStatus Node::GetStatus() const {
  Impl& d = *impl_;
  NodeStatus st;
  st.node_id = options_.id;
  st.stream = d.log->stream_id();
  st.mode = options_.mode;
  st.quorum = options_.quorum;
  st.last_seq = d.log->LastSeq();
  st.own_high_water = d.log->HighWater(st.stream);
  st.first_seq = d.log->FirstSeq();
  st.write_health = d.log->WriteHealth();
  {
    MutexLock lock(&d.mu);
    st.retention_waiting = d.retention_waiting;
    MonoTime now = d.clock->Now();
    st.role = d.SelfRole();
    st.membership_version = d.membership.version;
    for (const PeerState& p : d.peers) {
      if (!p.active()) continue;
      PeerStatus ps;
      ps.url = p.url;
      ps.role = p.voter ? MemberRole::kVoter : MemberRole::kLearner;
      // As the failure detector will see it at `now`; reading the status changes nothing.
      ps.alive = p.liveness == Liveness::kAlive && now - p.last_ok < d.options.heartbeat_timeout;
      ps.last_ok = p.last_ok_wall;
      ps.consecutive_failures = p.consecutive_failures;
      // What the peer's current incarnation acknowledged (0 while that is not known).
      ps.push_cursor = d.HoldsOwn(p, p.push_cursor) ? p.push_cursor : 0;
      ps.stream = p.stream;
      ps.push_problem = p.push_problem;
      ps.pull_problem = p.pull_problem;
      ps.trimmed_skipped = p.trimmed_skipped;
      ps.push_trimmed = p.push_trimmed;
      st.peers.push_back(std::move(ps));
    }
  }
  const double wall = d.clock->WallSeconds();
  for (PeerStatus& ps : st.peers) {
    ps.pull_cursor = d.log->GetPullCursor(ps.url);
    if (ps.push_cursor >= st.own_high_water) continue;
    ps.lag_messages = st.own_high_water - ps.push_cursor;
    Result<std::vector<Message>> oldest = d.log->ReadOrigin(st.stream, ps.push_cursor, 1, 0);
    if (oldest.ok() && !oldest->empty()) {
      ps.lag_seconds = std::max(0.0, wall - oldest->front().ts);
    }
  }
  return st;
}

}  // namespace dsm

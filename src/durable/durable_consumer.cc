#include "src/durable/durable_consumer.h"

#include <algorithm>
#include <charconv>

#include "storage/origin_positions.h"

namespace dsm {
namespace {

// Log records one Fetch looks at before it returns (the caller may come back at once).
constexpr size_t kReadBudget = 4096;
constexpr size_t kUidChars = 8;

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

const char* AckOutcomeName(AckOutcome o) {
  switch (o) {
    case AckOutcome::kAcked:
      return "acked";
    case AckOutcome::kAlreadyAcked:
      return "already_acked";
    case AckOutcome::kStale:
      return "stale";
    case AckOutcome::kDeadLettered:
      return "dead_lettered";
    case AckOutcome::kNaked:
      return "naked";
    case AckOutcome::kGone:
      return "gone";
  }
  return "unknown";
}

bool ParseAckId(std::string_view id, std::string* uid, uint64_t* session, uint64_t* seq,
                uint64_t* delivery) {
  std::string_view parts[4];
  for (int i = 0; i < 4; ++i) {
    const size_t dot = id.find('.');
    if ((dot == std::string_view::npos) != (i == 3)) return false;
    parts[i] = id.substr(0, dot);
    id = dot == std::string_view::npos ? std::string_view() : id.substr(dot + 1);
  }
  if (parts[0].size() != kUidChars) return false;
  for (char c : parts[0]) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  *uid = std::string(parts[0]);
  return ParseU64(parts[1], session) && ParseU64(parts[2], seq) && ParseU64(parts[3], delivery);
}

DurableConsumer::DurableConsumer(StoredConsumer stored, const LogStore* log,
                                 ConsumerStateStore* state, const Clock* clock,
                                 ChangeListener on_change)
    : name_(stored.name),
      definition_(stored.definition),
      uid_(stored.uid),
      initial_(stored.initial),
      session_(stored.session),
      log_(log),
      state_(state),
      clock_(clock),
      on_change_(std::move(on_change)),
      floor_(stored.floor),
      scanned_(stored.floor),
      counted_to_(stored.floor) {
  for (uint64_t seq : stored.acked) {
    if (seq > floor_) acked_.insert(seq);
  }
  for (const DeadLetter& d : stored.dead) dead_.emplace(d.seq, d);
}

std::string DurableConsumer::MakeAckId(uint64_t seq, uint64_t delivery) const {
  return uid_ + "." + std::to_string(session_) + "." + std::to_string(seq) + "." +
         std::to_string(delivery);
}

bool DurableConsumer::Selected(const Message& m) const {
  if (definition_.sender && m.sender != *definition_.sender) return false;
  if (definition_.recipient && m.recipient != *definition_.recipient) return false;
  const auto& origins = definition_.start.origins;
  if (!origins.empty()) {
    auto it = origins.find(m.origin);
    if (it != origins.end() && m.origin_seq <= it->second) return false;  // done on another node
  }
  return true;
}

void DurableConsumer::SetTimer(uint64_t seq, Entry* e, MonoTime when) {
  e->deadline = when;
  timers_.emplace(when, seq);
}

void DurableConsumer::ClearTimer(uint64_t seq, const Entry& e) { timers_.erase({e.deadline, seq}); }

uint64_t DurableConsumer::CandidateFloor() const {
  for (const auto& [seq, e] : outstanding_) {
    if (e.state != State::kAckPending) return seq - 1;
  }
  return scanned_;
}

void DurableConsumer::QueueCommits(std::vector<PendingCommit> commits) {
  for (PendingCommit& c : commits) {
    std::vector<ConsumerChange> changes;
    changes.push_back(std::move(c.change));
    state_->Commit(std::move(changes), std::move(c.done));
  }
}

void DurableConsumer::DeadLetterLocked(uint64_t seq, std::vector<DeadLetter>* out) {
  auto it = outstanding_.find(seq);
  if (it == outstanding_.end()) return;
  Entry& e = it->second;
  ClearTimer(seq, e);
  if (e.state == State::kHeld) --held_;
  due_.erase(seq);
  DeadLetter d;
  d.seq = seq;
  d.deliveries = e.deliveries;
  d.when = clock_->WallSeconds();
  dead_[seq] = d;
  outstanding_.erase(it);
  out->push_back(d);
}

void DurableConsumer::CommitDead(std::vector<DeadLetter> dead) {
  if (dead.empty()) return;
  PendingCommit c;
  c.change.name = name_;
  const uint64_t floor = CandidateFloor();
  c.change.floor = floor;
  c.change.dead = std::move(dead);
  std::weak_ptr<DurableConsumer> weak = weak_from_this();
  c.done = [weak, floor](Status s) {
    std::shared_ptr<DurableConsumer> self = weak.lock();
    if (!self || !s.ok()) return;  // not durable: after a restart the message is delivered again
    MutexLock lock(&self->mu_);
    if (floor > self->floor_) self->floor_ = floor;
    while (!self->acked_.empty() && *self->acked_.begin() <= self->floor_) {
      self->acked_.erase(self->acked_.begin());
    }
  };
  to_commit_.push_back(std::move(c));
}

std::optional<MonoTime> DurableConsumer::NextDeadlineLocked() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

std::optional<MonoTime> DurableConsumer::TickLocked(MonoTime now) {
  std::vector<DeadLetter> dead;
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const uint64_t seq = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end()) continue;
    Entry& e = it->second;
    if (e.state == State::kHeld) {
      --held_;
      e.state = State::kWaiting;  // its ack deadline passed
      if (definition_.max_deliveries != 0 && e.deliveries >= definition_.max_deliveries) {
        DeadLetterLocked(seq, &dead);
        continue;
      }
      due_.insert(seq);
    } else if (e.state == State::kWaiting) {
      due_.insert(seq);  // its nak delay passed
    }
  }
  CommitDead(std::move(dead));
  return NextDeadlineLocked();
}

std::optional<MonoTime> DurableConsumer::Tick() {
  MutexLock order(&commit_mu_);
  std::optional<MonoTime> next;
  std::vector<PendingCommit> commits;
  {
    MutexLock lock(&mu_);
    if (deleted_) return std::nullopt;
    next = TickLocked(clock_->Now());
    commits = TakeCommits();
  }
  QueueCommits(std::move(commits));
  return next;
}

std::optional<MonoTime> DurableConsumer::NextDeadline() const {
  MutexLock lock(&mu_);
  return NextDeadlineLocked();
}

bool DurableConsumer::HasDueRedelivery() const {
  MutexLock lock(&mu_);
  return !due_.empty();
}

uint64_t DurableConsumer::ReadPosition() const {
  MutexLock lock(&mu_);
  return scanned_;
}

bool DurableConsumer::HasRoom() const {
  MutexLock lock(&mu_);
  return outstanding_.size() - ack_pending_ < definition_.max_in_flight;
}

Result<FetchResult> DurableConsumer::Fetch(size_t max) {
  MutexLock order(&commit_mu_);
  Result<FetchResult> out = FetchResult{};
  std::vector<PendingCommit> commits;
  {
    MutexLock lock(&mu_);
    if (deleted_) return Status::NotFound("consumer '" + name_ + "' was deleted");
    const MonoTime now = clock_->Now();
    TickLocked(now);
    const auto ack_wait = Millis(definition_.ack_wait_ms);
    std::vector<Delivery>& got = out->deliveries;
    // Redeliveries first.
    while (got.size() < max && !due_.empty()) {
      const uint64_t seq = *due_.begin();
      Result<std::optional<Message>> m = log_->Get(seq);
      if (!m.ok()) {
        if (got.empty()) return m.status();
        break;
      }
      due_.erase(due_.begin());
      auto it = outstanding_.find(seq);
      if (it == outstanding_.end()) continue;
      Entry& e = it->second;
      if (!m->has_value()) {  // trimmed from the log meanwhile
        ClearTimer(seq, e);
        outstanding_.erase(it);
        ++trimmed_;
        continue;
      }
      ClearTimer(seq, e);
      ++e.deliveries;
      e.state = State::kHeld;
      e.delivered_at = now;
      SetTimer(seq, &e, now + ack_wait);
      ++held_;
      ++redelivered_;
      ++delivered_total_;
      got.push_back(Delivery{std::move(**m), e.deliveries, MakeAckId(seq, e.deliveries)});
    }
    // Then new messages, in log order, while there is room.
    auto room = [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return got.size() < max && outstanding_.size() - ack_pending_ < definition_.max_in_flight;
    };
    if (room()) {
      const uint64_t bound = log_->LastSeq();
      ScanOptions scan;
      scan.after = scanned_;
      scan.recipient = definition_.recipient;  // the sender filter is applied here (budget)
      uint64_t last = scanned_;
      size_t visited = 0;
      bool stopped = false;
      bool budget_spent = false;
      Status s = log_->Scan(scan, [&](const Message& m) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (!room()) {
          stopped = true;
          return false;
        }
        last = m.seq;
        if (Selected(m) && acked_.count(m.seq) == 0 && dead_.count(m.seq) == 0 &&
            outstanding_.count(m.seq) == 0) {
          Entry& e = outstanding_[m.seq];
          e.deliveries = 1;
          e.state = State::kHeld;
          e.delivered_at = now;
          SetTimer(m.seq, &e, now + ack_wait);
          ++held_;
          ++delivered_total_;
          if (m.seq <= counted_to_ && uncounted_pending_ > 0) --uncounted_pending_;
          got.push_back(Delivery{m, 1, MakeAckId(m.seq, 1)});
        }
        if (++visited >= kReadBudget) {
          budget_spent = true;
          return false;
        }
        return true;
      });
      if (!s.ok() && got.empty()) return s;
      scanned_ = (stopped || budget_spent || !s.ok()) ? std::max(scanned_, last)
                                                      : std::max({scanned_, last, bound});
      if (budget_spent && got.empty()) out->more = true;
      if (scanned_ >= counted_to_) {
        counted_to_ = scanned_;
        uncounted_pending_ = 0;
      }
    }
    if (!got.empty()) Changed();  // new ack deadlines
    commits = TakeCommits();
  }
  QueueCommits(std::move(commits));
  return out;
}

Result<std::vector<AckOutcome>> DurableConsumer::Classify(const std::vector<std::string>& ids,
                                                          std::vector<AckId>* parsed) const {
  std::vector<AckOutcome> out;
  out.reserve(ids.size());
  parsed->clear();
  for (const std::string& id : ids) {
    std::string uid;
    AckId a;
    if (!ParseAckId(id, &uid, &a.session, &a.seq, &a.delivery) || a.delivery == 0) {
      return Status::InvalidArgument("'" + id.substr(0, 100) +
                                     "' is not an ack id (<consumer>.<session>.<seq>.<delivery>)");
    }
    const auto never = [&](const char* why) {
      return Status::InvalidArgument("ack id '" + id + "' was never issued by consumer '" + name_ +
                                     "' (" + why + ")");
    };
    if (uid != uid_) return never("it belongs to another consumer, or to a deleted one");
    if (a.session > session_) return never("its session is ahead of the consumer's");
    parsed->push_back(a);
    if (a.session < session_) {
      out.push_back(AckOutcome::kStale);  // issued before the node restarted
      continue;
    }
    if (dead_.count(a.seq) != 0) {
      out.push_back(AckOutcome::kDeadLettered);
      continue;
    }
    if (a.seq <= floor_ || acked_.count(a.seq) != 0) {
      out.push_back(AckOutcome::kAlreadyAcked);
      continue;
    }
    auto it = outstanding_.find(a.seq);
    if (it == outstanding_.end()) {
      if (a.seq > scanned_) return never("that message was not delivered");
      out.push_back(AckOutcome::kGone);
      continue;
    }
    const Entry& e = it->second;
    if (a.delivery > e.deliveries) return never("that delivery did not happen");
    if (a.delivery < e.deliveries) {
      out.push_back(AckOutcome::kStale);
    } else if (e.state == State::kAckPending) {
      out.push_back(AckOutcome::kAlreadyAcked);
    } else {
      out.push_back(AckOutcome::kAcked);  // the current delivery
    }
  }
  return out;
}

void DurableConsumer::Ack(const std::vector<std::string>& ids, AckDone done) {
  MutexLock order(&commit_mu_);
  Status refused;
  std::vector<PendingCommit> commits;
  {
    MutexLock lock(&mu_);
    std::vector<AckId> parsed;
    Result<std::vector<AckOutcome>> outcomes = Status::NotFound("consumer '" + name_ +
                                                                "' was deleted");
    if (!deleted_) outcomes = Classify(ids, &parsed);
    if (!outcomes.ok()) {
      refused = outcomes.status();
    } else {
      std::vector<std::pair<uint64_t, MonoTime>> seqs;
      for (size_t i = 0; i < parsed.size(); ++i) {
        if ((*outcomes)[i] != AckOutcome::kAcked) continue;
        Entry& e = outstanding_[parsed[i].seq];
        if (e.state == State::kAckPending) {  // the same id twice in one request
          (*outcomes)[i] = AckOutcome::kAlreadyAcked;
          continue;
        }
        ClearTimer(parsed[i].seq, e);
        if (e.state == State::kHeld) --held_;
        due_.erase(parsed[i].seq);
        e.state = State::kAckPending;
        ++ack_pending_;
        seqs.emplace_back(parsed[i].seq, e.delivered_at);
      }
      // Written even when nothing new is acknowledged: an "already acknowledged" answer about an
      // acknowledgement still being written comes after that write.
      PendingCommit c;
      c.change.name = name_;
      const uint64_t floor = CandidateFloor();
      c.change.floor = floor;
      for (const auto& [seq, at] : seqs) c.change.acks.push_back(seq);
      std::weak_ptr<DurableConsumer> weak = weak_from_this();
      c.done = [weak, seqs = std::move(seqs), floor, outcomes = std::move(outcomes).value(),
                done = std::move(done)](Status s) mutable {
        if (std::shared_ptr<DurableConsumer> self = weak.lock()) self->AckDurable(seqs, floor, s);
        if (s.ok()) {
          done(std::move(outcomes));
        } else {
          done(s);
        }
      };
      to_commit_.push_back(std::move(c));
    }
    commits = TakeCommits();
  }
  QueueCommits(std::move(commits));
  if (!refused.ok()) done(refused);
}

void DurableConsumer::AckDurable(const std::vector<std::pair<uint64_t, MonoTime>>& seqs,
                                 uint64_t floor, const Status& s) {
  const MonoTime now = clock_->Now();
  MutexLock lock(&mu_);
  for (const auto& [seq, delivered_at] : seqs) {
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end() || it->second.state != State::kAckPending) continue;
    --ack_pending_;
    if (s.ok()) {
      outstanding_.erase(it);
      if (seq > floor_) acked_.insert(seq);
      ++acked_total_;
      ack_latency_.Observe(Seconds(now - delivered_at));
    } else {
      it->second.state = State::kWaiting;  // not acknowledged: deliverable again
      due_.insert(seq);
    }
  }
  if (s.ok() && floor > floor_) floor_ = floor;
  while (!acked_.empty() && *acked_.begin() <= floor_) acked_.erase(acked_.begin());
  Changed();
}

Result<std::vector<AckOutcome>> DurableConsumer::Nak(const std::vector<std::string>& ids,
                                                     Millis delay) {
  MutexLock order(&commit_mu_);
  Result<std::vector<AckOutcome>> outcomes = Status::NotFound("consumer '" + name_ +
                                                              "' was deleted");
  std::vector<PendingCommit> commits;
  {
    MutexLock lock(&mu_);
    std::vector<AckId> parsed;
    if (!deleted_) outcomes = Classify(ids, &parsed);
    if (!outcomes.ok()) return outcomes;
    const MonoTime now = clock_->Now();
    std::vector<DeadLetter> dead;
    for (size_t i = 0; i < parsed.size(); ++i) {
      if ((*outcomes)[i] != AckOutcome::kAcked) continue;
      const uint64_t seq = parsed[i].seq;
      auto it = outstanding_.find(seq);
      if (it == outstanding_.end()) {  // dead-lettered by an earlier id of this request
        (*outcomes)[i] = AckOutcome::kDeadLettered;
        continue;
      }
      Entry& e = it->second;
      if (e.state == State::kAckPending) {
        (*outcomes)[i] = AckOutcome::kAlreadyAcked;
        continue;
      }
      if (definition_.max_deliveries != 0 && e.deliveries >= definition_.max_deliveries) {
        DeadLetterLocked(seq, &dead);
        (*outcomes)[i] = AckOutcome::kDeadLettered;
        continue;
      }
      ClearTimer(seq, e);
      if (e.state == State::kHeld) --held_;
      e.state = State::kWaiting;
      due_.erase(seq);
      if (delay.count() == 0) {
        due_.insert(seq);
      } else {
        SetTimer(seq, &e, now + delay);
      }
      (*outcomes)[i] = AckOutcome::kNaked;
    }
    CommitDead(std::move(dead));
    Changed();
    commits = TakeCommits();
  }
  QueueCommits(std::move(commits));
  return outcomes;
}

ConsumerInfo DurableConsumer::Info(size_t count_budget) {
  MutexLock lock(&mu_);
  ConsumerInfo info;
  info.name = name_;
  info.definition = definition_;
  info.initial = initial_;
  info.ack_floor = floor_;
  info.delivered_up_to = scanned_;
  info.session = session_;
  // Count the selected messages not handed out yet, from where the last count stopped.
  if (counted_to_ < scanned_) {
    counted_to_ = scanned_;
    uncounted_pending_ = 0;
  }
  const uint64_t bound = log_->LastSeq();
  if (counted_to_ < bound && !deleted_) {
    ScanOptions scan;
    scan.after = counted_to_;
    scan.recipient = definition_.recipient;
    size_t visited = 0;
    uint64_t last = counted_to_;
    bool budget_spent = false;
    Status s = log_->Scan(scan, [&](const Message& m) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      last = m.seq;
      if (Selected(m) && acked_.count(m.seq) == 0 && dead_.count(m.seq) == 0) {
        ++uncounted_pending_;
      }
      if (++visited >= count_budget) {
        budget_spent = true;
        return false;
      }
      return true;
    });
    if (s.ok()) counted_to_ = budget_spent ? last : std::max(last, bound);
  }
  info.pending_exact = counted_to_ >= bound;
  info.in_flight = held_;
  info.ack_pending = ack_pending_;
  info.pending = uncounted_pending_ + (outstanding_.size() - held_ - ack_pending_);
  info.acked = acked_total_;
  info.delivered = delivered_total_;
  info.redelivered = redelivered_;
  info.dead_lettered = dead_.size();
  info.trimmed = trimmed_;
  return info;
}

Result<std::map<std::string, uint64_t>> DurableConsumer::OriginPosition() {
  uint64_t floor = 0;
  {
    MutexLock lock(&mu_);
    floor = floor_;
  }
  Result<std::map<std::string, uint64_t>> at = OriginPositionsAt(*log_, floor);
  if (!at.ok()) return at;
  for (const auto& [origin, origin_seq] : definition_.start.origins) {
    uint64_t& v = (*at)[origin];
    v = std::max(v, origin_seq);
  }
  return at;
}

std::vector<DeadLetter> DurableConsumer::DeadLetters(uint64_t after, size_t limit) const {
  MutexLock lock(&mu_);
  std::vector<DeadLetter> out;
  for (auto it = dead_.upper_bound(after); it != dead_.end() && out.size() < limit; ++it) {
    out.push_back(it->second);
  }
  return out;
}

void DurableConsumer::MarkDeleted() {
  MutexLock lock(&mu_);
  deleted_ = true;
  timers_.clear();
  due_.clear();
}

}  // namespace dsm

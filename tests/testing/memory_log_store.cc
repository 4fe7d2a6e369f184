#include "tests/testing/memory_log_store.h"

#include <algorithm>
#include <cassert>
#include <tuple>
#include <utility>

#include "common/planted_bugs.h"
#include "storage/read_rules.h"
#include "storage/record.h"

namespace dsm {
namespace {

// Sets map[key] = value and returns the previous value (nullopt: absent).
template <typename Map, typename Key, typename Value>
std::optional<Value> Replace(Map& map, const Key& key, const Value& value) {
  auto it = map.find(key);
  if (it == map.end()) {
    map.emplace(typename Map::key_type(key), value);
    return std::nullopt;
  }
  std::optional<Value> old = it->second;
  it->second = value;
  return old;
}

// Restores map[key] to `old` (erases it when absent).
template <typename Map, typename Key, typename Value>
void Revert(Map& map, const Key& key, const std::optional<Value>& old) {
  if (old) {
    map.insert_or_assign(typename Map::key_type(key), *old);
  } else if (auto it = map.find(key); it != map.end()) {
    map.erase(it);
  }
}

}  // namespace

MemoryLogStore::MemoryLogStore(std::string node_id, std::string incarnation)
    : node_id_(std::move(node_id)), stream_id_(node_id_ + "@" + incarnation) {
  lookups_.find_msg_id = [this](std::string_view msg_id) EXCLUSIVE_LOCKS_REQUIRED(mu_)
      -> Result<std::optional<uint64_t>> {
    auto it = state_.msg_ids_.find(msg_id);
    if (it == state_.msg_ids_.end() || it->second <= state_.dedup_head_) {
      return std::optional<uint64_t>();
    }
    return std::optional<uint64_t>(it->second);
  };
  lookups_.stored_position = [this](uint64_t seq) EXCLUSIVE_LOCKS_REQUIRED(mu_)
      -> Result<StoredPosition> {
    Result<std::optional<Message>> m = GetLocked(seq);
    if (!m.ok()) return m.status();
    if (!m->has_value()) return Status::Corruption("seq " + std::to_string(seq) + " not stored");
    return StoredPosition{std::move((*m)->origin), (*m)->origin_seq};
  };
  lookups_.find_origin_seq = [this](std::string_view origin, uint64_t origin_seq)
      EXCLUSIVE_LOCKS_REQUIRED(mu_) -> Result<std::optional<uint64_t>> {
    auto it = state_.origins_.find(origin);
    if (it == state_.origins_.end()) return std::optional<uint64_t>();
    auto p = it->second.find(origin_seq);
    if (p == it->second.end()) return std::optional<uint64_t>();
    return std::optional<uint64_t>(p->second);
  };
}

Result<std::vector<WriteOutcome>> MemoryLogStore::Append(std::vector<Message> msgs) {
  return Write(WriteRequest::Append(msgs));
}

Result<std::vector<WriteOutcome>> MemoryLogStore::Apply(std::vector<Message> msgs,
                                                        const std::string& peer_url,
                                                        const PullCursor* cursor) {
  return Write(WriteRequest::Apply(msgs, peer_url, cursor));
}

void MemoryLogStore::AppendAsync(std::vector<Message> msgs, AppendDone done) {
  if (Planted(PlantedBug::kAckBeforeFsync)) {
    // The write is published and acknowledged now; its fsync completes later.
    Result<std::vector<WriteOutcome>> result = Status::IOError("unset");
    SyncScheduler schedule;
    uint64_t generation = 0;
    uint64_t completions = 0;
    uint64_t undo_id = 0;
    {
      MutexLock lock(&mu_);
      if (!queue_.empty()) completions = CommitQueuedLocked();
      const WriteRequest req = WriteRequest::Append(msgs);
      result = std::move(CommitLocked({&req}, /*unsynced=*/true, &undo_id).front());
      schedule = schedule_;
      generation = generation_;
    }
    if (completions != 0) ScheduleCompletions(generation, completions);
    if (undo_id != 0 && schedule) {
      schedule([this, generation, undo_id] { OnUnsyncedFsync(generation, undo_id); });
    }
    done(std::move(result));
    return;
  }
  SyncScheduler schedule;
  uint64_t generation = 0;
  {
    MutexLock lock(&mu_);
    if (schedule_) {
      queue_.push_back(QueuedWrite{std::move(msgs), std::move(done)});
      if (fsync_scheduled_) return;
      fsync_scheduled_ = true;
      schedule = schedule_;
      generation = generation_;
    }
  }
  if (!schedule) {
    done(Append(std::move(msgs)));
    return;
  }
  schedule([this, generation] { OnFsyncDue(generation); });
}

Result<std::vector<WriteOutcome>> MemoryLogStore::Write(const WriteRequest& req) {
  Result<std::vector<WriteOutcome>> result = Status::IOError("unset");
  uint64_t completions = 0;
  uint64_t generation = 0;
  {
    MutexLock lock(&mu_);
    // Queued AppendAsync writes go first: this write's fsync makes them durable too.
    if (!queue_.empty()) completions = CommitQueuedLocked();
    const bool unsynced = req.kind == WriteRequest::Kind::kApply && req.cursor == nullptr &&
                          Planted(PlantedBug::kAckBeforePeerFsync);
    uint64_t undo_id = 0;
    result = std::move(CommitLocked({&req}, unsynced, &undo_id).front());
    generation = generation_;
  }
  if (completions != 0) ScheduleCompletions(generation, completions);
  return result;
}

Status MemoryLogStore::RefusalLocked() const {
  if (!write_error_.ok()) return write_error_;
  if (disk_full_) {
    return Status::Unavailable(
        "disk full: the node cannot store new messages until space is freed (reads keep "
        "working; writes resume by themselves): simulated");
  }
  return Status::Ok();
}

std::vector<Result<std::vector<WriteOutcome>>> MemoryLogStore::CommitLocked(
    const std::vector<const WriteRequest*>& requests, bool unsynced, uint64_t* undo_id) {
  std::vector<Result<std::vector<WriteOutcome>>> results;
  if (Status refusal = RefusalLocked(); !refusal.ok()) {
    results.assign(requests.size(), refusal);
    return results;
  }
  uint64_t last_seq = state_.records_.size();
  if (reuse_seq_ && last_seq > 0) --last_seq;  // planted: the last seq recovered one too low
  const WritePlanState st{stream_id_, last_seq, &state_.high_waters_, state_.first_seq_,
                          &state_.trimmed_};
  Result<WritePlan> plan = PlanWrites(requests, st, lookups_);
  if (!plan.ok()) {
    results.assign(requests.size(), plan.status());
    return results;
  }
  if (!plan->records.empty()) reuse_seq_ = false;
  if (plan->empty()) {
    // Nothing durable changes: no write, no fsync.
  } else if (unsynced) {
    Undo undo;
    undo.id = next_id_++;
    ApplyPlanLocked(*plan, &undo);
    *undo_id = undo.id;
    undo_.push_back(std::move(undo));
  } else {
    ApplyPlanLocked(*plan, nullptr);
    SyncedLocked();
  }
  return std::move(plan->results);
}

void MemoryLogStore::ApplyPlanLocked(WritePlan& plan, Undo* undo) {
  ++version_;
  Image& s = state_;
  if (undo != nullptr) undo->records_before = s.records_.size();
  for (WritePlan::Record& r : plan.records) {
    if (r.seq <= s.records_.size()) {
      // Only a planted kReuseSeqAfterRestart plans a seq that is already used.
      if (undo != nullptr) undo->overwritten.emplace_back(r.seq, s.records_[r.seq - 1]);
      s.records_[r.seq - 1] = std::move(r.value);
    } else {
      assert(r.seq == s.records_.size() + 1);
      s.records_.push_back(std::move(r.value));
    }
  }
  for (const WritePlan::MsgIdEntry& e : plan.msg_ids) {
    // A msg_id planned again (planted kSkipMsgIdIndex) overwrites its index entry, as a RocksDB
    // Put would.
    std::optional<uint64_t> old = Replace(s.msg_ids_, e.msg_id, e.seq);
    if (undo != nullptr) undo->msg_ids.emplace_back(std::string(e.msg_id), old);
  }
  for (const WritePlan::OriginEntry& e : plan.origins) {
    auto it = s.origins_.find(e.origin);
    if (it == s.origins_.end()) {
      it = s.origins_.emplace(std::string(e.origin), std::map<uint64_t, uint64_t>()).first;
    }
    std::optional<uint64_t> old = Replace(it->second, e.origin_seq, e.seq);
    if (undo != nullptr) undo->origins.emplace_back(std::string(e.origin), e.origin_seq, old);
  }
  for (const AppendedMessage& a : plan.appended) {
    auto it = s.inbox_.find(a.recipient);
    if (it == s.inbox_.end()) {
      it = s.inbox_.emplace(std::string(a.recipient), std::vector<uint64_t>()).first;
    }
    it->second.push_back(a.seq);
    if (undo != nullptr) undo->inbox.emplace_back(a.recipient);
  }
  for (const auto& [origin, high_water] : plan.high_waters) {
    std::optional<uint64_t> old = Replace(s.high_waters_, origin, high_water);
    if (undo != nullptr) undo->high_waters.emplace_back(std::string(origin), old);
  }
  for (const WritePlan::CursorUpdate& c : plan.pull_cursors) {
    std::optional<PullCursor> old = Replace(s.pull_cursors_, c.peer_url, *c.cursor);
    if (undo != nullptr) undo->pull_cursors.emplace_back(std::string(c.peer_url), old);
  }
  if (notifier_ != nullptr && !plan.appended.empty()) {
    notifier_->Notify(plan.appended, s.records_.size());
  }
}

void MemoryLogStore::SyncedLocked() {
  // A synced write makes every earlier write durable too (the WAL is synced as a prefix).
  undo_.clear();
  synced_push_cursors_ = state_.push_cursors_;
}

void MemoryLogStore::UndoOn(Image* image, const Undo& undo) {
  Image& s = *image;
  for (auto it = undo.pull_cursors.rbegin(); it != undo.pull_cursors.rend(); ++it) {
    Revert(s.pull_cursors_, it->first, it->second);
  }
  for (auto it = undo.high_waters.rbegin(); it != undo.high_waters.rend(); ++it) {
    Revert(s.high_waters_, it->first, it->second);
  }
  for (auto it = undo.inbox.rbegin(); it != undo.inbox.rend(); ++it) {
    auto list = s.inbox_.find(*it);
    list->second.pop_back();
    if (list->second.empty()) s.inbox_.erase(list);
  }
  for (auto it = undo.origins.rbegin(); it != undo.origins.rend(); ++it) {
    const auto& [origin, origin_seq, old] = *it;
    auto positions = s.origins_.find(origin);
    Revert(positions->second, origin_seq, old);
    if (positions->second.empty()) s.origins_.erase(positions);
  }
  for (auto it = undo.msg_ids.rbegin(); it != undo.msg_ids.rend(); ++it) {
    Revert(s.msg_ids_, it->first, it->second);
  }
  for (auto it = undo.overwritten.rbegin(); it != undo.overwritten.rend(); ++it) {
    s.records_[it->first - 1] = it->second;
  }
  s.records_.resize(undo.records_before);
}

uint64_t MemoryLogStore::CommitQueuedLocked() {
  if (queue_.empty()) return 0;
  std::vector<QueuedWrite> group;
  group.swap(queue_);
  std::vector<WriteRequest> requests;
  requests.reserve(group.size());
  for (const QueuedWrite& w : group) requests.push_back(WriteRequest::Append(w.msgs));
  std::vector<const WriteRequest*> pointers;
  for (const WriteRequest& r : requests) pointers.push_back(&r);
  uint64_t undo_id = 0;
  std::vector<Result<std::vector<WriteOutcome>>> results =
      CommitLocked(pointers, /*unsynced=*/false, &undo_id);
  const uint64_t id = next_id_++;
  Completions& c = completions_[id];
  for (size_t i = 0; i < group.size(); ++i) {
    c.emplace_back(std::move(group[i].done), std::move(results[i]));
  }
  return id;
}

void MemoryLogStore::OnFsyncDue(uint64_t generation) {
  uint64_t completions = 0;
  {
    MutexLock lock(&mu_);
    if (generation != generation_) return;
    fsync_scheduled_ = false;
    completions = CommitQueuedLocked();
  }
  if (completions != 0) ScheduleCompletions(generation, completions);
}

void MemoryLogStore::ScheduleCompletions(uint64_t generation, uint64_t id) {
  SyncScheduler schedule;
  {
    MutexLock lock(&mu_);
    schedule = schedule_;
  }
  if (schedule) {
    schedule([this, generation, id] { OnCompletionsDue(generation, id); });
  } else {
    OnCompletionsDue(generation, id);
  }
}

void MemoryLogStore::OnCompletionsDue(uint64_t generation, uint64_t id) {
  Completions c;
  {
    MutexLock lock(&mu_);
    if (generation != generation_) return;
    auto it = completions_.find(id);
    if (it == completions_.end()) return;
    c = std::move(it->second);
    completions_.erase(it);
  }
  for (auto& [done, result] : c) done(std::move(result));
}

void MemoryLogStore::OnUnsyncedFsync(uint64_t generation, uint64_t undo_id) {
  MutexLock lock(&mu_);
  if (generation != generation_) return;
  // The fsync covers this write and every one before it.
  auto end = std::find_if(undo_.begin(), undo_.end(),
                          [undo_id](const Undo& u) { return u.id > undo_id; });
  undo_.erase(undo_.begin(), end);
  synced_push_cursors_ = state_.push_cursors_;
}

Result<std::optional<Message>> MemoryLogStore::GetLocked(uint64_t seq) const {
  if (seq < state_.first_seq_ || seq > state_.records_.size()) return std::optional<Message>();
  Result<Message> m = DecodeRecord(seq, state_.records_[seq - 1]);
  if (!m.ok()) return m.status();
  return std::optional<Message>(std::move(*m));
}

Result<std::optional<Message>> MemoryLogStore::Get(uint64_t seq) const {
  MutexLock lock(&mu_);
  return GetLocked(seq);
}

Result<std::optional<Message>> MemoryLogStore::FindByMsgId(const std::string& msg_id) const {
  MutexLock lock(&mu_);
  auto it = state_.msg_ids_.find(msg_id);
  if (it == state_.msg_ids_.end() || it->second <= state_.dedup_head_) {
    return std::optional<Message>();
  }
  return GetLocked(it->second);
}

Status MemoryLogStore::Scan(const ScanOptions& opts, const MessageVisitor& visit) const {
  // The snapshot is the prefix up to the last seq at the start (records only change under a
  // planted bug or a crash). Records are copied in chunks so the visitor runs without the lock.
  constexpr uint64_t kChunk = 256;
  uint64_t bound;
  uint64_t first;
  {
    MutexLock lock(&mu_);
    bound = state_.records_.size();
    first = state_.first_seq_;
  }
  if (opts.limit == 0) return Status::Ok();
  if (opts.recipient) return ScanInbox(opts, bound, visit);
  size_t matched = 0;
  std::vector<std::string> chunk;
  for (uint64_t next = std::max(opts.after + 1, first); next <= bound;) {
    chunk.clear();
    {
      MutexLock lock(&mu_);
      // A crash may have shortened the log since the scan began.
      const uint64_t end = std::min<uint64_t>({bound, next + kChunk - 1, state_.records_.size()});
      if (end < next) return Status::Ok();
      if (next < state_.first_seq_) {  // trimmed since the scan began
        next = state_.first_seq_;
        continue;
      }
      chunk.assign(state_.records_.begin() + static_cast<ptrdiff_t>(next - 1),
                   state_.records_.begin() + static_cast<ptrdiff_t>(end));
    }
    for (const std::string& record : chunk) {
      Result<Message> m = DecodeRecord(next++, record);
      if (!m.ok()) return m.status();
      if (!MatchesScan(opts, *m)) continue;
      if (!visit(*m) || ++matched >= opts.limit) return Status::Ok();
    }
  }
  return Status::Ok();
}

Status MemoryLogStore::ScanInbox(const ScanOptions& opts, uint64_t bound,
                                 const MessageVisitor& visit) const {
  // The recipient's seqs after opts.after, in chunks, so the visitor runs without the lock.
  constexpr size_t kChunk = 256;
  size_t matched = 0;
  uint64_t after = opts.after;
  std::vector<std::pair<uint64_t, std::string>> chunk;
  for (;;) {
    chunk.clear();
    {
      MutexLock lock(&mu_);
      auto it = state_.inbox_.find(*opts.recipient);
      if (it == state_.inbox_.end()) return Status::Ok();
      const std::vector<uint64_t>& seqs = it->second;
      for (auto s = std::upper_bound(seqs.begin(), seqs.end(), after);
           s != seqs.end() && *s <= bound && *s <= state_.records_.size() &&
           chunk.size() < kChunk;
           ++s) {
        chunk.emplace_back(*s, state_.records_[*s - 1]);
      }
    }
    if (chunk.empty()) return Status::Ok();
    for (const auto& [seq, record] : chunk) {
      after = seq;
      Result<Message> m = DecodeRecord(seq, record);
      if (!m.ok()) return m.status();
      if (!MatchesScan(opts, *m)) continue;
      if (!visit(*m) || ++matched >= opts.limit) return Status::Ok();
    }
  }
}

Result<std::vector<Message>> MemoryLogStore::ReadOrigin(const std::string& origin, uint64_t after,
                                                        size_t limit, size_t max_bytes) const {
  MutexLock lock(&mu_);
  std::vector<Message> out;
  const auto trimmed = [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return Status::Trimmed("position " + std::to_string(after + 1) + " of " + origin +
                           " was trimmed (this node's log now starts at seq " +
                           std::to_string(state_.first_seq_) + ")");
  };
  if (after < TrimmedThroughLocked(origin)) return trimmed();
  auto it = state_.origins_.find(origin);
  if (it == state_.origins_.end()) return out;
  ReadOriginBudget budget(limit, max_bytes);
  for (auto p = it->second.upper_bound(after); p != it->second.end() && !budget.Full(); ++p) {
    if (p->second < state_.first_seq_) {  // a consumed position whose record was trimmed
      if (out.empty()) return trimmed();
      break;
    }
    Result<std::optional<Message>> m = GetLocked(p->second);
    if (!m.ok()) return m.status();
    if (!m->has_value()) {
      return Status::Corruption("origin index entry " + origin + ":" + std::to_string(p->first) +
                                " points at missing seq " + std::to_string(p->second));
    }
    if (!budget.Take((*m)->payload.size())) break;
    Message& msg = out.emplace_back(std::move(**m));
    msg.origin = origin;
    msg.origin_seq = p->first;
  }
  return out;
}

uint64_t MemoryLogStore::LastSeq() const {
  MutexLock lock(&mu_);
  return state_.records_.size();
}

uint64_t MemoryLogStore::HighWater(const std::string& origin) const {
  MutexLock lock(&mu_);
  auto it = state_.high_waters_.find(origin);
  return it == state_.high_waters_.end() ? 0 : it->second;
}

std::map<std::string, uint64_t> MemoryLogStore::HighWaters() const {
  MutexLock lock(&mu_);
  return std::map<std::string, uint64_t>(state_.high_waters_.begin(), state_.high_waters_.end());
}

PushCursor MemoryLogStore::GetPushCursor(const std::string& peer_url) const {
  MutexLock lock(&mu_);
  auto it = state_.push_cursors_.find(peer_url);
  return it == state_.push_cursors_.end() ? PushCursor{} : it->second;
}

Status MemoryLogStore::SetPushCursor(const std::string& peer_url, const PushCursor& cursor) {
  MutexLock lock(&mu_);
  if (Status refusal = RefusalLocked(); !refusal.ok()) return refusal;
  state_.push_cursors_[peer_url] = cursor;
  ++version_;
  return Status::Ok();
}

PullCursor MemoryLogStore::GetPullCursor(const std::string& peer_url) const {
  MutexLock lock(&mu_);
  auto it = state_.pull_cursors_.find(peer_url);
  return it == state_.pull_cursors_.end() ? PullCursor{} : it->second;
}

uint64_t MemoryLogStore::FirstSeq() const {
  MutexLock lock(&mu_);
  return state_.first_seq_;
}

uint64_t MemoryLogStore::TrimmedThroughLocked(std::string_view origin) const {
  auto it = state_.trimmed_.find(origin);
  return it == state_.trimmed_.end() ? 0 : it->second;
}

uint64_t MemoryLogStore::TrimmedThrough(const std::string& origin) const {
  MutexLock lock(&mu_);
  return TrimmedThroughLocked(origin);
}

uint64_t MemoryLogStore::PositionsBelowLocked(std::string_view origin, uint64_t after,
                                              uint64_t first) const {
  uint64_t run = after;
  auto it = state_.origins_.find(origin);
  if (it == state_.origins_.end()) return run;
  for (auto p = it->second.upper_bound(after);
       p != it->second.end() && p->first == run + 1 && p->second < first; ++p) {
    run = p->first;
  }
  return run;
}

Result<uint64_t> MemoryLogStore::TrimmedRun(const std::string& origin, uint64_t after) const {
  MutexLock lock(&mu_);
  const uint64_t t = TrimmedThroughLocked(origin);
  const uint64_t prefix = after < t ? t : 0;
  const uint64_t from = std::max(after, prefix);
  const uint64_t run = PositionsBelowLocked(origin, from, state_.first_seq_);
  return run > from ? run : prefix;
}

uint64_t MemoryLogStore::BeforeMaintenanceLocked() {
  return queue_.empty() ? 0 : CommitQueuedLocked();
}

Result<TrimResult> MemoryLogStore::Trim(const TrimRequest& req) {
  TrimResult res;
  uint64_t completions = 0;
  uint64_t generation = 0;
  std::vector<std::string> records;
  uint64_t first = 0;
  {
    MutexLock lock(&mu_);
    completions = BeforeMaintenanceLocked();
    generation = generation_;
    if (Status refusal = RefusalLocked(); !refusal.ok()) return refusal;
    first = res.first_seq = state_.first_seq_;
    const uint64_t end = std::min<uint64_t>({req.before_seq, state_.records_.size() + 1,
                                             first + std::min<uint64_t>(req.max_records, 1 << 30)});
    for (uint64_t seq = first; seq < end; ++seq) records.push_back(state_.records_[seq - 1]);
  }
  if (completions != 0) ScheduleCompletions(generation, completions);
  // `keep` runs without the lock, as RocksLogStore runs it.
  std::vector<Message> trimmed;
  for (size_t i = 0; i < records.size(); ++i) {
    Result<Message> m = DecodeRecord(first + i, records[i]);
    if (!m.ok()) return m.status();
    if (req.keep && req.keep(*m)) {
      res.kept = true;
      break;
    }
    res.bytes += records[i].size();
    trimmed.push_back(std::move(*m));
  }
  if (trimmed.empty()) return res;
  MutexLock lock(&mu_);
  if (state_.first_seq_ != first) return Status::Corruption("concurrent trims");
  Image& s = state_;
  const uint64_t new_first = first + trimmed.size();
  double newest = 0;
  for (const Message& m : trimmed) {
    s.records_[m.seq - 1].clear();
    s.records_[m.seq - 1].shrink_to_fit();
    auto inbox = s.inbox_.find(m.recipient);
    std::vector<uint64_t>& seqs = inbox->second;
    seqs.erase(std::find(seqs.begin(), seqs.end(), m.seq));
    if (seqs.empty()) s.inbox_.erase(inbox);
    newest = std::max(newest, m.ts);
  }
  for (const Message& m : trimmed) {
    const uint64_t t = TrimmedThroughLocked(m.origin);
    const uint64_t run = PositionsBelowLocked(m.origin, t, new_first);
    if (run <= t) continue;
    s.trimmed_[m.origin] = run;
    auto positions = s.origins_.find(m.origin);
    positions->second.erase(positions->second.begin(), positions->second.upper_bound(run));
  }
  s.first_seq_ = new_first;
  s.trim_marks_.emplace_back(new_first - 1, newest);
  ++version_;
  SyncedLocked();
  res.trimmed = trimmed.size();
  res.first_seq = new_first;
  return res;
}

Result<uint64_t> MemoryLogStore::SkipTrimmed(const std::string& origin, uint64_t through) {
  if (origin.empty() || origin == stream_id_ || origin.find('\0') != std::string::npos) {
    return Status::InvalidArgument("cannot skip positions of stream '" + origin + "'");
  }
  uint64_t completions = 0;
  uint64_t generation = 0;
  uint64_t skipped = 0;
  {
    MutexLock lock(&mu_);
    completions = BeforeMaintenanceLocked();
    generation = generation_;
    if (Status refusal = RefusalLocked(); !refusal.ok()) return refusal;
    uint64_t& hw = state_.high_waters_[origin];
    if (through > hw) {
      skipped = through - hw;
      hw = through;
    }
    uint64_t& t = state_.trimmed_[origin];
    if (t < through) {
      t = through;
      // Positions at or below the mark are no longer held: their index entries go with it.
      auto positions = state_.origins_.find(origin);
      if (positions != state_.origins_.end()) {
        positions->second.erase(positions->second.begin(),
                                positions->second.upper_bound(through));
      }
    }
    ++version_;
    SyncedLocked();
  }
  if (completions != 0) ScheduleCompletions(generation, completions);
  return skipped;
}

Status MemoryLogStore::ExpireMsgIds(double ts) {
  MutexLock lock(&mu_);
  if (Status refusal = RefusalLocked(); !refusal.ok()) return refusal;
  auto& marks = state_.trim_marks_;
  auto end = marks.begin();
  while (end != marks.end() && end->second < ts) ++end;
  if (end == marks.begin()) return Status::Ok();
  state_.dedup_head_ = std::prev(end)->first;
  marks.erase(marks.begin(), end);
  const uint64_t head = state_.dedup_head_;
  std::erase_if(state_.msg_ids_, [head](const auto& e) { return e.second <= head; });
  ++version_;
  SyncedLocked();
  return Status::Ok();
}

uint64_t MemoryLogStore::StoredBytes() const {
  MutexLock lock(&mu_);
  uint64_t bytes = 0;
  for (uint64_t seq = state_.first_seq_; seq <= state_.records_.size(); ++seq) {
    bytes += state_.records_[seq - 1].size();
  }
  return bytes;
}

Status MemoryLogStore::WriteHealth() const {
  MutexLock lock(&mu_);
  return write_error_;
}

void MemoryLogStore::SetSyncScheduler(SyncScheduler schedule) {
  MutexLock lock(&mu_);
  assert(queue_.empty() && completions_.empty());
  schedule_ = std::move(schedule);
}

std::vector<LogStore::AppendDone> MemoryLogStore::Crash() {
  std::vector<AppendDone> lost;
  std::vector<QueuedWrite> queued;
  std::map<uint64_t, Completions> completions;
  {
    MutexLock lock(&mu_);
    ++generation_;
    fsync_scheduled_ = false;
    queued.swap(queue_);
    completions.swap(completions_);
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) UndoOn(&state_, *it);
    undo_.clear();
    state_.push_cursors_ = synced_push_cursors_;
    ++version_;
    write_error_ = Status::Ok();
    if (Planted(PlantedBug::kReuseSeqAfterRestart) && !state_.records_.empty()) reuse_seq_ = true;
  }
  for (QueuedWrite& w : queued) lost.push_back(std::move(w.done));
  for (auto& [id, c] : completions) {
    for (auto& [done, result] : c) lost.push_back(std::move(done));
  }
  return lost;
}

void MemoryLogStore::DropUnsyncedWrites() { (void)Crash(); }

void MemoryLogStore::FailWrites(Status s) {
  assert(!s.ok());
  MutexLock lock(&mu_);
  write_error_ = std::move(s);
}

void MemoryLogStore::SetDiskFull(bool full) {
  MutexLock lock(&mu_);
  disk_full_ = full;
}

bool MemoryLogStore::disk_full() const {
  MutexLock lock(&mu_);
  return disk_full_;
}

uint64_t MemoryLogStore::version() const {
  MutexLock lock(&mu_);
  return version_;
}

size_t MemoryLogStore::PendingWrites() const {
  MutexLock lock(&mu_);
  size_t n = queue_.size() + undo_.size();
  for (const auto& [id, c] : completions_) n += c.size();
  return n;
}

std::shared_ptr<const MemoryLogStore::Image> MemoryLogStore::TakeImage() const {
  MutexLock lock(&mu_);
  auto image = std::make_shared<Image>(state_);
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) UndoOn(image.get(), *it);
  image->push_cursors_ = synced_push_cursors_;
  return image;
}

void MemoryLogStore::Restore(const Image& image) {
  MutexLock lock(&mu_);
  assert(queue_.empty() && completions_.empty() && undo_.empty());
  state_ = image;
  synced_push_cursors_ = image.push_cursors_;
  ++version_;
}

void MemoryLogStore::SetAppendNotifier(AppendNotifier* notifier) {
  MutexLock lock(&mu_);
  notifier_ = notifier;
}

}  // namespace dsm

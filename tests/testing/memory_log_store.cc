#include "tests/testing/memory_log_store.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "storage/read_rules.h"
#include "storage/record.h"

namespace dsm {

MemoryLogStore::MemoryLogStore(std::string node_id, std::string incarnation)
    : node_id_(std::move(node_id)), stream_id_(node_id_ + "@" + incarnation) {
  lookups_.find_msg_id = [this](std::string_view msg_id) -> Result<std::optional<uint64_t>> {
    auto it = msg_ids_.find(msg_id);
    if (it == msg_ids_.end()) return std::optional<uint64_t>();
    return std::optional<uint64_t>(it->second);
  };
  lookups_.stored_position = [this](uint64_t seq) -> Result<StoredPosition> {
    Result<std::optional<Message>> m = GetLocked(seq);
    if (!m.ok()) return m.status();
    if (!m->has_value()) return Status::Corruption("seq " + std::to_string(seq) + " not stored");
    return StoredPosition{std::move((*m)->origin), (*m)->origin_seq};
  };
  lookups_.find_origin_seq = [this](std::string_view origin,
                                    uint64_t origin_seq) -> Result<std::optional<uint64_t>> {
    auto it = origins_.find(origin);
    if (it == origins_.end() || origin_seq == 0 || origin_seq > it->second.size()) {
      return std::optional<uint64_t>();
    }
    return std::optional<uint64_t>(it->second[origin_seq - 1]);
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

Result<std::vector<WriteOutcome>> MemoryLogStore::Write(const WriteRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_error_.ok()) return write_error_;
  const WriteRequest* requests[] = {&req};
  const WritePlanState state{stream_id_, records_.size(), &high_waters_};
  Result<WritePlan> plan = PlanWrites(requests, state, lookups_);
  if (!plan.ok()) return plan.status();

  for (WritePlan::Record& r : plan->records) {
    assert(r.seq == records_.size() + 1);
    records_.push_back(std::move(r.value));
  }
  for (const WritePlan::MsgIdEntry& e : plan->msg_ids) msg_ids_.emplace(e.msg_id, e.seq);
  for (const WritePlan::OriginEntry& e : plan->origins) {
    auto it = origins_.find(e.origin);
    if (it == origins_.end())
      it = origins_.emplace(std::string(e.origin), std::vector<uint64_t>()).first;
    assert(e.origin_seq == it->second.size() + 1);
    it->second.push_back(e.seq);
  }
  for (const AppendedMessage& a : plan->appended) {
    auto it = inbox_.find(a.recipient);
    if (it == inbox_.end())
      it = inbox_.emplace(std::string(a.recipient), std::vector<uint64_t>()).first;
    it->second.push_back(a.seq);
  }
  for (const auto& [origin, high_water] : plan->high_waters) {
    auto it = high_waters_.find(origin);
    if (it == high_waters_.end()) {
      high_waters_.emplace(std::string(origin), high_water);
    } else {
      it->second = high_water;
    }
  }
  for (const WritePlan::CursorUpdate& c : plan->pull_cursors) {
    auto it = pull_cursors_.find(c.peer_url);
    if (it == pull_cursors_.end()) {
      pull_cursors_.emplace(std::string(c.peer_url), *c.cursor);
    } else {
      it->second = *c.cursor;
    }
  }
  // A synced write makes every earlier unsynced write durable too.
  if (!plan->empty()) synced_push_cursors_ = push_cursors_;
  if (notifier_ != nullptr && !plan->appended.empty()) {
    notifier_->Notify(plan->appended, records_.size());
  }
  return std::move(plan->results.front());
}

Result<std::optional<Message>> MemoryLogStore::GetLocked(uint64_t seq) const {
  if (seq == 0 || seq > records_.size()) return std::optional<Message>();
  Result<Message> m = DecodeRecord(seq, records_[seq - 1]);
  if (!m.ok()) return m.status();
  return std::optional<Message>(std::move(*m));
}

Result<std::optional<Message>> MemoryLogStore::Get(uint64_t seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(seq);
}

Result<std::optional<Message>> MemoryLogStore::FindByMsgId(const std::string& msg_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = msg_ids_.find(msg_id);
  if (it == msg_ids_.end()) return std::optional<Message>();
  return GetLocked(it->second);
}

Status MemoryLogStore::Scan(const ScanOptions& opts, const MessageVisitor& visit) const {
  // The log only grows and records never change, so the snapshot is the prefix up to the last
  // seq at the start. Records are copied in chunks so the visitor runs without the lock.
  constexpr uint64_t kChunk = 256;
  uint64_t bound;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bound = records_.size();
  }
  if (opts.limit == 0) return Status::Ok();
  if (opts.recipient) return ScanInbox(opts, bound, visit);
  size_t matched = 0;
  std::vector<std::string> chunk;
  for (uint64_t next = opts.after + 1; next <= bound;) {
    const uint64_t end = std::min(bound, next + kChunk - 1);
    chunk.clear();
    {
      std::lock_guard<std::mutex> lock(mu_);
      chunk.assign(records_.begin() + static_cast<ptrdiff_t>(next - 1),
                   records_.begin() + static_cast<ptrdiff_t>(end));
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
      std::lock_guard<std::mutex> lock(mu_);
      auto it = inbox_.find(*opts.recipient);
      if (it == inbox_.end()) return Status::Ok();
      const std::vector<uint64_t>& seqs = it->second;
      for (auto s = std::upper_bound(seqs.begin(), seqs.end(), after);
           s != seqs.end() && *s <= bound && chunk.size() < kChunk; ++s) {
        chunk.emplace_back(*s, records_[*s - 1]);
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
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Message> out;
  auto it = origins_.find(origin);
  if (it == origins_.end()) return out;
  const std::vector<uint64_t>& seqs = it->second;
  ReadOriginBudget budget(limit, max_bytes);
  for (uint64_t p = after + 1; p <= seqs.size() && !budget.Full(); ++p) {
    Result<std::optional<Message>> m = GetLocked(seqs[p - 1]);
    if (!m.ok()) return m.status();
    if (!budget.Take((*m)->payload.size())) break;
    Message& msg = out.emplace_back(std::move(**m));
    msg.origin = origin;
    msg.origin_seq = p;
  }
  return out;
}

uint64_t MemoryLogStore::LastSeq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return records_.size();
}

uint64_t MemoryLogStore::HighWater(const std::string& origin) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = high_waters_.find(origin);
  return it == high_waters_.end() ? 0 : it->second;
}

std::map<std::string, uint64_t> MemoryLogStore::HighWaters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::map<std::string, uint64_t>(high_waters_.begin(), high_waters_.end());
}

uint64_t MemoryLogStore::PushCursor(const std::string& peer_url) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = push_cursors_.find(peer_url);
  return it == push_cursors_.end() ? 0 : it->second;
}

Status MemoryLogStore::SetPushCursor(const std::string& peer_url, uint64_t origin_seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_error_.ok()) return write_error_;
  push_cursors_[peer_url] = origin_seq;
  return Status::Ok();
}

PullCursor MemoryLogStore::GetPullCursor(const std::string& peer_url) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pull_cursors_.find(peer_url);
  return it == pull_cursors_.end() ? PullCursor{} : it->second;
}

Status MemoryLogStore::WriteHealth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return write_error_;
}

void MemoryLogStore::FailWrites(Status s) {
  std::lock_guard<std::mutex> lock(mu_);
  write_error_ = std::move(s);
}

void MemoryLogStore::SetAppendNotifier(AppendNotifier* notifier) {
  std::lock_guard<std::mutex> lock(mu_);
  notifier_ = notifier;
}

void MemoryLogStore::DropUnsyncedWrites() {
  std::lock_guard<std::mutex> lock(mu_);
  push_cursors_ = synced_push_cursors_;
}

}  // namespace dsm

// RocksLogStore: reads of the durable log, its indexes and the published state
// (storage/rocks_log_store.h).
#include <rocksdb/db.h>
#include <rocksdb/snapshot.h>

#include <algorithm>
#include <string>
#include <utility>

#include "storage/read_rules.h"
#include "storage/record.h"
#include "storage/rocks_internal.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"

namespace dsm {
namespace {

using rocks::Be64;
using rocks::FromRocks;
using rocks::ToView;

}  // namespace

Status RocksLogStore::TrimmedError(const std::string& origin, uint64_t after) const {
  return Status::Trimmed("position " + std::to_string(after + 1) + " of " + origin +
                         " was trimmed (this node's log now starts at seq " +
                         std::to_string(FirstSeq()) + ")");
}

Result<std::optional<Message>> RocksLogStore::GetAt(uint64_t seq,
                                                    const rocksdb::Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(ro, cf_.log, Be64(seq).slice(), &value);
  if (s.IsNotFound()) return std::optional<Message>();
  if (!s.ok()) return FromRocks(s, "read of seq " + std::to_string(seq));
  Result<Message> m = DecodeRecord(seq, ToView(value));
  if (!m.ok()) return m.status();
  return std::optional<Message>(std::move(*m));
}

Result<std::optional<Message>> RocksLogStore::Get(uint64_t seq) const {
  if (seq == 0 || seq < FirstSeq()) return std::optional<Message>();
  return GetAt(seq, nullptr);
}

Result<std::optional<Message>> RocksLogStore::FindByMsgId(const std::string& msg_id) const {
  Result<std::optional<uint64_t>> seq = lookups_.find_msg_id(msg_id);
  if (!seq.ok()) return seq.status();
  if (!seq->has_value() || **seq < FirstSeq()) return std::optional<Message>();
  Result<std::optional<Message>> m = GetAt(**seq, nullptr);
  if (m.ok() && !m->has_value() && **seq >= FirstSeq()) {
    return Status::Corruption("msg_id '" + msg_id + "' points at seq " + std::to_string(**seq) +
                              ", which is not in the log");
  }
  return m;
}

Status RocksLogStore::Scan(const ScanOptions& options, const MessageVisitor& visit) const {
  ScanOptions opts = options;
  opts.after = std::max(opts.after, FirstSeq() - 1);  // trimmed records are not there
  if (opts.recipient) return ScanInbox(opts, visit);
  const uint64_t bound = LastSeq();
  if (opts.limit == 0 || opts.after >= bound) return Status::Ok();
  // Declared before the iterator, which must not outlive its upper bound.
  const Be64 upper(bound + 1);
  const rocksdb::Slice upper_slice = upper.slice();
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_.log));
  size_t matched = 0;
  for (it->Seek(Be64(opts.after + 1).slice()); it->Valid(); it->Next()) {
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(ToView(it->key()), &seq)) {
      return Status::Corruption("malformed log key of " + std::to_string(it->key().size()) +
                                " bytes");
    }
    Result<Message> m = DecodeRecord(seq, ToView(it->value()));
    if (!m.ok()) return m.status();
    if (!MatchesScan(opts, *m)) continue;
    if (!visit(*m) || ++matched >= opts.limit) return Status::Ok();
  }
  if (!it->status().ok()) return FromRocks(it->status(), "log scan");
  return Status::Ok();
}

Status RocksLogStore::ScanInbox(const ScanOptions& opts, const MessageVisitor& visit) const {
  const uint64_t bound = LastSeq();
  if (opts.limit == 0 || opts.after >= bound) return Status::Ok();
  // Everything up to `bound` is durable before it is published, so the snapshot holds it all.
  rocksdb::ManagedSnapshot snapshot(db_.get());
  // Declared before the iterator, which must not outlive its upper bound.
  const std::string upper = schema::InboxKey(*opts.recipient, bound + 1);
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_.inbox));
  size_t matched = 0;
  for (it->Seek(schema::InboxKey(*opts.recipient, opts.after + 1)); it->Valid(); it->Next()) {
    std::string_view recipient;
    uint64_t seq = 0;
    if (!schema::ParseInboxKey(ToView(it->key()), &recipient, &seq) ||
        recipient != *opts.recipient) {
      return Status::Corruption("malformed recipient index entry for '" + *opts.recipient + "'");
    }
    Result<std::optional<Message>> m = GetAt(seq, ro.snapshot);
    if (!m.ok()) return m.status();
    if (!m->has_value() && seq < FirstSeq()) continue;  // trimmed since the scan began
    if (!m->has_value()) {
      return Status::Corruption("recipient index entry of '" + *opts.recipient +
                                "' points at seq " + std::to_string(seq) +
                                ", which is not in the log");
    }
    if (!MatchesScan(opts, **m)) continue;
    if (!visit(**m) || ++matched >= opts.limit) return Status::Ok();
  }
  if (!it->status().ok()) return FromRocks(it->status(), "recipient index scan");
  return Status::Ok();
}

Result<std::vector<Message>> RocksLogStore::ReadOrigin(const std::string& origin, uint64_t after,
                                                       size_t limit, size_t max_bytes) const {
  std::vector<Message> out;
  if (limit == 0) return out;
  if (const uint64_t trimmed = TrimmedThrough(origin); after < trimmed) {
    return TrimmedError(origin, after);
  }
  if (origin == stream_id_) {
    Status status;
    if (ReadOwnTail(after, limit, max_bytes, &out, &status)) {
      if (!status.ok()) return status;
      return out;
    }
  }
  const uint64_t high_water = HighWater(origin);
  if (after >= high_water) return out;
  out.reserve(std::min<uint64_t>({limit, high_water - after, 1024}));

  rocksdb::ManagedSnapshot snapshot(db_.get());
  // Read after the snapshot: a trim publishes its bound before it writes, so the snapshot may
  // still hold records below it, never lack records above it.
  const uint64_t first = FirstSeq();
  bool trimmed = false;  // stopped at a position whose record was trimmed
  // Declared before the iterator, which must not outlive its upper bound.
  const std::string upper = schema::OriginKey(origin, high_water + 1);
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_.origin));

  // The index gives the seqs in order; the records are read a chunk at a time with one MultiGet
  // (much cheaper than a Get each).
  constexpr size_t kChunk = 256;
  ReadOriginBudget budget(limit, max_bytes);
  uint64_t expected = after + 1;
  bool budget_spent = false;
  bool hole = false;
  it->Seek(schema::OriginKey(origin, after + 1));
  std::vector<uint64_t> seqs;
  std::vector<Be64> keys;
  while (!budget_spent && !hole && !trimmed && !budget.Full() && it->Valid()) {
    seqs.clear();
    for (; it->Valid() && seqs.size() < kChunk && out.size() + seqs.size() < limit; it->Next()) {
      std::string_view key_origin;
      uint64_t origin_seq = 0;
      uint64_t seq = 0;
      if (!schema::ParseOriginKey(ToView(it->key()), &key_origin, &origin_seq) ||
          key_origin != origin || !schema::DecodeSeqValue(ToView(it->value()), &seq)) {
        return Status::Corruption("malformed origin index entry of " + origin);
      }
      if (origin_seq != expected + seqs.size()) {
        hole = true;  // reported below
        break;
      }
      if (seq < first) {
        trimmed = true;  // a position consumed by a message that was trimmed
        break;
      }
      seqs.push_back(seq);
    }
    if (seqs.empty()) break;
    keys.clear();
    std::vector<rocksdb::Slice> key_slices;
    key_slices.reserve(seqs.size());
    for (uint64_t seq : seqs) keys.emplace_back(seq);
    for (const Be64& k : keys) key_slices.push_back(k.slice());
    std::vector<rocksdb::PinnableSlice> values(seqs.size());
    std::vector<rocksdb::Status> statuses(seqs.size());
    db_->MultiGet(ro, cf_.log, key_slices.size(), key_slices.data(), values.data(),
                  statuses.data());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const uint64_t origin_seq = expected;
      if (statuses[i].IsNotFound()) {
        return Status::Corruption("origin index entry " + origin + "#" +
                                  std::to_string(origin_seq) + " points at seq " +
                                  std::to_string(seqs[i]) + ", which is not in the log");
      }
      if (!statuses[i].ok()) {
        return FromRocks(statuses[i], "read of seq " + std::to_string(seqs[i]));
      }
      Result<Message> m = DecodeRecord(seqs[i], ToView(values[i]));
      if (!m.ok()) return m.status();
      if (!budget.Take(m->payload.size())) {
        budget_spent = true;
        break;
      }
      Message& msg = out.emplace_back(std::move(*m));
      msg.origin = origin;
      msg.origin_seq = origin_seq;
      ++expected;
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "origin index scan");
  if (hole && TrimmedPosition(origin, expected, 0)) trimmed = true;  // trimmed meanwhile
  if (trimmed && out.empty()) return TrimmedError(origin, after);
  if (!trimmed && !budget_spent && !budget.Full() && expected <= high_water) {
    return Status::Corruption("origin index of " + origin + " has no entry for position " +
                              std::to_string(expected) + " (high water " +
                              std::to_string(high_water) + ")");
  }
  return out;
}

uint64_t RocksLogStore::LastSeq() const {
  MutexLock lock(&mu_);
  return last_seq_;
}

uint64_t RocksLogStore::HighWater(const std::string& origin) const {
  MutexLock lock(&mu_);
  return rocks::PositionOf(high_waters_, origin);
}

std::map<std::string, uint64_t> RocksLogStore::HighWaters() const {
  MutexLock lock(&mu_);
  return std::map<std::string, uint64_t>(high_waters_.begin(), high_waters_.end());
}

PushCursor RocksLogStore::GetPushCursor(const std::string& peer_url) const {
  MutexLock lock(&mu_);
  auto it = push_cursors_.find(peer_url);
  return it == push_cursors_.end() ? PushCursor{} : it->second;
}

PullCursor RocksLogStore::GetPullCursor(const std::string& peer_url) const {
  MutexLock lock(&mu_);
  auto it = pull_cursors_.find(peer_url);
  return it == pull_cursors_.end() ? PullCursor{} : it->second;
}

}  // namespace dsm

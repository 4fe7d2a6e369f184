// RocksLogStore: retention. Trimming the oldest records, positions skipped because their origin's
// holder trimmed them, and forgetting the msg_ids of trimmed records (storage/rocks_log_store.h,
// storage/format.md "Retention").
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "common/encoding.h"
#include "storage/record.h"
#include "storage/rocks_internal.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"

namespace dsm {
namespace {

using rocks::Be64;
using rocks::FromRocks;
using rocks::ToSlice;
using rocks::ToView;

}  // namespace

uint64_t RocksLogStore::FirstSeq() const {
  MutexLock lock(&mu_);
  return first_seq_;
}

uint64_t RocksLogStore::TrimmedThrough(const std::string& origin) const {
  MutexLock lock(&mu_);
  return rocks::PositionOf(trimmed_, origin);
}

bool RocksLogStore::TrimmedPosition(const std::string& origin, uint64_t origin_seq,
                                    uint64_t seq) const {
  MutexLock lock(&mu_);
  if (seq != 0 && seq < first_seq_) return true;
  return origin_seq <= rocks::PositionOf(trimmed_, origin);
}

Result<uint64_t> RocksLogStore::PositionsBelow(const std::string& origin, uint64_t after,
                                               uint64_t first) const {
  uint64_t run = after;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.origin));
  for (it->Seek(schema::OriginKey(origin, after + 1)); it->Valid(); it->Next()) {
    std::string_view key_origin;
    uint64_t origin_seq = 0;
    uint64_t seq = 0;
    if (!schema::ParseOriginKey(ToView(it->key()), &key_origin, &origin_seq) ||
        key_origin != origin || origin_seq != run + 1 ||
        !schema::DecodeSeqValue(ToView(it->value()), &seq) || seq >= first) {
      break;
    }
    run = origin_seq;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "origin index scan");
  return run;
}

Result<uint64_t> RocksLogStore::TrimmedRun(const std::string& origin, uint64_t after) const {
  uint64_t first = 0;
  uint64_t prefix = 0;
  {
    MutexLock lock(&mu_);
    first = first_seq_;
    const uint64_t mark = rocks::PositionOf(trimmed_, origin);
    if (after < mark) prefix = mark;
  }
  // Past the trimmed prefix, positions whose index entry points at a trimmed record (a position
  // consumed by a message stored under another origin, which was trimmed) are gone too.
  const uint64_t from = std::max(after, prefix);
  Result<uint64_t> run = PositionsBelow(origin, from, first);
  if (!run.ok()) return run.status();
  return *run > from ? *run : prefix;
}

Result<TrimResult> RocksLogStore::Trim(const TrimRequest& req) {
  MutexLock trim_lock(&trim_mu_);
  TrimResult res;
  uint64_t first = 0;
  uint64_t last = 0;
  {
    MutexLock lock(&mu_);
    first = first_seq_;
    last = last_seq_;
  }
  res.first_seq = first;
  const uint64_t end = std::min<uint64_t>(
      {req.before_seq, last + 1, first + std::min<uint64_t>(req.max_records, 1 << 30)});
  if (end <= first) return res;

  // The records to remove: read without any lock (records below the last seq never change).
  rocksdb::WriteBatch batch;
  std::map<std::string, uint64_t, std::less<>> origins;  // origins of the removed records
  double newest_ts = 0;
  uint64_t next = first;
  {
    const Be64 upper(end);
    const rocksdb::Slice upper_slice = upper.slice();
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_.log));
    for (it->Seek(Be64(first).slice()); it->Valid(); it->Next()) {
      uint64_t seq = 0;
      if (!schema::DecodeSeqValue(ToView(it->key()), &seq)) {
        return Status::Corruption("malformed log key of " + std::to_string(it->key().size()) +
                                  " bytes");
      }
      Result<Message> m = DecodeRecord(seq, ToView(it->value()));
      if (!m.ok()) return m.status();
      if (req.keep && req.keep(*m)) {
        res.kept = true;
        break;
      }
      batch.Delete(cf_.inbox, schema::InboxKey(m->recipient, seq));
      origins.try_emplace(m->origin, 0);
      newest_ts = std::max(newest_ts, m->ts);
      res.bytes += it->value().size();
      ++res.trimmed;
      next = seq + 1;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "log scan for a trim");
  }
  if (res.trimmed == 0) return res;
  const uint64_t new_first = next;
  batch.DeleteRange(cf_.log, Be64(first).slice(), Be64(new_first).slice());
  // Each origin's index loses the run of positions (from its trimmed prefix on) whose records
  // are gone. A position consumed by a message of another origin may stay behind, pointing at a
  // trimmed record; reads treat it as trimmed and a later trim removes it with its run.
  for (auto& [origin, through] : origins) {
    Result<uint64_t> run = PositionsBelow(origin, TrimmedThrough(origin), new_first);
    if (!run.ok()) return run.status();
    through = *run;
  }
  batch.Put(cf_.meta, ToSlice(schema::kFirstSeqKey), Be64(new_first).slice());
  batch.Put(cf_.meta, schema::TrimMarkKey(new_first - 1), schema::EncodeTrimMarkValue(newest_ts));

  Status s = Maintain(
      &batch,
      [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        // Published before the write: from now on no read returns what it removes.
        first_seq_ = new_first;
        for (const auto& [origin, run] : origins) {
          uint64_t& t = trimmed_[origin];
          if (run > t) t = run;
          if (t > 0) {
            batch.DeleteRange(cf_.origin, schema::OriginKey(origin, 0),
                              schema::OriginKey(origin, t + 1));
            batch.Put(cf_.meta, schema::TrimmedKey(origin), Be64(t).slice());
          }
        }
        auto own = trimmed_.find(stream_id_);
        while (own != trimmed_.end() && !tail_.empty() &&
               tail_.front().origin_seq <= own->second) {
          tail_bytes_ -= tail_.front().value.size();
          tail_.pop_front();
        }
      },
      {});
  if (!s.ok()) return s;
  res.first_seq = new_first;
  return res;
}

Result<uint64_t> RocksLogStore::SkipTrimmed(const std::string& origin, uint64_t through) {
  if (origin.empty() || origin == stream_id_ || origin.find('\0') != std::string::npos) {
    return Status::InvalidArgument("cannot skip positions of stream '" + origin + "'");
  }
  rocksdb::WriteBatch batch;
  uint64_t skipped = 0;
  Status s = Maintain(
      &batch,
      [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto hw = high_waters_.find(origin);
        const uint64_t high_water = hw == high_waters_.end() ? 0 : hw->second;
        if (through > high_water) {
          skipped = through - high_water;
          batch.Put(cf_.meta, schema::HighWaterKey(origin), Be64(through).slice());
        }
        uint64_t& t = trimmed_[origin];
        if (t < through) {
          batch.Put(cf_.meta, schema::TrimmedKey(origin), Be64(through).slice());
          // Positions at or below the mark are no longer held, even those this node had: their
          // index entries go with the mark, as in a trim (the index holds exactly T+1..H).
          batch.DeleteRange(cf_.origin, schema::OriginKey(origin, 0),
                            through == std::numeric_limits<uint64_t>::max()
                                ? origin + '\x01'
                                : schema::OriginKey(origin, through + 1));
          // Published before the write, as a trim's: no read looks for the entries it removes.
          t = through;
        }
      },
      [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        // Published once durable, like every high water.
        uint64_t& hw = high_waters_[origin];
        hw = std::max(hw, through);
      });
  if (!s.ok()) return s;
  return skipped;
}

Status RocksLogStore::ExpireMsgIds(double ts) {
  MutexLock trim_lock(&trim_mu_);
  rocksdb::WriteBatch batch;
  uint64_t head = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.meta));
  const std::string_view prefix = schema::kTrimMarkPrefix;
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const std::string_view key = ToView(it->key());
    if (key.substr(0, prefix.size()) != prefix) break;
    uint64_t seq = 0;
    double newest = 0;
    if (!schema::ParseTrimMarkKey(key, &seq) ||
        !schema::DecodeTrimMarkValue(ToView(it->value()), &newest)) {
      return Status::Corruption("malformed trim mark '" + std::string(key) + "'");
    }
    if (newest >= ts) break;  // steps are in log order: later ones are no older
    head = seq;
    batch.Delete(cf_.meta, it->key());
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan of the trim marks");
  if (head == 0) return Status::Ok();
  batch.Put(cf_.meta, ToSlice(schema::kDedupHeadKey), Be64(head).slice());
  return Maintain(&batch, {},
                  [&] { msgid_expiry_->head.store(head, std::memory_order_release); });
}

uint64_t RocksLogStore::StoredBytes() const {
  const Be64 lo(FirstSeq());
  const Be64 hi(std::numeric_limits<uint64_t>::max());
  const rocksdb::Range range(lo.slice(), hi.slice());
  rocksdb::SizeApproximationOptions o;
  o.include_memtables = true;
  o.include_files = true;
  uint64_t size = 0;
  if (!db_->GetApproximateSizes(o, cf_.log, &range, 1, &size).ok()) return 0;
  return size;
}

}  // namespace dsm

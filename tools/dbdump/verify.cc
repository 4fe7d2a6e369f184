#include "tools/dbdump/verify.h"

#include <xxhash.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "common/encoding.h"
#include "storage/record.h"
#include "storage/schema.h"
#include "tools/dbdump/consumers.h"
#include "tools/dbdump/text.h"

namespace dsm::dbdump {
namespace {

std::string LogWhere(uint64_t seq) { return "log seq " + std::to_string(seq); }

std::string LogHoleWhere(uint64_t first, uint64_t last) {
  if (first == last) return LogWhere(first);
  return "log seq " + std::to_string(first) + ".." + std::to_string(last);
}

std::string Position(std::string_view origin, uint64_t origin_seq) {
  return Escape(origin) + "#" + std::to_string(origin_seq);
}

std::string OriginWhere(std::string_view origin, uint64_t origin_seq) {
  return "origin " + Position(origin, origin_seq);
}

std::string OriginHoleWhere(std::string_view origin, uint64_t first, uint64_t last) {
  if (first == last) return OriginWhere(origin, first);
  return "origin " + Position(origin, first) + ".." + std::to_string(last);
}

std::string Quoted(std::string_view s) { return "'" + Escape(s) + "'"; }

std::string ValueSizeProblem(std::string_view value) {
  return "malformed value (" + std::to_string(value.size()) + " bytes, expected 8)";
}

// The problem of an undecodable record, without the "record at seq N: " its Status starts with.
std::string DecodeProblem(uint64_t seq, const Status& s) {
  std::string_view msg = s.message();
  const std::string prefix = "record at seq " + std::to_string(seq) + ": ";
  if (msg.starts_with(prefix)) msg.remove_prefix(prefix.size());
  return "record does not decode: " + std::string(msg);
}

// Point lookups in one family whose keys mostly come in increasing order (the origin positions of
// one origin, the recipient index entries of one recipient, the seqs an origin's positions point
// at): answered by stepping an iterator forward when the key is a few entries ahead, which costs
// far less than a Get, and by a Seek otherwise. Same answers as LogReader::GetRaw.
class ForwardLookup {
 public:
  ForwardLookup(const LogReader& reader, LogFamily family) : it_(reader.NewRawCursor(family)) {}

  // The value stored under `key` (valid until the next call), nullopt when absent.
  Result<std::optional<std::string_view>> Find(std::string_view key) {
    constexpr int kMaxSteps = 16;
    bool found = false;
    if (it_->Valid() && it_->key() < key) {
      for (int i = 0; i < kMaxSteps && it_->Valid() && it_->key() < key; ++i) it_->Next();
      found = it_->Valid() && it_->key() >= key;
    } else if (it_->Valid() && it_->key() == key) {
      found = true;
    }
    if (!found) it_->Seek(key);
    if (it_->Valid() && it_->key() == key) return std::optional<std::string_view>(it_->value());
    if (!it_->Valid() && !it_->status().ok()) return it_->status();
    return std::optional<std::string_view>();
  }

 private:
  std::unique_ptr<LogReader::RawCursor> it_;
};

// ForwardLookups of one family, one per key group (an origin, a recipient), so that each group's
// keys come in increasing order to its own iterator. Bounded: beyond kMaxGroups groups, lookups
// of new groups share one iterator.
class GroupedLookup {
 public:
  GroupedLookup(const LogReader& reader, LogFamily family) : reader_(reader), family_(family) {}

  Result<std::optional<std::string_view>> Find(std::string_view group, std::string_view key) {
    constexpr size_t kMaxGroups = 64;
    if (last_ != nullptr && last_group_ == group) return last_->Find(key);
    auto it = lookups_.find(group);
    if (it == lookups_.end()) {
      if (lookups_.size() >= kMaxGroups) group = {};
      it = lookups_.find(group);
      if (it == lookups_.end()) {
        it = lookups_.emplace(std::string(group), std::make_unique<ForwardLookup>(reader_, family_))
                 .first;
      }
    }
    last_group_ = it->first;
    last_ = it->second.get();
    return last_->Find(key);
  }

 private:
  const LogReader& reader_;
  const LogFamily family_;
  std::map<std::string, std::unique_ptr<ForwardLookup>, std::less<>> lookups_;
  std::string last_group_;
  ForwardLookup* last_ = nullptr;
};

// Order-independent digests of a multiset of (key, seq) pairs, one per bucket of pairs (the
// bucket chosen by the pair's hash): each the count of its pairs and the sums, modulo 2^64, of the
// two halves of a 128-bit hash of each pair. Two multisets whose digests are equal are equal but
// by a chance of about one in 2^128, so the log's (msg_id, seq) pairs can be compared with the
// msg_id index's entries by scanning each in its own order, without a lookup per record; where
// they differ, the pairs of the buckets that differ are all that need a closer look. (Damage
// crafted to collide, by someone who can write the directory and picks many pairs whose hashes
// sum alike, would pass: --verify looks for the damage of faults, not of an attacker.)
class PairDigests {
 public:
  static constexpr size_t kBuckets = 4096;

  PairDigests() : buckets_(kBuckets) {}

  void Add(std::string_view key, uint64_t seq) {
    const XXH128_hash_t h = Hash(key, seq);
    Bucket& b = buckets_[BucketOf(h)];
    ++b.count;
    b.low += h.low64;
    b.high += h.high64;
  }

  // Which pairs the two multisets may differ in: those of the buckets whose digests differ.
  class Difference {
   public:
    bool empty() const { return differing_ == 0; }
    bool Contains(std::string_view key, uint64_t seq) const {
      return buckets_[BucketOf(Hash(key, seq))];
    }

   private:
    friend class PairDigests;
    std::vector<bool> buckets_ = std::vector<bool>(kBuckets);
    size_t differing_ = 0;
  };

  Difference Compare(const PairDigests& other) const {
    Difference d;
    for (size_t i = 0; i < kBuckets; ++i) {
      if (!(buckets_[i] == other.buckets_[i])) {
        d.buckets_[i] = true;
        ++d.differing_;
      }
    }
    return d;
  }

 private:
  struct Bucket {
    uint64_t count = 0;
    uint64_t low = 0;
    uint64_t high = 0;
    bool operator==(const Bucket&) const = default;
  };

  // The hash of the bytes key + BE64(seq) (unambiguous: seq takes the last eight). Not the key
  // hashed with seq as the seed: for short keys XXH3 only XORs the seed into the input, so a
  // pair with other bits flipped in both its key and its seq would hash the same.
  static XXH128_hash_t Hash(std::string_view key, uint64_t seq) {
    thread_local std::string bytes;
    bytes.assign(key);
    PutBigEndian64(&bytes, seq);
    return XXH3_128bits(bytes.data(), bytes.size());
  }
  static size_t BucketOf(const XXH128_hash_t& h) { return h.high64 >> 52; }  // top 12 bits

  std::vector<Bucket> buckets_;
};

class Verifier {
 public:
  Verifier(const LogReader& reader, const std::function<void(const Damage&)>& on_damage)
      : reader_(reader),
        on_damage_(on_damage),
        log_lookup_(reader, LogFamily::kLog),
        origin_lookup_(reader, LogFamily::kOrigin),
        inbox_lookup_(reader, LogFamily::kInbox) {}

  Result<VerifyReport> Run() {
    Status s = CheckMeta();
    if (s.ok()) s = CheckDefaultFamily();
    if (s.ok()) s = CheckLog();
    if (s.ok()) s = CheckMsgIdIndex();
    if (s.ok()) s = CheckOriginIndex();
    if (s.ok() && report_.inbox_checked) s = CheckInboxIndex();
    if (s.ok()) s = CheckConsumers();
    if (!s.ok()) return s;
    return std::move(report_);
  }

 private:
  // kUnreadable: the read hit damage of the log family (reported once, as the family's).
  enum class Found { kRecord, kMissing, kUndecodable, kUnreadable };

  // A read that failed on damage (Corruption from RocksDB: a table file that fails its checksum,
  // is truncated or missing) is reported once per family, as "family 'F'", and the check goes
  // on with the other entries and families. Returns false for other errors (I/O), which end the
  // check. `stopped` says where a scan stopped ("" for a lookup).
  bool Damaged(LogFamily family, const Status& s, const std::string& stopped = "") {
    if (s.code() != Code::kCorruption) return false;
    if (!unreadable_.insert(family).second) return true;
    Report(std::string("family '") + LogFamilyName(family) + "'",
           "damaged, cannot be read" + (stopped.empty() ? "" : " (" + stopped + ")") + ": " +
               s.message());
    return true;
  }

  // The status of a finished scan of `family`: damage is reported and the check goes on.
  Status ScanEnd(LogFamily family, const Status& s, const std::string& stopped) {
    if (s.ok() || Damaged(family, s, stopped)) return Status::Ok();
    return s;
  }

  static std::string StoppedAfter(uint64_t entries) {
    return entries == 0 ? "the scan stopped before the first entry"
                        : "the scan stopped after " + std::to_string(entries) +
                              (entries == 1 ? " entry" : " entries");
  }

  void Report(std::string where, std::string problem) {
    Damage d{std::move(where), std::move(problem)};
    ++report_.damage_count;
    if (on_damage_) on_damage_(d);
    if (report_.damage.size() < VerifyReport::kMaxKeptDamage)
      report_.damage.push_back(std::move(d));
  }

  // Loads the record at `seq` into *m.
  // The reverse scans ask for increasing seqs within each origin or recipient: a ForwardLookup.
  Result<Found> Load(uint64_t seq, Message* m) {
    Result<std::optional<std::string_view>> raw = log_lookup_.Find(schema::LogKey(seq));
    if (!raw.ok() && Damaged(LogFamily::kLog, raw.status())) return Found::kUnreadable;
    if (!raw.ok()) return raw.status();
    if (!raw->has_value()) return Found::kMissing;
    Result<Message> decoded = DecodeRecord(seq, **raw);
    if (!decoded.ok()) return Found::kUndecodable;
    *m = std::move(*decoded);
    return Found::kRecord;
  }

  // An index entry looked up by key.
  struct IndexEntry {
    bool present = false;
    // nullopt when the value is malformed (its scan reports it) or could not be read (the
    // family's damage is reported; the entry counts as present).
    std::optional<uint64_t> seq;
  };

  Result<IndexEntry> ReadIndex(LogFamily family, std::string_view key) {
    Result<std::optional<std::string>> raw = reader_.GetRaw(family, key);
    if (!raw.ok()) return IndexEntryOf<std::string>(family, raw.status(), std::nullopt);
    return IndexEntryOf(family, Status::Ok(), *raw);
  }

  // The origin index entry of a record, through the ForwardLookup of its origin.
  Result<IndexEntry> ReadOriginIndex(const Message& m) {
    Result<std::optional<std::string_view>> raw =
        origin_lookup_.Find(m.origin, schema::OriginKey(m.origin, m.origin_seq));
    if (!raw.ok()) {
      return IndexEntryOf<std::string_view>(LogFamily::kOrigin, raw.status(), std::nullopt);
    }
    return IndexEntryOf(LogFamily::kOrigin, Status::Ok(), *raw);
  }

  template <typename Value>
  Result<IndexEntry> IndexEntryOf(LogFamily family, const Status& read,
                                  const std::optional<Value>& raw) {
    if (!read.ok() && Damaged(family, read)) return IndexEntry{true, std::nullopt};
    if (!read.ok()) return read;
    IndexEntry entry;
    entry.present = raw.has_value();
    uint64_t seq = 0;
    if (entry.present && schema::DecodeSeqValue(*raw, &seq)) entry.seq = seq;
    return entry;
  }

  Status CheckMeta() {
    Result<LogMetadata> meta = reader_.ReadMetadata();
    if (!meta.ok()) return meta.status();
    meta_ = std::move(*meta);
    for (const LogMetadata::Unreadable& u : meta_.unreadable) {
      // The log's own damage is reported by its scan (CheckLog).
      if (u.family == LogFamily::kMeta) {
        Damaged(u.family, Status::Corruption(u.error), "the metadata after it is unknown");
      }
    }
    for (const MetaProblem& p : meta_.problems) {
      Report(DescribeKey(LogFamily::kMeta, p.key), p.problem);
      bad_meta_keys_.insert(p.key);
    }
    // The recipient index exists since format version 2 (unknown version: checked as the
    // current one).
    if (meta_.format_version.value_or(schema::kFormatVersion) >= 2) {
      if (reader_.HasFamily(LogFamily::kInbox)) {
        report_.inbox_checked = true;
      } else {
        Report(std::string("family '") + schema::kInboxFamily + "'",
               "missing: format version " +
                   std::to_string(meta_.format_version.value_or(schema::kFormatVersion)) +
                   " has a recipient index");
      }
    }
    // The consumers family exists since format version 3.
    if (meta_.format_version.value_or(schema::kFormatVersion) >= 3 &&
        !reader_.HasFamily(LogFamily::kConsumers)) {
      Report(std::string("family '") + schema::kConsumersFamily + "'",
             "missing: format version " +
                 std::to_string(meta_.format_version.value_or(schema::kFormatVersion)) +
                 " has a consumers family");
    }
    CheckRetentionMeta();
    const std::string own = meta_.stream_id();
    if (!own.empty()) {
      auto hw = meta_.high_waters.find(own);
      const uint64_t own_high_water = hw == meta_.high_waters.end() ? 0 : hw->second;
      for (const auto& [peer, cursor] : meta_.push_cursors) {
        if (cursor.origin_seq > own_high_water) {
          Report(DescribeKey(LogFamily::kMeta, schema::PushCursorKey(peer)),
                 "push cursor " + std::to_string(cursor.origin_seq) + " is beyond the high water " +
                     std::to_string(own_high_water) + " of the directory's own stream " +
                     Escape(own));
        }
      }
    }
    return Status::Ok();
  }

  // The retention keys against each other and the high waters (storage/format.md, "Retention").
  void CheckRetentionMeta() {
    // A malformed first_seq is reported (above); the log's first record stands in for it.
    const std::string first_key(schema::kFirstSeqKey);
    first_ = meta_.FirstSeqKept();
    if (bad_meta_keys_.count(first_key) != 0) first_ = std::max<uint64_t>(meta_.first_seq, 1);
    const uint64_t first = first_;
    report_.first_seq_kept = first;
    report_.dedup_head = meta_.dedup_head.value_or(0);
    report_.trim_steps_pending = meta_.trim_marks.size();
    // Facts a malformed key hides are not compared.
    bool steps_known = bad_meta_keys_.count(std::string(schema::kDedupHeadKey)) == 0 &&
                       bad_meta_keys_.count(first_key) == 0;
    for (const std::string& key : bad_meta_keys_) {
      steps_known = steps_known && !key.starts_with(schema::kTrimMarkPrefix);
    }
    if (meta_.dedup_head && *meta_.dedup_head >= first) {
      Report(DescribeKey(LogFamily::kMeta, schema::kDedupHeadKey),
             "dedup head " + std::to_string(*meta_.dedup_head) + " is not below first_seq " +
                 std::to_string(first) + " (it ends a trim step)");
    }
    for (const auto& [seq, ts] : meta_.trim_marks) {
      const std::string where = DescribeKey(LogFamily::kMeta, schema::TrimMarkKey(seq));
      if (seq >= first) {
        Report(where, "trim step ending at seq " + std::to_string(seq) +
                          " is not below first_seq " + std::to_string(first));
      } else if (seq <= report_.dedup_head) {
        Report(where, "trim step ending at seq " + std::to_string(seq) +
                          " is at or below the dedup head " + std::to_string(report_.dedup_head) +
                          " (expiring it deletes its mark)");
      }
    }
    // The last trim step ends at first_seq - 1: its mark is pending, or the dedup head.
    if (first > 1 && steps_known &&
        (meta_.trim_marks.empty() || meta_.trim_marks.rbegin()->first != first - 1) &&
        report_.dedup_head != first - 1) {
      Report(DescribeKey(LogFamily::kMeta, first_key),
             "first_seq is " + std::to_string(first) + ", but no trim step (pending mark or dedup "
                 "head) ends at seq " + std::to_string(first - 1));
    }
    if (first == 1 && steps_known && (!meta_.trim_marks.empty() || meta_.dedup_head)) {
      Report(DescribeKey(LogFamily::kMeta, first_key),
             "absent (nothing trimmed), but there are trim steps or a dedup head");
    }
    for (const auto& [origin, through] : meta_.trimmed_through) {
      auto hw = meta_.high_waters.find(origin);
      const uint64_t high_water = hw == meta_.high_waters.end() ? 0 : hw->second;
      if (through > high_water && bad_meta_keys_.count(schema::HighWaterKey(origin)) == 0) {
        Report(DescribeKey(LogFamily::kMeta, schema::TrimmedKey(origin)),
               "trim mark " + std::to_string(through) + " is beyond the high water " +
                   std::to_string(high_water) + " of " + Escape(origin));
      }
    }
  }

  Status CheckDefaultFamily() {
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kDefault);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Report(DescribeKey(LogFamily::kDefault, it->key()),
             "unexpected entry in the unused default family");
    }
    return ScanEnd(LogFamily::kDefault, it->status(), "");
  }

  Status CheckLog() {
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kLog);
    const uint64_t first = first_;
    uint64_t expected = first;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report_.records;
      uint64_t seq = 0;
      if (!schema::DecodeSeqValue(it->key(), &seq)) {
        Report(DescribeKey(LogFamily::kLog, it->key()),
               "malformed log key (" + std::to_string(it->key().size()) + " bytes, expected 8)");
        continue;
      }
      if (seq == 0) {
        Report(LogWhere(0), "seq 0 is never used");
        continue;
      }
      if (report_.first_seq == 0) report_.first_seq = seq;
      report_.last_seq = seq;
      if (seq < first) {
        Report(LogWhere(seq), "below first_seq " + std::to_string(first) +
                                  ": a trimmed record is still in the log");
        continue;
      }
      if (seq > expected) {
        Report(LogHoleWhere(expected, seq - 1),
               expected == first
                   ? "missing (the log starts at seq " + std::to_string(seq) +
                         (first > 1 ? ", first_seq is " + std::to_string(first) : "") + ")"
                   : "missing (the log is not dense: seq " + std::to_string(expected - 1) +
                         " is followed by seq " + std::to_string(seq) + ")");
      }
      expected = std::max(expected, seq + 1);
      Result<Message> m = DecodeRecord(seq, it->value());
      if (!m.ok()) {
        Report(LogWhere(seq), DecodeProblem(seq, m.status()));
        continue;
      }
      if (Status s = CheckRecord(*m); !s.ok()) return s;
    }
    return ScanEnd(LogFamily::kLog, it->status(),
                   report_.last_seq == 0
                       ? "the scan stopped before the first record"
                       : "the scan stopped after seq " + std::to_string(report_.last_seq));
  }

  // The index entries of one decoded record, and the order of its origin.
  Status CheckRecord(const Message& m) {
    // Built only for a report: most records have none.
    auto where = [&m] { return LogWhere(m.seq); };
    if (m.msg_id.empty()) {
      Report(where(), "record has an empty msg_id");
    } else {
      log_msgids_.Add(m.msg_id, m.seq);  // compared with the msg_id index in CheckMsgIdIndex
    }

    // Compared with the recipient index in CheckInboxIndex.
    if (report_.inbox_checked) log_inbox_.Add(m.recipient, m.seq);

    if (m.origin.empty() || m.origin_seq == 0) {
      Report(where(), "record has no origin position (origin " + Quoted(m.origin) + ", origin_seq " +
                        std::to_string(m.origin_seq) + ")");
      return Status::Ok();
    }
    auto position = [&m] { return Position(m.origin, m.origin_seq); };
    // A position at or below its origin's trim mark is no longer held by position (its index
    // entry went with the mark; the scan of the origin index reports one left behind).
    if (m.origin_seq <= meta_.TrimmedThrough(m.origin)) return CheckOriginOrder(m, where, position);
    Result<IndexEntry> entry = ReadOriginIndex(m);
    if (!entry.ok()) return entry.status();
    if (!entry->present) {
      Report(where(), "origin position " + position() + " is not in the origin index");
    } else if (entry->seq && *entry->seq == m.seq) {
      ++origin_pointing_home_;
    } else if (entry->seq && *entry->seq != m.seq) {
      Message other;
      Result<Found> found = Load(*entry->seq, &other);
      if (!found.ok()) return found.status();
      const std::string there = std::to_string(*entry->seq);
      if (*found == Found::kRecord && other.origin == m.origin &&
          other.origin_seq == m.origin_seq) {
        Report(where(), "origin position " + position() + " is stored twice: here and at seq " + there +
                          " (where the index points)");
      } else if (*found == Found::kRecord && other.origin != m.origin) {
        Report(where(), "origin position " + position() + " is indexed at seq " + there +
                          " (a message of stream " + Escape(other.origin) + "), not here");
      }
      // Otherwise the index entry itself is wrong (dangling, undecodable or another position of
      // the same origin): the scan of the origin index reports it.
    }
    return CheckOriginOrder(m, where, position);
  }

  // A record's msg_id against the msg_id index, by lookup (when the digests differ).
  Status CheckRecordMsgId(const Message& m) {
    auto where = [&m] { return LogWhere(m.seq); };
    Result<IndexEntry> entry = ReadIndex(LogFamily::kMsgId, m.msg_id);
    if (!entry.ok()) return entry.status();
    if (!entry->present) {
      Report(where(), "msg_id " + Quoted(m.msg_id) + " is not in the msg_id index");
    } else if (entry->seq && *entry->seq != 0 && *entry->seq < first_) {
      Report(where(), "msg_id " + Quoted(m.msg_id) + " is indexed at seq " +
                          std::to_string(*entry->seq) + ", a trimmed record, not here");
    } else if (entry->seq && *entry->seq != m.seq) {
      Message other;
      Result<Found> found = Load(*entry->seq, &other);
      if (!found.ok()) return found.status();
      // Otherwise the index entry itself is wrong: its scan reports it.
      if (*found == Found::kRecord && other.msg_id == m.msg_id) {
        Report(where(), "msg_id " + Quoted(m.msg_id) + " is stored twice: here and at seq " +
                            std::to_string(*entry->seq) + " (where the index points)");
      }
    }
    return Status::Ok();
  }

  // A record's recipient index entry, by lookup (when the digests differ).
  Status CheckRecordInbox(const Message& m) {
    Result<std::optional<std::string_view>> inbox =
        inbox_lookup_.Find(m.recipient, schema::InboxKey(m.recipient, m.seq));
    if (!inbox.ok() && !Damaged(LogFamily::kInbox, inbox.status())) return inbox.status();
    if (inbox.ok() && !inbox->has_value()) {
      Report(LogWhere(m.seq), "not in the recipient index (no inbox entry for recipient " +
                                  Quoted(m.recipient) + ")");
    }
    return Status::Ok();
  }

  // Calls `check` with each record the log's check checked (a well-formed key at or above
  // first_seq, a record that decodes), in log order: the records' side of an index whose digest
  // differs from theirs, checked one lookup each.
  template <typename Check>
  Status ForEachCheckedRecord(const Check& check) {
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kLog);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      uint64_t seq = 0;
      if (!schema::DecodeSeqValue(it->key(), &seq) || seq == 0 || seq < first_) continue;
      Result<Message> m = DecodeRecord(seq, it->value());
      if (!m.ok()) continue;
      if (Status s = check(*m); !s.ok()) return s;
    }
    return ScanEnd(LogFamily::kLog, it->status(), "");
  }

  // Scans the msg_id index into digests of its entries at or above first_seq and compares them
  // with the log's (msg_id, seq) pairs. nullopt when they agree and every entry is well-formed:
  // every record is indexed at its own seq and the index holds nothing else (the entries are
  // counted). Otherwise the pairs to look at one by one: those of the buckets that differ. Each
  // side's digests hold what its scan read, so after damage the pairs read on both sides agree,
  // and what only one side read is looked at.
  std::optional<PairDigests::Difference> MsgIdDifference() {
    PairDigests index;
    uint64_t entries = 0;
    uint64_t trimmed = 0;
    uint64_t forgotten = 0;
    bool malformed = false;
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kMsgId);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++entries;
      uint64_t seq = 0;
      if (it->key().empty() || !schema::DecodeSeqValue(it->value(), &seq)) {
        malformed = true;
      } else if (seq != 0 && seq < first_) {
        // A trimmed record's msg_id: kept for dedup until the dedup head passes it, then ignored
        // until compaction drops it.
        ++(seq <= report_.dedup_head ? forgotten : trimmed);
      } else {
        index.Add(it->key(), seq);
      }
    }
    PairDigests::Difference difference = log_msgids_.Compare(index);
    if (it->status().ok() && !malformed && difference.empty()) {
      report_.msgid_entries = entries;
      report_.msgid_trimmed = trimmed;
      report_.msgid_forgotten = forgotten;
      return std::nullopt;
    }
    return difference;
  }

  // Records of one origin have origin_seq increasing with seq.
  template <typename WhereFn, typename PositionFn>
  Status CheckOriginOrder(const Message& m, const WhereFn& where, const PositionFn& position) {
    auto [last, inserted] = last_of_origin_.try_emplace(m.origin, m.seq, m.origin_seq);
    if (!inserted) {
      if (m.origin_seq <= last->second.second) {
        Report(where(), position() + " comes after " + Position(m.origin, last->second.second) +
                          " (seq " + std::to_string(last->second.first) +
                          "): the origin's order is broken");
      }
      last->second = {m.seq, m.origin_seq};
    }
    return Status::Ok();
  }

  // The number of entries of `family`, or nullopt when its scan fails (the full check reports
  // why).
  std::optional<uint64_t> CountEntries(LogFamily family) {
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(family);
    uint64_t n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    if (!it->status().ok()) return std::nullopt;
    return n;
  }

  // Whether every entry of an index is one that the log's check found pointing at its own record
  // (`home` of them, all with distinct keys): then the index holds exactly those and nothing
  // else to check entry by entry, which saves reading a record per entry.
  bool OnlyEntriesPointingHome(LogFamily family, uint64_t home, uint64_t* entries) {
    if (!unreadable_.empty()) return false;
    const std::optional<uint64_t> n = CountEntries(family);
    if (!n || *n != home) return false;
    *entries = *n;
    return true;
  }

  Status CheckMsgIdIndex() {
    const std::optional<PairDigests::Difference> suspects = MsgIdDifference();
    if (!suspects) return Status::Ok();
    // The records of the buckets that differ, each looked up in the index.
    Status each = ForEachCheckedRecord([&](const Message& m) {
      if (m.msg_id.empty() || !suspects->Contains(m.msg_id, m.seq)) return Status::Ok();
      return CheckRecordMsgId(m);
    });
    if (!each.ok()) return each;
    // Every entry, each checked for its form; the record behind it read for those of the buckets
    // that differ.
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kMsgId);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report_.msgid_entries;
      auto where = [&it] { return DescribeKey(LogFamily::kMsgId, it->key()); };
      if (it->key().empty()) Report(where(), "empty msg_id");
      uint64_t seq = 0;
      if (!schema::DecodeSeqValue(it->value(), &seq)) {
        Report(where(), ValueSizeProblem(it->value()));
        continue;
      }
      if (seq != 0 && seq < first_) {
        // A trimmed record's msg_id: kept for dedup until the dedup head passes it, then ignored
        // until compaction drops it.
        ++(seq <= report_.dedup_head ? report_.msgid_forgotten : report_.msgid_trimmed);
        continue;
      }
      // An entry with an empty key is in neither digest: its record is read whatever its bucket.
      if (!it->key().empty() && !suspects->Contains(it->key(), seq)) continue;
      Message m;
      Result<Found> found = Load(seq, &m);
      if (!found.ok()) return found.status();
      if (*found == Found::kMissing) {
        Report(where(), "points at seq " + std::to_string(seq) + ", which is not in the log");
      } else if (*found == Found::kRecord && m.msg_id != it->key()) {
        Report(where(),
               "points at seq " + std::to_string(seq) + ", which holds msg_id " + Quoted(m.msg_id));
      }
    }
    return ScanEnd(LogFamily::kMsgId, it->status(), StoppedAfter(report_.msgid_entries));
  }

  // Compares the last position of `origin` in the origin index with its high water (positions
  // at or below the origin's trim mark are not indexed: `last_position` is the mark when the
  // index holds none above it).
  void FinishOrigin(const std::string& origin, uint64_t last_position) {
    if (unreadable_.count(LogFamily::kMeta) != 0) return;  // the high waters are not all known
    const std::string key = schema::HighWaterKey(origin);
    if (bad_meta_keys_.count(key) != 0) return;  // already reported as malformed
    const std::string where = DescribeKey(LogFamily::kMeta, key);
    auto hw = meta_.high_waters.find(origin);
    if (hw == meta_.high_waters.end()) {
      Report(where, "missing, but the origin index holds positions of " + Escape(origin) +
                        " up to #" + std::to_string(last_position));
    } else if (hw->second != last_position) {
      Report(where, "high water is " + std::to_string(hw->second) + ", but the origin index of " +
                        Escape(origin) + " ends at position #" + std::to_string(last_position));
    }
  }

  Status CheckOriginIndex() {
    // When every entry is a record's own position pointing at it, the entries need no record
    // read; the positions' density and the high waters are checked all the same.
    uint64_t unused = 0;
    const bool all_home =
        OnlyEntriesPointingHome(LogFamily::kOrigin, origin_pointing_home_, &unused);
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kOrigin);
    std::set<std::string> seen;
    std::optional<std::string> current;
    uint64_t trimmed = 0;  // the current origin's trim mark
    bool trim_unknown = false;
    uint64_t expected = 1;
    uint64_t last_position = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report_.origin_entries;
      std::string_view origin;
      uint64_t origin_seq = 0;
      if (!schema::ParseOriginKey(it->key(), &origin, &origin_seq)) {
        Report(DescribeKey(LogFamily::kOrigin, it->key()), "malformed origin index key");
        continue;
      }
      if (!current || *current != origin) {
        if (current) FinishOrigin(*current, last_position);
        current = std::string(origin);
        seen.insert(*current);
        trimmed = meta_.TrimmedThrough(*current);
        // A malformed trim mark (reported): where the positions may start is unknown.
        trim_unknown = bad_meta_keys_.count(schema::TrimmedKey(*current)) != 0;
        expected = trimmed + 1;
        last_position = trimmed;
      }
      auto where = [&] { return OriginWhere(origin, origin_seq); };
      if (origin_seq == 0) {
        Report(where(), "position 0 is never used");
        continue;
      }
      if (origin_seq <= trimmed) {
        Report(where(), "at or below the trim mark " + std::to_string(trimmed) + " of " +
                          Escape(origin) + ": trimmed positions are not kept");
        continue;
      }
      if (origin_seq > expected && !(expected == trimmed + 1 && trim_unknown)) {
        Report(OriginHoleWhere(origin, expected, origin_seq - 1),
               expected == trimmed + 1
                   ? "missing (the positions of " + Escape(origin) + " start at #" +
                         std::to_string(origin_seq) +
                         (trimmed > 0 ? ", after the trim mark " + std::to_string(trimmed) : "") +
                         ")"
                             : "missing (the positions of " + Escape(origin) + " are not dense: #" +
                                   std::to_string(expected - 1) + " is followed by #" +
                                   std::to_string(origin_seq) + ")");
      }
      expected = origin_seq + 1;
      last_position = origin_seq;
      uint64_t seq = 0;
      if (!schema::DecodeSeqValue(it->value(), &seq)) {
        Report(where(), ValueSizeProblem(it->value()));
        continue;
      }
      if (seq != 0 && seq < first_) {
        // A consumed position whose record was trimmed: read as trimmed, removed with its run.
        ++report_.origin_trimmed;
        continue;
      }
      if (all_home) continue;
      Message m;
      Result<Found> found = Load(seq, &m);
      if (!found.ok()) return found.status();
      if (*found == Found::kMissing) {
        Report(where(), "points at seq " + std::to_string(seq) + ", which is not in the log");
      } else if (*found == Found::kRecord && m.origin == origin && m.origin_seq != origin_seq) {
        Report(where(), "points at seq " + std::to_string(seq) + ", which holds " +
                          Position(m.origin, m.origin_seq));
      }
      // A record of another origin is a consumed position: the message was stored first under
      // that origin (see storage/format.md).
    }
    const bool scanned = it->status().ok();
    if (Status s = ScanEnd(LogFamily::kOrigin, it->status(), StoppedAfter(report_.origin_entries));
        !s.ok()) {
      return s;
    }
    report_.streams = seen.size();
    // A damaged origin index was read only in part: its ends and high waters are not compared.
    if (!scanned) return Status::Ok();
    if (current) FinishOrigin(*current, last_position);
    for (const auto& [origin, high_water] : meta_.high_waters) {
      const uint64_t trimmed_through = meta_.TrimmedThrough(origin);
      if (high_water <= trimmed_through || seen.count(origin) != 0) continue;
      Report(DescribeKey(LogFamily::kMeta, schema::HighWaterKey(origin)),
             "high water is " + std::to_string(high_water) +
                 ", but the origin index holds no position of " + Escape(origin) +
                 (trimmed_through > 0 ? " (trim mark " + std::to_string(trimmed_through) + ")"
                                      : ""));
    }
    return Status::Ok();
  }

  // 6. durable consumers: every entry well-formed, every consumer with a definition.
  Status CheckConsumers() {
    std::vector<StoredConsumer> consumers;
    Status s = ReadConsumers(reader_, &consumers, [&](std::string where, std::string problem) {
      Report(std::move(where), std::move(problem));
    });
    report_.consumers = consumers.size();
    return ScanEnd(LogFamily::kConsumers, s, "");
  }

  // Whether a recipient index entry, parsed as (recipient, seq), is one the log's digest can
  // account for: its key exactly as a node writes it (a parser also takes, say, an overlong
  // length prefix, under which no read finds the entry), no value, at or above first_seq.
  bool InboxEntryInDigest(std::string_view key, std::string_view value, std::string_view recipient,
                          uint64_t seq) const {
    return value.empty() && seq >= first_ && key == schema::InboxKey(recipient, seq);
  }

  // Scans the recipient index into digests of its entries and compares them with the log's
  // (recipient, seq) pairs, as MsgIdDifference does for the msg_id index. An entry that does not
  // parse, has a value or points below first_seq is left to the entry-by-entry check.
  std::optional<PairDigests::Difference> InboxDifference() {
    PairDigests index;
    uint64_t entries = 0;
    bool malformed = false;
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kInbox);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++entries;
      std::string_view recipient;
      uint64_t seq = 0;
      if (!schema::ParseInboxKey(it->key(), &recipient, &seq) ||
          !InboxEntryInDigest(it->key(), it->value(), recipient, seq)) {
        malformed = true;
      } else {
        index.Add(recipient, seq);
      }
    }
    PairDigests::Difference difference = log_inbox_.Compare(index);
    if (it->status().ok() && !malformed && difference.empty()) {
      report_.inbox_entries = entries;
      return std::nullopt;
    }
    return difference;
  }

  Status CheckInboxIndex() {
    const std::optional<PairDigests::Difference> suspects = InboxDifference();
    if (!suspects) return Status::Ok();
    // As in CheckMsgIdIndex: the records of the buckets that differ, then every entry's form and
    // the records behind those of the buckets that differ.
    Status each = ForEachCheckedRecord([&](const Message& m) {
      if (!suspects->Contains(m.recipient, m.seq)) return Status::Ok();
      return CheckRecordInbox(m);
    });
    if (!each.ok()) return each;
    std::unique_ptr<LogReader::RawCursor> it = reader_.NewRawCursor(LogFamily::kInbox);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++report_.inbox_entries;
      auto where = [&it] { return DescribeKey(LogFamily::kInbox, it->key()); };
      std::string_view recipient;
      uint64_t seq = 0;
      if (!schema::ParseInboxKey(it->key(), &recipient, &seq)) {
        Report(where(), "malformed recipient index key");
        continue;
      }
      if (!it->value().empty()) {
        Report(where(), "unexpected value (" + std::to_string(it->value().size()) +
                          " bytes, expected none)");
      }
      if (seq < first_) {
        Report(where(), "points at seq " + std::to_string(seq) + ", below first_seq " +
                          std::to_string(first_) +
                          " (a trimmed record's entry is left behind)");
        continue;
      }
      // An entry left out of the digests (a value, a key not as written) has its record read
      // whatever its bucket.
      if (InboxEntryInDigest(it->key(), it->value(), recipient, seq) &&
          !suspects->Contains(recipient, seq)) {
        continue;
      }
      Message m;
      Result<Found> found = Load(seq, &m);
      if (!found.ok()) return found.status();
      if (*found == Found::kMissing) {
        Report(where(), "points at seq " + std::to_string(seq) + ", which is not in the log");
      } else if (*found == Found::kRecord && m.recipient != recipient) {
        Report(where(), "points at seq " + std::to_string(seq) + ", whose recipient is " +
                          Quoted(m.recipient));
      }
    }
    return ScanEnd(LogFamily::kInbox, it->status(), StoppedAfter(report_.inbox_entries));
  }

  const LogReader& reader_;
  const std::function<void(const Damage&)>& on_damage_;
  VerifyReport report_;
  LogMetadata meta_;
  std::set<std::string> bad_meta_keys_;  // meta keys reported as malformed or missing
  uint64_t first_ = 1;                   // the first seq retention kept
  std::set<LogFamily> unreadable_;       // families whose damage was reported
  // For each origin seen in the log: the seq and origin_seq of its latest record.
  std::map<std::string, std::pair<uint64_t, uint64_t>> last_of_origin_;
  // The log's (msg_id, seq) and (recipient, seq) pairs.
  PairDigests log_msgids_;
  PairDigests log_inbox_;
  // Records whose origin index entry the log's check found pointing at them.
  uint64_t origin_pointing_home_ = 0;
  ForwardLookup log_lookup_;
  GroupedLookup origin_lookup_;
  GroupedLookup inbox_lookup_;
};

}  // namespace

std::string VerifyReport::Summary() const {
  std::string facts = std::to_string(records) + " records";
  if (records > 0) {
    facts += " (seq " + std::to_string(first_seq) + ".." + std::to_string(last_seq) + ")";
  }
  facts += ", " + std::to_string(msgid_entries) + " msg_id entries, " +
           std::to_string(origin_entries) + " origin positions in " + std::to_string(streams) +
           (streams == 1 ? " stream" : " streams");
  facts += inbox_checked ? ", " + std::to_string(inbox_entries) + " recipient index entries"
                         : std::string(", recipient index not checked");
  if (consumers > 0) {
    facts += ", " + std::to_string(consumers) + (consumers == 1 ? " consumer" : " consumers");
  }
  if (first_seq_kept > 1 || msgid_trimmed + msgid_forgotten + origin_trimmed > 0) {
    facts += "; trimmed below seq " + std::to_string(first_seq_kept) + " (" +
             std::to_string(msgid_trimmed) + " msg_id entries kept for dedup, " +
             std::to_string(msgid_forgotten) + " forgotten, " + std::to_string(origin_trimmed) +
             " origin positions pointing at trimmed records)";
  }
  if (ok()) return "OK: " + facts;
  return "DAMAGED: " + std::to_string(damage_count) +
         (damage_count == 1 ? " problem; " : " problems; ") + facts;
}

Result<VerifyReport> Verify(const LogReader& reader,
                            const std::function<void(const Damage&)>& on_damage) {
  return Verifier(reader, on_damage).Run();
}

}  // namespace dsm::dbdump

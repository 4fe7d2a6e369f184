#include "tools/dbdump/compare.h"

#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "storage/schema.h"
#include "tools/dbdump/text.h"

namespace dsm::dbdump {
namespace {

std::string Label(size_t i) { return "[" + std::to_string(i + 1) + "]"; }

// Per reader, the value it stores under the current key; nullopt when it does not hold the key.
using HeldValues = std::vector<std::optional<std::string_view>>;

// Walks `family` of every reader together, in key order. `visit` gets each distinct key with,
// per reader, the value stored under it; the views are valid only during the call. A visit that
// fails ends the walk with its status.
Status MergeFamily(
    const std::vector<const LogReader*>& readers, LogFamily family,
    const std::function<Status(std::string_view key, const HeldValues& held)>& visit) {
  std::vector<std::unique_ptr<LogReader::RawCursor>> cursors;
  for (const LogReader* r : readers) {
    cursors.push_back(r->NewRawCursor(family));
    cursors.back()->SeekToFirst();
  }
  HeldValues held(readers.size());
  while (true) {
    std::optional<std::string_view> smallest;
    for (const auto& c : cursors) {
      if (c->Valid() && (!smallest || c->key() < *smallest)) smallest = c->key();
    }
    if (!smallest) break;
    // The key's bytes belong to a cursor: copy before advancing.
    const std::string key(*smallest);
    for (size_t i = 0; i < cursors.size(); ++i) {
      held[i].reset();
      if (cursors[i]->Valid() && cursors[i]->key() == key) held[i] = cursors[i]->value();
    }
    if (Status s = visit(key, held); !s.ok()) return s;
    for (size_t i = 0; i < cursors.size(); ++i) {
      if (held[i]) cursors[i]->Next();
    }
  }
  for (const auto& c : cursors) {
    if (Status s = c->status(); !s.ok()) return s;
  }
  return Status::Ok();
}

// The msg_id `reader` stores at the origin position `key`, whose index value is `value`: the
// msg_id of the record the entry points at (for a consumed position, a record of another stream).
Result<std::string> MsgIdAtPosition(const LogReader& reader, std::string_view key,
                                    std::string_view value) {
  const std::string where =
      "data directory " + reader.path() + ": " + DescribeKey(LogFamily::kOrigin, key);
  uint64_t seq = 0;
  if (!schema::DecodeSeqValue(value, &seq)) {
    return Status::Corruption(where + ": malformed index value; run --verify");
  }
  Result<std::optional<Message>> record = reader.Get(seq);
  if (!record.ok()) {
    std::string message = where + ": " + record.status().message();
    return record.status().code() == Code::kCorruption ? Status::Corruption(std::move(message))
                                                       : Status::IOError(std::move(message));
  }
  if (!record->has_value()) {
    return Status::Corruption(where + ": points at seq " + std::to_string(seq) +
                              ", which is not in the log; run --verify");
  }
  return std::move((*record)->msg_id);
}

// "<origin>:<origin_seq>" as the message tables show it; a malformed key as DescribeKey does.
std::string PositionName(std::string_view key) {
  std::string_view origin;
  uint64_t origin_seq = 0;
  if (schema::ParseOriginKey(key, &origin, &origin_seq)) {
    return Escape(origin) + ":" + std::to_string(origin_seq);
  }
  return DescribeKey(LogFamily::kOrigin, key);
}

// What retention left in each directory (storage/format.md, "Retention").
struct Trimmed {
  uint64_t first_seq = 1;   // seqs below it were trimmed
  uint64_t dedup_head = 0;  // msg_id entries of seqs at or below it are forgotten
};

// Whether an index value points at a seq below `below` (a malformed value does not: the lookup
// reports it).
bool PointsBelow(const std::optional<std::string_view>& value, uint64_t below) {
  uint64_t seq = 0;
  return value && schema::DecodeSeqValue(*value, &seq) && seq < below;
}

// Merges the origin indexes; for every position two readers or more hold, reads the msg_id each
// one stores there and counts the position in `report`. When the msg_ids differ, counts the
// conflict and prints it (the first one after a heading). A position whose entry points at a
// trimmed record (a consumed position) is not held there any more.
Status FindConflicts(const std::vector<const LogReader*>& readers,
                     const std::vector<Trimmed>& trimmed, CompareReport& report,
                     std::ostream& out) {
  std::vector<std::optional<std::string>> msg_ids(readers.size());
  auto visit = [&](std::string_view key, const HeldValues& all_held) -> Status {
    HeldValues held = all_held;
    for (size_t i = 0; i < held.size(); ++i) {
      if (PointsBelow(held[i], trimmed[i].first_seq)) held[i].reset();
    }
    size_t holders = 0;
    for (const auto& value : held) holders += value.has_value() ? 1 : 0;
    if (holders < 2) return Status::Ok();
    ++report.shared_positions;
    const std::string* first = nullptr;
    bool differ = false;
    for (size_t i = 0; i < held.size(); ++i) {
      msg_ids[i].reset();
      if (!held[i]) continue;
      Result<std::string> msg_id = MsgIdAtPosition(*readers[i], key, *held[i]);
      if (!msg_id.ok()) return msg_id.status();
      msg_ids[i] = std::move(*msg_id);
      if (first == nullptr) {
        first = &*msg_ids[i];
      } else if (*msg_ids[i] != *first) {
        differ = true;
      }
    }
    if (!differ) return Status::Ok();
    if (report.conflicts++ == 0) out << "positions held with different msg_ids:\n";
    std::string line = "  conflict at " + PositionName(key) + ":";
    const char* separator = " ";
    for (size_t i = 0; i < msg_ids.size(); ++i) {
      if (!msg_ids[i]) continue;
      line += separator + Label(i) + " '" + Escape(*msg_ids[i]) + "'";
      separator = "  ";
    }
    out << line << '\n';
    return Status::Ok();
  };
  return MergeFamily(readers, LogFamily::kOrigin, visit);
}

}  // namespace

bool CompareReport::same() const {
  for (const CompareDir& d : dirs) {
    if (d.missing != 0) return false;
  }
  return conflicts == 0;
}

std::string CompareReport::Summary() const {
  if (same()) {
    return "the " + std::to_string(dirs.size()) + " directories hold the same " +
           std::to_string(distinct) + " msg_ids";
  }
  std::string s = "the directories differ:";
  for (size_t i = 0; i < dirs.size(); ++i) {
    s += (i == 0 ? " " : ", ") + Label(i) + " misses " + std::to_string(dirs[i].missing);
  }
  s += " (of " + std::to_string(distinct) + " distinct msg_ids)";
  if (conflicts != 0) {
    s +=
        " and " + std::to_string(conflicts) + " conflicting position" + (conflicts == 1 ? "" : "s");
  }
  return s;
}

Result<CompareReport> Compare(const std::vector<const LogReader*>& readers, std::ostream& out) {
  CompareReport report;
  std::vector<Trimmed> trimmed;
  for (const LogReader* r : readers) {
    Result<LogMetadata> meta = r->ReadMetadata();
    if (!meta.ok()) return meta.status();
    report.dirs.push_back(CompareDir{r->path(), meta->stream_id(), 0, 0});
    trimmed.push_back(Trimmed{meta->FirstSeqKept(), meta->dedup_head.value_or(0)});
  }
  // A msg_id entry at or below the dedup head is forgotten (compaction drops it): not held.
  auto holds = [&](const HeldValues& held, size_t i) {
    return held[i].has_value() && !PointsBelow(held[i], trimmed[i].dedup_head + 1);
  };
  Status s = MergeFamily(readers, LogFamily::kMsgId, [&](std::string_view, const HeldValues& held) {
    size_t holders = 0;
    for (size_t i = 0; i < held.size(); ++i) holders += holds(held, i) ? 1 : 0;
    if (holders == 0) return Status::Ok();
    ++report.distinct;
    for (size_t i = 0; i < held.size(); ++i) {
      ++(holds(held, i) ? report.dirs[i].msg_ids : report.dirs[i].missing);
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;

  for (size_t i = 0; i < report.dirs.size(); ++i) {
    const CompareDir& d = report.dirs[i];
    out << Label(i) << ' ' << d.path << "  "
        << (d.stream_id.empty() ? std::string("(no stream id)") : Escape(d.stream_id)) << "  "
        << d.msg_ids << " msg_ids\n";
  }
  for (size_t i = 0; i < report.dirs.size(); ++i) {
    if (report.dirs[i].missing == 0) continue;
    out << Label(i) << " misses " << report.dirs[i].missing << " msg_ids that others hold:\n";
    s = MergeFamily(readers, LogFamily::kMsgId,
                    [&](std::string_view msg_id, const HeldValues& held) {
                      if (holds(held, i)) return Status::Ok();
                      bool others = false;
                      std::string line = "  '" + Escape(msg_id) + "'  held by";
                      for (size_t j = 0; j < held.size(); ++j) {
                        if (!holds(held, j)) continue;
                        line += " " + Label(j);
                        others = true;
                      }
                      if (!others) return Status::Ok();
                      out << line << '\n';
                      return Status::Ok();
                    });
    if (!s.ok()) return s;
  }
  if (s = FindConflicts(readers, trimmed, report, out); !s.ok()) return s;
  return report;
}

}  // namespace dsm::dbdump

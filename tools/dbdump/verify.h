// The verifying half of dsm-dbdump: checks a data directory against the invariants of
// storage/format.md and reports every damage with the exact key it concerns.
//
// Checks, in this order (reports come in the same order):
//  1. metadata: format_version, node_id and incarnation present and well-formed; high waters,
//     push and pull cursors decodable; no unknown meta key; no push cursor beyond the
//     directory's own stream high water; the unused default family empty.
//  2. log: keys are 8-byte seqs, dense from 1 to the last one (every hole is reported, seq 0 is
//     never used); every record decodes and has an msg_id and an origin position; each record
//     is in the msg_id index (pointing at it; a msg_id stored twice is reported); each record's
//     origin position is in the origin index, pointing at it; records of one origin have
//     origin_seq increasing with seq.
//  3. msg_id index: every entry is an 8-byte seq of a record that holds that msg_id.
//  4. origin index: keys are well-formed; for each origin the positions are dense from 1 and
//     the last one equals the origin's high water in meta (and every high water has its
//     positions); each entry points at an existing record, which holds that position (or, for
//     a consumed position, a message of another origin).
//  5. recipient index ("inbox", format version 2 and later): the family exists; each record
//     has its entry (recipient, seq) (checked in 2); every entry is well-formed, has an empty
//     value and points at a record with that recipient. A version-1 directory has no recipient
//     index (a node upgrades it when it opens it), so 5 is skipped for it.
//  6. durable consumers ("consumers", format version 3): the family exists; every key and value
//     decodes (storage/consumer_schema.h) and every consumer has a definition.
//
// A directory retention trimmed (storage/format.md, "Retention") is checked against the same
// invariants from where it starts: the log is dense from meta first_seq (a record below it is
// damage); msg_id entries may point below first_seq (trimmed records kept for dedup, or
// forgotten at or below dedup_head until compaction); an origin's positions are dense from its
// trim mark + 1 to its high water (an entry at or below the mark is damage, an origin whose mark
// reaches its high water has none) and may point below first_seq (consumed positions whose
// record was trimmed); a record at or below its origin's trim mark has no origin index entry;
// no recipient index entry points below first_seq. In 1, the retention keys must agree: the
// dedup head and every pending trim step below first_seq, steps above the dedup head, the last
// step (or the dedup head) ending at first_seq - 1, and no trim mark beyond its high water.
// A record that does not decode is reported once (in 2); index entries pointing at it are not
// reported again. Damage that stops a read of a family (RocksDB's Corruption: a table file that
// fails its checksum, is truncated or missing) is reported once, as "family 'log'" with where
// the scan stopped and RocksDB's message (naming the file); the checks go on with every entry
// that can still be read, and entries whose lookup hits the damage are not reported again.
// Memory stays bounded and reads stay sequential: the checks scan each family once, in its own
// order. The msg_id index and the recipient index are compared with the log by order-independent
// digests of their (msg_id, seq) and (recipient, seq) pairs (a 128-bit XXH3 of each pair, summed
// in 4,096 buckets chosen by the hash); where a bucket's digests differ, the log's records of that
// bucket are looked up in the index one by one, and the records behind the index's entries of
// that bucket read, which finds and reports what differs (those reports of 2 then come after the
// log's scan). Every entry is checked for its form, and an entry the digests cannot account for
// (a msg_id entry with an empty key; a recipient entry with a value, or under a key that parses
// but is not the one a node writes) has its record read whatever its bucket. A record's origin
// position, and the records an origin index entry points at, are looked up with an iterator
// stepping forward, as their keys come in increasing order. When every origin index entry is a
// record's own position pointing at it (their count equals the index's), the origin index is
// checked for density and high waters without reading records.
//
// Thread-compatible; reads the reader's current view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dsm/status.h"
#include "storage/log_reader.h"

namespace dsm::dbdump {

struct Damage {
  // The exact entry: "log seq 7", "log seq 5..7" (a hole), "msgid 'm-3'", "origin node1@0a1b#2",
  // "origin node1@0a1b#2..4" (a hole), "meta 'hwm\\0node1@0a1b'", "default 'k'"; or a whole
  // family that cannot be read: "family 'log'".
  std::string where;
  std::string problem;

  std::string ToString() const { return where + ": " + problem; }
};

struct VerifyReport {
  uint64_t records = 0;         // log entries
  uint64_t first_seq = 0;       // lowest seq in the log (0 when empty)
  uint64_t last_seq = 0;        // highest seq in the log (0 when empty)
  uint64_t msgid_entries = 0;   // msg_id index entries
  uint64_t origin_entries = 0;  // origin index entries (positions)
  uint64_t streams = 0;         // distinct origins in the origin index
  bool inbox_checked = false;   // the recipient index was checked (format version >= 2)
  uint64_t inbox_entries = 0;   // recipient index entries (when checked)
  uint64_t consumers = 0;       // durable consumers stored (format version 3; in the summary
                                // when there are some)
  // Retention (storage/format.md, "Retention").
  uint64_t first_seq_kept = 1;      // meta first_seq: seqs below it were trimmed
  uint64_t dedup_head = 0;          // meta dedup_head (0 when absent)
  uint64_t trim_steps_pending = 0;  // trim step marks not yet expired
  uint64_t msgid_trimmed = 0;       // msg_id entries of trimmed records, kept for dedup
  uint64_t msgid_forgotten = 0;     // ...at or below the dedup head, left for compaction
  uint64_t origin_trimmed = 0;      // origin positions pointing at trimmed records (consumed)
  uint64_t damage_count = 0;    // all damages found
  // The first kMaxKeptDamage damages (every one is passed to the callback).
  std::vector<Damage> damage;
  static constexpr size_t kMaxKeptDamage = 10000;

  bool ok() const { return damage_count == 0; }
  // One line: "OK: 10 records (seq 1..10), 10 msg_id entries, 12 origin positions in 2 streams,
  // 10 recipient index entries" or "DAMAGED: 3 problems; 10 records (...), ...".
  std::string Summary() const;
};

// Checks everything listed above. `on_damage` (may be empty) gets each damage as it is found.
// Errors only when the directory cannot be read (I/O); damage, unreadable table files included,
// is in the report.
Result<VerifyReport> Verify(const LogReader& reader,
                            const std::function<void(const Damage&)>& on_damage = {});

}  // namespace dsm::dbdump

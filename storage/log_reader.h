// LogReader: a read-only view of a dsm data directory for tools (dsm-dbdump). It never writes to
// the directory. Two ways to open it:
//  - kReadOnly: RocksDB's read-only mode, a view frozen at open. For a directory no process has
//    open (a stopped node, a copied directory). A directory whose RocksDB LOCK is held by another
//    process is refused (Unavailable): a read-only view of a live database is undefined.
//  - kSecondary: a RocksDB secondary instance (max_open_files = -1, its own info log in a
//    scratch directory), next to a running node. It shows the node's data as of the open, then
//    as of each CatchUp(), which replays what the node wrote since.
// Either way the view only changes in CatchUp(), so two scans between catch-ups see the same
// data, and each state is a boundary between whole write batches (the node's atomic writes).
//
// Keys follow storage/schema.h and records are decoded with storage/record.h. Besides the typed
// reads (metadata, a seq range, a msg_id lookup), the raw families can be iterated for
// consistency checks. Reads do not stop at the first malformed key or value where they can
// describe it instead: ReadMetadata() lists its problems, RawCursor gives bytes as stored.
//
// Thread safety: const methods may be called concurrently. CatchUp() must not run concurrently
// with any other call, nor while a RawCursor is alive.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Iterator;
}  // namespace rocksdb

namespace dsm {

// The column families of storage/schema.h. kInbox (the recipient index) exists since format
// version 2; a version-1 directory lacks it (or holds part of it, when an upgrade was
// interrupted). kConsumers (durable consumers' state) exists since format version 3.
enum class LogFamily { kDefault, kLog, kMsgId, kOrigin, kMeta, kInbox, kConsumers };

// The column family name of `family` ("default", "log", "msgid", "origin", "meta", "inbox").
const char* LogFamilyName(LogFamily family);

struct LogReaderOptions {
  enum class Mode { kReadOnly, kSecondary };
  std::string path;  // the data directory
  Mode mode = Mode::kReadOnly;
  // kSecondary only: where the secondary instance keeps its info log. Empty = a fresh
  // directory under the system temp directory, removed when the reader closes.
  std::string secondary_path;
  // The block cache of point lookups (scans do not fill it): large enough to hold the msg_id
  // index of a few million messages, which a verification looks up once per record.
  size_t block_cache_bytes = size_t{256} << 20;
};

// A malformed or unexpected entry of the "meta" family.
struct MetaProblem {
  std::string key;  // the raw key
  std::string problem;
};

// What the "meta" family says, plus the extent of the log. Fields that are missing or
// malformed are left empty and described in `problems`.
struct LogMetadata {
  std::optional<uint64_t> format_version;
  std::optional<std::string> node_id;
  std::optional<std::string> incarnation;
  uint64_t first_seq = 0;                          // lowest seq in the log; 0 when it is empty
  uint64_t last_seq = 0;                           // highest seq in the log; 0 when it is empty
  uint64_t message_count = 0;                      // records in the log (counted)
  std::map<std::string, uint64_t> high_waters;     // origin stream -> high water
  std::map<std::string, PushCursor> push_cursors;  // peer url -> how far it holds our stream
  std::map<std::string, PullCursor> pull_cursors;  // peer url -> peer stream and peer seq
  // Retention (storage/format.md, "Retention"); all absent when nothing was ever trimmed.
  std::optional<uint64_t> first_seq_kept;           // meta first_seq: every seq below was trimmed
  std::map<std::string, uint64_t> trimmed_through;  // origin -> its trim mark (`trim\0` + origin)
  std::map<uint64_t, double> trim_marks;  // pending trim steps: last seq removed -> newest ts
  std::optional<uint64_t> dedup_head;     // msg_id entries of seqs at or below it are forgotten
  std::vector<MetaProblem> problems;               // in key order, then the missing required keys
  // The families (meta, log) whose scan stopped on damage (Corruption: a table file whose
  // checksum fails, a missing or truncated one), with the error. What was read before stays in
  // the fields above (the log's count and last_seq then cover only the part before the damage);
  // the required meta keys are not reported missing when the meta family could not be read.
  struct Unreadable {
    LogFamily family;
    std::string error;  // e.g. "scan of log: Corruption: block checksum mismatch: ... in X.sst"
  };
  std::vector<Unreadable> unreadable;

  // "<node_id>@<incarnation>", or empty when either is missing.
  std::string stream_id() const;
  // FirstSeq of the log as retention left it: meta first_seq, 1 when absent.
  uint64_t FirstSeqKept() const { return first_seq_kept.value_or(1); }
  // The trim mark of `origin`: positions at or below it are no longer held (0 when none).
  uint64_t TrimmedThrough(const std::string& origin) const;
};

class LogReader {
 public:
  // Opens the data directory. Errors, one line naming the directory:
  //   NotFound          the directory does not exist
  //   InvalidArgument   not a directory; an empty directory (no database yet); a directory
  //                     that holds no RocksDB database or one that is not dsm's (an unknown
  //                     column family, or one of default/log/msgid/origin/meta missing); a
  //                     format version newer than this build reads
  //   Unavailable       kReadOnly and another process holds the database (a running node;
  //                     kSecondary reads it)
  //   Corruption / IOError   RocksDB could not open it
  static Result<std::unique_ptr<LogReader>> Open(const LogReaderOptions& options);

  ~LogReader();
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;

  const std::string& path() const { return options_.path; }
  LogReaderOptions::Mode mode() const { return options_.mode; }

  // kSecondary: replays what the primary wrote since the last catch-up. kReadOnly: no-op.
  Status CatchUp();

  // Reads the "meta" family and the first/last/count of the log. Errors only for I/O failures;
  // malformed entries go to `problems`, damage that stops a scan to `unreadable`.
  Result<LogMetadata> ReadMetadata() const;

  // Visits the records with from <= seq <= to (inclusive), in seq order, until `visit` returns
  // false. An undecodable record or malformed key stops the scan with Corruption naming its seq.
  Status ScanLog(uint64_t from, uint64_t to,
                 const std::function<bool(const Message&)>& visit) const;

  // The record at `seq`, decoded (Corruption if it does not decode); nullopt when absent.
  Result<std::optional<Message>> Get(uint64_t seq) const;
  // The seq the msg_id index holds for `msg_id`; nullopt when absent. Corruption for a
  // malformed index value.
  Result<std::optional<uint64_t>> LookupMsgId(std::string_view msg_id) const;
  // The seq the origin index holds for (origin, origin_seq); nullopt when absent.
  Result<std::optional<uint64_t>> LookupOrigin(std::string_view origin, uint64_t origin_seq) const;
  // The raw value of `key` in `family`; nullopt when absent (or the family is).
  Result<std::optional<std::string>> GetRaw(LogFamily family, std::string_view key) const;
  // Whether the database has `family` (only kInbox and kConsumers may be missing).
  bool HasFamily(LogFamily family) const;

  // Raw, in-order iteration of one family (never Valid() when the family is missing). Keys and
  // values are as stored and stay valid until the next Next()/Seek(). REQUIRES: the reader
  // outlives the cursor.
  class RawCursor {
   public:
    ~RawCursor();
    RawCursor(const RawCursor&) = delete;
    RawCursor& operator=(const RawCursor&) = delete;

    void SeekToFirst();
    void Seek(std::string_view key);  // first key >= `key`
    bool Valid() const;
    void Next();
    std::string_view key() const;    // REQUIRES: Valid()
    std::string_view value() const;  // REQUIRES: Valid()
    // The iteration error, if one ended it (check once Valid() is false).
    Status status() const;

   private:
    friend class LogReader;
    RawCursor(std::unique_ptr<rocksdb::Iterator> it, LogFamily family);
    std::unique_ptr<rocksdb::Iterator> it_;  // null when the family is missing
    LogFamily family_;
  };
  std::unique_ptr<RawCursor> NewRawCursor(LogFamily family) const;

 private:
  LogReader(LogReaderOptions options, std::unique_ptr<rocksdb::DB> db,
            std::vector<rocksdb::ColumnFamilyHandle*> handles, bool remove_secondary_path);

  rocksdb::ColumnFamilyHandle* Handle(LogFamily family) const;

  const LogReaderOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // indexed by LogFamily; null = missing
  const bool remove_secondary_path_;                   // the secondary path was created by Open
};

}  // namespace dsm

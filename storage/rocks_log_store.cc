#include "storage/rocks_log_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "common/encoding.h"
#include "common/ids.h"
#include "storage/read_rules.h"
#include "storage/record.h"
#include "storage/schema.h"

namespace dsm {
namespace {

namespace fs = std::filesystem;

const char* const kFamilyNames[] = {schema::kDefaultFamily, schema::kLogFamily,
                                    schema::kMsgIdFamily,   schema::kOriginFamily,
                                    schema::kMetaFamily,    schema::kInboxFamily};

// Records indexed per synced batch when a version-1 directory is upgraded.
constexpr size_t kUpgradeBatchRecords = 10000;

constexpr size_t kBlockCacheBytes = 16 << 20;
constexpr int kBloomBitsPerKey = 10;

bool IsDsmFamily(const std::string& name) {
  for (const char* f : kFamilyNames) {
    if (name == f) return true;
  }
  return false;
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// An 8-byte big-endian u64 on the stack, for keys and values without allocating.
class Be64 {
 public:
  explicit Be64(uint64_t v) {
    for (int i = 7; i >= 0; --i) {
      buf_[i] = static_cast<char>(v & 0xff);
      v >>= 8;
    }
  }
  rocksdb::Slice slice() const { return rocksdb::Slice(buf_, sizeof(buf_)); }

 private:
  char buf_[8];
};

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(msg));
  return Status::IOError(std::move(msg));
}

std::string DirName(const std::string& path) { return "data directory " + path; }

// Appended to the errors about a damaged data directory.
constexpr char kDamagedHint[] =
    " (see docs/operations.md, \"Recovering a damaged or lost node\")";

// How often a store whose disk was full retries (DB::Resume) when writes keep coming.
constexpr auto kResumeInterval = std::chrono::milliseconds(500);

// The status of a write refused because the disk is full (not sticky: see Write()).
Status DiskFull(const rocksdb::Status& s) {
  return Status::Unavailable(
      "disk full: the node cannot store new messages until space is freed (reads keep working; "
      "writes resume by themselves): " +
      s.ToString());
}

// Maps a failed DB::Open to one line naming the directory and the cause.
Status OpenError(const std::string& path, const rocksdb::Status& s) {
  const std::string detail = s.ToString();
  if (s.IsIOError() && detail.find("ermission denied") != std::string::npos) {
    return Status::IOError(DirName(path) + " is not writable (" + detail + ")");
  }
  if (s.IsIOError() &&
      (detail.find("lock") != std::string::npos || detail.find("LOCK") != std::string::npos)) {
    return Status::IOError(DirName(path) + " is locked by another running process (" + detail +
                           ")");
  }
  if (s.IsCorruption()) {
    return Status::Corruption(DirName(path) + " is damaged: " + detail + kDamagedHint);
  }
  return Status::IOError("cannot open " + DirName(path) + ": " + detail);
}

// Creates `path` with its parents and checks that it is a writable directory. Sets *is_new
// when it holds no database yet (it is then empty).
Status PrepareDirectory(const std::string& path, bool* is_new) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return Status::IOError("cannot create " + DirName(path) + ": " + ec.message());
  if (!fs::is_directory(path, ec)) return Status::IOError(DirName(path) + " is not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    return Status::IOError(DirName(path) + " is not writable: " + std::strerror(errno));
  }
  *is_new = !fs::exists(fs::path(path) / "CURRENT", ec);
  if (*is_new) {
    fs::directory_iterator it(path, ec);
    if (ec) return Status::IOError("cannot list " + DirName(path) + ": " + ec.message());
    if (it != fs::directory_iterator()) {
      return Status::InvalidArgument(DirName(path) + " is not empty and is not a dsm database");
    }
  }
  return Status::Ok();
}

// Turns off RocksDB's own recovery from a full disk: its SstFileManager waits for as much free
// space as all memtables could need, which a small disk may never have, and answers DB::Resume()
// with Busy meanwhile. The store's writers call DB::Resume() themselves (see Write()).
class ManualRecovery final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

rocksdb::DBOptions MakeDbOptions(const RocksLogStoreOptions& options, bool is_new) {
  rocksdb::DBOptions o;
  o.create_if_missing = is_new;
  o.create_missing_column_families = is_new;
  if (options.env != nullptr) o.env = options.env;
  // Damage is an error at open, never a silent truncation: a record whose checksum does not
  // match stops the open (point-in-time recovery would drop it and everything after it without a
  // word), while an incomplete record at the very end of the last log - a write cut short by a
  // machine crash, never acknowledged - is dropped. paranoid_checks also checks the table files
  // against the MANIFEST (presence and size) at open.
  o.paranoid_checks = true;
  o.listeners.push_back(std::make_shared<ManualRecovery>());
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 8 << 20;
  return o;
}

rocksdb::ColumnFamilyOptions MakeFamilyOptions(const std::string& name,
                                               const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  if (name == schema::kMsgIdFamily) {
    // Most msg_id lookups are for new ids: a filter answers them without reading blocks.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
  }
  if (name == schema::kMetaFamily || name == schema::kDefaultFamily) {
    o.write_buffer_size = 4 << 20;
  }
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

// An open database and its family handles; closes it unless released.
struct OpenDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  OpenDb() = default;
  OpenDb(const OpenDb&) = delete;
  OpenDb& operator=(const OpenDb&) = delete;
  ~OpenDb() {
    if (db == nullptr) return;
    for (rocksdb::ColumnFamilyHandle* h : handles)
      db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyHandle* Family(std::string_view name) const {
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      if (h->GetName() == name) return h;
    }
    return nullptr;
  }

  // True when no open family holds a key.
  Result<bool> Blank() const {
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
      it->SeekToFirst();
      if (!it->status().ok()) return FromRocks(it->status(), "scan of " + h->GetName());
      if (it->Valid()) return false;
    }
    return true;
  }
};

std::string ReadMeta(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, std::string_view key,
                     Status* status) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), meta, ToSlice(key), &value);
  if (s.IsNotFound()) {
    *status = Status::NotFound(std::string(key));
  } else if (!s.ok()) {
    *status = FromRocks(s, "read of meta key " + std::string(key));
  } else {
    *status = Status::Ok();
  }
  return value;
}

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Total input bytes of a request, for the group commit bounds.
size_t RequestBytes(const WriteRequest& req) {
  size_t bytes = 0;
  for (const Message& m : *req.msgs) {
    bytes += m.msg_id.size() + m.sender.size() + m.recipient.size() + m.payload.size() +
             m.origin.size() + 32;
  }
  return bytes;
}

// Builds the recipient index of a format-version-1 directory from its log, then records version
// 2 in the same synced write as the last index entries. Each batch is synced; an interrupted
// upgrade leaves version 1 and is redone from the start at the next open (it rewrites the same
// keys).
Status UpgradeFromVersion1(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log,
                           rocksdb::ColumnFamilyHandle* inbox, rocksdb::ColumnFamilyHandle* meta,
                           const RocksLogStoreOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  if (options.info_log) {
    options.info_log(DirName(options.path) +
                     " has format version 1: upgrading it in place to version 2 (building the "
                     "recipient index from the log)");
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::WriteBatch batch;
  size_t in_batch = 0;
  uint64_t indexed = 0;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), log));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(ToView(it->key()), &seq)) {
      return Status::Corruption(DirName(options.path) + ": malformed log key");
    }
    Result<Message> m = DecodeRecord(seq, ToView(it->value()));
    if (!m.ok()) return Status::Corruption(DirName(options.path) + ": " + m.status().message());
    batch.Put(inbox, schema::InboxKey(m->recipient, seq), rocksdb::Slice());
    ++indexed;
    if (++in_batch == kUpgradeBatchRecords) {
      rocksdb::Status s = db->Write(wo, &batch);
      if (!s.ok()) return FromRocks(s, "upgrade of " + DirName(options.path));
      batch.Clear();
      in_batch = 0;
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "upgrade of " + DirName(options.path));
  batch.Put(meta, ToSlice(schema::kFormatVersionKey), Be64(schema::kFormatVersion).slice());
  rocksdb::Status s = db->Write(wo, &batch);
  if (!s.ok()) return FromRocks(s, "upgrade of " + DirName(options.path));
  if (options.info_log) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    options.info_log(DirName(options.path) + " upgraded to format version 2: " +
                     std::to_string(indexed) + " messages indexed by recipient in " +
                     std::to_string(secs) + " s");
  }
  return Status::Ok();
}

}  // namespace

struct RocksLogStore::Writer {
  // A waiting Append/Apply: `r` lives on the caller's stack.
  explicit Writer(const WriteRequest& r)
      : req(r), bytes(RequestBytes(r)), messages(r.msgs->size()) {}
  // An AppendAsync: the writer owns the messages.
  Writer(std::vector<Message> msgs, AppendDone callback)
      : owned(std::move(msgs)),
        req(WriteRequest::Append(owned)),
        bytes(RequestBytes(req)),
        messages(owned.size()),
        done(std::move(callback)) {}

  std::vector<Message> owned;  // AppendAsync only: what req.msgs points at
  WriteRequest req;
  size_t bytes;
  size_t messages;
  AppendDone done;  // AppendAsync only: called with `result` once the group is done
  // The members below are guarded by the store's mu_ (an annotation cannot name it here).
  std::optional<Result<std::vector<WriteOutcome>>> result;  // set when its group is done
  // Waiting callers only: notified (under mu_) by the leader of its group when `result` is set,
  // or by the previous leader when this writer reaches the front with nobody leading.
  CondVar cv;
};

Result<std::unique_ptr<RocksLogStore>> RocksLogStore::Open(const RocksLogStoreOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) return Status::InvalidArgument("data directory path is empty");
  if (options.node_id.empty() || options.node_id.find('\0') != std::string::npos) {
    return Status::InvalidArgument("invalid node id '" + options.node_id + "'");
  }
  bool is_new = false;
  if (Status s = PrepareDirectory(path, &is_new); !s.ok()) return s;

  const rocksdb::DBOptions db_options = MakeDbOptions(options, is_new);
  std::vector<std::string> names;
  if (is_new) {
    names.assign(std::begin(kFamilyNames), std::end(kFamilyNames));
  } else {
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
    if (!s.ok()) {
      if (s.IsCorruption()) {
        return Status::Corruption(DirName(path) + " holds an unreadable database: " + s.ToString());
      }
      return Status::IOError("cannot read " + DirName(path) + ": " + s.ToString());
    }
    for (const std::string& name : names) {
      if (!IsDsmFamily(name)) {
        return Status::InvalidArgument(DirName(path) +
                                       " holds a database that is not a dsm database (column "
                                       "family '" +
                                       name + "')");
      }
    }
  }

  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const std::string& name : names) {
    descriptors.emplace_back(name, MakeFamilyOptions(name, cache));
  }
  OpenDb open;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status os = rocksdb::DB::Open(db_options, path, descriptors, &open.handles, &raw);
  if (!os.ok()) return OpenError(path, os);
  open.db.reset(raw);
  if (options.verify_checksums && !is_new) {
    // Every block of every table file is read and its checksum checked, so that a damaged
    // table is found now rather than when some read reaches it.
    rocksdb::Status vs = raw->VerifyChecksum();
    if (!vs.ok()) {
      return Status::Corruption(DirName(path) + " is damaged: " + vs.ToString() + kDamagedHint);
    }
  }

  rocksdb::ColumnFamilyHandle* meta = open.Family(schema::kMetaFamily);
  Status fv_status = Status::NotFound("meta");
  std::string format_version;
  if (meta != nullptr) format_version = ReadMeta(raw, meta, schema::kFormatVersionKey, &fv_status);
  if (!fv_status.ok() && fv_status.code() != Code::kNotFound) return fv_status;

  std::string incarnation;
  if (fv_status.code() == Code::kNotFound) {
    // No metadata: a new database, or one whose creation was interrupted before its metadata
    // was written. Anything else without metadata is not ours.
    Result<bool> blank = open.Blank();
    if (!blank.ok()) return blank.status();
    if (!*blank) {
      return Status::InvalidArgument(DirName(path) +
                                     " holds a database that is not a dsm database (no "
                                     "format_version)");
    }
    for (const char* name : kFamilyNames) {
      if (open.Family(name) != nullptr) continue;
      rocksdb::ColumnFamilyHandle* h = nullptr;
      rocksdb::Status s = raw->CreateColumnFamily(MakeFamilyOptions(name, cache), name, &h);
      if (!s.ok()) return FromRocks(s, "cannot create column family in " + DirName(path));
      open.handles.push_back(h);
    }
    meta = open.Family(schema::kMetaFamily);
    incarnation = RandomHex(schema::kIncarnationHexChars);
    rocksdb::WriteBatch batch;
    batch.Put(meta, ToSlice(schema::kFormatVersionKey), Be64(schema::kFormatVersion).slice());
    batch.Put(meta, ToSlice(schema::kNodeIdKey), options.node_id);
    batch.Put(meta, ToSlice(schema::kIncarnationKey), incarnation);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = raw->Write(wo, &batch);
    if (!s.ok()) return FromRocks(s, "cannot initialize " + DirName(path));
  } else {
    uint64_t version = 0;
    if (!schema::DecodeSeqValue(format_version, &version) || version == 0) {
      return Status::Corruption(DirName(path) + " has a malformed format_version");
    }
    if (version > schema::kFormatVersion) {
      return Status::InvalidArgument(DirName(path) + " has format version " +
                                     std::to_string(version) + ", newer than this build reads (" +
                                     std::to_string(schema::kFormatVersion) + ")");
    }
    Status s;
    const std::string owner = ReadMeta(raw, meta, schema::kNodeIdKey, &s);
    if (!s.ok()) return Status::Corruption(DirName(path) + " has no node_id: " + s.ToString());
    if (owner != options.node_id) {
      return Status::InvalidArgument(DirName(path) + " belongs to node '" + owner + "', not '" +
                                     options.node_id + "'");
    }
    incarnation = ReadMeta(raw, meta, schema::kIncarnationKey, &s);
    if (!s.ok()) return Status::Corruption(DirName(path) + " has no incarnation: " + s.ToString());
    if (incarnation.size() != schema::kIncarnationHexChars || !IsHex(incarnation)) {
      return Status::Corruption(DirName(path) + " has a malformed incarnation");
    }
    for (const char* name : kFamilyNames) {
      if (open.Family(name) != nullptr) continue;
      if (version == 1 && std::string_view(name) == schema::kInboxFamily) {
        // Introduced by version 2: created here, filled by the upgrade below.
        rocksdb::ColumnFamilyHandle* h = nullptr;
        rocksdb::Status cs = raw->CreateColumnFamily(MakeFamilyOptions(name, cache), name, &h);
        if (!cs.ok()) return FromRocks(cs, "cannot create column family in " + DirName(path));
        open.handles.push_back(h);
        continue;
      }
      return Status::Corruption(DirName(path) + " lacks column family '" + name + "'");
    }
    if (version == 1) {
      s = UpgradeFromVersion1(raw, open.Family(schema::kLogFamily),
                              open.Family(schema::kInboxFamily), meta, options);
      if (!s.ok()) return s;
    }
  }

  Families families{open.Family(schema::kLogFamily), open.Family(schema::kMsgIdFamily),
                    open.Family(schema::kOriginFamily), open.Family(schema::kMetaFamily),
                    open.Family(schema::kInboxFamily)};
  std::unique_ptr<RocksLogStore> store(
      new RocksLogStore(options, std::move(open.db), std::move(open.handles), families));
  store->incarnation_ = std::move(incarnation);
  store->stream_id_ = store->node_id_ + "@" + store->incarnation_;
  if (Status s = store->Recover(); !s.ok()) return s;
  return store;
}

RocksLogStore::RocksLogStore(RocksLogStoreOptions options, std::unique_ptr<rocksdb::DB> db,
                             std::vector<rocksdb::ColumnFamilyHandle*> handles, Families families)
    : options_(std::move(options)),
      node_id_(options_.node_id),
      db_(std::move(db)),
      handles_(std::move(handles)),
      cf_(families) {
  lookups_.find_msg_id = [this](std::string_view msg_id) -> Result<std::optional<uint64_t>> {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_.msgid, ToSlice(msg_id), &value);
    if (s.IsNotFound()) return std::optional<uint64_t>();
    if (!s.ok()) return FromRocks(s, "msg_id index read");
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(ToView(value), &seq)) {
      return Status::Corruption("malformed msg_id index entry for '" + std::string(msg_id) + "'");
    }
    return std::optional<uint64_t>(seq);
  };
  lookups_.stored_position = [this](uint64_t seq) -> Result<StoredPosition> {
    Result<std::optional<Message>> m = GetAt(seq, nullptr);
    if (!m.ok()) return m.status();
    if (!m->has_value()) {
      return Status::Corruption("an index points at seq " + std::to_string(seq) +
                                ", which is not in the log");
    }
    return StoredPosition{std::move((*m)->origin), (*m)->origin_seq};
  };
  lookups_.find_origin_seq = [this](std::string_view origin,
                                    uint64_t origin_seq) -> Result<std::optional<uint64_t>> {
    rocksdb::PinnableSlice value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cf_.origin, schema::OriginKey(origin, origin_seq), &value);
    if (s.IsNotFound()) return std::optional<uint64_t>();
    if (!s.ok()) return FromRocks(s, "origin index read");
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(ToView(value), &seq)) {
      return Status::Corruption("malformed origin index entry for " + std::string(origin) + "#" +
                                std::to_string(origin_seq));
    }
    return std::optional<uint64_t>(seq);
  };
  commit_thread_ = std::thread([this] { CommitLoop(); });
}

RocksLogStore::~RocksLogStore() {
  {
    MutexLock lock(&mu_);
    while (!writers_.empty() || leading_) idle_cv_.Wait(&mu_);
    stopping_ = true;
    commit_cv_.NotifyAll();
  }
  commit_thread_.join();  // after the callbacks it was running
  { MutexLock push_lock(&push_mu_); }
  if (options_.flush_on_close) {
    // After a clean stop everything is in checksummed table files whose presence and sizes the
    // MANIFEST records (verified at the next open), and the write-ahead log is empty.
    db_->Flush(rocksdb::FlushOptions(), handles_).PermitUncheckedError();
  }
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  db_->Close().PermitUncheckedError();
}

Status RocksLogStore::Recover() {
  MutexLock lock(&mu_);
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.log));
    it->SeekToLast();
    if (it->Valid() && !schema::DecodeSeqValue(ToView(it->key()), &last_seq_)) {
      return Status::Corruption(DirName(options_.path) + ": malformed log key");
    }
    if (!it->status().ok()) return FromRocks(it->status(), "recovery of the last seq");
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.meta));
  // Visits the meta keys starting with `prefix`; `load` gets the rest of the key and the value.
  auto scan_prefix = [&](std::string_view prefix, auto load) EXCLUSIVE_LOCKS_REQUIRED(mu_)
      -> Status {
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      std::string_view key = ToView(it->key());
      if (key.substr(0, prefix.size()) != prefix) break;
      if (!load(key.substr(prefix.size()), ToView(it->value()))) {
        return Status::Corruption(DirName(options_.path) + ": malformed meta entry '" +
                                  std::string(key) + "'");
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "recovery of the metadata");
    return Status::Ok();
  };
  Status s = scan_prefix(
      schema::kHighWaterPrefix,
      [&](std::string_view origin, std::string_view value) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        uint64_t v = 0;
        if (!schema::DecodeSeqValue(value, &v)) return false;
        high_waters_.emplace(std::string(origin), v);
        return true;
      });
  if (!s.ok()) return s;
  s = scan_prefix(
      schema::kPushCursorPrefix,
      [&](std::string_view peer, std::string_view value) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        PushCursor c;
        if (!schema::DecodePushCursor(value, &c)) return false;
        push_cursors_.emplace(std::string(peer), std::move(c));
        return true;
      });
  if (!s.ok()) return s;
  return scan_prefix(
      schema::kPullCursorPrefix,
      [&](std::string_view peer, std::string_view value) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        PullCursor c;
        if (!schema::DecodePullCursor(value, &c)) return false;
        pull_cursors_.emplace(std::string(peer), std::move(c));
        return true;
      });
}

Result<std::vector<WriteOutcome>> RocksLogStore::Append(std::vector<Message> msgs) {
  return Write(WriteRequest::Append(msgs));
}

Result<std::vector<WriteOutcome>> RocksLogStore::Apply(std::vector<Message> msgs,
                                                       const std::string& peer_url,
                                                       const PullCursor* cursor) {
  return Write(WriteRequest::Apply(msgs, peer_url, cursor));
}

Result<std::vector<WriteOutcome>> RocksLogStore::Write(const WriteRequest& req) {
  Writer w(req);
  MutexLock lock(&mu_);
  writers_.push_back(&w);
  while (!w.result.has_value() && (writers_.front() != &w || leading_)) w.cv.Wait(&mu_);
  if (!w.result.has_value()) {
    std::vector<std::unique_ptr<Writer>> finished = LeadGroup();
    lock.Unlock();
    RunCallbacks(std::move(finished));
  }
  return std::move(*w.result);
}

void RocksLogStore::AppendAsync(std::vector<Message> msgs, AppendDone done) {
  // Owned by writers_ until its group is done (then by LeadGroup's result).
  Writer* w = new Writer(std::move(msgs), std::move(done));
  MutexLock lock(&mu_);
  writers_.push_back(w);
  if (writers_.size() > 1 || leading_) return;  // a group ahead of it: the commit thread leads
  // Nothing in flight: commit it here, without a hand-off.
  std::vector<std::unique_ptr<Writer>> finished = LeadGroup();
  lock.Unlock();
  RunCallbacks(std::move(finished));
}

void RocksLogStore::CommitLoop() {
  MutexLock lock(&mu_);
  while (true) {
    while (!stopping_ && (writers_.empty() || !writers_.front()->done || leading_)) {
      commit_cv_.Wait(&mu_);
    }
    if (writers_.empty() || !writers_.front()->done || leading_) return;  // stopping
    std::vector<std::unique_ptr<Writer>> finished = LeadGroup();
    lock.Unlock();
    RunCallbacks(std::move(finished));
    lock.Lock();
  }
}

void RocksLogStore::RunCallbacks(std::vector<std::unique_ptr<Writer>> finished) {
  for (std::unique_ptr<Writer>& w : finished) w->done(std::move(*w->result));
}

std::vector<std::unique_ptr<RocksLogStore::Writer>> RocksLogStore::LeadGroup() {
  leading_ = true;
  // The group: the front writer and those queued behind it, within the bounds.
  std::vector<Writer*> group;
  size_t bytes = 0;
  size_t messages = 0;
  for (Writer* g : writers_) {
    if (!group.empty() && (bytes + g->bytes > options_.max_group_bytes ||
                           messages + g->messages > options_.max_group_messages)) {
      break;
    }
    group.push_back(g);
    bytes += g->bytes;
    messages += g->messages;
  }

  Status refusal = bg_error_;
  if (refusal.ok() && options_.min_free_bytes > 0) {
    struct statvfs fs_stat;
    if (::statvfs(options_.path.c_str(), &fs_stat) == 0) {
      const uint64_t free_bytes = uint64_t{fs_stat.f_bavail} * fs_stat.f_frsize;
      if (free_bytes < options_.min_free_bytes + bytes) {
        refusal = Status::Unavailable(
            "disk full: " + std::to_string(free_bytes) + " bytes free under " + options_.path +
            ", below the reserve of " + std::to_string(options_.min_free_bytes) +
            " bytes; the node cannot store new messages until space is freed (reads keep "
            "working; writes resume by themselves)");
      }
    }
    low_space_ = refusal;
  }
  if (refusal.ok() && !disk_full_.ok()) {
    // The disk was full: try to resume (at most every kResumeInterval), without the lock.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_resume_ < kResumeInterval) {
      refusal = disk_full_;
    } else {
      last_resume_ = now;
      mu_.Unlock();
      Status resumed = ResumeAfterDiskFull();
      mu_.Lock();
      if (resumed.ok()) {
        disk_full_ = Status::Ok();
      } else if (resumed.code() == Code::kUnavailable) {
        refusal = disk_full_ = resumed;
      } else {
        refusal = bg_error_ = resumed;
      }
    }
  }
  if (!refusal.ok()) {
    for (Writer* g : group) g->result.emplace(refusal);
  } else {
    const uint64_t last_seq = last_seq_;
    const HighWaterMap high_waters = high_waters_;
    mu_.Unlock();
    Status write_status;
    Result<WritePlan> plan = PlanAndWrite(group, last_seq, high_waters, &write_status);
    mu_.Lock();
    if (!plan.ok()) {
      for (Writer* g : group) g->result.emplace(plan.status());
    } else if (!write_status.ok()) {
      // Nothing of the group was published. A full disk is not sticky (writes resume once space
      // returns); any other write error is.
      if (write_status.code() == Code::kUnavailable) {
        disk_full_ = write_status;
        last_resume_ = std::chrono::steady_clock::now();
      } else {
        bg_error_ = write_status;
      }
      for (Writer* g : group) g->result.emplace(write_status);
    } else {
      Publish(*plan);
      RememberOwnRecords(&*plan);
      // Inside the publishing critical section, so a reader that registered before reading
      // LastSeq() cannot miss this write (storage/append_notifier.h).
      if (options_.notifier != nullptr && !plan->appended.empty()) {
        options_.notifier->Notify(plan->appended, last_seq_);
      }
      for (size_t i = 0; i < group.size(); ++i) {
        group[i]->result.emplace(std::move(plan->results[i]));
      }
    }
  }

  std::vector<std::unique_ptr<Writer>> finished;
  for (Writer* g : group) {
    writers_.pop_front();
    if (g->done) {
      finished.emplace_back(g);
    } else {
      g->cv.NotifyOne();  // a waiting caller (a leading caller is not waiting: no effect)
    }
  }
  leading_ = false;
  // Hand the lead on: a waiting caller leads its own group, the commit thread leads AppendAsync
  // writers.
  if (writers_.empty()) {
    idle_cv_.NotifyAll();
  } else if (writers_.front()->done) {
    commit_cv_.NotifyOne();
  } else {
    writers_.front()->cv.NotifyOne();
  }
  return finished;
}

Result<WritePlan> RocksLogStore::PlanAndWrite(const std::vector<Writer*>& group, uint64_t last_seq,
                                              const HighWaterMap& high_waters,
                                              Status* write_status) {
  std::vector<const WriteRequest*> requests;
  requests.reserve(group.size());
  for (const Writer* g : group) requests.push_back(&g->req);
  const WritePlanState state{stream_id_, last_seq, &high_waters};
  Result<WritePlan> plan = PlanWrites(requests, state, lookups_);
  if (!plan.ok() || plan->empty()) return plan;

  size_t reserve = 64;
  for (const WritePlan::Record& r : plan->records) reserve += r.value.size() + 48;
  rocksdb::WriteBatch batch(reserve);
  for (const WritePlan::Record& r : plan->records) {
    batch.Put(cf_.log, Be64(r.seq).slice(), r.value);
  }
  for (const WritePlan::MsgIdEntry& e : plan->msg_ids) {
    batch.Put(cf_.msgid, ToSlice(e.msg_id), Be64(e.seq).slice());
  }
  for (const WritePlan::OriginEntry& e : plan->origins) {
    batch.Put(cf_.origin, schema::OriginKey(e.origin, e.origin_seq), Be64(e.seq).slice());
  }
  for (const AppendedMessage& a : plan->appended) {
    batch.Put(cf_.inbox, schema::InboxKey(a.recipient, a.seq), rocksdb::Slice());
  }
  for (const auto& [origin, high_water] : plan->high_waters) {
    batch.Put(cf_.meta, schema::HighWaterKey(origin), Be64(high_water).slice());
  }
  for (const WritePlan::CursorUpdate& c : plan->pull_cursors) {
    batch.Put(cf_.meta, schema::PullCursorKey(c.peer_url), schema::EncodePullCursor(*c.cursor));
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (s.IsNoSpace()) {
    *write_status = DiskFull(s);
  } else if (!s.ok()) {
    *write_status = Status::IOError("log write failed; writes stopped: " + s.ToString());
  }
  return plan;
}

void RocksLogStore::RememberOwnRecords(WritePlan* plan) {
  if (options_.tail_cache_records == 0) return;
  for (WritePlan::Record& r : plan->records) {
    if (!r.own) continue;
    if (!tail_.empty() && r.origin_seq != tail_.back().origin_seq + 1) {
      // Not contiguous (cannot happen: own positions are planned in order); start over.
      tail_.clear();
      tail_bytes_ = 0;
    }
    tail_bytes_ += r.value.size();
    tail_.push_back(TailRecord{r.origin_seq, r.seq, std::move(r.value)});
  }
  while (!tail_.empty() && (tail_.size() > options_.tail_cache_records ||
                            (tail_.size() > 1 && tail_bytes_ > options_.tail_cache_bytes))) {
    tail_bytes_ -= tail_.front().value.size();
    tail_.pop_front();
  }
}

bool RocksLogStore::ReadOwnTail(uint64_t after, size_t limit, size_t max_bytes,
                                std::vector<Message>* out, Status* status) const {
  // The values are copied under the lock (about max_bytes at most) and decoded without it.
  std::vector<TailRecord> copied;
  {
    MutexLock lock(&mu_);
    if (tail_.empty() || after + 1 < tail_.front().origin_seq ||
        after >= tail_.back().origin_seq) {
      return false;
    }
    size_t bytes = 0;
    for (size_t i = after + 1 - tail_.front().origin_seq; i < tail_.size(); ++i) {
      if (copied.size() >= limit || (!copied.empty() && bytes > max_bytes)) break;
      bytes += tail_[i].value.size();
      copied.push_back(tail_[i]);
    }
  }
  ReadOriginBudget budget(limit, max_bytes);
  out->reserve(copied.size());
  for (TailRecord& r : copied) {
    Result<Message> m = DecodeRecord(r.seq, r.value);
    if (!m.ok()) {
      *status = m.status();
      return true;
    }
    if (!budget.Take(m->payload.size())) break;
    Message& msg = out->emplace_back(std::move(*m));
    msg.origin = stream_id_;
    msg.origin_seq = r.origin_seq;
  }
  return true;
}

void RocksLogStore::Publish(const WritePlan& plan) {
  last_seq_ = plan.last_seq;
  for (const auto& [origin, high_water] : plan.high_waters) {
    auto it = high_waters_.find(origin);
    if (it == high_waters_.end()) {
      high_waters_.emplace(std::string(origin), high_water);
    } else {
      it->second = high_water;
    }
  }
  for (const WritePlan::CursorUpdate& c : plan.pull_cursors) {
    auto it = pull_cursors_.find(c.peer_url);
    if (it == pull_cursors_.end()) {
      pull_cursors_.emplace(std::string(c.peer_url), *c.cursor);
    } else {
      it->second = *c.cursor;
    }
  }
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
  if (seq == 0) return std::optional<Message>();
  return GetAt(seq, nullptr);
}

Result<std::optional<Message>> RocksLogStore::FindByMsgId(const std::string& msg_id) const {
  Result<std::optional<uint64_t>> seq = lookups_.find_msg_id(msg_id);
  if (!seq.ok()) return seq.status();
  if (!seq->has_value()) return std::optional<Message>();
  Result<std::optional<Message>> m = GetAt(**seq, nullptr);
  if (m.ok() && !m->has_value()) {
    return Status::Corruption("msg_id '" + msg_id + "' points at seq " + std::to_string(**seq) +
                              ", which is not in the log");
  }
  return m;
}

Status RocksLogStore::Scan(const ScanOptions& opts, const MessageVisitor& visit) const {
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

std::optional<Result<std::vector<Message>>> RocksLogStore::ReadOwnRecent(uint64_t after,
                                                                         size_t limit,
                                                                         size_t max_bytes) const {
  std::vector<Message> out;
  Status status;
  if (limit == 0) return Result<std::vector<Message>>(std::move(out));
  if (!ReadOwnTail(after, limit, max_bytes, &out, &status)) return std::nullopt;
  if (!status.ok()) return Result<std::vector<Message>>(status);
  return Result<std::vector<Message>>(std::move(out));
}

Result<std::vector<Message>> RocksLogStore::ReadOrigin(const std::string& origin, uint64_t after,
                                                       size_t limit, size_t max_bytes) const {
  std::vector<Message> out;
  if (limit == 0) return out;
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
  while (!budget_spent && !hole && !budget.Full() && it->Valid()) {
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
  if (!budget_spent && !budget.Full() && expected <= high_water) {
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
  auto it = high_waters_.find(origin);
  return it == high_waters_.end() ? 0 : it->second;
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

Status RocksLogStore::SetPushCursor(const std::string& peer_url, const PushCursor& cursor) {
  MutexLock push_lock(&push_mu_);
  {
    MutexLock lock(&mu_);
    if (!bg_error_.ok()) return bg_error_;
    if (!disk_full_.ok()) return disk_full_;  // the log's writers resume the database
  }
  rocksdb::WriteOptions wo;
  wo.sync = false;  // a lost update only causes a resend, which peers deduplicate
  rocksdb::Status s =
      db_->Put(wo, cf_.meta, schema::PushCursorKey(peer_url), schema::EncodePushCursor(cursor));
  MutexLock lock(&mu_);
  if (s.IsNoSpace()) {
    if (disk_full_.ok()) {
      disk_full_ = DiskFull(s);
      last_resume_ = std::chrono::steady_clock::now();
    }
    return disk_full_;
  }
  if (!s.ok()) {
    if (bg_error_.ok()) {
      bg_error_ = Status::IOError("push cursor write failed; writes stopped: " + s.ToString());
    }
    return bg_error_;
  }
  push_cursors_[peer_url] = cursor;
  return Status::Ok();
}

PullCursor RocksLogStore::GetPullCursor(const std::string& peer_url) const {
  MutexLock lock(&mu_);
  auto it = pull_cursors_.find(peer_url);
  return it == pull_cursors_.end() ? PullCursor{} : it->second;
}

Status RocksLogStore::WriteHealth() const {
  MutexLock lock(&mu_);
  if (!bg_error_.ok()) return bg_error_;
  return disk_full_.ok() ? low_space_ : disk_full_;
}

Status RocksLogStore::ResumeAfterDiskFull() {
  // DB::Resume() clears RocksDB's own background error once the cause is gone: it flushes the
  // memtables (which needs space) and starts a new write-ahead log, so the log that took the
  // failed write is never appended to again. RocksDB may also have recovered by itself already.
  rocksdb::Status s = db_->Resume();
  if (s.ok()) return Status::Ok();
  if (s.IsNoSpace() || s.IsBusy() || s.IsTryAgain()) return DiskFull(s);
  if (s.IsIOError() && s.ToString().find("No space") != std::string::npos) return DiskFull(s);
  return Status::IOError("log write failed; writes stopped (recovery from a full disk failed): " +
                         s.ToString());
}

}  // namespace dsm

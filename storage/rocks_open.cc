// RocksLogStore: opening and checking a data directory, creating a new one, and loading the
// published state (storage/rocks_log_store.h).
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "common/ids.h"
#include "storage/rocks_format_upgrade.h"
#include "storage/rocks_internal.h"
#include "storage/rocks_consumer_state.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"

namespace dsm {
namespace {

namespace fs = std::filesystem;
using rocks::Be64;
using rocks::DirName;
using rocks::FromRocks;
using rocks::kDamagedHint;
using rocks::ToSlice;
using rocks::ToView;

const char* const kFamilyNames[] = {schema::kDefaultFamily, schema::kLogFamily,
                                    schema::kMsgIdFamily,   schema::kOriginFamily,
                                    schema::kMetaFamily,    schema::kInboxFamily,
                                    schema::kConsumersFamily};


constexpr int kBloomBitsPerKey = 10;
// The msg_id memtables' Bloom filter, as a share of their size (about 20 bits a key for
// 100-byte messages).
constexpr double kMsgIdMemtableBloomRatio = 0.05;
// Table blocks: larger than RocksDB's 4 KiB so that compression finds more to share (the
// repeated origin, sender and recipient of neighbouring records) and index blocks stay small.
constexpr size_t kTableBlockBytes = 16 << 10;
constexpr int kCacheShardBits = 4;
// The memtables' share of the memory budget (the WriteBufferManager's limit): 1/kMemtableShare.
constexpr uint64_t kMemtableShare = 2;
// The families that receive a key per message.
const char* const kBulkFamilies[] = {schema::kLogFamily, schema::kMsgIdFamily,
                                     schema::kOriginFamily, schema::kInboxFamily};

bool IsDsmFamily(const std::string& name) {
  for (const char* f : kFamilyNames) {
    if (name == f) return true;
  }
  return false;
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

// The memory budget (RocksLogStoreOptions::memory_budget_bytes): a block cache of the whole
// budget, and a WriteBufferManager that charges every memtable to that cache (the cached blocks
// give way to them) and flushes the largest memtable once memtables take half the budget.
struct MemoryBudget {
  std::shared_ptr<rocksdb::Cache> cache;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffers;
  size_t memtable_bytes = 0;  // write_buffer_size of a family that gets a key per message
  uint64_t wal_bytes = 0;     // max_total_wal_size
};

MemoryBudget MakeMemoryBudget(uint64_t budget_bytes) {
  MemoryBudget m;
  const size_t budget = static_cast<size_t>(budget_bytes);
  // 16 shards: each shard evicts on its own, so a shard must stay large next to a filter or
  // index partition and the memtables' 256 KiB reservations.
  m.cache = rocksdb::NewLRUCache(budget, kCacheShardBits);
  m.write_buffers = std::make_shared<rocksdb::WriteBufferManager>(
      static_cast<size_t>(budget_bytes / kMemtableShare), m.cache);
  // The four bulk families, each with up to two memtables, fit in the memtables' share.
  m.memtable_bytes = static_cast<size_t>(budget_bytes / kMemtableShare / 8);
  m.wal_bytes = budget_bytes / 4;
  return m;
}

rocksdb::DBOptions MakeDbOptions(const RocksLogStoreOptions& options, const MemoryBudget& memory,
                                 bool is_new) {
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
  o.write_buffer_manager = memory.write_buffers;
  // A log file is deleted once every family has flushed what it holds, and the meta family,
  // written by every batch but a few bytes at a time, would keep them all: past this many bytes
  // of logs the families holding the oldest one are flushed.
  o.max_total_wal_size = memory.wal_bytes;
  // No space is reserved ahead of the writes (a new log file would take 1.1 x a memtable at
  // once): the free-space reserve (min_free_bytes) then measures what the files really hold.
  o.allow_fallocate = false;
  return o;
}

bool IsBulkFamily(std::string_view name) {
  for (const char* f : kBulkFamilies) {
    if (name == f) return true;
  }
  return false;
}

rocksdb::ColumnFamilyOptions MakeFamilyOptions(const std::string& name,
                                               const MemoryBudget& memory,
                                               const rocksdb::CompactionFilter* msgid_filter) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = memory.cache;
  table.block_size = kTableBlockBytes;
  // Index and filter blocks live in the block cache, within the budget, instead of beside it in
  // every open table (where they would grow with the log). They are partitioned into blocks of
  // the table block size: a whole filter of a large table file (megabytes) would be evicted by
  // the next few blocks read and read again by the next lookup. The partitions' top-level
  // indexes, and L0's blocks, stay pinned: every read consults them.
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_top_level_index_and_filter = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.index_type = rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
  table.metadata_block_size = kTableBlockBytes;
  if (name == schema::kMsgIdFamily) {
    // Most msg_id lookups are for new ids: a filter answers them without reading blocks.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
    table.partition_filters = true;
    o.compaction_filter = msgid_filter;
    // Every write looks its msg_ids up, and most are new: a filter over the memtable answers
    // those without searching its skip list.
    o.memtable_whole_key_filtering = true;
    o.memtable_prefix_bloom_size_ratio = kMsgIdMemtableBloomRatio;
  }
  // No memtable_insert_with_hint_prefix_extractor (an insert that starts from where the last one
  // of its prefix went, which would suit the log and origin families): RocksDB 7.8 keeps one
  // hint per prefix for a memtable's keys and its range deletions alike, and a retention trim's
  // DeleteRange then walks the other skip list from a node of the first.
  o.write_buffer_size = IsBulkFamily(name) ? memory.memtable_bytes : size_t{4} << 20;
  // Compression where it pays: none in L0 (flushed, soon rewritten), LZ4 in the levels between,
  // zstd in the bottommost level, where dynamic level sizes keep about 90% of the data. Tables
  // written with other settings stay readable: each block records its own compression.
  o.level_compaction_dynamic_level_bytes = true;
  o.compression_per_level.assign(static_cast<size_t>(o.num_levels), rocksdb::kLZ4Compression);
  o.compression_per_level[0] = rocksdb::kNoCompression;
  o.bottommost_compression = rocksdb::kZSTD;
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

}  // namespace

Result<std::unique_ptr<RocksLogStore>> RocksLogStore::Open(const RocksLogStoreOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) return Status::InvalidArgument("data directory path is empty");
  if (options.node_id.empty() || options.node_id.find('\0') != std::string::npos) {
    return Status::InvalidArgument("invalid node id '" + options.node_id + "'");
  }
  if (options.memory_budget_bytes < kMinMemoryBudgetBytes) {
    return Status::InvalidArgument("memory budget of " +
                                   std::to_string(options.memory_budget_bytes >> 20) +
                                   " MiB is below the minimum of " +
                                   std::to_string(kMinMemoryBudgetBytes >> 20) + " MiB");
  }
  bool is_new = false;
  if (Status s = PrepareDirectory(path, &is_new); !s.ok()) return s;

  const MemoryBudget memory = MakeMemoryBudget(options.memory_budget_bytes);
  const rocksdb::DBOptions db_options = MakeDbOptions(options, memory, is_new);
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

  auto expiry = std::make_shared<MsgIdExpiry>();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const std::string& name : names) {
    descriptors.emplace_back(name, MakeFamilyOptions(name, memory, expiry.get()));
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
      rocksdb::Status s =
          raw->CreateColumnFamily(MakeFamilyOptions(name, memory, expiry.get()), name, &h);
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
      if ((version == 1 && std::string_view(name) == schema::kInboxFamily) ||
          (version <= 2 && std::string_view(name) == schema::kConsumersFamily)) {
        // Introduced by version 2 (filled by the upgrade below) or 3 (empty until a consumer is
        // created): created here.
        rocksdb::ColumnFamilyHandle* h = nullptr;
        rocksdb::Status cs =
            raw->CreateColumnFamily(MakeFamilyOptions(name, memory, expiry.get()), name, &h);
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
    if (version <= 2) {
      s = UpgradeFromVersion2(raw, meta, options);
      if (!s.ok()) return s;
    }
  }

  Families families{open.Family(schema::kLogFamily), open.Family(schema::kMsgIdFamily),
                    open.Family(schema::kOriginFamily), open.Family(schema::kMetaFamily),
                    open.Family(schema::kInboxFamily), open.Family(schema::kConsumersFamily)};
  std::unique_ptr<RocksLogStore> store(
      new RocksLogStore(options, expiry, std::move(open.db), std::move(open.handles), families));
  store->incarnation_ = std::move(incarnation);
  store->stream_id_ = store->node_id_ + "@" + store->incarnation_;
  if (Status s = store->Recover(); !s.ok()) return s;
  store->consumer_state_ = std::make_unique<RocksConsumerState>(
      store->db_.get(), store->cf_.consumers, options.sync);
  return store;
}

RocksLogStore::RocksLogStore(RocksLogStoreOptions options,
                             std::shared_ptr<MsgIdExpiry> msgid_expiry,
                             std::unique_ptr<rocksdb::DB> db,
                             std::vector<rocksdb::ColumnFamilyHandle*> handles, Families families)
    : options_(std::move(options)),
      msgid_expiry_(std::move(msgid_expiry)),
      node_id_(options_.node_id),
      db_(std::move(db)),
      handles_(std::move(handles)),
      cf_(families) {
  lookups_.find_msg_id = [this](std::string_view msg_id) -> Result<std::optional<uint64_t>> {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_.msgid, ToSlice(msg_id), &value);
    return MsgIdSeq(msg_id, s, value);
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
  consumer_state_.reset();  // writes what is queued
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

ConsumerStateStore* RocksLogStore::consumer_state() const { return consumer_state_.get(); }

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
  s = scan_prefix(
      schema::kPullCursorPrefix,
      [&](std::string_view peer, std::string_view value) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        PullCursor c;
        if (!schema::DecodePullCursor(value, &c)) return false;
        pull_cursors_.emplace(std::string(peer), std::move(c));
        return true;
      });
  if (!s.ok()) return s;
  s = scan_prefix(
      schema::kTrimmedPrefix,
      [&](std::string_view origin, std::string_view value) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        uint64_t v = 0;
        if (!schema::DecodeSeqValue(value, &v)) return false;
        trimmed_.emplace(std::string(origin), v);
        return true;
      });
  if (!s.ok()) return s;
  // Retention's single keys: the first seq not trimmed, the msg_ids forgotten.
  const std::pair<std::string_view, uint64_t*> bounds[] = {
      {schema::kFirstSeqKey, &first_seq_}, {schema::kDedupHeadKey, nullptr}};
  for (const auto& [key, out] : bounds) {
    Status rs;
    const std::string value = ReadMeta(db_.get(), cf_.meta, key, &rs);
    if (rs.code() == Code::kNotFound) continue;
    if (!rs.ok()) return rs;
    uint64_t v = 0;
    if (!schema::DecodeSeqValue(value, &v)) {
      return Status::Corruption(DirName(options_.path) + ": malformed meta entry '" +
                                std::string(key) + "'");
    }
    if (out != nullptr) {
      *out = v;
    } else {
      msgid_expiry_->head.store(v, std::memory_order_release);
    }
  }
  // Every record may have been trimmed: seqs still go on after the last one ever written.
  if (first_seq_ == 0) return Status::Corruption(DirName(options_.path) + ": first_seq is 0");
  last_seq_ = std::max(last_seq_, first_seq_ - 1);
  return Status::Ok();
}

StoreMemory RocksLogStore::Memory() const {
  StoreMemory m;
  m.budget_bytes = options_.memory_budget_bytes;
  db_->GetIntProperty(cf_.log, rocksdb::DB::Properties::kBlockCacheCapacity,
                      &m.block_cache_capacity);
  db_->GetIntProperty(cf_.log, rocksdb::DB::Properties::kBlockCacheUsage, &m.block_cache_usage);
  db_->GetIntProperty(cf_.log, rocksdb::DB::Properties::kBlockCachePinnedUsage,
                      &m.block_cache_pinned);
  db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kEstimateTableReadersMem,
                                &m.table_readers_bytes);
  db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kSizeAllMemTables, &m.memtable_bytes);
  const std::shared_ptr<rocksdb::WriteBufferManager>& wbm = db_->GetDBOptions().write_buffer_manager;
  if (wbm != nullptr) m.write_buffer_limit = wbm->buffer_size();
  return m;
}

Status RocksLogStore::CompactAll() {
  if (rocksdb::Status s = db_->Flush(rocksdb::FlushOptions(), handles_); !s.ok()) {
    return FromRocks(s, "flush of " + DirName(options_.path));
  }
  rocksdb::CompactRangeOptions o;
  o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    if (rocksdb::Status s = db_->CompactRange(o, h, nullptr, nullptr); !s.ok()) {
      return FromRocks(s, "compaction of " + h->GetName() + " in " + DirName(options_.path));
    }
  }
  return Status::Ok();
}

}  // namespace dsm

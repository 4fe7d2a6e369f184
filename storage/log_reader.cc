#include "storage/log_reader.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <utility>

#include "common/encoding.h"
#include "storage/record.h"
#include "storage/schema.h"

namespace dsm {
namespace {

namespace fs = std::filesystem;

constexpr LogFamily kAllFamilies[] = {LogFamily::kDefault, LogFamily::kLog,  LogFamily::kMsgId,
                                      LogFamily::kOrigin,  LogFamily::kMeta, LogFamily::kInbox,
                                      LogFamily::kConsumers};

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

std::string DirName(const std::string& path) { return "data directory " + path; }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(msg));
  return Status::IOError(std::move(msg));
}

// A read-only view must not write RocksDB's info log into the data directory.
class DiscardLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ValueSizeProblem(std::string_view value) {
  return "malformed value (" + std::to_string(value.size()) + " bytes, expected 8)";
}

// Checks that `path` is a directory holding a RocksDB database.
Status CheckDirectory(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return Status::IOError("cannot access " + DirName(path) + ": " + ec.message());
    }
    return Status::NotFound(DirName(path) + " does not exist");
  }
  if (!fs::is_directory(st)) return Status::InvalidArgument(DirName(path) + " is not a directory");
  if (fs::exists(fs::path(path) / "CURRENT", ec)) return Status::Ok();
  fs::directory_iterator it(path, ec);
  if (ec) return Status::IOError("cannot list " + DirName(path) + ": " + ec.message());
  if (it == fs::directory_iterator()) {
    return Status::InvalidArgument(DirName(path) + " is empty: it holds no dsm database yet");
  }
  return Status::InvalidArgument(DirName(path) +
                                 " is not a dsm database (it holds no RocksDB database)");
}

// The pid of another process holding the database's LOCK (RocksDB takes an fcntl write lock on
// it while the database is open), or 0 when nobody else holds it.
pid_t LockHolder(const std::string& path) {
  const std::string lock_path = (fs::path(path) / "LOCK").string();
  const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  pid_t holder = 0;
  if (::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) holder = fl.l_pid;
  ::close(fd);
  return holder;
}

Status OpenError(const std::string& path, const rocksdb::Status& s) {
  if (s.IsCorruption()) return Status::Corruption(DirName(path) + " is damaged: " + s.ToString());
  return Status::IOError("cannot open " + DirName(path) + ": " + s.ToString());
}

}  // namespace

const char* LogFamilyName(LogFamily family) {
  switch (family) {
    case LogFamily::kDefault:
      return schema::kDefaultFamily;
    case LogFamily::kLog:
      return schema::kLogFamily;
    case LogFamily::kMsgId:
      return schema::kMsgIdFamily;
    case LogFamily::kOrigin:
      return schema::kOriginFamily;
    case LogFamily::kMeta:
      return schema::kMetaFamily;
    case LogFamily::kInbox:
      return schema::kInboxFamily;
    case LogFamily::kConsumers:
      return schema::kConsumersFamily;
  }
  return "?";
}

std::string LogMetadata::stream_id() const {
  if (!node_id || !incarnation) return std::string();
  return *node_id + "@" + *incarnation;
}

uint64_t LogMetadata::TrimmedThrough(const std::string& origin) const {
  auto it = trimmed_through.find(origin);
  return it == trimmed_through.end() ? 0 : it->second;
}

Result<std::unique_ptr<LogReader>> LogReader::Open(const LogReaderOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) return Status::InvalidArgument("no data directory given");
  if (Status s = CheckDirectory(path); !s.ok()) return s;

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = false;
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  std::vector<std::string> names;
  if (rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path, &names); !s.ok()) {
    if (s.IsCorruption()) {
      return Status::Corruption(DirName(path) + " holds an unreadable database: " + s.ToString());
    }
    return Status::IOError("cannot read " + DirName(path) + ": " + s.ToString());
  }
  for (const std::string& name : names) {
    bool known = false;
    for (LogFamily f : kAllFamilies) known = known || name == LogFamilyName(f);
    if (!known) {
      return Status::InvalidArgument(DirName(path) +
                                     " holds a database that is not a dsm database (column "
                                     "family '" +
                                     name + "')");
    }
  }
  // The families to open, in LogFamily order; a missing kInbox leaves a gap.
  rocksdb::ColumnFamilyOptions family_options;
  {
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    // Reads the msg_id index's Bloom filters (written by the node): a lookup then reads the
    // one table file that holds the key instead of every L0 file's blocks.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    family_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  std::vector<LogFamily> opened;
  for (LogFamily f : kAllFamilies) {
    const std::string name = LogFamilyName(f);
    bool present = false;
    for (const std::string& n : names) present = present || n == name;
    // A directory of format version 1 (no recipient index) or 2 (no consumers).
    if (!present && (f == LogFamily::kInbox || f == LogFamily::kConsumers)) continue;
    if (!present) {
      return Status::InvalidArgument(DirName(path) +
                                     " holds a database that is not a dsm database (no column "
                                     "family '" +
                                     name + "')");
    }
    descriptors.emplace_back(name, family_options);
    opened.push_back(f);
  }

  LogReaderOptions opts = options;
  bool remove_secondary_path = false;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status os;
  if (opts.mode == LogReaderOptions::Mode::kReadOnly) {
    if (pid_t holder = LockHolder(path); holder != 0) {
      return Status::Unavailable(DirName(path) + " is in use by a running process (pid " +
                                 std::to_string(holder) + " holds its lock)");
    }
    db_options.info_log = std::make_shared<DiscardLogger>();
    os = rocksdb::DB::OpenForReadOnly(db_options, path, descriptors, &handles, &raw);
  } else {
    if (opts.secondary_path.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "dsm-log-reader-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        return Status::IOError("cannot create a scratch directory for the secondary instance: " +
                               std::string(std::strerror(errno)));
      }
      opts.secondary_path = tmpl;
      remove_secondary_path = true;
    }
    db_options.max_open_files = -1;  // keeps files the primary deletes readable
    os = rocksdb::DB::OpenAsSecondary(db_options, path, opts.secondary_path, descriptors, &handles,
                                      &raw);
    if (os.ok()) os = raw->TryCatchUpWithPrimary();
  }
  if (!os.ok()) {
    if (raw != nullptr) {
      for (rocksdb::ColumnFamilyHandle* h : handles) {
        raw->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      }
      delete raw;
    }
    if (remove_secondary_path) {
      std::error_code ec;
      fs::remove_all(opts.secondary_path, ec);
    }
    return OpenError(path, os);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> by_family(std::size(kAllFamilies), nullptr);
  for (size_t i = 0; i < opened.size() && i < handles.size(); ++i) {
    by_family[static_cast<size_t>(opened[i])] = handles[i];
  }
  std::unique_ptr<LogReader> reader(new LogReader(std::move(opts),
                                                  std::unique_ptr<rocksdb::DB>(raw),
                                                  std::move(by_family), remove_secondary_path));

  Result<std::optional<std::string>> version =
      reader->GetRaw(LogFamily::kMeta, schema::kFormatVersionKey);
  if (!version.ok()) return version.status();
  uint64_t v = 0;
  if (version->has_value() && schema::DecodeSeqValue(**version, &v) && v > schema::kFormatVersion) {
    return Status::InvalidArgument(DirName(path) + " has format version " + std::to_string(v) +
                                   ", newer than this build reads (" +
                                   std::to_string(schema::kFormatVersion) + ")");
  }
  return reader;
}

LogReader::LogReader(LogReaderOptions options, std::unique_ptr<rocksdb::DB> db,
                     std::vector<rocksdb::ColumnFamilyHandle*> handles, bool remove_secondary_path)
    : options_(std::move(options)),
      db_(std::move(db)),
      handles_(std::move(handles)),
      remove_secondary_path_(remove_secondary_path) {}

LogReader::~LogReader() {
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  db_->Close().PermitUncheckedError();
  db_.reset();
  if (remove_secondary_path_) {
    std::error_code ec;
    fs::remove_all(options_.secondary_path, ec);
  }
}

rocksdb::ColumnFamilyHandle* LogReader::Handle(LogFamily family) const {
  return handles_[static_cast<size_t>(family)];
}

bool LogReader::HasFamily(LogFamily family) const { return Handle(family) != nullptr; }

Status LogReader::CatchUp() {
  if (options_.mode != LogReaderOptions::Mode::kSecondary) return Status::Ok();
  rocksdb::Status s = db_->TryCatchUpWithPrimary();
  if (!s.ok()) return FromRocks(s, "catch-up with " + DirName(options_.path));
  return Status::Ok();
}

Result<LogMetadata> LogReader::ReadMetadata() const {
  LogMetadata meta;
  std::unique_ptr<RawCursor> it = NewRawCursor(LogFamily::kMeta);
  auto problem = [&meta](std::string_view key, std::string text) {
    meta.problems.push_back(MetaProblem{std::string(key), std::move(text)});
  };
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view key = it->key();
    const std::string_view value = it->value();
    uint64_t v = 0;
    if (key == schema::kFormatVersionKey) {
      if (!schema::DecodeSeqValue(value, &v)) {
        problem(key, ValueSizeProblem(value));
      } else if (v == 0) {
        problem(key, "format version 0 is not valid");
      } else {
        meta.format_version = v;
      }
    } else if (key == schema::kNodeIdKey) {
      if (value.empty() || value.find('\0') != std::string_view::npos) {
        problem(key, "empty or malformed node id");
      } else {
        meta.node_id = std::string(value);
      }
    } else if (key == schema::kIncarnationKey) {
      if (value.size() != schema::kIncarnationHexChars || !IsLowerHex(value)) {
        problem(key,
                "malformed incarnation (expected " + std::to_string(schema::kIncarnationHexChars) +
                    " lowercase hex digits, found " + std::to_string(value.size()) + " bytes)");
      } else {
        meta.incarnation = std::string(value);
      }
    } else if (key.starts_with(schema::kHighWaterPrefix)) {
      const std::string_view origin = key.substr(schema::kHighWaterPrefix.size());
      if (origin.empty()) {
        problem(key, "high water without an origin");
      } else if (!schema::DecodeSeqValue(value, &v)) {
        problem(key, ValueSizeProblem(value));
      } else {
        meta.high_waters.emplace(std::string(origin), v);
      }
    } else if (key.starts_with(schema::kPushCursorPrefix)) {
      const std::string_view peer = key.substr(schema::kPushCursorPrefix.size());
      PushCursor cursor;
      if (!schema::DecodePushCursor(value, &cursor)) {
        problem(key, "malformed push cursor (" + std::to_string(value.size()) +
                         " bytes, expected at least 8)");
      } else {
        meta.push_cursors.emplace(std::string(peer), std::move(cursor));
      }
    } else if (key.starts_with(schema::kPullCursorPrefix)) {
      const std::string_view peer = key.substr(schema::kPullCursorPrefix.size());
      PullCursor cursor;
      if (!schema::DecodePullCursor(value, &cursor)) {
        problem(key, "malformed pull cursor (" + std::to_string(value.size()) + " bytes)");
      } else {
        meta.pull_cursors.emplace(std::string(peer), std::move(cursor));
      }
    } else if (key == schema::kFirstSeqKey) {
      if (!schema::DecodeSeqValue(value, &v)) {
        problem(key, ValueSizeProblem(value));
      } else if (v == 0) {
        problem(key, "first seq 0 is not valid");
      } else {
        meta.first_seq_kept = v;
      }
    } else if (key == schema::kDedupHeadKey) {
      if (!schema::DecodeSeqValue(value, &v)) {
        problem(key, ValueSizeProblem(value));
      } else {
        meta.dedup_head = v;
      }
    } else if (key.starts_with(schema::kTrimmedPrefix)) {
      const std::string_view origin = key.substr(schema::kTrimmedPrefix.size());
      if (origin.empty() || origin.find('\0') != std::string_view::npos) {
        problem(key, "trim mark without a valid origin");
      } else if (!schema::DecodeSeqValue(value, &v)) {
        problem(key, ValueSizeProblem(value));
      } else {
        meta.trimmed_through.emplace(std::string(origin), v);
      }
    } else if (key.starts_with(schema::kTrimMarkPrefix)) {
      double ts = 0;
      if (!schema::ParseTrimMarkKey(key, &v) || v == 0) {
        problem(key, "malformed trim step key (expected an 8-byte seq other than 0)");
      } else if (!schema::DecodeTrimMarkValue(value, &ts) || !std::isfinite(ts)) {
        problem(key, "malformed trim step value (" + std::to_string(value.size()) +
                         " bytes, expected the 8 bytes of a finite ts)");
      } else {
        meta.trim_marks.emplace(v, ts);
      }
    } else {
      problem(key, "unknown meta key");
    }
  }
  // Damage stops a scan: what was read is kept, the rest is reported as unreadable.
  auto unreadable = [&meta](LogFamily family, const Status& s) {
    if (s.code() != Code::kCorruption) return false;
    meta.unreadable.push_back(LogMetadata::Unreadable{family, s.message()});
    return true;
  };
  if (Status s = it->status(); !s.ok()) {
    if (!unreadable(LogFamily::kMeta, s)) return s;
  } else {
    // A required key that is absent (and not already reported as malformed).
    auto require = [&](std::string_view key, bool present) {
      if (present) return;
      for (const MetaProblem& p : meta.problems) {
        if (p.key == key) return;
      }
      problem(key, "missing");
    };
    require(schema::kFormatVersionKey, meta.format_version.has_value());
    require(schema::kNodeIdKey, meta.node_id.has_value());
    require(schema::kIncarnationKey, meta.incarnation.has_value());
  }

  std::unique_ptr<RawCursor> log = NewRawCursor(LogFamily::kLog);
  for (log->SeekToFirst(); log->Valid(); log->Next()) {
    ++meta.message_count;
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(log->key(), &seq)) continue;
    if (meta.first_seq == 0) meta.first_seq = seq;
    meta.last_seq = seq;
  }
  if (Status s = log->status(); !s.ok() && !unreadable(LogFamily::kLog, s)) return s;
  return meta;
}

Status LogReader::ScanLog(uint64_t from, uint64_t to,
                          const std::function<bool(const Message&)>& visit) const {
  if (from > to) return Status::Ok();
  std::unique_ptr<RawCursor> it = NewRawCursor(LogFamily::kLog);
  for (it->Seek(schema::LogKey(from)); it->Valid(); it->Next()) {
    uint64_t seq = 0;
    if (!schema::DecodeSeqValue(it->key(), &seq)) {
      return Status::Corruption("malformed log key of " + std::to_string(it->key().size()) +
                                " bytes");
    }
    if (seq > to) break;
    Result<Message> m = DecodeRecord(seq, it->value());
    if (!m.ok()) return m.status();
    if (!visit(*m)) return Status::Ok();
  }
  return it->status();
}

Result<std::optional<Message>> LogReader::Get(uint64_t seq) const {
  Result<std::optional<std::string>> raw = GetRaw(LogFamily::kLog, schema::LogKey(seq));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<Message>();
  Result<Message> m = DecodeRecord(seq, **raw);
  if (!m.ok()) return m.status();
  return std::optional<Message>(std::move(*m));
}

Result<std::optional<uint64_t>> LogReader::LookupMsgId(std::string_view msg_id) const {
  Result<std::optional<std::string>> raw = GetRaw(LogFamily::kMsgId, msg_id);
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<uint64_t>();
  uint64_t seq = 0;
  if (!schema::DecodeSeqValue(**raw, &seq)) {
    return Status::Corruption("malformed msg_id index entry for '" + std::string(msg_id) + "'");
  }
  return std::optional<uint64_t>(seq);
}

Result<std::optional<uint64_t>> LogReader::LookupOrigin(std::string_view origin,
                                                        uint64_t origin_seq) const {
  Result<std::optional<std::string>> raw =
      GetRaw(LogFamily::kOrigin, schema::OriginKey(origin, origin_seq));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<uint64_t>();
  uint64_t seq = 0;
  if (!schema::DecodeSeqValue(**raw, &seq)) {
    return Status::Corruption("malformed origin index entry for " + std::string(origin) + "#" +
                              std::to_string(origin_seq));
  }
  return std::optional<uint64_t>(seq);
}

Result<std::optional<std::string>> LogReader::GetRaw(LogFamily family, std::string_view key) const {
  if (!HasFamily(family)) return std::optional<std::string>();
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Handle(family), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, std::string("read of ") + LogFamilyName(family));
  return std::optional<std::string>(std::move(value));
}

std::unique_ptr<LogReader::RawCursor> LogReader::NewRawCursor(LogFamily family) const {
  std::unique_ptr<rocksdb::Iterator> it;
  if (HasFamily(family)) {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;  // tools scan once; keep the cache for point lookups
    it.reset(db_->NewIterator(ro, Handle(family)));
  }
  return std::unique_ptr<RawCursor>(new RawCursor(std::move(it), family));
}

LogReader::RawCursor::RawCursor(std::unique_ptr<rocksdb::Iterator> it, LogFamily family)
    : it_(std::move(it)), family_(family) {}

LogReader::RawCursor::~RawCursor() = default;

void LogReader::RawCursor::SeekToFirst() {
  if (it_ != nullptr) it_->SeekToFirst();
}
void LogReader::RawCursor::Seek(std::string_view key) {
  if (it_ != nullptr) it_->Seek(ToSlice(key));
}
bool LogReader::RawCursor::Valid() const { return it_ != nullptr && it_->Valid(); }
void LogReader::RawCursor::Next() { it_->Next(); }
std::string_view LogReader::RawCursor::key() const { return ToView(it_->key()); }
std::string_view LogReader::RawCursor::value() const { return ToView(it_->value()); }

Status LogReader::RawCursor::status() const {
  if (it_ == nullptr || it_->status().ok()) return Status::Ok();
  return FromRocks(it_->status(), std::string("scan of ") + LogFamilyName(family_));
}

}  // namespace dsm

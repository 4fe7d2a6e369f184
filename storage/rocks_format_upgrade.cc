#include "storage/rocks_format_upgrade.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <memory>
#include <string>

#include "storage/record.h"
#include "storage/rocks_internal.h"
#include "storage/schema.h"

namespace dsm {
namespace {

using rocks::Be64;
using rocks::DirName;
using rocks::FromRocks;
using rocks::ToSlice;
using rocks::ToView;

// Records indexed per synced batch when a version-1 directory is upgraded.
constexpr size_t kUpgradeBatchRecords = 10000;

}  // namespace

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
  batch.Put(meta, ToSlice(schema::kFormatVersionKey), Be64(2).slice());
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

Status UpgradeFromVersion2(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta,
                           const RocksLogStoreOptions& options) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s =
      db->Put(wo, meta, ToSlice(schema::kFormatVersionKey), Be64(3).slice());
  if (!s.ok()) return FromRocks(s, "upgrade of " + DirName(options.path));
  if (options.info_log) {
    options.info_log(DirName(options.path) +
                     " upgraded to format version 3 (the \"consumers\" family, empty, for durable "
                     "consumers)");
  }
  return Status::Ok();
}

}  // namespace dsm

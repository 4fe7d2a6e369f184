// The in-place upgrade of an older data directory's format (storage/format.md, "Versions").
// Internal to dsm_storage: called by RocksLogStore::Open.
#pragma once

#include "dsm/status.h"
#include "storage/rocks_log_store.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace dsm {

// Builds the recipient index of a format-version-1 directory from its log, then records version
// 2 in the same synced write as the last index entries. Each batch is synced; an interrupted
// upgrade leaves version 1 and is redone from the start at the next open (it rewrites the same
// keys).
Status UpgradeFromVersion1(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log,
                           rocksdb::ColumnFamilyHandle* inbox, rocksdb::ColumnFamilyHandle* meta,
                           const RocksLogStoreOptions& options);

// Records version 3 in a version-2 directory whose (empty) "consumers" family was just created:
// version 3 only adds that family. An interrupted upgrade leaves version 2 with an empty family,
// which the next open accepts and upgrades again.
Status UpgradeFromVersion2(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta,
                           const RocksLogStoreOptions& options);

}  // namespace dsm

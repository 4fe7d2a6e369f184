// Helpers shared by the files of RocksLogStore (rocks_*.cc): conversions between RocksDB's and
// dsm's types and the wording of errors about a data directory. Internal to dsm_storage: only its
// .cc files include it (RocksDB stays out of the library's public headers).
#pragma once

#include <rocksdb/compaction_filter.h>
#include <rocksdb/slice.h>
#include <rocksdb/status.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "dsm/status.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"

namespace dsm::rocks {

inline rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
inline std::string_view ToView(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

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

inline Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(msg));
  return Status::IOError(std::move(msg));
}

inline std::string DirName(const std::string& path) { return "data directory " + path; }

// Appended to the errors about a damaged data directory.
inline constexpr char kDamagedHint[] =
    " (see docs/operations.md, \"Recovering a damaged or lost node\")";

// The status of a write refused because the disk is full (not sticky: see LeadGroup()).
inline Status DiskFull(const rocksdb::Status& s) {
  return Status::Unavailable(
      "disk full: the node cannot store new messages until space is freed (reads keep working; "
      "writes resume by themselves): " +
      s.ToString());
}

// map[origin], 0 when absent: a stream's high water or trimmed mark.
inline uint64_t PositionOf(const HighWaterMap& map, std::string_view origin) {
  auto it = map.find(origin);
  return it == map.end() ? 0 : it->second;
}

}  // namespace dsm::rocks

namespace dsm {

// The msgid family's compaction filter: drops the entries of seqs at or below `head` (the
// msg_ids that RocksLogStore::ExpireMsgIds forgot), so they stop taking space once their files
// are compacted. Lookups ignore them before that.
class RocksLogStore::MsgIdExpiry final : public rocksdb::CompactionFilter {
 public:
  bool Filter(int /*level*/, const rocksdb::Slice& /*key*/, const rocksdb::Slice& value,
              std::string* /*new_value*/, bool* /*value_changed*/) const override {
    uint64_t seq = 0;
    return schema::DecodeSeqValue(rocks::ToView(value), &seq) && Expired(seq);
  }
  const char* Name() const override { return "dsm.MsgIdExpiry"; }

  bool Expired(uint64_t seq) const { return seq <= head.load(std::memory_order_acquire); }

  std::atomic<uint64_t> head{0};
};

}  // namespace dsm

// Writes a data directory in the format-version-1 layout (storage/format.md, "Version 1"): the
// five column families default, log, msgid, origin and meta, without the recipient index that
// version 2 added. Used to test the in-place upgrade. The layout is written key by key with the
// schema and record functions, as a version-1 build stored it.
//
// Thread-compatible.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "storage/record.h"
#include "storage/schema.h"

namespace dsm::storage_test {

struct V1Directory {
  std::string path;
  std::string node_id = "node1";
  std::string incarnation = "00000000000000a1";
  // Stored in this order at seqs 1, 2, ...; every message needs origin and origin_seq, each
  // origin's positions dense from 1.
  std::vector<Message> messages;
  // Simulates an upgrade interrupted by a crash: the "inbox" family exists and holds the index
  // entries of the first `partial_inbox` records, but the version is still 1.
  bool with_partial_inbox = false;
  size_t partial_inbox = 0;
};

inline Status WriteV1Directory(const V1Directory& d) {
  std::vector<std::string> names = {"default", "log", "msgid", "origin", "meta"};
  if (d.with_partial_inbox) names.push_back("inbox");
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, d.path, descriptors, &handles, &raw);
  if (!s.ok()) return Status::IOError(s.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);

  rocksdb::WriteBatch batch;
  std::map<std::string, uint64_t> high_waters;
  uint64_t seq = 0;
  for (const Message& m : d.messages) {
    ++seq;
    batch.Put(handles[1], schema::LogKey(seq), EncodeRecord(m));
    batch.Put(handles[2], m.msg_id, BigEndian64(seq));
    batch.Put(handles[3], schema::OriginKey(m.origin, m.origin_seq), BigEndian64(seq));
    high_waters[m.origin] = m.origin_seq;
    if (d.with_partial_inbox && seq <= d.partial_inbox) {
      batch.Put(handles[5], schema::InboxKey(m.recipient, seq), "");
    }
  }
  for (const auto& [origin, hw] : high_waters) {
    batch.Put(handles[4], schema::HighWaterKey(origin), BigEndian64(hw));
  }
  batch.Put(handles[4], std::string(schema::kFormatVersionKey), BigEndian64(1));
  batch.Put(handles[4], std::string(schema::kNodeIdKey), d.node_id);
  batch.Put(handles[4], std::string(schema::kIncarnationKey), d.incarnation);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db->Write(wo, &batch);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  rocksdb::Status closed = db->Close();
  if (!s.ok()) return Status::IOError(s.ToString());
  if (!closed.ok()) return Status::IOError(closed.ToString());
  return Status::Ok();
}

}  // namespace dsm::storage_test

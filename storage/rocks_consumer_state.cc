#include "storage/rocks_consumer_state.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <map>
#include <memory>
#include <utility>

#include "storage/consumer_schema.h"
#include "storage/rocks_internal.h"
#include "storage/schema.h"

namespace dsm {
namespace {

using rocks::Be64;
using rocks::FromRocks;
using rocks::ToSlice;
using rocks::ToView;

// Adds one change to `batch` (storage/consumer_schema.h).
void AddChange(rocksdb::WriteBatch* batch, rocksdb::ColumnFamilyHandle* cf,
               const ConsumerChange& c) {
  const std::string prefix = schema::ConsumerPrefix(c.name);
  if (c.erase) {
    batch->DeleteRange(cf, prefix, prefix + '\xff').PermitUncheckedError();
  }
  if (c.create) {
    batch->Put(cf, schema::ConsumerKey(c.name, schema::kConsumerDefinitionTag),
               schema::EncodeConsumerDefinition(*c.create)).PermitUncheckedError();
    batch->Put(cf, schema::ConsumerKey(c.name, schema::kConsumerFloorTag),
               Be64(c.create->floor).slice()).PermitUncheckedError();
    batch->Put(cf, schema::ConsumerKey(c.name, schema::kConsumerSessionTag),
               Be64(c.create->session).slice()).PermitUncheckedError();
  }
  uint64_t floor = 0;
  if (c.floor) {
    floor = *c.floor;
    batch->Put(cf, schema::ConsumerKey(c.name, schema::kConsumerFloorTag), Be64(floor).slice())
        .PermitUncheckedError();
    batch->DeleteRange(cf, schema::ConsumerSeqKey(c.name, schema::kConsumerAckTag, 0),
                       floor == UINT64_MAX
                           ? schema::ConsumerKey(c.name, schema::kConsumerAckTag + 1)
                           : schema::ConsumerSeqKey(c.name, schema::kConsumerAckTag, floor + 1))
        .PermitUncheckedError();
  }
  if (c.session) {
    batch->Put(cf, schema::ConsumerKey(c.name, schema::kConsumerSessionTag),
               Be64(*c.session).slice()).PermitUncheckedError();
  }
  for (uint64_t seq : c.acks) {
    if (seq <= floor) continue;
    batch->Put(cf, schema::ConsumerSeqKey(c.name, schema::kConsumerAckTag, seq), rocksdb::Slice())
        .PermitUncheckedError();
  }
  for (const DeadLetter& d : c.dead) {
    batch->Put(cf, schema::ConsumerSeqKey(c.name, schema::kConsumerDeadTag, d.seq),
               schema::EncodeDeadLetter(d)).PermitUncheckedError();
  }
}

}  // namespace

RocksConsumerState::RocksConsumerState(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family,
                                       bool sync)
    : db_(db), family_(family), sync_(sync) {
  thread_ = std::thread([this] { Run(); });
}

RocksConsumerState::~RocksConsumerState() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    cv_.NotifyAll();
  }
  thread_.join();
}

Result<std::vector<StoredConsumer>> RocksConsumerState::Load() const {
  std::map<std::string, StoredConsumer, std::less<>> found;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), family_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    schema::ConsumerKeyParts k;
    const std::string_view key = ToView(it->key());
    const std::string_view value = ToView(it->value());
    if (!schema::ParseConsumerKey(key, &k)) {
      return Status::Corruption("malformed key in the consumers family");
    }
    auto pos = found.find(k.name);
    if (pos == found.end()) pos = found.emplace(std::string(k.name), StoredConsumer{}).first;
    StoredConsumer& c = pos->second;
    c.name = pos->first;
    const std::string where = "consumer '" + c.name + "': ";
    switch (k.tag) {
      case schema::kConsumerDefinitionTag:
        if (Status s = schema::DecodeConsumerDefinition(value, &c); !s.ok()) {
          return Status::Corruption(where + s.message());
        }
        break;
      case schema::kConsumerFloorTag:
        if (!schema::DecodeSeqValue(value, &c.floor)) {
          return Status::Corruption(where + "malformed floor");
        }
        break;
      case schema::kConsumerSessionTag:
        if (!schema::DecodeSeqValue(value, &c.session)) {
          return Status::Corruption(where + "malformed session");
        }
        break;
      case schema::kConsumerAckTag:
        if (!value.empty()) return Status::Corruption(where + "malformed acknowledgement");
        c.acked.push_back(k.seq);
        break;
      case schema::kConsumerDeadTag: {
        DeadLetter d;
        d.seq = k.seq;
        if (!schema::DecodeDeadLetter(value, &d)) {
          return Status::Corruption(where + "malformed dead letter");
        }
        c.dead.push_back(d);
        break;
      }
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read of the consumers family");
  std::vector<StoredConsumer> out;
  for (auto& [name, c] : found) {
    if (c.uid.empty()) return Status::Corruption("consumer '" + name + "' has no definition");
    out.push_back(std::move(c));
  }
  return out;
}

void RocksConsumerState::Commit(std::vector<ConsumerChange> changes, CommitDone done) {
  Status refused;
  {
    MutexLock lock(&mu_);
    if (!error_.ok()) {
      refused = error_;
    } else if (stopping_) {
      refused = Status::Unavailable("shutting down");
    } else {
      queue_.push_back(Pending{std::move(changes), std::move(done)});
      cv_.NotifyOne();
      return;
    }
  }
  done(refused);
}

uint64_t RocksConsumerState::writes() const {
  MutexLock lock(&mu_);
  return writes_;
}

void RocksConsumerState::Run() {
  MutexLock lock(&mu_);
  for (;;) {
    while (queue_.empty() && !stopping_) cv_.Wait(&mu_);
    if (queue_.empty()) return;  // stopping, nothing left to write
    std::deque<Pending> group;
    group.swap(queue_);
    Status status = error_;
    lock.Unlock();
    if (status.ok()) {
      rocksdb::WriteBatch batch;
      for (const Pending& p : group) {
        for (const ConsumerChange& c : p.changes) AddChange(&batch, family_, c);
      }
      rocksdb::WriteOptions wo;
      wo.sync = sync_;
      rocksdb::Status s = db_->Write(wo, &batch);
      if (!s.ok()) status = FromRocks(s, "write of consumer state");
    }
    lock.Lock();
    if (!status.ok() && error_.ok()) error_ = status;
    ++writes_;
    lock.Unlock();
    for (Pending& p : group) p.done(status);
    lock.Lock();
  }
}

}  // namespace dsm

// RocksLogStore: the write path. Group commit, publishing a durable group, the push cursors, and
// recovery from a full disk (storage/rocks_log_store.h).
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <chrono>
#include <string>
#include <utility>

#include "storage/rocks_internal.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"

namespace dsm {
namespace {

using rocks::Be64;
using rocks::DiskFull;
using rocks::ToSlice;

// How often a store whose disk was full retries (DB::Resume) when writes keep coming.
constexpr auto kResumeInterval = std::chrono::milliseconds(500);

// Total input bytes of a request, for the group commit bounds.
size_t RequestBytes(const WriteRequest& req) {
  size_t bytes = 0;
  for (const Message& m : *req.msgs) {
    bytes += m.msg_id.size() + m.sender.size() + m.recipient.size() + m.payload.size() +
             m.origin.size() + 32;
  }
  return bytes;
}

// Below this many messages a group looks its msg_ids up one Get at a time: a MultiGet costs more
// than a Get for one key, and saves little for a few.
constexpr size_t kPrefetchMinMessages = 64;

// What a failed write of the log answers: Unavailable("disk full: ...") when the disk is full,
// else the IOError that stops writes.
Status WriteFailure(const rocksdb::Status& s) {
  if (s.IsNoSpace()) return DiskFull(s);
  return Status::IOError("log write failed; writes stopped: " + s.ToString());
}

}  // namespace

struct RocksLogStore::Writer {
  // A waiting Append/Apply: `r` lives on the caller's stack.
  explicit Writer(const WriteRequest& r)
      : req(r), bytes(RequestBytes(r)), messages(r.msgs->size()) {}
  // An AppendAsync or ApplyAsync (`kind`): the writer owns the messages.
  Writer(WriteRequest::Kind kind, std::vector<Message> msgs, AppendDone callback)
      : owned(std::move(msgs)),
        req(kind == WriteRequest::Kind::kApply ? WriteRequest::Apply(owned, {}, nullptr)
                                               : WriteRequest::Append(owned)),
        bytes(RequestBytes(req)),
        messages(owned.size()),
        done(std::move(callback)) {}

  // A write of retention's (Maintain): a group of its own.
  struct Maintenance {
    rocksdb::WriteBatch* batch;
    std::function<void()> before;  // under mu_, when the group is led
    std::function<void()> after;   // under mu_, once the batch is durable
  };
  explicit Writer(Maintenance* m)
      : req(WriteRequest::Append(owned)), bytes(0), messages(0), maintenance(m) {}

  std::vector<Message> owned;  // AppendAsync/ApplyAsync only: what req.msgs points at
  WriteRequest req;
  size_t bytes;
  size_t messages;
  // AppendAsync/ApplyAsync only: called with `result` once the group is done.
  AppendDone done;
  Maintenance* maintenance = nullptr;  // Maintain only
  // The members below are guarded by the store's mu_ (an annotation cannot name it here).
  std::optional<Result<std::vector<WriteOutcome>>> result;  // set when its group is done
  // Waiting callers only: notified (under mu_) by the leader of its group when `result` is set,
  // or by the previous leader when this writer reaches the front with nobody leading.
  CondVar cv;
};

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
  return Wait(&w);
}

Status RocksLogStore::Maintain(rocksdb::WriteBatch* batch, std::function<void()> before,
                               std::function<void()> after) {
  Writer::Maintenance m{batch, std::move(before), std::move(after)};
  Writer w(&m);
  return Wait(&w).status();
}

Result<std::vector<WriteOutcome>> RocksLogStore::Wait(Writer* writer) {
  Writer& w = *writer;
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
  WriteAsync(new Writer(WriteRequest::Kind::kAppend, std::move(msgs), std::move(done)));
}

void RocksLogStore::ApplyAsync(std::vector<Message> msgs, AppendDone done) {
  WriteAsync(new Writer(WriteRequest::Kind::kApply, std::move(msgs), std::move(done)));
}

void RocksLogStore::WriteAsync(Writer* w) {
  // `w` is owned by writers_ until its group is done (then by LeadGroup's result).
  MutexLock lock(&mu_);
  writers_.push_back(w);
  // Always the commit thread, even when the store is idle: committing here would hold the
  // caller's thread for the write and its fsync, and an HTTP thread then reads none of its other
  // connections' requests meanwhile (with one HTTP thread no group would ever form). Only a
  // writer that finds the queue empty wakes it: a group being led keeps its writers queued, and
  // LeadGroup hands the lead on when it is done.
  if (writers_.size() == 1) commit_cv_.NotifyOne();
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
                           messages + g->messages > options_.max_group_messages ||
                           g->maintenance != nullptr || group[0]->maintenance != nullptr)) {
      break;
    }
    group.push_back(g);
    bytes += g->bytes;
    messages += g->messages;
  }

  Writer::Maintenance* const maintenance = group[0]->maintenance;
  Status refusal = bg_error_;
  // Retention's writes only remove data: they go on below the free-space reserve.
  if (refusal.ok() && options_.min_free_bytes > 0 && maintenance == nullptr) {
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
  } else if (maintenance != nullptr) {
    if (maintenance->before) maintenance->before();
    mu_.Unlock();
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    const rocksdb::Status s = db_->Write(wo, maintenance->batch);
    mu_.Lock();
    if (s.ok()) {
      if (maintenance->after) maintenance->after();
      group[0]->result.emplace(std::vector<WriteOutcome>());
    } else {
      const Status failed = WriteFailure(s);
      NoteWriteFailure(failed);
      group[0]->result.emplace(failed);
    }
  } else {
    const HighWaterMap high_waters = high_waters_;
    const HighWaterMap trimmed = trimmed_;
    const WritePlanState state{stream_id_, last_seq_, &high_waters, first_seq_, &trimmed};
    mu_.Unlock();
    Status write_status;
    Result<WritePlan> plan = PlanAndWrite(group, state, &write_status);
    mu_.Lock();
    if (!plan.ok()) {
      for (Writer* g : group) g->result.emplace(plan.status());
    } else if (!write_status.ok()) {
      // Nothing of the group was published.
      NoteWriteFailure(write_status);
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
  // Hand the lead on: a waiting caller leads its own group, the commit thread leads asynchronous
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

Result<WritePlan> RocksLogStore::PlanAndWrite(const std::vector<Writer*>& group,
                                              const WritePlanState& state,
                                              Status* write_status) {
  std::vector<const WriteRequest*> requests;
  requests.reserve(group.size());
  for (const Writer* g : group) requests.push_back(&g->req);
  MsgIdsFound found;
  WritePlanLookups batched;
  Result<WritePlan> plan = PlanWrites(requests, state, PrefetchMsgIds(group, &found, &batched));
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
  if (!s.ok()) *write_status = WriteFailure(s);
  return plan;
}

Result<std::optional<uint64_t>> RocksLogStore::MsgIdSeq(std::string_view msg_id,
                                                        const rocksdb::Status& s,
                                                        const rocksdb::Slice& value) const {
  if (s.IsNotFound()) return std::optional<uint64_t>();
  if (!s.ok()) return rocks::FromRocks(s, "msg_id index read");
  uint64_t seq = 0;
  if (!schema::DecodeSeqValue(rocks::ToView(value), &seq)) {
    return Status::Corruption("malformed msg_id index entry for '" + std::string(msg_id) + "'");
  }
  if (msgid_expiry_->Expired(seq)) return std::optional<uint64_t>();  // forgotten
  return std::optional<uint64_t>(seq);
}

const WritePlanLookups& RocksLogStore::PrefetchMsgIds(const std::vector<Writer*>& group,
                                                      MsgIdsFound* found,
                                                      WritePlanLookups* batched) const {
  size_t messages = 0;
  for (const Writer* g : group) messages += g->messages;
  if (messages < kPrefetchMinMessages) return lookups_;
  std::vector<rocksdb::Slice> keys;
  for (const Writer* g : group) {
    for (const Message& m : *g->req.msgs) {
      if (found->try_emplace(m.msg_id, std::optional<uint64_t>()).second) {
        keys.push_back(ToSlice(m.msg_id));
      }
    }
  }
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), cf_.msgid, keys.size(), keys.data(), values.data(),
                statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string_view id = rocks::ToView(keys[i]);
    found->find(id)->second = MsgIdSeq(id, statuses[i], values[i]);
  }
  *batched = lookups_;
  batched->find_msg_id = [this, found](std::string_view msg_id) {
    auto it = found->find(msg_id);
    return it != found->end() ? it->second : lookups_.find_msg_id(msg_id);
  };
  return *batched;
}

void RocksLogStore::NoteWriteFailure(const Status& failure) {
  // A full disk is not sticky (writes resume once space returns); any other write error is.
  if (failure.code() == Code::kUnavailable) {
    disk_full_ = failure;
    last_resume_ = std::chrono::steady_clock::now();
  } else {
    bg_error_ = failure;
  }
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

Result<std::string> RocksLogStore::GetMembership() const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_.meta, schema::kMembershipKey, &value);
  if (s.IsNotFound()) return std::string();
  if (!s.ok()) return Status::IOError("reading the membership failed: " + s.ToString());
  return value;
}

Status RocksLogStore::SetMembership(const std::string& document) {
  {
    MutexLock lock(&mu_);
    if (!bg_error_.ok()) return bg_error_;
    if (!disk_full_.ok()) return disk_full_;
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;  // answered only once durable
  rocksdb::Status s = db_->Put(wo, cf_.meta, schema::kMembershipKey, document);
  if (s.IsNoSpace()) return DiskFull(s);
  if (!s.ok()) return Status::IOError("writing the membership failed: " + s.ToString());
  return Status::Ok();
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

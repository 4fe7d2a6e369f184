// RocksLogStore: the in-memory tail of the node's own stream, which pushes read instead of the
// database (RocksLogStoreOptions::tail_cache_records).
#include <string>
#include <utility>

#include "storage/read_rules.h"
#include "storage/record.h"
#include "storage/rocks_log_store.h"

namespace dsm {

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

}  // namespace dsm

// ForwardingLogStore: a LogStore that forwards every call to another one. Tests derive from it
// to change one behaviour (count the messages scans visit, hide a trimmed prefix, ...) and keep
// the rest.
//
// Thread safety: as the store it forwards to.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dsm/log_store.h"

namespace dsm {

class ForwardingLogStore : public LogStore {
 public:
  // `base` must outlive this store.
  explicit ForwardingLogStore(LogStore* base) : base_(base) {}

  const std::string& node_id() const override { return base_->node_id(); }
  const std::string& stream_id() const override { return base_->stream_id(); }
  Result<std::vector<WriteOutcome>> Append(std::vector<Message> msgs) override {
    return base_->Append(std::move(msgs));
  }
  Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs, const std::string& peer_url,
                                          const PullCursor* cursor) override {
    return base_->Apply(std::move(msgs), peer_url, cursor);
  }
  Result<std::optional<Message>> Get(uint64_t seq) const override { return base_->Get(seq); }
  Result<std::optional<Message>> FindByMsgId(const std::string& msg_id) const override {
    return base_->FindByMsgId(msg_id);
  }
  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override {
    return base_->Scan(opts, visit);
  }
  Result<std::vector<Message>> ReadOrigin(const std::string& origin, uint64_t after, size_t limit,
                                          size_t max_bytes) const override {
    return base_->ReadOrigin(origin, after, limit, max_bytes);
  }
  uint64_t LastSeq() const override { return base_->LastSeq(); }
  uint64_t HighWater(const std::string& origin) const override { return base_->HighWater(origin); }
  std::map<std::string, uint64_t> HighWaters() const override { return base_->HighWaters(); }
  PushCursor GetPushCursor(const std::string& peer_url) const override {
    return base_->GetPushCursor(peer_url);
  }
  Status SetPushCursor(const std::string& peer_url, const PushCursor& cursor) override {
    return base_->SetPushCursor(peer_url, cursor);
  }
  PullCursor GetPullCursor(const std::string& peer_url) const override {
    return base_->GetPullCursor(peer_url);
  }
  uint64_t FirstSeq() const override { return base_->FirstSeq(); }
  uint64_t TrimmedThrough(const std::string& origin) const override {
    return base_->TrimmedThrough(origin);
  }
  Result<uint64_t> TrimmedRun(const std::string& origin, uint64_t after) const override {
    return base_->TrimmedRun(origin, after);
  }
  Result<TrimResult> Trim(const TrimRequest& req) override { return base_->Trim(req); }
  Result<uint64_t> SkipTrimmed(const std::string& origin, uint64_t through) override {
    return base_->SkipTrimmed(origin, through);
  }
  Status ExpireMsgIds(double ts) override { return base_->ExpireMsgIds(ts); }
  uint64_t StoredBytes() const override { return base_->StoredBytes(); }
  Status WriteHealth() const override { return base_->WriteHealth(); }

 protected:
  LogStore* const base_;
};

}  // namespace dsm

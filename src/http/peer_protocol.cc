#include "src/http/peer_protocol.h"

#include <algorithm>

#include "common/ids.h"
#include "src/http/query.h"

namespace dsm::http {

bool ValidStreamId(std::string_view s) {
  const size_t at = s.find('@');
  return s.size() <= 128 && at != std::string_view::npos && ValidNodeId(s.substr(0, at)) &&
         ValidNodeId(s.substr(at + 1));
}
namespace {

std::string Text(const rapidjson::StringBuffer& buf) {
  return std::string(buf.GetString(), buf.GetSize());
}

void WriteString(json::Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

}  // namespace

Result<SyncRequest> ParseSyncRequest(std::string_view body) {
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) {
    return Status::InvalidArgument("the body must be {\"since\":N,\"limit\":M}");
  }
  SyncRequest req;
  if (auto it = doc->FindMember("since"); it != doc->MemberEnd()) {
    if (!it->value.IsUint64()) {
      return Status::InvalidArgument("'since' must be a non-negative integer");
    }
    req.since = it->value.GetUint64();
  }
  if (auto it = doc->FindMember("limit"); it != doc->MemberEnd()) {
    if (!it->value.IsUint64() || it->value.GetUint64() < 1 ||
        it->value.GetUint64() > kMaxListingLimit) {
      return Status::InvalidArgument("'limit' must be an integer from 1 to " +
                                     std::to_string(kMaxListingLimit));
    }
    req.limit = static_cast<size_t>(it->value.GetUint64());
  }
  if (auto it = doc->FindMember("origin"); it != doc->MemberEnd()) {
    if (!it->value.IsString() || it->value.GetStringLength() == 0 ||
        it->value.GetStringLength() > json::kMaxIdBytes) {
      return Status::InvalidArgument("'origin' must be a string of 1.." +
                                     std::to_string(json::kMaxIdBytes) + " bytes");
    }
    req.origin.emplace(it->value.GetString(), it->value.GetStringLength());
  }
  if (auto it = doc->FindMember("have"); it != doc->MemberEnd()) {
    const std::string kHaveShape = "'have' must be an object of at most " +
                                   std::to_string(kMaxHaveStreams) + " origin streams (1.." +
                                   std::to_string(json::kMaxIdBytes) +
                                   " bytes each) mapped to non-negative integers";
    if (!it->value.IsObject() || it->value.MemberCount() > kMaxHaveStreams) {
      return Status::InvalidArgument(kHaveShape);
    }
    for (const auto& entry : it->value.GetObject()) {
      const size_t len = entry.name.GetStringLength();
      if (len == 0 || len > json::kMaxIdBytes || !entry.value.IsUint64()) {
        return Status::InvalidArgument(kHaveShape);
      }
      req.have.emplace(std::string(entry.name.GetString(), len), entry.value.GetUint64());
    }
  }
  return req;
}

PeerAnswer HeartbeatAnswer(const HeartbeatReply& hb) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("status");
  w.String("ok");
  w.Key("node_id");
  WriteString(w, hb.node_id);
  w.Key("time");
  w.Double(hb.time);
  w.Key("stream");
  WriteString(w, hb.stream);
  w.Key("high_waters");
  w.StartObject();
  for (const auto& [stream, hw] : hb.high_waters) {
    w.Key(stream.data(), static_cast<rapidjson::SizeType>(stream.size()));
    w.Uint64(hw);
  }
  w.EndObject();
  w.Key("max_request_bytes");
  w.Uint64(hb.max_request_bytes);
  if (hb.membership) {
    w.Key("membership");
    json::WriteMembership(w, *hb.membership);
  }
  w.EndObject();
  return {200, Text(buf)};
}

PeerAnswer ReplicateAnswer(const ReplicateResult& r,
                           const std::vector<std::pair<std::string, uint64_t>>& positions,
                           const std::string& stream, bool batch) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  if (r.gap || r.conflict) {
    // A conflict is named first: the sender cannot get around it by resending.
    const WriteOutcome::Kind kind =
        r.conflict ? WriteOutcome::Kind::kConflict : WriteOutcome::Kind::kGap;
    size_t i = 0;
    while (i < r.outcomes.size() && r.outcomes[i].kind != kind) ++i;
    // A gap without a message at it: a skip of positions the sender trimmed that waits.
    std::string reason = r.conflict ? "conflict"
                                    : "gap in stream: positions the sender trimmed are not "
                                      "skipped yet (a peer of this node may still hold them)";
    if (i < r.outcomes.size() && r.conflict) {
      reason = "conflict at origin_seq " + std::to_string(positions[i].second) + " of stream " +
               positions[i].first + ": this node holds another msg_id there (local seq " +
               std::to_string(r.outcomes[i].seq) + ")";
    } else if (i < r.outcomes.size()) {
      reason = "gap in stream " + positions[i].first + ": expected origin_seq " +
               std::to_string(r.outcomes[i].expected_origin_seq) + ", got " +
               std::to_string(positions[i].second);
    }
    w.Key("status");
    w.String("error");
    w.Key("reason");
    WriteString(w, reason);
    w.Key("high_water");
    w.Uint64(r.high_water);
    w.Key("stream");
    WriteString(w, stream);
    if (r.conflict) {
      w.Key("conflict");
      w.Bool(true);
    }
    w.EndObject();
    return {409, Text(buf)};
  }
  w.Key("status");
  w.String("ok");
  if (!batch) {
    // The seed's form, answered exactly as the prototype did.
    w.Key("seq");
    w.Uint64(r.outcomes.empty() ? 0 : r.outcomes[0].seq);
  } else {
    uint64_t last = 0;
    size_t applied = 0;
    size_t duplicates = 0;
    for (const WriteOutcome& o : r.outcomes) {
      last = std::max(last, o.seq);
      if (o.kind == WriteOutcome::Kind::kAppended) ++applied;
      if (o.kind == WriteOutcome::Kind::kDuplicate) ++duplicates;
    }
    w.Key("stream");
    WriteString(w, stream);
    w.Key("seq");
    w.Uint64(last);
    w.Key("high_water");
    w.Uint64(r.high_water);
    w.Key("applied");
    w.Uint64(applied);
    w.Key("duplicates");
    w.Uint64(duplicates);
  }
  w.EndObject();
  return {200, Text(buf)};
}

void WriteSyncTrailer(json::Writer& w, bool more, uint64_t next, uint64_t last_seq,
                      const std::string& stream) {
  w.Key("more");
  w.Bool(more);
  w.Key("next");
  w.Uint64(next);
  w.Key("last_seq");
  w.Uint64(last_seq);
  w.Key("stream");
  WriteString(w, stream);
}

void WriteStreamPageFields(json::Writer& w, const std::string& origin, uint64_t trimmed_through) {
  w.Key("origin");
  WriteString(w, origin);
  if (trimmed_through > 0) {
    w.Key("trimmed_through");
    w.Uint64(trimmed_through);
  }
}

Result<PushSkip> ParsePushSkip(const rapidjson::Value& body) {
  PushSkip skip;
  auto through = body.FindMember("trimmed_through");
  auto origin = body.FindMember("origin");
  if (through == body.MemberEnd() && origin == body.MemberEnd()) return skip;
  if (through == body.MemberEnd() || !through->value.IsUint64() ||
      through->value.GetUint64() == 0 || origin == body.MemberEnd() ||
      !origin->value.IsString() || origin->value.GetStringLength() == 0) {
    return Status::InvalidArgument(
        "'origin' (a stream id) and 'trimmed_through' (a positive integer) go together");
  }
  skip.origin.assign(origin->value.GetString(), origin->value.GetStringLength());
  skip.trimmed_through = through->value.GetUint64();
  return skip;
}

}  // namespace dsm::http

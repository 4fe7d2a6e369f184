#include "tests/sim/sim_peer_server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "src/http/json_codec.h"

namespace dsm {
namespace {

constexpr size_t kMaxListingLimit = 10000;  // src/http/query.h's http::kMaxListingLimit

SimNetwork::HttpReply Error(const Status& s) {
  return SimNetwork::HttpReply{json::HttpStatusForCode(s.code()), json::ErrorBody(s.message())};
}

std::string Text(const rapidjson::StringBuffer& buf) {
  return std::string(buf.GetString(), buf.GetSize());
}

void WriteString(json::Writer& w, const std::string& s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

SimNetwork::HttpReply Heartbeat(Node* node) {
  const HeartbeatReply hb = node->Heartbeat();
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
  w.EndObject();
  return {200, Text(buf)};
}

SimNetwork::HttpReply Replicate(Node* node, const LogStore* log, const std::string& body,
                                const SimPeerServerOptions& options,
                                std::vector<Message>* carried) {
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return Error(doc.status());
  auto it = doc->IsObject() ? doc->FindMember("msgs") : doc->MemberEnd();
  if (!doc->IsObject() || it == doc->MemberEnd() || !it->value.IsArray() ||
      it->value.Empty()) {
    return Error(Status::InvalidArgument("the body must be {\"msgs\":[...]}"));
  }
  std::vector<Message> msgs;
  for (rapidjson::SizeType i = 0; i < it->value.Size(); ++i) {
    Result<Message> m =
        json::ParseMessage(it->value[i], json::MessageSource::kPeer, options.max_message_bytes);
    if (!m.ok()) return Error(m.status());
    msgs.push_back(std::move(m).value());
  }
  *carried = msgs;
  std::vector<std::pair<std::string, uint64_t>> positions;
  for (const Message& m : msgs) positions.emplace_back(m.origin, m.origin_seq);

  Result<ReplicateResult> r = node->Replicate(std::move(msgs));
  if (!r.ok()) return Error(r.status());
  if (r->outcomes.size() != positions.size()) {
    return Error(Status::IOError("the log returned " + std::to_string(r->outcomes.size()) +
                                 " outcomes for " + std::to_string(positions.size()) +
                                 " messages"));
  }
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  if (r->gap || r->conflict) {
    const WriteOutcome::Kind kind =
        r->conflict ? WriteOutcome::Kind::kConflict : WriteOutcome::Kind::kGap;
    size_t i = 0;
    while (i < r->outcomes.size() && r->outcomes[i].kind != kind) ++i;
    std::string reason = r->conflict ? "conflict" : "gap in stream";
    if (i < r->outcomes.size() && r->conflict) {
      reason = "conflict at origin_seq " + std::to_string(positions[i].second) + " of stream " +
               positions[i].first + ": this node holds another msg_id there (local seq " +
               std::to_string(r->outcomes[i].seq) + ")";
    } else if (i < r->outcomes.size()) {
      reason = "gap in stream " + positions[i].first + ": expected origin_seq " +
               std::to_string(r->outcomes[i].expected_origin_seq) + ", got " +
               std::to_string(positions[i].second);
    }
    w.Key("status");
    w.String("error");
    w.Key("reason");
    WriteString(w, reason);
    w.Key("high_water");
    w.Uint64(r->high_water);
    w.Key("stream");
    WriteString(w, log->stream_id());
    if (r->conflict) {
      w.Key("conflict");
      w.Bool(true);
    }
    w.EndObject();
    return {409, Text(buf)};
  }
  uint64_t last = 0;
  size_t applied = 0;
  size_t duplicates = 0;
  for (const WriteOutcome& o : r->outcomes) {
    last = std::max(last, o.seq);
    if (o.kind == WriteOutcome::Kind::kAppended) ++applied;
    if (o.kind == WriteOutcome::Kind::kDuplicate) ++duplicates;
  }
  w.Key("status");
  w.String("ok");
  w.Key("stream");
  WriteString(w, log->stream_id());
  w.Key("seq");
  w.Uint64(last);
  w.Key("high_water");
  w.Uint64(r->high_water);
  w.Key("applied");
  w.Uint64(applied);
  w.Key("duplicates");
  w.Uint64(duplicates);
  w.EndObject();
  return {200, Text(buf)};
}

// {"messages":[...],"more","next","last_seq","stream"[,"origin"]}, as server.cc's listing writes
// a /sync page.
SimNetwork::HttpReply SyncAnswer(const SyncPage& page, uint64_t next, uint64_t last_seq,
                                 const std::optional<std::string>& origin) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("messages");
  w.StartArray();
  for (const Message& m : page.messages) json::WriteMessage(w, m);
  w.EndArray();
  w.Key("more");
  w.Bool(page.more);
  w.Key("next");
  w.Uint64(next);
  w.Key("last_seq");
  w.Uint64(last_seq);
  w.Key("stream");
  WriteString(w, page.stream);
  if (origin) {
    w.Key("origin");
    WriteString(w, *origin);
  }
  w.EndObject();
  return {200, Text(buf)};
}

SimNetwork::HttpReply Sync(Node* node, const std::string& body) {
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return Error(doc.status());
  if (!doc->IsObject()) {
    return Error(Status::InvalidArgument("the body must be {\"since\":N,\"limit\":M}"));
  }
  uint64_t since = 0;
  if (auto it = doc->FindMember("since"); it != doc->MemberEnd()) {
    if (!it->value.IsUint64()) {
      return Error(Status::InvalidArgument("'since' must be a non-negative integer"));
    }
    since = it->value.GetUint64();
  }
  size_t limit = kMaxListingLimit;
  if (auto it = doc->FindMember("limit"); it != doc->MemberEnd()) {
    if (!it->value.IsUint64() || it->value.GetUint64() < 1 ||
        it->value.GetUint64() > kMaxListingLimit) {
      return Error(Status::InvalidArgument("'limit' must be an integer from 1 to 10000"));
    }
    limit = static_cast<size_t>(it->value.GetUint64());
  }
  std::optional<std::string> origin;
  if (auto it = doc->FindMember("origin"); it != doc->MemberEnd()) {
    if (!it->value.IsString() || it->value.GetStringLength() == 0) {
      return Error(Status::InvalidArgument("'origin' must be a non-empty string"));
    }
    origin.emplace(it->value.GetString(), it->value.GetStringLength());
  }
  std::map<std::string, uint64_t> have;
  if (auto it = doc->FindMember("have"); it != doc->MemberEnd()) {
    if (!it->value.IsObject()) return Error(Status::InvalidArgument("'have' must be an object"));
    for (const auto& entry : it->value.GetObject()) {
      if (!entry.value.IsUint64()) {
        return Error(Status::InvalidArgument("'have' values must be non-negative integers"));
      }
      have.emplace(std::string(entry.name.GetString(), entry.name.GetStringLength()),
                   entry.value.GetUint64());
    }
  }
  if (origin) {
    Result<SyncPage> page = node->SyncStream(*origin, since, limit);
    if (!page.ok()) return Error(page.status());
    return SyncAnswer(*page, since + page->messages.size(), page->last_seq, origin);
  }
  Result<SyncPage> page = node->Sync(since, limit, have);
  if (!page.ok()) return Error(page.status());
  return SyncAnswer(*page, page->next, std::max(page->last_seq, page->next), std::nullopt);
}

}  // namespace

SimNetwork::Server MakeSimPeerServer(Node* node, const LogStore* log,
                                     SimPeerServerOptions options) {
  return [node, log, options = std::move(options)](const std::string& route,
                                                   const std::string& body) {
    if (route == "GET /heartbeat") return Heartbeat(node);
    if (route == "POST /replicate") {
      std::vector<Message> carried;
      SimNetwork::HttpReply reply = Replicate(node, log, body, options, &carried);
      if (options.on_replicate) options.on_replicate(carried, &reply);
      return reply;
    }
    if (route == "POST /sync") return Sync(node, body);
    return SimNetwork::HttpReply{404, json::ErrorBody("unknown route " + route)};
  };
}

}  // namespace dsm

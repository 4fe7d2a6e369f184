#include "tests/sim/sim_peer_server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "src/http/json_codec.h"
#include "src/http/peer_protocol.h"
#include "src/http/query.h"

namespace dsm {
namespace {

SimNetwork::HttpReply Error(const Status& s) {
  return SimNetwork::HttpReply{json::HttpStatusForCode(s.code()), json::ErrorBody(s.message())};
}

std::string Text(const rapidjson::StringBuffer& buf) {
  return std::string(buf.GetString(), buf.GetSize());
}

SimNetwork::HttpReply Reply(const http::PeerAnswer& a) { return {a.status, a.body}; }

SimNetwork::HttpReply Heartbeat(Node* node, const Membership* from_peer = nullptr) {
  return Reply(http::HeartbeatAnswer(node->Heartbeat(from_peer)));
}

SimNetwork::HttpReply Replicate(Node* node, const LogStore* log, const std::string& body,
                                const SimPeerServerOptions& options,
                                std::vector<Message>* carried) {
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return Error(doc.status());
  auto it = doc->IsObject() ? doc->FindMember("msgs") : doc->MemberEnd();
  if (!doc->IsObject() || it == doc->MemberEnd() || !it->value.IsArray()) {
    return Error(Status::InvalidArgument("the body must be {\"msgs\":[...]}"));
  }
  Result<PushSkip> skip = http::ParsePushSkip(*doc);
  if (!skip.ok()) return Error(skip.status());
  if (it->value.Empty() && skip->trimmed_through == 0) {
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

  // As dsm-node serves it (src/http/peer_api.cc). The simulated log applies synchronously, so
  // the answer is here when ReplicateAsync returns.
  std::optional<Result<ReplicateResult>> answered;
  node->ReplicateAsync(std::move(msgs), *skip,
                       [&answered](Result<ReplicateResult> r) { answered = std::move(r); });
  if (!answered) return Error(Status::IOError("the simulated log did not apply the batch at once"));
  Result<ReplicateResult>& r = *answered;
  if (!r.ok()) return Error(r.status());
  if (r->outcomes.size() != positions.size()) {
    return Error(Status::IOError("the log returned " + std::to_string(r->outcomes.size()) +
                                 " outcomes for " + std::to_string(positions.size()) +
                                 " messages"));
  }
  return Reply(http::ReplicateAnswer(*r, positions, log->stream_id(), /*batch=*/true));
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
  http::WriteSyncTrailer(w, page.more, next, last_seq, page.stream);
  if (origin) http::WriteStreamPageFields(w, *origin, page.trimmed_through);
  w.EndObject();
  return {200, Text(buf)};
}

SimNetwork::HttpReply Sync(Node* node, const std::string& body) {
  Result<http::SyncRequest> req = http::ParseSyncRequest(body);
  if (!req.ok()) return Error(req.status());
  const uint64_t since = req->since;
  const size_t limit = req->limit.value_or(http::kMaxListingLimit);
  const std::optional<std::string>& origin = req->origin;
  const std::map<std::string, uint64_t>& have = req->have;
  if (origin) {
    Result<SyncPage> page = node->SyncStream(*origin, since, limit);
    if (!page.ok()) return Error(page.status());
    return SyncAnswer(*page, std::max(since, page->trimmed_through) + page->messages.size(),
                      page->last_seq, origin);
  }
  Result<SyncPage> page = node->Sync(since, limit, have);
  if (!page.ok()) return Error(page.status());
  return SyncAnswer(*page, page->next, page->last_seq, std::nullopt);
}

}  // namespace

SimNetwork::Server MakeSimPeerServer(Node* node, const LogStore* log,
                                     SimPeerServerOptions options) {
  return
      [node, log, options = std::move(options)](const std::string& route, const std::string& body) {
        if (route == "GET /heartbeat") return Heartbeat(node);
        if (route == "POST /heartbeat") {
          Result<Membership> m = json::ParseHeartbeatRequest(body);
          if (!m.ok()) return Error(m.status());
          return Heartbeat(node, &*m);
        }
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

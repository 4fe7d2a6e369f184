// The endpoints peers call (docs/api.md, "Internal endpoints"): /replicate, /sync, /heartbeat.
// See server_impl.h.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/http/json_codec.h"
#include "src/http/peer_protocol.h"
#include "src/http/query.h"
#include "src/http/reply.h"
#include "src/http/server_impl.h"

namespace dsm {
namespace {

namespace Http = Pistache::Http;
namespace Rest = Pistache::Rest;
using http::Listing;
using http::Reply;
using http::ReplyPtr;
using http::ScanSource;
using http::TrailerWriter;
using http::VectorSource;
using server_internal::ParseMessages;
using server_internal::RawQuery;

}  // namespace

void HttpServer::Impl::HandleReplicate(const Rest::Request& req, const ReplyPtr& reply) {
  Result<rapidjson::Document> doc = json::Parse(req.body());
  if (!doc.ok()) return reply->SendError(doc.status());
  const char* kShape = "the body must be {\"msg\":{...}} or {\"msgs\":[...]}";
  if (!doc->IsObject()) return reply->SendError(Status::InvalidArgument(kShape));
  auto batch_it = doc->FindMember("msgs");
  auto single_it = doc->FindMember("msg");
  const bool batch = batch_it != doc->MemberEnd();
  if (!batch && single_it == doc->MemberEnd()) {
    return reply->SendError(Status::InvalidArgument(kShape));
  }
  // A sender whose retention trimmed positions this node lacks: {"origin":S,"trimmed_through":N},
  // with the messages that follow them (maybe none).
  Result<PushSkip> skip = http::ParsePushSkip(*doc);
  if (!skip.ok()) return reply->SendError(skip.status());
  const bool skip_only = batch && skip->trimmed_through > 0 && batch_it->value.IsArray() &&
                         batch_it->value.Empty();
  Result<std::vector<Message>> msgs =
      skip_only ? std::vector<Message>()
                : ParseMessages(batch ? batch_it->value : single_it->value, batch,
                                batch ? "msgs" : "msg", json::MessageSource::kPeer,
                                options.max_message_bytes, clock);
  if (!msgs.ok()) return reply->SendError(msgs.status());

  // Kept to describe a gap after the messages have been handed over.
  std::vector<std::pair<std::string, uint64_t>> positions;
  positions.reserve(msgs->size());
  for (const Message& m : *msgs) positions.emplace_back(m.origin, m.origin_seq);

  // Answered by the thread that leads the batch's group commit once it is durable (the log's
  // commit thread, Node::ReplicateAsync): this event loop goes on reading its other connections
  // meanwhile, and their writes join the same group.
  node->ReplicateAsync(
      std::move(msgs).value(), *skip,
      [reply, positions = std::move(positions), node = node, batch](Result<ReplicateResult> r) {
        try {
          if (!r.ok()) return reply->SendError(r.status());
          if (r->outcomes.size() != positions.size()) {
            return reply->SendError(Status::IOError(
                "the log returned " + std::to_string(r->outcomes.size()) + " outcomes for " +
                std::to_string(positions.size()) + " messages"));
          }
          const http::PeerAnswer answer =
              http::ReplicateAnswer(*r, positions, node->stream_id(), batch);
          reply->Send(answer.status, answer.body);
        } catch (const std::exception& e) {
          // Not on an event loop (whose handlers answer 500 for what they throw): said here.
          reply->Send(500, json::ErrorBody(std::string("internal error: ") + e.what()));
        }
      });
}


void HttpServer::Impl::HandleSync(const Rest::Request& req, const ReplyPtr& reply) {
  Result<http::SyncRequest> parsed = http::ParseSyncRequest(req.body());
  if (!parsed.ok()) return reply->SendError(parsed.status());
  const uint64_t since = parsed->since;
  const std::optional<size_t> limit = parsed->limit;
  const std::optional<std::string>& origin = parsed->origin;
  const std::map<std::string, uint64_t>& have = parsed->have;

  if (origin) {
    // One origin stream, by origin_seq: positions since+1, since+2, ... (a stream is held as a
    // gap-free prefix), at most `limit` of them (kMaxListingLimit without one).
    Result<SyncPage> page =
        node->SyncStream(*origin, since, limit.value_or(http::kMaxListingLimit));
    if (!page.ok()) return reply->SendError(page.status());
    const uint64_t next = std::max(since, page->trimmed_through) + page->messages.size();
    TrailerWriter trailer = [more = page->more, next, last_seq = page->last_seq,
                             stream = page->stream, trimmed = page->trimmed_through,
                             origin = *origin](json::Writer& w, size_t, uint64_t) {
      http::WriteSyncTrailer(w, more, next, last_seq, stream);
      http::WriteStreamPageFields(w, origin, trimmed);
    };
    return Listing::Run(reply, std::make_unique<VectorSource>(std::move(page->messages)),
                        std::move(trailer));
  }
  if (limit || !have.empty()) {
    Result<SyncPage> page = node->Sync(since, limit.value_or(http::kMaxListingLimit), have);
    if (!page.ok()) return reply->SendError(page.status());
    TrailerWriter trailer = [more = page->more, next = page->next, last_seq = page->last_seq,
                             stream = page->stream](json::Writer& w, size_t, uint64_t) {
      http::WriteSyncTrailer(w, more, next, last_seq, stream);
    };
    return Listing::Run(reply, std::make_unique<VectorSource>(std::move(page->messages)),
                        std::move(trailer));
  }
  // Everything after `since`, streamed.
  ScanOptions scan;
  scan.after = since;
  auto source = std::make_unique<ScanSource>(log, scan, std::nullopt);
  const uint64_t last_seq = source->last();
  TrailerWriter trailer = [since, last_seq, stream = log->stream_id()](
                              json::Writer& w, size_t count, uint64_t last) {
    // The node's last seq, or the last one streamed if appends landed meanwhile; never `since`.
    const uint64_t next = count > 0 ? last : since;
    http::WriteSyncTrailer(w, false, next, count > 0 ? std::max(last_seq, last) : last_seq, stream);
  };
  Listing::Run(reply, std::move(source), std::move(trailer));
}


void HttpServer::Impl::HandleHeartbeat(const Rest::Request& req, const ReplyPtr& reply) {
  std::optional<Membership> from_peer;
  if (req.method() == Pistache::Http::Method::Post) {
    Result<Membership> m = json::ParseHeartbeatRequest(req.body());
    if (!m.ok()) return reply->SendError(m.status());
    from_peer = std::move(m).value();
  }
  // A peer names its own stream (src/http/peer_client.cc); anything else is ignored.
  std::string caller_stream;
  if (auto raw = req.headers().tryGetRaw(http::kStreamHeader)) {
    caller_stream = raw->value();  // a copy: value() returns one, which a view would outlive
    if (!http::ValidStreamId(caller_stream)) caller_stream.clear();
  }
  const http::PeerAnswer answer =
      http::HeartbeatAnswer(node->Heartbeat(from_peer ? &*from_peer : nullptr,
                                            std::move(caller_stream)));
  reply->Send(answer.status, answer.body);
}

}  // namespace dsm

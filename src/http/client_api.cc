// The client endpoints of the HTTP server (docs/api.md): /send, /messages, /messages/stream,
// /status, /metrics, the dashboard's files and the not-found answer. See server_impl.h.
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "src/http/consumers.h"
#include "src/http/dashboard.h"
#include "src/http/json_codec.h"
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

void WriteOutcomeFields(json::Writer& w, const WriteOutcome& o, const std::string& msg_id) {
  w.Key("seq");
  w.Uint64(o.seq);
  w.Key("msg_id");
  w.String(msg_id.data(), static_cast<rapidjson::SizeType>(msg_id.size()));
  w.Key("origin");
  w.String(o.origin.data(), static_cast<rapidjson::SizeType>(o.origin.size()));
  w.Key("origin_seq");
  w.Uint64(o.origin_seq);
  w.Key("duplicate");
  w.Bool(o.kind == WriteOutcome::Kind::kDuplicate);
}

void WriteResults(json::Writer& w, const std::vector<WriteOutcome>& outcomes,
                  const std::vector<std::string>& msg_ids) {
  w.Key("results");
  w.StartArray();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    w.StartObject();
    WriteOutcomeFields(w, outcomes[i], msg_ids[i]);
    w.EndObject();
  }
  w.EndArray();
}

// Answers a /send from Node::Send's outcome, on whichever thread completed it.
void AnswerSend(Reply& reply, const std::vector<std::string>& msg_ids, bool batch,
                const SendResult& r) {
  const bool has_outcomes = !r.outcomes.empty() && r.outcomes.size() == msg_ids.size();
  // Written, but the quorum wait ended without confirmation: by timeout, or because the node is
  // shutting down. Either way the message stays in the log and keeps replicating: 504.
  const bool unconfirmed =
      !r.status.ok() && has_outcomes &&
      (r.status.code() == Code::kTimeout || r.status.code() == Code::kUnavailable);
  if (r.status.ok() || unconfirmed) {
    if (!has_outcomes) {
      reply.SendError(Status::IOError("the log returned " + std::to_string(r.outcomes.size()) +
                                      " outcomes for " + std::to_string(msg_ids.size()) +
                                      " messages"));
      return;
    }
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    w.StartObject();
    if (r.status.ok()) {
      w.Key("status");
      w.String("ok");
      if (batch) {
        WriteResults(w, r.outcomes, msg_ids);
      } else {
        WriteOutcomeFields(w, r.outcomes[0], msg_ids[0]);
      }
    } else {
      // Written but not confirmed by the quorum in time: the message stays and keeps replicating.
      std::string reason = r.status.message();
      if (r.status.code() != Code::kTimeout) {
        reason += ": message " + msg_ids[0] + " is stored at seq " +
                  std::to_string(r.outcomes[0].seq) +
                  " but its quorum was not confirmed; it keeps replicating, retry with the same "
                  "msg_id";
      }
      w.Key("status");
      w.String("error");
      w.Key("reason");
      w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
      w.Key("msg_id");
      w.String(msg_ids[0].data(), static_cast<rapidjson::SizeType>(msg_ids[0].size()));
      w.Key("seq");
      w.Uint64(r.outcomes[0].seq);
      if (batch) WriteResults(w, r.outcomes, msg_ids);
    }
    w.EndObject();
    reply.Send(r.status.ok() ? 200 : 504, http::BufferText(buf));
    return;
  }
  reply.SendError(r.status);
}

}  // namespace

void HttpServer::Impl::HandleNotFound(const Rest::Request& req, const ReplyPtr& reply) {
  std::string resource = req.resource().substr(0, 200);
  reply->SendError(Status::NotFound(std::string("no such endpoint: ") +
                                    Http::methodString(req.method()) + " " + resource));
}


void HttpServer::Impl::HandleSend(const Rest::Request& req, const ReplyPtr& reply) {
  Result<rapidjson::Document> doc = json::Parse(req.body());
  if (!doc.ok()) return reply->SendError(doc.status());
  if (!doc->IsObject()) {
    return reply->SendError(Status::InvalidArgument(
        "the body must be a JSON object: a message or {\"messages\":[...]}"));
  }
  AckMode ack = AckMode::kDefault;
  if (auto it = doc->FindMember("ack"); it != doc->MemberEnd()) {
    std::string_view v = it->value.IsString()
                             ? std::string_view(it->value.GetString(), it->value.GetStringLength())
                             : std::string_view();
    if (v == "local") {
      ack = AckMode::kLocal;
    } else if (v == "quorum") {
      ack = AckMode::kQuorum;
    } else {
      return reply->SendError(Status::InvalidArgument("'ack' must be \"local\" or \"quorum\""));
    }
  }
  auto batch_it = doc->FindMember("messages");
  const bool batch = batch_it != doc->MemberEnd();
  Result<std::vector<Message>> msgs =
      ParseMessages(batch ? batch_it->value : *doc, batch, batch ? "messages" : "",
                    json::MessageSource::kClient, options.max_message_bytes, clock);
  if (!msgs.ok()) return reply->SendError(msgs.status());

  // Quorum writes wait in memory for their acknowledgements: beyond the bound, refuse them before
  // anything is written. The slot is released when the answer is given (or its completion dropped).
  std::shared_ptr<void> quorum_slot;
  const bool quorum = ack == AckMode::kQuorum ||
                      (ack == AckMode::kDefault && options.mode == ReplicationMode::kSyncQuorum);
  if (quorum && server_options.max_pending_quorum_writes > 0) {
    const int limit = server_options.max_pending_quorum_writes;
    if (pending_quorum_writes->fetch_add(1) >= limit) {
      pending_quorum_writes->fetch_sub(1);
      return reply->SendError(Status::Unavailable("too many pending quorum writes (limit " +
                                                  std::to_string(limit) + "); retry later"));
    }
    quorum_slot = std::shared_ptr<void>(
        nullptr, [pending = pending_quorum_writes](void*) { pending->fetch_sub(1); });
  }

  std::vector<std::string> msg_ids;
  msg_ids.reserve(msgs->size());
  for (const Message& m : *msgs) msg_ids.push_back(m.msg_id);
  // Node::Send answers now or later from another thread; this thread goes back to serving.
  node->Send(std::move(msgs).value(), ack,
             [reply, msg_ids = std::move(msg_ids), batch,
              quorum_slot = std::move(quorum_slot)](SendResult r) mutable {
               quorum_slot.reset();
               try {
                 AnswerSend(*reply, msg_ids, batch, r);
               } catch (const std::exception& e) {
                 reply->Send(500, json::ErrorBody(std::string("internal error: ") + e.what()));
               }
             });
}


void HttpServer::Impl::HandleStream(const Rest::Request& req, const ReplyPtr& reply) {
  if (!consumers) return reply->SendError(Status::Unavailable("live reads are not enabled"));
  if (reply->head_only()) {
    // HEAD: the headers an event stream would begin with, without opening one.
    return reply->SendAs(200, "", Http::Mime::MediaType::fromString("text/event-stream"));
  }
  consumers->Stream(req, reply);
}


void HttpServer::Impl::HandleDashboard(const Rest::Request& req, const ReplyPtr& reply) {
  http::ServeDashboard(req.resource(), *reply);
}


void HttpServer::Impl::HandleMessages(const Rest::Request& req, const ReplyPtr& reply) {
  if (http::IsLiveListing(RawQuery(req))) {
    // A long-poll (wait_ms) or a read from a resume position: src/http/consumers.h.
    if (!consumers) return reply->SendError(Status::Unavailable("live reads are not enabled"));
    return consumers->Poll(req, reply);
  }
  Result<http::ListingQuery> q = http::ParseListingQuery(RawQuery(req));
  if (!q.ok()) return reply->SendError(q.status());
  ScanOptions scan;
  scan.after = q->after;
  scan.sender = q->sender;
  scan.recipient = q->recipient;
  auto source = std::make_unique<ScanSource>(log, scan, q->limit);
  TrailerWriter trailer;
  if (q->limit) {
    // Paging fields only with a limit (a listing without one is everything).
    const ScanSource* src = source.get();  // owned by the listing that calls the trailer
    trailer = [src, after = q->after, first = log->FirstSeq()](json::Writer& w, size_t count,
                                                                 uint64_t last) {
      w.Key("more");
      w.Bool(src->more());
      w.Key("next");
      w.Uint64(count > 0 ? last : after);
      w.Key("first_seq");
      w.Uint64(first);
    };
  } else {
    trailer = [first = log->FirstSeq()](json::Writer& w, size_t, uint64_t) {
      w.Key("first_seq");
      w.Uint64(first);
    };
  }
  Listing::Run(reply, std::move(source), std::move(trailer));
}


// The process's resident memory, and what the C library's allocator holds: in use by the
// program, and free but kept from the system (fragments of its arenas).
static void WriteProcessMemory(MetricsWriter& w) {
  uint64_t size_pages = 0, resident_pages = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%" SCNu64 " %" SCNu64, &size_pages, &resident_pages) != 2) {
      resident_pages = 0;
    }
    std::fclose(f);
  }
  w.Family("dsm_process_resident_bytes", "gauge", "Resident memory of the process.");
  w.Sample("dsm_process_resident_bytes",
           static_cast<double>(resident_pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))));
  const struct mallinfo2 mi = ::mallinfo2();
  w.Family("dsm_malloc_bytes", "gauge",
           "Memory of the C library's allocator: in use by the program (heap and mapped "
           "blocks), and free but not returned to the system.");
  w.Sample("dsm_malloc_bytes", {{"state", "in_use"}}, static_cast<double>(mi.uordblks + mi.hblkhd));
  w.Sample("dsm_malloc_bytes", {{"state", "free"}}, static_cast<double>(mi.fordblks));
}

void HttpServer::Impl::HandleMetrics(const Rest::Request&, const ReplyPtr& reply) {
  MetricsWriter w;
  node->WriteMetrics(w);
  WriteProcessMemory(w);
  if (consumers) {
    w.Family("dsm_live_readers", "gauge", "Long-polls waiting plus event streams open.");
    w.Sample("dsm_live_readers", static_cast<double>(consumers->active()));
  }
  if (durable) durable->WriteMetrics(w);
  reply->SendAs(200, w.text(), Http::Mime::MediaType::fromString("text/plain; version=0.0.4"));
}


void HttpServer::Impl::HandleStatus(const Rest::Request&, const ReplyPtr& reply) {
  NodeStatus st = node->GetStatus();
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  auto str = [&w](const std::string& s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  w.Key("node_id");
  str(st.node_id);
  w.Key("port");
  w.Uint(bound_port.load());
  // The members this node replicates with: --peers until a membership change.
  w.Key("peers");
  w.StartArray();
  for (const PeerStatus& p : st.peers) str(p.url);
  w.EndArray();
  w.Key("role");
  w.String(MemberRoleName(st.role));
  w.Key("membership_version");
  w.Uint64(st.membership_version);
  w.Key("peer_status");
  w.StartObject();
  for (const PeerStatus& p : st.peers) {
    w.Key(p.url.data(), static_cast<rapidjson::SizeType>(p.url.size()));
    w.StartObject();
    // A stream id is "<node id>@<incarnation>" and node ids hold no '@': the peer's node id as
    // it last told this node, "" until it answered.
    w.Key("node_id");
    str(p.stream.substr(0, p.stream.find('@')));
    w.Key("role");
    w.String(MemberRoleName(p.role));
    w.Key("alive");
    w.Bool(p.alive);
    w.Key("last_ok");
    w.Double(p.last_ok);
    w.Key("consecutive_failures");
    w.Int(p.consecutive_failures);
    w.Key("push_cursor");
    w.Uint64(p.push_cursor);
    w.Key("lag_messages");
    w.Uint64(p.lag_messages);
    w.Key("lag_seconds");
    w.Double(p.lag_seconds);
    w.Key("stream");
    str(p.stream);
    w.Key("push_problem");
    str(p.push_problem);
    w.Key("pull_problem");
    str(p.pull_problem);
    w.Key("trimmed_skipped");
    w.Uint64(p.trimmed_skipped);
    w.Key("push_trimmed");
    w.Uint64(p.push_trimmed);
    w.Key("pull_cursor");
    w.StartObject();
    w.Key("stream");
    str(p.pull_cursor.peer_stream);
    w.Key("seq");
    w.Uint64(p.pull_cursor.seq);
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  w.Key("replication_mode");
  w.String(ModeName(st.mode));
  w.Key("quorum");
  w.Int(st.quorum);
  w.Key("stream");
  str(st.stream);
  w.Key("last_seq");
  w.Uint64(st.last_seq);
  w.Key("own_high_water");
  w.Uint64(st.own_high_water);
  w.Key("first_seq");
  w.Uint64(st.first_seq);
  w.Key("retention_waiting");
  str(st.retention_waiting);
  if (durable) {
    // Durable consumers: name, pending, in flight, dead-lettered.
    w.Key("consumers");
    w.StartArray();
    for (const auto& c : durable->All()) {
      const ConsumerInfo info = c->Info();
      w.StartObject();
      w.Key("name");
      str(info.name);
      w.Key("pending");
      w.Uint64(info.pending);
      w.Key("in_flight");
      w.Uint64(info.in_flight);
      w.Key("dead");
      w.Uint64(info.dead_lettered);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("writable");
  w.Bool(st.write_health.ok());
  if (!st.write_health.ok()) {
    w.Key("write_error");
    str(st.write_health.ToString());
  }
  w.EndObject();
  reply->Send(200, http::BufferText(buf));
}

}  // namespace dsm

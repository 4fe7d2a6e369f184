// The durable consumer endpoints of the HTTP server (docs/api.md, "Durable consumers"):
// PUT/GET/DELETE /consumers/{name}, GET /consumers, GET /consumers/{name}/messages,
// POST /consumers/{name}/ack and /nak, GET /consumers/{name}/dead. The consumers themselves are
// src/durable/; this file parses requests and writes answers. See server_impl.h.
#include <pistache/peer.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/durable/durable_consumers.h"
#include "src/http/json_codec.h"
#include "src/http/query.h"
#include "src/http/reply.h"
#include "src/http/server_impl.h"

namespace dsm {
namespace {

namespace Rest = Pistache::Rest;
using http::ReplyPtr;

constexpr uint64_t kMaxAckWaitMs = 24ull * 3600 * 1000;
constexpr uint64_t kMaxInFlightLimit = 100000;
constexpr uint64_t kMaxDeliveriesLimit = 1000000;
constexpr size_t kDefaultDeadPage = 100;

void Str(json::Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

// The {name} of a /consumers/{name}... route, validated.
Result<std::string> ConsumerName(const Rest::Request& req) {
  std::string name = req.param(":name").as<std::string>();
  if (!ValidConsumerName(name)) {
    return Status::InvalidArgument("a consumer name is 1..64 characters of A-Z a-z 0-9 _ -");
  }
  return name;
}

Result<uint64_t> UintField(const rapidjson::Value& v, const char* field, uint64_t lo,
                           uint64_t hi) {
  if (!v.IsUint64() || v.GetUint64() < lo || v.GetUint64() > hi) {
    return Status::InvalidArgument(std::string("'") + field + "' must be an integer from " +
                                   std::to_string(lo) + " to " + std::to_string(hi));
  }
  return v.GetUint64();
}

Result<std::string> IdField(const rapidjson::Value& v, const char* field) {
  if (!v.IsString() || v.GetStringLength() == 0 || v.GetStringLength() > json::kMaxIdBytes) {
    return Status::InvalidArgument(std::string("'") + field + "' must be a string of 1.." +
                                   std::to_string(json::kMaxIdBytes) + " bytes");
  }
  return std::string(v.GetString(), v.GetStringLength());
}

Result<ConsumerStart> ParseStart(const rapidjson::Value& v) {
  const Status bad = Status::InvalidArgument(
      "'start' must be \"first\", \"new\", a seq (integer), or {\"<origin>\": <origin_seq>, ...} "
      "of at most " + std::to_string(http::kMaxResumeOrigins) + " origins");
  ConsumerStart start;
  if (v.IsString()) {
    const std::string_view s(v.GetString(), v.GetStringLength());
    if (s == "first") return start;
    if (s == "new") {
      start.kind = ConsumerStart::Kind::kNew;
      return start;
    }
    return bad;
  }
  if (v.IsUint64()) {
    start.kind = ConsumerStart::Kind::kSeq;
    start.seq = v.GetUint64();
    return start;
  }
  if (!v.IsObject() || v.MemberCount() > http::kMaxResumeOrigins) return bad;
  start.kind = ConsumerStart::Kind::kOrigins;
  for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
    if (it->name.GetStringLength() == 0 || it->name.GetStringLength() > json::kMaxIdBytes ||
        !it->value.IsUint64()) {
      return bad;
    }
    start.origins[std::string(it->name.GetString(), it->name.GetStringLength())] =
        it->value.GetUint64();
  }
  return start;
}

// The body of PUT /consumers/{name}. Unknown fields are refused (a misspelt limit would
// otherwise be silently replaced by its default).
Result<ConsumerDefinition> ParseDefinition(std::string_view body) {
  ConsumerDefinition def;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return def;  // all defaults
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) {
    return Status::InvalidArgument("the body must be a JSON object (the consumer's definition)");
  }
  for (auto it = doc->MemberBegin(); it != doc->MemberEnd(); ++it) {
    const std::string_view key(it->name.GetString(), it->name.GetStringLength());
    const rapidjson::Value& v = it->value;
    if (key == "sender" || key == "recipient") {
      if (v.IsNull()) continue;
      Result<std::string> s = IdField(v, key == "sender" ? "sender" : "recipient");
      if (!s.ok()) return s.status();
      (key == "sender" ? def.sender : def.recipient) = std::move(s).value();
    } else if (key == "start") {
      Result<ConsumerStart> s = ParseStart(v);
      if (!s.ok()) return s.status();
      def.start = std::move(s).value();
    } else if (key == "ack_wait_ms") {
      Result<uint64_t> n = UintField(v, "ack_wait_ms", 1, kMaxAckWaitMs);
      if (!n.ok()) return n.status();
      def.ack_wait_ms = *n;
    } else if (key == "max_in_flight") {
      Result<uint64_t> n = UintField(v, "max_in_flight", 1, kMaxInFlightLimit);
      if (!n.ok()) return n.status();
      def.max_in_flight = *n;
    } else if (key == "max_deliveries") {
      if (v.IsNull()) continue;
      Result<uint64_t> n = UintField(v, "max_deliveries", 0, kMaxDeliveriesLimit);
      if (!n.ok()) return n.status();
      def.max_deliveries = *n;
    } else {
      return Status::InvalidArgument(
          "unknown field '" + std::string(key.substr(0, 64)) +
          "' (a consumer has sender, recipient, start, ack_wait_ms, max_in_flight, "
          "max_deliveries)");
    }
  }
  return def;
}

// {"ack_ids":[...]} (and "delay_ms" when `nak`).
Result<std::vector<std::string>> ParseAckBody(std::string_view body, bool nak, Millis* delay) {
  Result<rapidjson::Document> doc = json::Parse(body);
  if (!doc.ok()) return doc.status();
  const char* shape = nak ? "the body must be {\"ack_ids\":[...], \"delay_ms\": N}"
                          : "the body must be {\"ack_ids\":[...]}";
  if (!doc->IsObject()) return Status::InvalidArgument(shape);
  std::vector<std::string> ids;
  bool has_ids = false;
  for (auto it = doc->MemberBegin(); it != doc->MemberEnd(); ++it) {
    const std::string_view key(it->name.GetString(), it->name.GetStringLength());
    const rapidjson::Value& v = it->value;
    if (key == "ack_ids") {
      has_ids = true;
      if (!v.IsArray() || v.Empty() || v.Size() > kMaxAckIds) {
        return Status::InvalidArgument("'ack_ids' must be an array of 1.." +
                                       std::to_string(kMaxAckIds) + " ack ids");
      }
      for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
        if (!v[i].IsString() || v[i].GetStringLength() == 0 || v[i].GetStringLength() > 128) {
          return Status::InvalidArgument("'ack_ids[" + std::to_string(i) +
                                         "]' must be an ack id (a string)");
        }
        ids.emplace_back(v[i].GetString(), v[i].GetStringLength());
      }
    } else if (nak && key == "delay_ms") {
      Result<uint64_t> n = UintField(v, "delay_ms", 0, kMaxNakDelayMs);
      if (!n.ok()) return n.status();
      *delay = Millis(*n);
    } else {
      return Status::InvalidArgument("unknown field '" + std::string(key.substr(0, 64)) + "': " +
                                     shape);
    }
  }
  if (!has_ids) return Status::InvalidArgument(shape);
  return ids;
}

// An optional decimal query parameter in lo..hi.
Result<std::optional<uint64_t>> QueryNumber(const std::map<std::string, std::string>& raw,
                                            const char* name, uint64_t lo, uint64_t hi) {
  const std::string* v = http::FindParam(raw, name);
  if (v == nullptr) return std::optional<uint64_t>();
  Result<std::string> text = http::PercentDecode(*v, name);
  if (!text.ok()) return text.status();
  std::optional<uint64_t> n = http::ParseDecimalU64(*text);
  if (!n || *n < lo || *n > hi) {
    return Status::InvalidArgument(std::string("'") + name + "' must be an integer from " +
                                   std::to_string(lo) + " to " + std::to_string(hi));
  }
  return n;
}

void WriteDefinition(json::Writer& w, const ConsumerDefinition& d) {
  w.StartObject();
  if (d.sender) {
    w.Key("sender");
    Str(w, *d.sender);
  }
  if (d.recipient) {
    w.Key("recipient");
    Str(w, *d.recipient);
  }
  w.Key("start");
  switch (d.start.kind) {
    case ConsumerStart::Kind::kFirst:
      w.String("first");
      break;
    case ConsumerStart::Kind::kNew:
      w.String("new");
      break;
    case ConsumerStart::Kind::kSeq:
      w.Uint64(d.start.seq);
      break;
    case ConsumerStart::Kind::kOrigins:
      w.StartObject();
      for (const auto& [origin, origin_seq] : d.start.origins) {
        w.Key(origin.data(), static_cast<rapidjson::SizeType>(origin.size()));
        w.Uint64(origin_seq);
      }
      w.EndObject();
      break;
  }
  w.Key("ack_wait_ms");
  w.Uint64(d.ack_wait_ms);
  w.Key("max_in_flight");
  w.Uint64(d.max_in_flight);
  w.Key("max_deliveries");
  if (d.max_deliveries == 0) {
    w.Null();
  } else {
    w.Uint64(d.max_deliveries);
  }
  w.EndObject();
}

// The consumer object of GET /consumers[/{name}]; `origins` is its position in origin
// coordinates (GET /consumers/{name} only).
void WriteInfo(json::Writer& w, const ConsumerInfo& i,
               const std::map<std::string, uint64_t>* origins) {
  w.StartObject();
  w.Key("name");
  Str(w, i.name);
  w.Key("definition");
  WriteDefinition(w, i.definition);
  w.Key("position");
  w.StartObject();
  w.Key("ack_floor");
  w.Uint64(i.ack_floor);
  if (origins != nullptr) {
    w.Key("origins");
    w.StartObject();
    for (const auto& [origin, origin_seq] : *origins) {
      w.Key(origin.data(), static_cast<rapidjson::SizeType>(origin.size()));
      w.Uint64(origin_seq);
    }
    w.EndObject();
  }
  w.Key("delivered_up_to");
  w.Uint64(i.delivered_up_to);
  w.Key("started_after");
  w.Uint64(i.initial);
  w.EndObject();
  const std::pair<const char*, uint64_t> counts[] = {
      {"pending", i.pending},         {"in_flight", i.in_flight},
      {"ack_pending", i.ack_pending}, {"acked", i.acked},
      {"delivered", i.delivered},     {"redelivered", i.redelivered},
      {"dead_lettered", i.dead_lettered}, {"trimmed", i.trimmed},
  };
  for (const auto& [key, value] : counts) {
    w.Key(key);
    w.Uint64(value);
  }
  w.Key("pending_exact");
  w.Bool(i.pending_exact);
  w.EndObject();
}

std::string InfoBody(const ConsumerInfo& info, const std::map<std::string, uint64_t>* origins) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("status");
  w.String("ok");
  w.Key("consumer");
  WriteInfo(w, info, origins);
  w.EndObject();
  return http::BufferText(buf);
}

std::string OutcomesBody(const std::vector<std::string>& ids,
                         const std::vector<AckOutcome>& outcomes) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("status");
  w.String("ok");
  size_t acked = 0;
  w.Key("results");
  w.StartArray();
  for (size_t i = 0; i < ids.size() && i < outcomes.size(); ++i) {
    w.StartObject();
    w.Key("ack_id");
    Str(w, ids[i]);
    w.Key("result");
    w.String(AckOutcomeName(outcomes[i]));
    w.EndObject();
    if (outcomes[i] == AckOutcome::kAcked || outcomes[i] == AckOutcome::kNaked) ++acked;
  }
  w.EndArray();
  w.Key("applied");
  w.Uint64(acked);
  w.EndObject();
  return http::BufferText(buf);
}

}  // namespace

// Finds the consumer of a /consumers/{name}/... request, or answers the error (false).
bool HttpServer::Impl::ConsumerOf(const Rest::Request& req, const ReplyPtr& reply,
                                  std::shared_ptr<DurableConsumer>* out) {
  if (durable == nullptr) {
    reply->SendError(Status::Unavailable("durable consumers are not enabled"));
    return false;
  }
  Result<std::string> name = ConsumerName(req);
  if (!name.ok()) {
    reply->SendError(name.status());
    return false;
  }
  Result<std::shared_ptr<DurableConsumer>> c = durable->Find(*name);
  if (!c.ok()) {
    reply->SendError(c.status());
    return false;
  }
  *out = std::move(c).value();
  return true;
}

void HttpServer::Impl::HandleConsumerPut(const Rest::Request& req, const ReplyPtr& reply) {
  if (durable == nullptr) {
    return reply->SendError(Status::Unavailable("durable consumers are not enabled"));
  }
  Result<std::string> name = ConsumerName(req);
  if (!name.ok()) return reply->SendError(name.status());
  Result<ConsumerDefinition> def = ParseDefinition(req.body());
  if (!def.ok()) return reply->SendError(def.status());
  bool created = false;
  Result<ConsumerInfo> info = durable->Put(*name, *def, &created);
  if (!info.ok()) return reply->SendError(info.status());
  reply->Send(created ? 201 : 200, InfoBody(*info, nullptr));
}

void HttpServer::Impl::HandleConsumerGet(const Rest::Request& req, const ReplyPtr& reply) {
  std::shared_ptr<DurableConsumer> c;
  if (!ConsumerOf(req, reply, &c)) return;
  ConsumerInfo info = c->Info();
  Result<std::map<std::string, uint64_t>> origins = c->OriginPosition();
  if (!origins.ok()) return reply->SendError(origins.status());
  reply->Send(200, InfoBody(info, &*origins));
}

void HttpServer::Impl::HandleConsumerList(const Rest::Request&, const ReplyPtr& reply) {
  if (durable == nullptr) {
    return reply->SendError(Status::Unavailable("durable consumers are not enabled"));
  }
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("consumers");
  w.StartArray();
  for (const auto& c : durable->All()) WriteInfo(w, c->Info(), nullptr);
  w.EndArray();
  w.EndObject();
  reply->Send(200, http::BufferText(buf));
}

void HttpServer::Impl::HandleConsumerDelete(const Rest::Request& req, const ReplyPtr& reply) {
  if (durable == nullptr) {
    return reply->SendError(Status::Unavailable("durable consumers are not enabled"));
  }
  Result<std::string> name = ConsumerName(req);
  if (!name.ok()) return reply->SendError(name.status());
  if (Status s = durable->Delete(*name); !s.ok()) return reply->SendError(s);
  reply->Send(200, "{\"status\":\"ok\",\"deleted\":\"" + *name + "\"}");
}

void HttpServer::Impl::HandleConsumerFetch(const Rest::Request& req, const ReplyPtr& reply) {
  if (durable == nullptr) {
    return reply->SendError(Status::Unavailable("durable consumers are not enabled"));
  }
  Result<std::string> name = ConsumerName(req);
  if (!name.ok()) return reply->SendError(name.status());
  const std::map<std::string, std::string> raw = server_internal::RawQuery(req);
  Result<std::optional<uint64_t>> max = QueryNumber(raw, "max", 1, kMaxFetchMessages);
  if (!max.ok()) return reply->SendError(max.status());
  Result<std::optional<uint64_t>> wait = QueryNumber(raw, "wait_ms", 0, http::kMaxWaitMs);
  if (!wait.ok()) return reply->SendError(wait.status());
  if (reply->head_only()) {
    // HEAD answers as GET would (404 for an unknown consumer) and hands nothing out: a delivery
    // nobody reads would only wait for its ack deadline.
    if (Result<std::shared_ptr<DurableConsumer>> c = durable->Find(*name); !c.ok()) {
      return reply->SendError(c.status());
    }
    return reply->Send(200, "{\"messages\":[]}");
  }
  // A long-poll waits at most what the connection's keep-alive timeout allows (consumers.h).
  const Millis max_wait = std::clamp<Millis>(server_options.keepalive_timeout - Millis(1000),
                                             Millis(0), Millis(http::kMaxWaitMs));
  const Millis wait_for = std::min(Millis(wait->value_or(0)), max_wait);
  if (wait_for.count() > 0) {
    // While it waits the connection is idle for Pistache: its keep-alive timeout applies, not
    // the header timeout.
    if (std::shared_ptr<Pistache::Tcp::Peer> peer = reply->peer().lock()) peer->setIdle(true);
  }
  durable->Fetch(
      *name, static_cast<size_t>(max->value_or(1)), wait_for,
      [reply] { return reply->peer().expired(); },
      [reply](Result<FetchResult> r) {
        if (!r.ok()) return reply->SendError(r.status());
        rapidjson::StringBuffer buf;
        json::Writer w(buf);
        w.StartObject();
        w.Key("messages");
        w.StartArray();
        for (const Delivery& d : r->deliveries) {
          // The message's fields, then its delivery count and ack id.
          rapidjson::StringBuffer one;
          json::Writer mw(one);
          json::WriteMessage(mw, d.message);
          std::string text = http::BufferText(one);
          text.pop_back();  // the closing brace
          text += ",\"delivery\":" + std::to_string(d.delivery) + ",\"ack_id\":\"" + d.ack_id +
                  "\"}";
          w.RawValue(text.data(), text.size(), rapidjson::kObjectType);
        }
        w.EndArray();
        w.EndObject();
        reply->Send(200, http::BufferText(buf));
      });
}

void HttpServer::Impl::HandleConsumerAck(const Rest::Request& req, const ReplyPtr& reply) {
  std::shared_ptr<DurableConsumer> c;
  if (!ConsumerOf(req, reply, &c)) return;
  Millis unused{0};
  Result<std::vector<std::string>> ids = ParseAckBody(req.body(), false, &unused);
  if (!ids.ok()) return reply->SendError(ids.status());
  auto shared_ids = std::make_shared<std::vector<std::string>>(std::move(ids).value());
  // Answered once the acknowledgements are durable, from the state store's commit thread.
  c->Ack(*shared_ids, [reply, shared_ids](Result<std::vector<AckOutcome>> r) {
    if (!r.ok()) return reply->SendError(r.status());
    reply->Send(200, OutcomesBody(*shared_ids, *r));
  });
}

void HttpServer::Impl::HandleConsumerNak(const Rest::Request& req, const ReplyPtr& reply) {
  std::shared_ptr<DurableConsumer> c;
  if (!ConsumerOf(req, reply, &c)) return;
  Millis delay{0};
  Result<std::vector<std::string>> ids = ParseAckBody(req.body(), true, &delay);
  if (!ids.ok()) return reply->SendError(ids.status());
  Result<std::vector<AckOutcome>> r = c->Nak(*ids, delay);
  if (!r.ok()) return reply->SendError(r.status());
  reply->Send(200, OutcomesBody(*ids, *r));
}

void HttpServer::Impl::HandleConsumerDead(const Rest::Request& req, const ReplyPtr& reply) {
  std::shared_ptr<DurableConsumer> c;
  if (!ConsumerOf(req, reply, &c)) return;
  const std::map<std::string, std::string> raw = server_internal::RawQuery(req);
  Result<std::optional<uint64_t>> after = QueryNumber(raw, "after", 0, UINT64_MAX);
  if (!after.ok()) return reply->SendError(after.status());
  Result<std::optional<uint64_t>> limit = QueryNumber(raw, "limit", 1, http::kMaxListingLimit);
  if (!limit.ok()) return reply->SendError(limit.status());
  const size_t n = static_cast<size_t>(limit->value_or(kDefaultDeadPage));
  std::vector<DeadLetter> dead = c->DeadLetters(after->value_or(0), n + 1);
  const bool more = dead.size() > n;
  if (more) dead.pop_back();
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("dead");
  w.StartArray();
  for (const DeadLetter& d : dead) {
    w.StartObject();
    w.Key("seq");
    w.Uint64(d.seq);
    w.Key("deliveries");
    w.Uint64(d.deliveries);
    w.Key("dead_lettered_at");
    w.Double(d.when);
    w.Key("message");
    Result<std::optional<Message>> m = log->Get(d.seq);
    if (m.ok() && m->has_value()) {
      json::WriteMessage(w, **m);
    } else {
      w.Null();  // no longer in the log
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("more");
  w.Bool(more);
  w.Key("next");
  w.Uint64(dead.empty() ? after->value_or(0) : dead.back().seq);
  w.EndObject();
  reply->Send(200, http::BufferText(buf));
}

}  // namespace dsm

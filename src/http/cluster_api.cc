// The membership endpoints (docs/api.md, "Cluster membership"): GET /cluster,
// POST /cluster/members, DELETE /cluster/members/{id}. The changes themselves are the core's
// (Node::AddMember, Node::RemoveMember; include/dsm/membership.h).
#include <string>

#include "common/peer_url.h"
#include "src/http/json_codec.h"
#include "src/http/query.h"
#include "src/http/reply.h"
#include "src/http/server_impl.h"

namespace dsm {

namespace Rest = Pistache::Rest;
using http::ReplyPtr;

namespace {

std::string_view Str(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

void WriteMember(json::Writer& w, const MemberStatus& m) {
  w.StartObject();
  w.Key("id");
  w.String(m.id.data(), static_cast<rapidjson::SizeType>(m.id.size()));
  w.Key("url");
  w.String(m.url.data(), static_cast<rapidjson::SizeType>(m.url.size()));
  w.Key("role");
  w.String(MemberRoleName(m.role));
  w.EndObject();
}

// The answer to a change: the member as changed and the membership version after it.
std::string ChangeBody(const MemberStatus& m, uint64_t version) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("status");
  w.String("ok");
  w.Key("version");
  w.Uint64(version);
  w.Key("member");
  WriteMember(w, m);
  w.EndObject();
  return http::BufferText(buf);
}

}  // namespace

// Membership changes need the cluster token: they decide where every message goes.
bool HttpServer::Impl::MembershipChangesAllowed(const ReplyPtr& reply) {
  if (!server_options.cluster_token.empty()) return true;
  reply->Send(403, json::ErrorBody("membership changes need a cluster token: start the node "
                                   "with --cluster-token (or DSM_CLUSTER_TOKEN) and send it"));
  return false;
}

void HttpServer::Impl::HandleCluster(const Rest::Request&, const ReplyPtr& reply) {
  const ClusterStatus c = node->GetCluster();
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  w.Key("version");
  w.Uint64(c.version);
  w.Key("members");
  w.StartArray();
  for (const MemberStatus& m : c.members) {
    w.StartObject();
    w.Key("id");
    w.String(m.id.data(), static_cast<rapidjson::SizeType>(m.id.size()));
    w.Key("url");
    if (m.url.empty()) {
      w.Null();  // this node, until a change named its URL
    } else {
      w.String(m.url.data(), static_cast<rapidjson::SizeType>(m.url.size()));
    }
    w.Key("role");
    w.String(MemberRoleName(m.role));
    w.Key("self");
    w.Bool(m.self);
    w.Key("alive");
    w.Bool(m.alive);
    w.Key("lag");
    w.Uint64(m.lag);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  reply->Send(200, http::BufferText(buf));
}

void HttpServer::Impl::HandleMemberAdd(const Rest::Request& req, const ReplyPtr& reply) {
  if (!MembershipChangesAllowed(reply)) return;
  Result<rapidjson::Document> doc = json::Parse(req.body());
  if (!doc.ok()) return reply->SendError(doc.status());
  const Status shape = Status::InvalidArgument("the body must be {\"url\": \"http://host:port\"}");
  if (!doc->IsObject()) return reply->SendError(shape);
  for (const auto& m : doc->GetObject()) {
    if (Str(m.name) != "url") {
      return reply->SendError(Status::InvalidArgument("unknown field '" + std::string(Str(m.name)) +
                                                      "' (the body is {\"url\"})"));
    }
  }
  auto url = doc->FindMember("url");
  if (url == doc->MemberEnd() || !url->value.IsString()) return reply->SendError(shape);
  Result<std::string> normal = NormalizePeerUrl(Str(url->value));
  if (!normal.ok()) return reply->SendError(normal.status());
  if (normal->starts_with("https://") && server_options.tls.ca_file.empty()) {
    return reply->SendError(Status::InvalidArgument(
        "an https:// member needs --tls-ca on this node: its certificate could not be verified"));
  }
  // DELETE /cluster/members/{id} names a member in at most kMaxIdBytes: a longer URL could never
  // be removed.
  if (normal->size() > json::kMaxIdBytes) {
    return reply->SendError(
        Status::InvalidArgument("a member URL is at most " + std::to_string(json::kMaxIdBytes) +
                                " bytes (this one is " + std::to_string(normal->size()) + ")"));
  }
  Result<MemberStatus> added = node->AddMember(*normal);
  if (!added.ok()) return reply->SendError(added.status());
  reply->Send(201, ChangeBody(*added, node->GetCluster().version));
}

void HttpServer::Impl::HandleMemberRemove(const Rest::Request& req, const ReplyPtr& reply) {
  if (!MembershipChangesAllowed(reply)) return;
  // A node id, or a member's URL percent-encoded ("http%3A%2F%2Fhost%3A8001").
  Result<std::string> id = http::PercentDecode(req.param(":id").as<std::string>(), "id");
  if (!id.ok()) return reply->SendError(id.status());
  if (id->empty() || id->size() > json::kMaxIdBytes) {
    return reply->SendError(Status::InvalidArgument("a member id is a node id or a member's URL"));
  }
  // A URL (never a node id: those hold no ':' or '/') names its member in the form
  // POST /cluster/members stored it, e.g. without a trailing slash.
  if (Result<std::string> url = NormalizePeerUrl(*id); url.ok()) *id = std::move(url).value();
  Result<MemberStatus> removed = node->RemoveMember(*id);
  if (!removed.ok()) return reply->SendError(removed.status());
  reply->Send(200, ChangeBody(*removed, node->GetCluster().version));
}

}  // namespace dsm

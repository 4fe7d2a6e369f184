// PeerClient: the runtime Transport. Talks HTTP/1.1 to the peers with libcurl's multi interface on
// one event-loop thread: keep-alive connection reuse ("Connection: keep-alive", empty "Expect:"),
// no pipelining, connect and request deadlines, CURLOPT_NOSIGNAL. Completion callbacks run on the
// event-loop thread.
//
// Thread safety: Heartbeat/Replicate/Sync/SyncStream may be called from any thread (work is
// handed to the loop with curl_multi_wakeup). Start/Stop from the owning thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsm/status.h"
#include "dsm/transport.h"

namespace dsm {

struct PeerClientOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{5000};
  size_t max_payload_bytes = 1 << 20;  // for validating messages in /sync replies
  size_t sync_page_bytes = 4 << 20;    // payload of a /sync page (the peers' batch_bytes)
  long max_host_connections = 4;       // per peer
  // Sent on every request as "Authorization: Bearer <token>" when not empty (the peers' cluster
  // token, see src/http/auth.h). Never logged.
  std::string cluster_token;
  // This node's stream id, sent on every request as "X-Dsm-Stream: <id>" when not empty (a peer
  // that hears a heartbeat so named retries its pushes to this node at once: Node::Heartbeat).
  std::string self_stream;
  // https:// peers: their certificate and host name are verified against ca_file (PEM; empty:
  // the system's CAs). cert_file and key_file (PEM, both or neither) are presented to peers that
  // require client certificates.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

class PeerClient final : public Transport {
 public:
  // `peer_urls`: base URLs such as "http://127.0.0.1:8001" or "https://db1:8001" (validated by
  // the caller).
  PeerClient(std::vector<std::string> peer_urls, PeerClientOptions options);
  ~PeerClient() override;  // Stop()

  // Starts the event-loop thread.
  Status Start();
  // Completes every outstanding request with Unavailable("shutting down") and joins the loop.
  // Calls made after Stop() complete with the same status on the calling thread (the one exception
  // to Transport's rule; the Node is stopped before its transport). Idempotent.
  void Stop();

  void AddPeer(size_t peer, const std::string& url) override;
  void Heartbeat(size_t peer, std::optional<Membership> membership,
                 std::function<void(Result<HeartbeatReply>)> done) override;
  void Heartbeat(size_t peer, std::function<void(Result<HeartbeatReply>)> done) {
    Heartbeat(peer, std::nullopt, std::move(done));
  }
  void Replicate(size_t peer, std::vector<Message> msgs, PushSkip skip,
                 std::function<void(Result<ReplicateReply>)> done) override;
  void Replicate(size_t peer, std::vector<Message> msgs,
                 std::function<void(Result<ReplicateReply>)> done) {
    Replicate(peer, std::move(msgs), PushSkip{}, std::move(done));
  }
  void Sync(size_t peer, uint64_t since, size_t limit, std::map<std::string, uint64_t> have,
            std::function<void(Result<SyncReply>)> done) override;
  void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                  std::function<void(Result<SyncReply>)> done) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsm

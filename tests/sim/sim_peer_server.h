// SimPeerServer: the peer-facing HTTP endpoints of one simulated node (GET /heartbeat,
// POST /replicate, POST /sync), in bytes: requests are parsed and answers written as the real
// server does, so what crosses the SimNetwork is the peer protocol's JSON.
//
// It answers through the same functions as the real server: src/http/peer_protocol.h (the /sync
// request, the /heartbeat and /replicate answers, a /sync page's trailer) and the codec
// (src/http/json_codec.h: Parse, ParseMessage, WriteMessage, ErrorBody). Only the framing
// differs: the real server streams a /sync page in chunks, this one writes it whole.
//
// Thread safety: none; the simulation's thread calls it.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/node.h"
#include "dsm/log_store.h"
#include "dsm/message.h"
#include "tests/testing/sim_network.h"

namespace dsm {

struct SimPeerServerOptions {
  size_t max_message_bytes = 1 << 20;
  // Called after each /replicate with the messages it carried and the answer about to be sent
  // back (which it may annotate, e.g. with on_delivered).
  std::function<void(const std::vector<Message>& msgs, SimNetwork::HttpReply* reply)> on_replicate;
};

// Serves `node` (whose log is `log`). Both must outlive the server.
SimNetwork::Server MakeSimPeerServer(Node* node, const LogStore* log, SimPeerServerOptions options);

}  // namespace dsm

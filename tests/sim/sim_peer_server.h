// SimPeerServer: the peer-facing HTTP endpoints of one simulated node (GET /heartbeat,
// POST /replicate, POST /sync), in bytes: requests are parsed and answers written as the real
// server does, so what crosses the SimNetwork is the peer protocol's JSON.
//
// Parsing uses the project's codec (src/http/json_codec.h: Parse, ParseMessage, ErrorBody,
// HttpStatusForCode). The answers' encoding lives inside src/http/server.cc (its handlers write
// straight to a Pistache response), where nothing can be reused: this file writes the same
// fields with the codec's Writer and WriteMessage. Keep it in step with server.cc's
// HandleHeartbeat, HandleReplicate and HandleSync.
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

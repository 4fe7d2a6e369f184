// Message: one entry of a node's log, as stored and as exchanged between nodes.
//
// Every message belongs to exactly one origin stream: the node incarnation that first accepted it
// (a client's /send). A stream id is "<node id>@<incarnation>", where the incarnation is a random
// hex string chosen when a data directory is created, so a wiped node never reuses the
// per-origin sequence numbers of its former self. origin_seq numbers a stream densely from 1.
// Each node's log holds, for every origin stream, a gap-free prefix of it, in order.
#pragma once

#include <cstdint>
#include <string>

namespace dsm {

struct Message {
  uint64_t seq = 0;  // position in the local log, dense from 1; 0 = not yet appended
  std::string msg_id;
  std::string sender;
  std::string recipient;
  std::string payload;
  double ts = 0;           // wall-clock seconds since the Unix epoch, set by the accepting node
  std::string origin;      // origin stream id; empty = not yet assigned
  uint64_t origin_seq = 0; // position in the origin stream, dense from 1; 0 = not yet assigned

  bool operator==(const Message&) const = default;
};

}  // namespace dsm

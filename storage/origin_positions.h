// Conversions between a node's local positions (seqs of its log) and positions valid on any node:
// per-origin high waters {origin stream: origin_seq}. Each log holds, for each origin, a gap-free
// prefix of that origin's messages in origin_seq order (DESIGN.md, contract 5), which is what
// makes both conversions exact. Used by the live readers' `resume` and by durable consumers.
//
// Pure functions over a LogStore (thread-safe as its reads are).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "dsm/log_store.h"
#include "dsm/status.h"

namespace dsm {

// The local position a `resume` vector starts from: the highest seq such that every message
// this log holds after the vector (origin_seq > resume[origin], origins absent from it included)
// has a greater seq. LastSeq() when the vector covers everything held. Positions trimmed from
// this log (retention) count as covered: they cannot be read here.
Result<uint64_t> ResumeStart(const LogStore& log, const std::map<std::string, uint64_t>& resume);

// The per-origin positions of local seq `seq`: for each origin the log holds, the highest
// origin_seq whose message has a local seq <= `seq` (origins with none are left out). Every message
// of an origin beyond its entry has a local seq > `seq`, so a reader that starts after these
// positions on another node misses nothing that lies after `seq` here.
Result<std::map<std::string, uint64_t>> OriginPositionsAt(const LogStore& log, uint64_t seq);

}  // namespace dsm

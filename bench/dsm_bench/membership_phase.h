// The membership phase of dsm-bench (--phases membership): what adding a node to a cluster under
// quorum load costs (docs/operations.md, "Membership"). Each run starts a fresh local 3-node
// sync_quorum cluster with a cluster token, preloads it with `messages` messages (batched /send,
// a third to each node's stream) and waits until every node holds them all. A closed-loop quorum
// /send load (`clients` connections, spread over the three nodes) is then measured in three
// consecutive windows:
//   before  `before_s` seconds (after `warmup_s` unmeasured);
//   during  from POST /cluster/members of a 4th node (--peers naming the first node) until the
//           first node's GET /cluster lists it as a voter;
//   after   `after_s` seconds.
// The new node is started (empty) right before the POST. The run records the time from the POST
// to voter, the new node's catch-up rate (what the cluster held at the add over the time from the
// new node's start until its /status last_seq reached it), and, once the load has stopped, that the
// new node holds as many messages as every other node. Each window's errors are counted by status:
// no write is expected to be refused or to fail during the change.
//
// Thread safety: RunMembership is called from the main thread (it spawns node processes); it runs
// the `during` window's load on a thread of its own and joins it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/dsm_bench/load.h"
#include "bench/dsm_bench/progress.h"
#include "bench/dsm_bench/stats.h"
#include "dsm/status.h"

namespace dsm::bench {

struct MembershipConfig {
  int runs = 3;                // fresh clusters, one node added to each
  uint64_t messages = 100000;  // preloaded before the load
  int clients = 16;
  double warmup_s = 1;
  double before_s = 5;
  double after_s = 5;
};

// One run: the three windows' loads (records dropped) and the change.
struct MembershipRun {
  LoadResult before;
  LoadResult during;
  LoadResult after;
  uint64_t preloaded = 0;        // messages every node held before the load
  uint64_t held_at_add = 0;      // the new node's last_seq just before the POST
  uint64_t existing_at_add = 0;  // the first node's last_seq then: what the cluster held
  uint64_t held_at_voter = 0;    // the new node's last_seq once the first node listed it a voter
  double add_ms = 0;             // the POST /cluster/members round trip
  double to_voter_s = 0;         // POST sent -> the first node's /cluster lists a voter
  // The new node spawned (empty) -> it holds existing_at_add messages. It pulls from the node its
  // --peers name from its start, before its add (held_at_add says how much).
  double caught_up_s = 0;
  double catchup_per_s = 0;  // existing_at_add / caught_up_s
  bool voter = false;
  // Once the load stopped: the new node holds as many messages as each other node (last_seq).
  bool complete = false;
  uint64_t final_messages = 0;   // the new node's last_seq then
  uint64_t others_messages = 0;  // the most any other node held then
};

// One window over the runs.
struct MembershipWindow {
  std::string name;  // "before" | "during" | "after"
  Spread requests_per_s;
  Spread p50_ms;
  Spread p99_ms;
  Spread p999_ms;
  Spread seconds;
  std::map<std::string, size_t> errors;  // by status ("503", "504", "Timeout: ..."), summed
  size_t error_count = 0;
};

struct MembershipReport {
  bool ran = false;
  std::string skipped;  // why not, when requested and !ran
  MembershipConfig config;
  std::vector<MembershipRun> runs;
  // Over the runs: the windows (before, during, after), the time to voter, the catch-up rate.
  std::vector<MembershipWindow> windows;
  Spread to_voter_s;
  Spread catchup_per_s;
  size_t error_count = 0;  // every window of every run
  void Summarize();
};

struct MembershipRunOptions {
  std::string node_binary;
  std::string root;  // each run's cluster gets a directory below it (removed unless keep_data)
  std::vector<std::string> node_args;
  bool fsync = true;
  int quorum = 2;
  size_t payload_bytes = 100;
  bool keep_data = false;
};

// Runs out->config.runs runs into *out. Errors: a cluster that does not start, a node that dies,
// an add that is refused, a new node that is no voter or does not hold every message by the
// deadline; the runs measured so far stay in *out.
Status RunMembership(const MembershipRunOptions& options, const std::atomic<bool>& stop,
                     Progress* progress, MembershipReport* out);

}  // namespace dsm::bench

// SimCluster: several dsm Nodes in one process on one ManualClock and SimNetwork, driven by a
// seeded random schedule of client sends, crashes, restarts, wipes, partitions and message
// drops. After every step it checks the contract's invariants (DESIGN.md §1):
//  - every log holds dense seqs, each msg_id once, and for every origin stream a gap-free prefix;
//  - an acknowledged async message is in the accepting node's log;
//  - an acknowledged quorum message is in at least Q logs at the moment of the answer;
//  - a message refused with 503 is stored nowhere;
// and, once everything is healed and restarted, that all logs converge to the same set of
// messages, which contains every acknowledged message. A failing seed replays exactly.
//
// Thread safety: none; single-threaded by design.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/node.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"
#include "tests/testing/sim_network.h"

namespace dsm {

struct SimConfig {
  int nodes = 3;
  int quorum = 2;
  bool quorum_mode = false;  // nodes run sync_quorum (clients may still ask "ack":"local")
  int steps = 400;
  int max_sends = 60;
  double drop_probability = 0.02;
  bool wipes = true;
};

class SimCluster {
 public:
  SimCluster(uint64_t seed, SimConfig config);
  ~SimCluster();

  // Runs the random schedule, then heals and checks convergence. Returns "" on success or the
  // first violated invariant with the step it happened at.
  std::string Run();
  // The schedule so far, one line per action (for replaying a failing seed).
  const std::vector<std::string>& trace() const { return trace_; }

 private:
  struct SimNode {
    std::string id;
    std::unique_ptr<MemoryLogStore> store;  // survives crashes; replaced by a wipe
    std::unique_ptr<Transport> transport;
    std::unique_ptr<Node> node;  // null while down
    int incarnations = 0;
  };

  void StartNode(size_t i);
  void CrashNode(size_t i);
  void WipeNode(size_t i);
  void ClientSend(size_t i);
  void RetrySend(size_t i);
  void SendWith(size_t i, const std::string& msg_id, bool fresh);
  // Advances the clock to the next timer or network event and runs what is due.
  bool AdvanceOnce();
  void TickDue();
  bool Converged();
  std::string Differences();  // who misses what
  std::string CheckInvariants();
  int Holders(const std::string& msg_id);
  void Fail(const std::string& what);
  void Log(const std::string& line);

  uint64_t seed_;
  SimConfig config_;
  std::mt19937_64 rng_;
  ManualClock clock_;
  SimNetwork net_;
  std::vector<SimNode> nodes_;
  int step_ = 0;
  int sends_ = 0;
  std::string failure_;
  std::vector<std::string> trace_;

  std::set<std::string> acked_;              // acknowledged (any mode)
  std::set<std::string> refused_;            // fresh msg_ids answered 503
  std::set<std::string> unknown_;            // timeouts and lost answers
  std::set<std::string> lost_to_wipe_;       // acked, but only ever on a wiped node
  std::map<std::string, int> wiped_holders_;  // msg_id -> wiped logs that held it
  std::vector<std::string> all_ids_;
};

}  // namespace dsm

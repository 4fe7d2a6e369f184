#include "tests/sim/sim_cluster.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dsm {
namespace {

// The peer protocol as the HTTP layer maps it: a gap is a 409 carrying the high water.
Result<ReplicateReply> ToReply(Result<ReplicateResult> r) {
  if (!r.ok()) return r.status();
  ReplicateReply reply;
  reply.high_water = r->high_water;
  reply.gap = r->gap;
  return reply;
}

Result<SyncReply> ToReply(Result<SyncPage> r) {
  if (!r.ok()) return r.status();
  SyncReply reply;
  reply.stream = std::move(r->stream);
  reply.messages = std::move(r->messages);
  reply.more = r->more;
  reply.last_seq = r->last_seq;
  reply.next = r->next;
  return reply;
}

}  // namespace

SimCluster::SimCluster(uint64_t seed, SimConfig config)
    : seed_(seed),
      config_(config),
      rng_(seed),
      net_(&clock_, &rng_, SimNetworkOptions{Millis(1), Millis(20), config.drop_probability,
                                             Millis(300)}) {
  nodes_.resize(config_.nodes);
  for (int i = 0; i < config_.nodes; ++i) {
    SimNode& n = nodes_[i];
    n.id = fmt::format("n{}", i);
    n.store = std::make_unique<MemoryLogStore>(n.id, fmt::format("{:016x}", rng_()));
    net_.AddNode();
  }
  for (int i = 0; i < config_.nodes; ++i) StartNode(i);
}

SimCluster::~SimCluster() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].node) CrashNode(i);
  }
}

void SimCluster::Log(const std::string& line) {
  trace_.push_back(fmt::format("[step {} t={}ms] {}", step_,
                               std::chrono::duration_cast<Millis>(
                                   clock_.Now().time_since_epoch())
                                   .count(),
                               line));
}

void SimCluster::Fail(const std::string& what) {
  if (failure_.empty()) {
    failure_ = fmt::format("seed {} step {}: {}", seed_, step_, what);
    Log("FAIL " + what);
  }
}

void SimCluster::StartNode(size_t i) {
  SimNode& n = nodes_[i];
  NodeOptions o;
  o.id = n.id;
  std::vector<size_t> peer_nodes;
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (j == i) continue;
    o.peers.push_back(fmt::format("sim://{}", nodes_[j].id));
    peer_nodes.push_back(j);
  }
  o.mode = config_.quorum_mode ? ReplicationMode::kSyncQuorum : ReplicationMode::kAsync;
  o.quorum = config_.quorum;
  o.heartbeat_interval = Millis(100);
  o.heartbeat_timeout = Millis(400);
  o.quorum_timeout = Millis(800);
  o.anti_entropy_interval = Millis(1000);
  o.retry_min = Millis(20);
  o.retry_max = Millis(200);
  o.batch_messages = 1 + rng_() % 6;  // small pages exercise paging and partial pushes
  n.transport = net_.MakeTransport(i, peer_nodes);
  n.node = std::make_unique<Node>(o, n.store.get(), n.transport.get(), &clock_);
  Node* node = n.node.get();
  SimNetwork::Handlers h;
  h.heartbeat = [node]() -> Result<HeartbeatReply> { return node->Heartbeat(); };
  h.replicate = [node](std::vector<Message> msgs) { return ToReply(node->Replicate(msgs)); };
  h.sync = [node](uint64_t since, size_t limit, const std::map<std::string, uint64_t>& have) {
    return ToReply(node->Sync(since, limit, have));
  };
  h.sync_stream = [node](const std::string& origin, uint64_t since, size_t limit) {
    return ToReply(node->SyncStream(origin, since, limit));
  };
  net_.SetHandlers(i, std::move(h));
  node->Start();
  ++n.incarnations;
  Log(fmt::format("start {} (batch {})", n.id, o.batch_messages));
}

void SimCluster::CrashNode(size_t i) {
  SimNode& n = nodes_[i];
  net_.Crash(i);
  n.node.reset();  // pending quorum answers die with the process
  n.transport.reset();
  Log("crash " + n.id);
}

void SimCluster::WipeNode(size_t i) {
  SimNode& n = nodes_[i];
  if (n.node) CrashNode(i);
  for (const std::string& id : acked_) {
    if (lost_to_wipe_.count(id)) continue;
    bool elsewhere = false;
    for (size_t j = 0; j < nodes_.size(); ++j) {
      if (j == i) continue;
      Result<std::optional<Message>> m = nodes_[j].store->FindByMsgId(id);
      if (m.ok() && m->has_value()) elsewhere = true;
    }
    if (!elsewhere) lost_to_wipe_.insert(id);
  }
  // A wipe is data loss outside the contract: a quorum acknowledged later may have counted it.
  Status s = n.store->Scan(ScanOptions{}, [&](const Message& m) {
    ++wiped_holders_[m.msg_id];
    return true;
  });
  if (!s.ok()) Fail("scan of the wiped log failed: " + s.ToString());
  n.store = std::make_unique<MemoryLogStore>(n.id, fmt::format("{:016x}", rng_()));
  Log("wipe " + n.id);
  StartNode(i);
}

int SimCluster::Holders(const std::string& msg_id) {
  int h = 0;
  for (SimNode& n : nodes_) {
    Result<std::optional<Message>> m = n.store->FindByMsgId(msg_id);
    if (m.ok() && m->has_value()) ++h;
  }
  return h;
}

void SimCluster::ClientSend(size_t i) {
  std::string id = fmt::format("m{}", sends_++);
  all_ids_.push_back(id);
  SendWith(i, id, true);
}

void SimCluster::RetrySend(size_t i) {
  std::vector<std::string> candidates;
  for (const std::string& id : all_ids_) {
    if (!refused_.count(id)) candidates.push_back(id);
  }
  if (candidates.empty()) return;
  SendWith(i, candidates[rng_() % candidates.size()], false);
}

void SimCluster::SendWith(size_t i, const std::string& msg_id, bool fresh) {
  SimNode& n = nodes_[i];
  Message m;
  m.msg_id = msg_id;
  m.sender = "client";
  m.recipient = fmt::format("r{}", rng_() % 3);
  m.payload = "payload of " + msg_id;
  m.ts = clock_.WallSeconds();
  AckMode ack = AckMode::kDefault;
  if (rng_() % 5 == 0) ack = config_.quorum_mode ? AckMode::kLocal : AckMode::kQuorum;
  const bool quorum = ack == AckMode::kQuorum || (ack == AckMode::kDefault && config_.quorum_mode);
  Log(fmt::format("send {} to {}{}{}", msg_id, n.id, quorum ? " quorum" : " local",
                  fresh ? "" : " (retry)"));
  n.node->Send({m}, ack, [this, i, msg_id, fresh, quorum](SendResult r) {
    SimNode& n = nodes_[i];
    if (r.status.ok()) {
      acked_.insert(msg_id);
      unknown_.erase(msg_id);
      int holders = Holders(msg_id);
      Log(fmt::format("ack {} from {} seq {} (held by {})", msg_id, n.id, r.outcomes[0].seq,
                      holders));
      Result<std::optional<Message>> mine = n.store->FindByMsgId(msg_id);
      if (!mine.ok() || !mine->has_value()) Fail(msg_id + " acked but not in the acking log");
      if (quorum && holders + wiped_holders_[msg_id] < config_.quorum) {
        Fail(fmt::format("{} acked as quorum but held by {} < {} nodes", msg_id, holders,
                         config_.quorum));
      }
    } else if (r.status.code() == Code::kUnavailable) {
      Log(fmt::format("503 {} from {}: {}", msg_id, n.id, r.status.message()));
      if (fresh) {
        refused_.insert(msg_id);
        if (Holders(msg_id) > 0) Fail(msg_id + " refused with 503 but stored");
      }
    } else if (r.status.code() == Code::kTimeout) {
      Log(fmt::format("504 {} from {}", msg_id, n.id));
      unknown_.insert(msg_id);
    } else {
      Fail(fmt::format("send {} failed: {}", msg_id, r.status.ToString()));
    }
  });
}

void SimCluster::TickDue() {
  for (int round = 0; round < 8; ++round) {
    bool any = false;
    for (SimNode& n : nodes_) {
      if (n.node && n.node->NextDeadline() <= clock_.Now()) {
        n.node->Tick();
        any = true;
      }
    }
    net_.RunDue();
    if (!any) return;
  }
}

bool SimCluster::AdvanceOnce() {
  MonoTime next = net_.NextEventTime();
  for (SimNode& n : nodes_) {
    if (n.node) next = std::min(next, n.node->NextDeadline());
  }
  if (next == MonoTime::max()) return false;
  clock_.AdvanceTo(next);
  net_.RunDue();
  TickDue();
  return true;
}

std::string SimCluster::CheckInvariants() {
  for (SimNode& n : nodes_) {
    LogStore& log = *n.store;
    uint64_t expect = 0;
    std::set<std::string> ids;
    std::string problem;
    Status s = log.Scan(ScanOptions{}, [&](const Message& m) {
      if (m.seq != ++expect) {
        problem = fmt::format("seq {} where {} was expected", m.seq, expect);
        return false;
      }
      if (!ids.insert(m.msg_id).second) {
        problem = fmt::format("msg_id {} stored twice", m.msg_id);
        return false;
      }
      if (m.origin.empty() || m.origin_seq == 0 || m.origin_seq > log.HighWater(m.origin)) {
        problem = fmt::format("seq {} has origin position {}:{} beyond the high water", m.seq,
                              m.origin, m.origin_seq);
        return false;
      }
      return true;
    });
    if (!s.ok()) return n.id + ": scan failed: " + s.ToString();
    if (!problem.empty()) return n.id + ": " + problem;
    if (expect != log.LastSeq()) {
      return fmt::format("{}: LastSeq {} but {} messages", n.id, log.LastSeq(), expect);
    }
    for (const auto& [origin, hw] : log.HighWaters()) {
      Result<std::vector<Message>> stream = log.ReadOrigin(origin, 0, SIZE_MAX, SIZE_MAX);
      if (!stream.ok()) return n.id + ": ReadOrigin failed: " + stream.status().ToString();
      if (stream->size() != hw) {
        return fmt::format("{}: stream {} has {} positions, high water {}", n.id, origin,
                           stream->size(), hw);
      }
      for (size_t k = 0; k < stream->size(); ++k) {
        if ((*stream)[k].origin_seq != k + 1) {
          return fmt::format("{}: stream {} position {} holds origin_seq {}", n.id, origin, k + 1,
                             (*stream)[k].origin_seq);
        }
      }
    }
  }
  for (const std::string& id : acked_) {
    if (!lost_to_wipe_.count(id) && Holders(id) == 0) return "acked " + id + " is on no node";
  }
  for (const std::string& id : refused_) {
    if (Holders(id) > 0) return "refused " + id + " is stored";
  }
  return "";
}

std::string SimCluster::Differences() {
  std::set<std::string> all;
  std::vector<std::set<std::string>> held(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Status s = nodes_[i].store->Scan(ScanOptions{}, [&](const Message& m) {
      held[i].insert(m.msg_id);
      all.insert(m.msg_id);
      return true;
    });
    if (!s.ok()) return s.ToString();
  }
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    std::vector<std::string> missing;
    for (const std::string& id : all) {
      if (!held[i].count(id)) missing.push_back(id);
    }
    out += fmt::format("\n{} ({}) holds {}, misses {}; high waters:", nodes_[i].id,
                       nodes_[i].store->stream_id(), held[i].size(), fmt::join(missing, ","));
    for (const auto& [o, hw] : nodes_[i].store->HighWaters()) out += fmt::format(" {}={}", o, hw);
    if (nodes_[i].node) {
      for (const PeerStatus& p : nodes_[i].node->GetStatus().peers) {
        out += fmt::format("\n   peer {} alive={} fails={} push={} lag={} pull={}:{}", p.url,
                           p.alive, p.consecutive_failures, p.push_cursor, p.lag_messages,
                           p.pull_cursor.peer_stream, p.pull_cursor.seq);
      }
    }
  }
  return out;
}

bool SimCluster::Converged() {
  std::set<std::string> first;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i].node) return false;
    std::set<std::string> ids;
    Status s = nodes_[i].store->Scan(ScanOptions{}, [&](const Message& m) {
      ids.insert(m.msg_id);
      return true;
    });
    if (!s.ok()) return false;
    if (i == 0) {
      first = std::move(ids);
    } else if (ids != first) {
      return false;
    }
  }
  return true;
}

std::string SimCluster::Run() {
  for (step_ = 0; step_ < config_.steps && failure_.empty(); ++step_) {
    const size_t i = rng_() % nodes_.size();
    const size_t j = rng_() % nodes_.size();
    const int r = static_cast<int>(rng_() % 100);
    if (r < 25) {
      if (nodes_[i].node && sends_ < config_.max_sends) ClientSend(i);
    } else if (r < 28) {
      if (nodes_[i].node) RetrySend(i);
    } else if (r < 31) {
      if (nodes_[i].node) CrashNode(i);
    } else if (r < 36) {
      if (!nodes_[i].node) StartNode(i);
    } else if (r < 37) {
      if (config_.wipes) WipeNode(i);
    } else if (r < 40) {
      if (i != j) {
        net_.SetLink(i, j, false);
        Log(fmt::format("cut {} -> {}", nodes_[i].id, nodes_[j].id));
      }
    } else if (r < 43) {
      net_.HealAll();
      Log("heal all links");
    } else {
      AdvanceOnce();
    }
    if (failure_.empty()) {
      std::string problem = CheckInvariants();
      if (!problem.empty()) Fail(problem);
    }
  }
  if (!failure_.empty()) return failure_;

  // Heal everything and wait for convergence (bounded in simulated time).
  net_.HealAll();
  net_.set_drop_probability(0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i].node) StartNode(i);
  }
  Log("final: healed, all nodes up");
  const MonoTime give_up = clock_.Now() + std::chrono::seconds(120);
  while (clock_.Now() < give_up && !Converged() && failure_.empty()) {
    if (!AdvanceOnce()) break;
  }
  if (!failure_.empty()) return failure_;
  if (std::string problem = CheckInvariants(); !problem.empty()) Fail(problem);
  if (!Converged()) Fail("no convergence within 120 simulated seconds after healing: " + Differences());
  for (const std::string& id : acked_) {
    if (lost_to_wipe_.count(id)) continue;
    if (Holders(id) != static_cast<int>(nodes_.size())) {
      Fail(fmt::format("acked {} held by {} of {} nodes after convergence", id, Holders(id),
                       nodes_.size()));
      break;
    }
  }
  return failure_;
}

}  // namespace dsm

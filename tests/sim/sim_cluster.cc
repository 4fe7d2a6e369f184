#include "tests/sim/sim_cluster.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "src/http/json_codec.h"
#include "tests/sim/sim_peer_server.h"

namespace dsm {
namespace {

constexpr Millis kHeartbeatInterval{100};
constexpr Millis kHeartbeatTimeout{400};
constexpr Millis kQuorumTimeout{800};
constexpr Millis kRequestTimeout{300};

// A node's URL: a well-formed peer URL (membership entries carry it), never dialed.
std::string PeerUrl(const std::string& id) { return "http://" + id + ".sim:1"; }

bool Contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

SimConfig SimConfigForSeed(uint64_t seed) {
  // Floors: at most about half the lowest activity seen in 10,000 passing runs of each topology
  // (every run has at least one 503 and one 504 from the probes, one crash and one wipe).
  SimConfig c;
  c.min_503 = 1;
  c.min_504 = 1;
  c.min_crashes = 2;
  c.min_wipes = 1;
  c.min_partitions = 2;
  switch (seed % 4) {
    case 0:
      c.nodes = 3;
      c.quorum = 2;
      c.quorum_mode = false;
      c.min_acks = 10;
      break;
    case 1:
      c.nodes = 3;
      c.quorum = 2;
      c.quorum_mode = true;
      c.min_acks = 3;
      break;
    case 2:
      c.nodes = 5;
      c.quorum = 3;
      c.quorum_mode = true;
      c.rollbacks = true;
      c.min_acks = 5;
      break;
    default:
      c.nodes = 4;
      c.quorum = 3;
      c.quorum_mode = false;
      c.min_acks = 10;
      break;
  }
  return c;
}

void SimCounts::Add(const SimCounts& o) {
  sends += o.sends;
  retries += o.retries;
  acks += o.acks;
  quorum_acks += o.quorum_acks;
  refused_503 += o.refused_503;
  timeouts_504 += o.timeouts_504;
  disk_refusals += o.disk_refusals;
  io_errors += o.io_errors;
  lost_answers += o.lost_answers;
  crashes += o.crashes;
  crashes_in_flight += o.crashes_in_flight;
  starts += o.starts;
  wipes += o.wipes;
  rollbacks += o.rollbacks;
  partitions += o.partitions;
  heals += o.heals;
  pauses += o.pauses;
  clock_jumps += o.clock_jumps;
  disk_errors += o.disk_errors;
  disks_full += o.disks_full;
  forgeries += o.forgeries;
  removals += o.removals;
  re_adds += o.re_adds;
  forgeries_refused += o.forgeries_refused;
  runs += o.runs;
  net.requests += o.net.requests;
  net.dropped += o.net.dropped;
  net.duplicated += o.net.duplicated;
  net.late += o.net.late;
  net.refused += o.net.refused;
  net.timeouts += o.net.timeouts;
  net.bytes += o.net.bytes;
}

std::string SimCounts::ToString() const {
  return fmt::format(
      "acks {} (quorum {}), 503 {}, 504 {}, disk-full refusals {}, I/O errors {}, answers lost "
      "{}; sends {}, retries {}; crashes {} ({} with writes or answers in flight), starts {}, "
      "wipes {}, rollbacks {}, partitions {}, heals {}, pauses {}, clock jumps {}, disk errors "
      "{}, disks full {}, forged conflicts {} ({} refused), removals {} (added back {}); network: "
      "{} requests, {} lost, {} duplicated, {} late, {} refused, {} timeouts, {:.1f} MB",
      acks, quorum_acks, refused_503, timeouts_504, disk_refusals, io_errors, lost_answers, sends,
      retries, crashes, crashes_in_flight, starts, wipes, rollbacks, partitions, heals, pauses,
      clock_jumps, disk_errors, disks_full, forgeries, forgeries_refused, removals, re_adds,
      net.requests,
      net.dropped, net.duplicated, net.late, net.refused, net.timeouts,
      static_cast<double>(net.bytes) / 1e6);
}

SimCluster::SimCluster(uint64_t seed, SimConfig config)
    : seed_(seed), config_(config), rng_(seed), net_(&clock_, &rng_, [&config] {
        SimNetworkOptions o;
        o.drop_probability = config.drop_probability;
        o.duplicate_probability = config.duplicate_probability;
        o.late_probability = config.late_probability;
        o.request_timeout = kRequestTimeout;
        return o;
      }()) {
  counts_.runs = 1;
  ignore_.insert(config_.ignore_checks.begin(), config_.ignore_checks.end());
  nodes_.resize(config_.nodes);
  for (int i = 0; i < config_.nodes; ++i) {
    nodes_[i].id = fmt::format("n{}", i);
    nodes_[i].clock = std::make_unique<NodeClock>(&clock_);
    net_.AddNode();
    net_.SetNodeUrl(static_cast<size_t>(i), PeerUrl(nodes_[i].id));
    NewStore(i);
  }
  for (int i = 0; i < config_.nodes; ++i) StartNode(i);
}

SimCluster::~SimCluster() {
  for (size_t i = 0; i < nodes_.size(); ++i) CrashNode(i);
}

void SimCluster::Log(const std::string& line) {
  trace_.push_back(fmt::format(
      "[step {} t={}ms] {}", step_,
      std::chrono::duration_cast<Millis>(clock_.Now().time_since_epoch()).count(), line));
}

void SimCluster::Fail(const std::string& check, const std::string& what) {
  if (ignore_.count(check)) {
    if (ignored_[check]++ == 0) Log("IGNORED [" + check + "] " + what);
    return;
  }
  if (failure_.empty()) {
    failed_check_ = check;
    failure_ = fmt::format("seed {} step {}: [{}] {}", seed_, step_, check, what);
    Log("FAIL [" + check + "] " + what);
  }
}

std::string SimCluster::Summary() const {
  return fmt::format("seed {} ({} nodes, Q={}, {}): {}", seed_, config_.nodes, config_.quorum,
                     config_.quorum_mode ? "sync_quorum" : "async", counts().ToString());
}

// ---- nodes ----

void SimCluster::NewStore(size_t i) {
  SimNode& n = nodes_[i];
  n.store = std::make_shared<MemoryLogStore>(n.id, fmt::format("{:016x}", rng_()));
  n.store_id = next_store_id_++;
  std::weak_ptr<MemoryLogStore> weak = n.store;
  // An fsync takes 1..8 ms; the node's pause holds its completions back too.
  n.store->SetSyncScheduler([this, i, weak](std::function<void()> event) {
    net_.Schedule(
        Millis(1 + Rand(8)),
        [weak, event = std::move(event)] {
          if (std::shared_ptr<MemoryLogStore> alive = weak.lock()) event();
        },
        i);
  });
  n.rolled_back = false;
  n.shadow_seq = 0;
  n.lost_by_rollback.clear();
  n.image.reset();
  n.seen.clear();
  n.seen_ids.clear();
  n.seen_hw.clear();
  n.last_record_position.clear();
  n.checked_pull.clear();
  n.observed_version = UINT64_MAX;
}

void SimCluster::StartNode(size_t i) {
  SimNode& n = nodes_[i];
  if (n.node) return;
  NodeOptions o;
  o.id = n.id;
  std::vector<size_t> peer_nodes;
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (j == i) continue;
    o.peers.push_back(PeerUrl(nodes_[j].id));
    peer_nodes.push_back(j);
  }
  o.mode = config_.quorum_mode ? ReplicationMode::kSyncQuorum : ReplicationMode::kAsync;
  o.quorum = config_.quorum;
  o.heartbeat_interval = kHeartbeatInterval;
  o.heartbeat_timeout = kHeartbeatTimeout;
  o.quorum_timeout = kQuorumTimeout;
  o.request_timeout = kRequestTimeout;
  o.anti_entropy_interval = Millis(1000);
  o.retry_min = Millis(20);
  o.retry_max = Millis(200);
  o.batch_messages = 1 + Rand(6);  // small pages exercise paging and partial pushes
  o.push_window = 1 + Rand(4);     // and windows of several small batches, answered in any order
  n.transport = net_.MakeTransport(i, peer_nodes);
  n.node = std::make_unique<Node>(o, n.store.get(), n.transport.get(), n.clock.get());
  SimPeerServerOptions so;
  so.max_message_bytes = o.max_message_bytes;
  so.on_replicate = [this, i](const std::vector<Message>& msgs, SimNetwork::HttpReply* reply) {
    OnReplicateServed(i, msgs, reply);
  };
  SimNetwork::Server serve = MakeSimPeerServer(n.node.get(), n.store.get(), std::move(so));
  // A heartbeat answer tells its caller how far this data directory holds every stream.
  net_.SetServer(i, [this, i, serve = std::move(serve)](const std::string& route,
                                                         const std::string& body) {
    SimNetwork::HttpReply reply = serve(route, body);
    if ((route == "GET /heartbeat" || route == "POST /heartbeat") && reply.status == 200) {
      reply.on_delivered = [this, i, store_id = nodes_[i].store_id,
                            hw = nodes_[i].store->HighWaters()](size_t caller) {
        Learn(caller, i, store_id, hw);
      };
    }
    return reply;
  });
  if (config_.verbose) {
    n.node->SetEventLog(
        [this, id = n.id](EventLevel, const std::string& event) { Log(id + ": " + event); });
  }
  n.node->Start();
  ++n.process;
  ++counts_.starts;
  Log(fmt::format("start {} ({}, batch {}, window {})", n.id, n.store->stream_id(),
                  o.batch_messages, o.push_window));
}

void SimCluster::CrashNode(size_t i) {
  SimNode& n = nodes_[i];
  if (!n.node) return;
  net_.Crash(i);
  ++n.process;
  int lost_answers = 0;
  for (auto it = pending_sends_.begin(); it != pending_sends_.end();) {
    if (it->second.node != i) {
      ++it;
      continue;
    }
    MsgState& st = msgs_[it->second.msg_id];
    --st.in_flight;
    st.maybe_written = true;
    ++lost_answers;
    it = pending_sends_.erase(it);
  }
  const size_t pending_writes = n.store->PendingWrites();
  std::vector<LogStore::AppendDone> dropped = n.store->Crash();
  // The process is gone with its callbacks. Node's destructor waits for the appends it has in
  // flight, so they are released here; their answers reach no client (the sends are lost above).
  for (LogStore::AppendDone& done : dropped) done(Status::Unavailable("simulated crash"));
  n.node.reset();
  n.transport.reset();
  n.known.clear();
  n.disk_failed = false;
  ++counts_.crashes;
  counts_.lost_answers += lost_answers;
  if (pending_writes > 0 || lost_answers > 0) ++counts_.crashes_in_flight;
  Log(fmt::format("crash {} ({} writes not durable or not answered, {} client answers lost)", n.id,
                  pending_writes, lost_answers));
}

void SimCluster::NoteLoss(size_t i, uint64_t keep_seq) {
  for (const std::string& id : acked_) {
    if (lost_.count(id)) continue;
    bool kept = false;
    for (size_t j = 0; j < nodes_.size() && !kept; ++j) {
      Result<std::optional<Message>> m = nodes_[j].store->FindByMsgId(id);
      if (!m.ok() || !m->has_value()) continue;
      kept = j != i || (*m)->seq <= keep_seq;
    }
    if (!kept) lost_.insert(id);
  }
}

void SimCluster::WipeNode(size_t i) {
  CrashNode(i);
  NoteLoss(i, 0);
  NewStore(i);
  ++counts_.wipes;
  Log("wipe " + nodes_[i].id);
  StartNode(i);
}

void SimCluster::RollbackNode(size_t i) {
  SimNode& n = nodes_[i];
  if (!n.image || n.image_store_id != n.store_id) return;
  CrashNode(i);
  const MemoryLogStore::Image& image = *n.image;
  NoteLoss(i, image.last_seq());
  // The node's own stream forks after the image's high water: peers may hold other messages at
  // positions it will fill again.
  const std::string own = n.store->stream_id();
  auto h = image.high_waters().find(own);
  const uint64_t kept = h == image.high_waters().end() ? 0 : h->second;
  const uint64_t shown = max_position_[own];
  if (shown > kept) {
    forks_[own].emplace_back(kept, shown);
    for (uint64_t p = kept + 1; p <= shown; ++p) {
      auto it = positions_.find({own, p});
      if (it != positions_.end()) forked_ids_.insert(it->second);
    }
  }
  n.shadow_seq = std::max(n.shadow_seq, n.store->LastSeq());
  for (size_t k = image.last_seq(); k < n.seen.size(); ++k) {
    n.lost_by_rollback.insert(n.seen[k].msg_id);
  }
  n.store->Restore(image);
  // Other content, same stream: for what peers heard, another data directory.
  n.store_id = next_store_id_++;
  n.image_store_id = n.store_id;
  n.seen.resize(std::min<size_t>(n.seen.size(), image.last_seq()));
  n.seen_ids.clear();
  n.last_record_position.clear();
  for (const Seen& s : n.seen) {
    n.seen_ids.insert(s.msg_id);
    n.last_record_position[s.origin] = s.origin_seq;
  }
  n.seen_hw = std::map<std::string, uint64_t>(image.high_waters().begin(),
                                              image.high_waters().end());
  n.checked_pull.clear();
  n.rolled_back = true;
  ++counts_.rollbacks;
  Log(fmt::format("rollback {} to its copy at seq {} (own stream up to {}, positions {}..{} "
                  "forked)",
                  n.id, image.last_seq(), kept, kept + 1, shown));
  StartNode(i);
}

bool SimCluster::Usable(size_t i) const { return nodes_[i].node && !net_.Paused(i); }

bool SimCluster::Voter(size_t i) const {
  return nodes_[i].node && removed_.count(i) == 0 &&
         nodes_[i].node->GetStatus().role == MemberRole::kVoter;
}

// ---- clients ----

void SimCluster::ClientSend(size_t i) {
  std::string id = fmt::format("m{}", sends_++);
  all_ids_.push_back(id);
  ++counts_.sends;
  AckMode ack = AckMode::kDefault;
  if (Rand(5) == 0) ack = config_.quorum_mode ? AckMode::kLocal : AckMode::kQuorum;
  SendWith(i, id, true, ack);
}

void SimCluster::RetrySend(size_t i) {
  if (all_ids_.empty()) return;
  ++counts_.retries;
  AckMode ack = AckMode::kDefault;
  if (Rand(5) == 0) ack = config_.quorum_mode ? AckMode::kLocal : AckMode::kQuorum;
  // Clients mostly retry what they sent last, at the node they sent it to.
  const size_t recent = std::min<size_t>(all_ids_.size(), 10);
  const std::string& id = Rand(2) == 0 ? all_ids_[all_ids_.size() - 1 - Rand(recent)]
                                       : all_ids_[Rand(all_ids_.size())];
  size_t target = i;
  auto first = first_node_.find(id);
  if (first != first_node_.end() && Rand(5) < 3 && Usable(first->second)) target = first->second;
  SendWith(target, id, false, ack);
}

// A dishonest quorum (contract 11): node i restarts after peer j, which held one of i's messages
// that fewer than Q other directories hold, was wiped and cannot be reached; a client retries
// that message at i with a quorum ack. Counting j's old acknowledgement would answer 200.
void SimCluster::StaleIncarnationScenario() {
  std::vector<std::tuple<size_t, size_t, std::string>> candidates;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const std::string own = nodes_[i].store->stream_id();
    for (const Seen& m : nodes_[i].seen) {
      if (m.origin != own) continue;
      const int holders = Holders(m.msg_id);
      if (holders > config_.quorum) continue;
      for (size_t j = 0; j < nodes_.size(); ++j) {
        if (j != i && Holds(j, m.msg_id)) candidates.emplace_back(i, j, m.msg_id);
      }
    }
  }
  if (candidates.empty()) return;
  const auto [i, j, id] = candidates[Rand(candidates.size())];
  Log(fmt::format("scenario: {} restarts after {} was wiped and cut off from it; {} is retried",
                  nodes_[i].id, nodes_[j].id, id));
  CrashNode(i);
  WipeNode(j);
  net_.SetLink(i, j, false);
  net_.SetLink(j, i, false);
  ++counts_.partitions;
  StartNode(i);
  ++counts_.retries;
  SendWith(i, id, false, AckMode::kQuorum);
}

void SimCluster::SendWith(size_t i, const std::string& msg_id, bool fresh, AckMode ack) {
  SimNode& n = nodes_[i];
  Message m;
  m.msg_id = msg_id;
  m.sender = "client";
  m.recipient = fmt::format("r{}", Rand(3));
  m.payload = "payload of " + msg_id;
  m.ts = n.clock->WallSeconds();
  const bool quorum = ack == AckMode::kQuorum || (ack == AckMode::kDefault && config_.quorum_mode);
  ++msgs_[msg_id].in_flight;
  const uint64_t send_id = next_send_id_++;
  pending_sends_[send_id] = PendingSend{msg_id, i};
  first_node_.emplace(msg_id, i);
  Log(fmt::format("send {} to {}{}{}", msg_id, n.id, quorum ? " quorum" : " local",
                  fresh ? "" : " (retry)"));
  if (config_.refuse_every_send) {
    SendResult refused;
    refused.status = Status::Unavailable("replication quorum not achieved");
    OnAnswer(send_id, quorum, refused);
    return;
  }
  n.node->Send({m}, ack,
               [this, send_id, quorum](SendResult r) { OnAnswer(send_id, quorum, r); });
}

void SimCluster::OnAnswer(uint64_t send_id, bool quorum, const SendResult& r) {
  auto pending = pending_sends_.find(send_id);
  if (pending == pending_sends_.end()) return;  // its process crashed: nobody hears it
  const PendingSend p = pending->second;
  pending_sends_.erase(pending);
  SimNode& n = nodes_[p.node];
  const std::string& id = p.msg_id;
  MsgState& st = msgs_[id];
  --st.in_flight;
  const uint64_t seq = r.outcomes.empty() ? 0 : r.outcomes.front().seq;
  const int quorum_needed = config_.quorum;
  // The answering log must hold the message at the seq it answers (the original one on a retry).
  auto check_held = [&](const char* what) {
    Result<std::optional<Message>> mine = n.store->FindByMsgId(id);
    if (!mine.ok() || !mine->has_value()) {
      Fail("answer-seq", fmt::format("{} answered {} for {} at seq {} but its log does not hold it",
                                     n.id, what, id, seq));
    } else if ((*mine)->seq != seq) {
      Fail("answer-seq",
           fmt::format("{} answered {} for {} with seq {} but its log holds it at seq {}", n.id,
                       what, id, seq, (*mine)->seq));
    }
  };
  if (r.status.ok()) {
    ++counts_.acks;
    if (quorum) ++counts_.quorum_acks;
    st.maybe_written = true;
    acked_.insert(id);
    const int holders = Holders(id);
    Log(fmt::format("ack {} from {} seq {} (held by {})", id, n.id, seq, holders));
    check_held("200");
    if (quorum && CountableHolders(p.node, id) < quorum_needed) {
      Fail("quorum-honest",
           fmt::format("{} acked {} as quorum but only {} current data directories hold it (Q={}; "
                       "none was wiped or rolled back after telling {} it held it); its view:{}",
                       n.id, id, holders, quorum_needed, n.id, PeerView(p.node)));
    }
    return;
  }
  const std::string& reason = r.status.message();
  switch (r.status.code()) {
    case Code::kUnavailable: {
      if (Contains(reason, "disk full")) {
        ++counts_.disk_refusals;
        Log(fmt::format("503 {} from {}: {}", id, n.id, reason));
        return;
      }
      if (!Contains(reason, "quorum not achieved")) {
        st.maybe_written = true;
        Log(fmt::format("503 {} from {}: {}", id, n.id, reason));
        return;
      }
      ++counts_.refused_503;
      const int holders = Holders(id);
      Log(fmt::format("503 {} from {} (held by {})", id, n.id, holders));
      if (!st.maybe_written && st.in_flight == 0 && holders > 0) {
        Fail("refused-nowhere",
             fmt::format("{} refused {} with 503 'quorum not achieved' but {} nodes store it",
                         n.id, id, holders));
      }
      if (Holds(p.node, id)) {
        // Holders it knows of: itself and peers whose current data directory told it so.
        int known = 1;
        std::string told;
        for (size_t j = 0; j < nodes_.size(); ++j) {
          if (j != p.node && Holds(j, id) && KnowsHolds(p.node, j, id) &&
              n.known.at(j).store_id == nodes_[j].store_id) {
            ++known;
            told += " " + nodes_[j].id;
          }
        }
        if (known >= quorum_needed) {
          Result<std::optional<Message>> mine = n.store->FindByMsgId(id);
          const std::string where =
              mine.ok() && mine->has_value()
                  ? fmt::format("{}:{}{}", (*mine)->origin, (*mine)->origin_seq,
                                (*mine)->origin == n.store->stream_id() ? ", its own stream" : "")
                  : std::string("?");
          Fail("refused-held",
               fmt::format("{} refused the retry of {} ({}) with 503 'quorum not achieved' "
                           "(\"nothing was written\") although its current peers{} had told it "
                           "(heartbeat or /replicate answer) that they hold that position: {} "
                           "current data directories, Q={}; its view:{}",
                           n.id, id, where, told, known, quorum_needed, PeerView(p.node)));
        }
      }
      if (!st.maybe_written) st.refused = true;
      return;
    }
    case Code::kTimeout:
      ++counts_.timeouts_504;
      st.maybe_written = true;
      Log(fmt::format("504 {} from {} seq {}", id, n.id, seq));
      if (r.outcomes.empty()) {
        Fail("answer-seq", fmt::format("{} answered 504 for {} without its seq", n.id, id));
      } else {
        check_held("504");
      }
      return;
    case Code::kIOError:
      ++counts_.io_errors;
      st.maybe_written = true;
      Log(fmt::format("500 {} from {}: {}", id, n.id, reason));
      if (!n.disk_failed) {
        Fail("send-error", fmt::format("{} answered an I/O error for {} on a healthy disk: {}",
                                       n.id, id, r.status.ToString()));
      }
      return;
    default:
      st.maybe_written = true;
      Fail("send-error", fmt::format("send {} to {} failed: {}", id, n.id, r.status.ToString()));
  }
}

void SimCluster::RemoveMember(size_t i, size_t j) {
  if (i == j || !Usable(i) || removed_.count(j) != 0) return;
  Result<MemberStatus> r = nodes_[i].node->RemoveMember(PeerUrl(nodes_[j].id));
  if (!r.ok()) {
    Log(fmt::format("{} does not remove {}: {}", nodes_[i].id, nodes_[j].id,
                    r.status().ToString()));
    return;
  }
  removed_.insert(j);
  ++counts_.removals;
  const Millis back(200 + Rand(3000));
  Log(fmt::format("{} removes {} from the cluster (back in {} ms)", nodes_[i].id, nodes_[j].id,
                  back.count()));
  net_.Schedule(back, [this, j] { ReAdd(j); });
}

void SimCluster::RepairMembership() {
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (removed_.count(j) != 0) continue;
    bool out = nodes_[j].node && nodes_[j].node->GetStatus().role == MemberRole::kRemoved;
    for (size_t k = 0; k < nodes_.size() && !out; ++k) {
      if (k == j || !nodes_[k].node) continue;
      bool listed = false;
      for (const MemberStatus& m : nodes_[k].node->GetCluster().members) {
        listed = listed || m.url == PeerUrl(nodes_[j].id);
      }
      out = !listed;
    }
    if (!out) continue;
    Log(fmt::format("{} is out of the cluster (a wipe took the add that brought it back)",
                    nodes_[j].id));
    removed_.insert(j);
    ReAdd(j);
  }
}

void SimCluster::ReAdd(size_t j) {
  if (removed_.count(j) == 0) return;
  for (size_t k = 0; k < nodes_.size(); ++k) {
    if (k == j || !Usable(k)) continue;
    // Only a node that heard of the removal can undo it (the others answer that it is a
    // member: their view is older, and the removal reaches them later).
    Result<MemberStatus> r = nodes_[k].node->AddMember(PeerUrl(nodes_[j].id));
    if (!r.ok()) continue;
    removed_.erase(j);
    ++counts_.re_adds;
    Log(fmt::format("{} adds {} back", nodes_[k].id, nodes_[j].id));
    return;
  }
  net_.Schedule(Millis(500), [this, j] { ReAdd(j); });  // nobody could: later
}

// A client outside the cluster sends /replicate with another msg_id at a position the node
// holds: a conflict, which must be refused (and never stored).
void SimCluster::Forge(size_t i) {
  if (!Usable(i)) return;
  const std::map<std::string, uint64_t> hws = nodes_[i].store->HighWaters();
  if (hws.empty()) return;
  auto it = hws.begin();
  std::advance(it, static_cast<ptrdiff_t>(Rand(hws.size())));
  if (it->second == 0) return;
  Message m;
  m.msg_id = fmt::format("forged{}", forged_++);
  m.sender = "rogue";
  m.recipient = "r0";
  m.payload = "forged";
  m.ts = clock_.WallSeconds();
  m.origin = it->first;
  m.origin_seq = 1 + Rand(it->second);
  ++counts_.forgeries;
  const SimNetwork::HttpReply reply =
      net_.ServeNow(i, "POST /replicate", json::EncodeReplicateRequest({m}));
  if (reply.status == 409) ++counts_.forgeries_refused;
  Log(fmt::format("forged /replicate to {}: {} at {}:{} -> {} {}", nodes_[i].id, m.msg_id,
                  m.origin, m.origin_seq, reply.status, reply.body));
  if (Holds(i, m.msg_id)) {
    Fail("conflict-refused", fmt::format("{} stored the forged {} at the held position {}:{}",
                                         nodes_[i].id, m.msg_id, m.origin, m.origin_seq));
  }
}

void SimCluster::OnReplicateServed(size_t i, const std::vector<Message>& msgs,
                                   SimNetwork::HttpReply* reply) {
  Result<ReplicateReply> r = json::DecodeReplicateReply(reply->status, reply->body);
  if (config_.verbose) {
    std::string carried;
    for (const Message& m : msgs) carried += fmt::format(" {}@{}:{}", m.msg_id, m.origin, m.origin_seq);
    Log(fmt::format("{} served /replicate{} -> {} {}", nodes_[i].id, carried, reply->status,
                    reply->body));
  }
  if (!r.ok()) return;  // an error acknowledges nothing
  std::string origin;
  for (const Message& m : msgs) {
    if (!m.origin.empty()) {
      origin = m.origin;
      break;
    }
  }
  for (const Message& m : msgs) {
    if (m.origin != origin || m.origin_seq > r->high_water) continue;
    if (!Holds(i, m.msg_id)) {
      Fail("replicate-ack",
           fmt::format("{} answered /replicate ({} {}) with high water {} of {}, acknowledging "
                       "{} at {}:{}, which it does not hold",
                       nodes_[i].id, reply->status, r->conflict ? "conflict" : "no conflict",
                       r->high_water, origin, m.msg_id, m.origin, m.origin_seq));
      return;
    }
  }
  if (origin.empty()) return;
  // The answer tells the pusher how far this data directory holds its stream.
  reply->on_delivered = [this, i, store_id = nodes_[i].store_id, origin,
                         high_water = r->high_water](size_t caller) {
    Learn(caller, i, store_id, {{origin, high_water}});
  };
}

void SimCluster::Learn(size_t caller, size_t server, uint64_t store_id,
                       const std::map<std::string, uint64_t>& high_waters) {
  Knowledge& k = nodes_[caller].known[server];
  if (store_id < k.store_id) return;  // a late answer from a directory since replaced
  if (store_id > k.store_id) {
    k.store_id = store_id;
    k.high_waters.clear();
  }
  for (const auto& [origin, hw] : high_waters) {
    uint64_t& known = k.high_waters[origin];
    known = std::max(known, hw);
  }
}

bool SimCluster::KnowsHolds(size_t i, size_t j, const std::string& msg_id) const {
  auto k = nodes_[i].known.find(j);
  if (k == nodes_[i].known.end()) return false;
  Result<std::optional<Message>> m = nodes_[i].store->FindByMsgId(msg_id);
  if (!m.ok() || !m->has_value()) return false;
  auto hw = k->second.high_waters.find((*m)->origin);
  return hw != k->second.high_waters.end() && hw->second >= (*m)->origin_seq;
}

int SimCluster::CountableHolders(size_t i, const std::string& msg_id) const {
  int count = 0;
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (Holds(j, msg_id) || nodes_[j].lost_by_rollback.count(msg_id)) {
      ++count;
      continue;
    }
    if (j == i) continue;
    auto k = nodes_[i].known.find(j);
    if (k != nodes_[i].known.end() && k->second.store_id != nodes_[j].store_id &&
        KnowsHolds(i, j, msg_id)) {
      ++count;
    }
  }
  return count;
}

int SimCluster::Holders(const std::string& msg_id) const {
  int h = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (Holds(i, msg_id)) ++h;
  }
  return h;
}

bool SimCluster::Holds(size_t i, const std::string& msg_id) const {
  Result<std::optional<Message>> m = nodes_[i].store->FindByMsgId(msg_id);
  return m.ok() && m->has_value() && (*m)->msg_id == msg_id;
}

// ---- time ----

MonoTime SimCluster::DeadlineOf(size_t i) const {
  const SimNode& n = nodes_[i];
  if (!n.node) return MonoTime::max();
  const MonoTime d = n.node->NextDeadline();
  if (d == MonoTime::max()) return d;
  const MonoTime local_now = n.clock->Now();
  MonoTime at = d <= local_now ? clock_.Now() : clock_.Now() + (d - local_now);
  if (net_.Paused(i)) at = std::max(at, net_.PausedUntil(i));
  return at;
}

void SimCluster::TickDue() {
  for (int round = 0; round < 8; ++round) {
    bool any = false;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      SimNode& n = nodes_[i];
      if (Usable(i) && n.node->NextDeadline() <= n.clock->Now()) {
        n.node->Tick();
        any = true;
      }
    }
    net_.RunDue();
    if (!any) return;
  }
}

bool SimCluster::AdvanceOnce() {
  // One event: a due node tick, else a due network, disk or timer event, else the clock moves
  // to the next one. A step can crash a node between any two of them.
  for (int moved = 0; moved < 2; ++moved) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      SimNode& n = nodes_[i];
      if (Usable(i) && n.node->NextDeadline() <= n.clock->Now()) {
        n.node->Tick();
        return true;
      }
    }
    if (net_.RunOne()) return true;
    if (moved == 0 && !AdvanceClock()) return false;
  }
  return true;
}

bool SimCluster::AdvanceClock() {
  MonoTime next = net_.NextEventTime();
  for (size_t i = 0; i < nodes_.size(); ++i) next = std::min(next, DeadlineOf(i));
  if (next == MonoTime::max()) return false;
  clock_.AdvanceTo(next);
  return true;
}

bool SimCluster::AdvanceBatch() {
  if (!AdvanceClock()) return false;
  net_.RunDue();
  TickDue();
  return true;
}

void SimCluster::AdvanceFor(Millis d, const std::function<bool()>& until) {
  const MonoTime end = clock_.Now() + d;
  int stalled = 0;
  while (clock_.Now() < end && failure_.empty()) {
    if (until && until()) return;
    MonoTime next = net_.NextEventTime();
    for (size_t i = 0; i < nodes_.size(); ++i) next = std::min(next, DeadlineOf(i));
    const MonoTime before = clock_.Now();
    clock_.AdvanceTo(std::min(next, end));
    net_.RunDue();
    TickDue();
    stalled = clock_.Now() == before ? stalled + 1 : 0;
    if (stalled > 10000) Fail("liveness", "time stands still: a node's deadline stays in the past");
    if (Violation v = CheckInvariants(false); v.found()) Fail(v);
  }
}

// ---- faults and probes ----

void SimCluster::Isolate(size_t i) {
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (j == i) continue;
    net_.SetLink(i, j, false);
    net_.SetLink(j, i, false);
  }
  ++counts_.partitions;
  Log("isolate " + nodes_[i].id);
}

// Late in a run whose probes could not run yet: every node up, with a working disk, not paused.
void SimCluster::MakeHealthy() {
  Log("making every node healthy for a probe");
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].disk_failed) CrashNode(i);
    nodes_[i].store->SetDiskFull(false);
    StartNode(i);
  }
  for (size_t j : std::set<size_t>(removed_)) ReAdd(j);
  AdvanceFor(Millis(2500), [&] {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (net_.Paused(i)) return false;
    }
    return true;
  });
}

// Sends a fresh quorum write to node i and runs the simulation until it is answered (or the
// node dies). Returns whether the answer came.
bool SimCluster::ProbeSend(size_t i) {
  std::string id = fmt::format("m{}", sends_++);
  all_ids_.push_back(id);
  ++counts_.sends;
  const uint64_t send_id = next_send_id_;
  SendWith(i, id, true, AckMode::kQuorum);
  AdvanceFor(kQuorumTimeout + Millis(500), [&] { return !pending_sends_.count(send_id); });
  return !pending_sends_.count(send_id);
}

// A node whose failure detector knows that fewer than Q nodes are reachable must refuse a quorum
// write with 503: isolate a node until it has seen its peers dead, then write to it.
bool SimCluster::Probe503(bool force) {
  if (force) MakeHealthy();
  std::vector<size_t> candidates;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (Usable(i) && Voter(i) && !nodes_[i].disk_failed && !nodes_[i].store->disk_full()) {
      candidates.push_back(i);
    }
  }
  if (candidates.empty()) return false;
  const size_t i = candidates[Rand(candidates.size())];
  Log("probe 503: " + nodes_[i].id + " is cut off until it sees its peers dead");
  Isolate(i);
  AdvanceFor(kHeartbeatTimeout + 3 * kHeartbeatInterval);
  if (!Usable(i) || !failure_.empty()) return false;
  return ProbeSend(i);
}

// A quorum write that goes out while the peers look alive, but cannot reach them, must end in
// 504 (written, still replicating): connect a node with Q-1 live peers until it sees them
// alive, cut it off, then write to it.
bool SimCluster::Probe504(bool force) {
  if (force) MakeHealthy();
  auto healthy = [&](size_t k) {
    return Usable(k) && Voter(k) && !nodes_[k].disk_failed && !nodes_[k].store->disk_full();
  };
  std::vector<size_t> candidates;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!healthy(i)) continue;
    int peers = 0;
    for (size_t j = 0; j < nodes_.size(); ++j) {
      if (j != i && healthy(j)) ++peers;
    }
    if (peers + 1 >= config_.quorum) candidates.push_back(i);
  }
  if (candidates.empty()) return false;
  const size_t i = candidates[Rand(candidates.size())];
  Log("probe 504: " + nodes_[i].id + " is connected until it sees its peers alive, then cut off");
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (j == i) continue;
    net_.SetLink(i, j, true);
    net_.SetLink(j, i, true);
  }
  auto alive_peers = [&] {
    if (!nodes_[i].node) return false;
    int alive = 1;
    // Voters only: a learner counts toward no quorum, so the write would be refused up front.
    for (const PeerStatus& p : nodes_[i].node->GetStatus().peers) {
      alive += p.alive && p.role == MemberRole::kVoter ? 1 : 0;
    }
    return alive >= config_.quorum;
  };
  AdvanceFor(Millis(1000), alive_peers);
  if (!alive_peers() || !healthy(i) || !failure_.empty()) return false;
  Isolate(i);
  return ProbeSend(i);
}

void SimCluster::RandomStep() {
  const size_t i = Rand(nodes_.size());
  const size_t j = Rand(nodes_.size());
  const uint64_t r = Rand(1000);
  SimNode& n = nodes_[i];
  if (r < 250) {
    if (Usable(i) && sends_ < config_.max_sends) {
      ClientSend(i);
    } else {
      AdvanceOnce();
    }
  } else if (r < 290) {
    if (Usable(i)) RetrySend(i);
  } else if (r < 320) {
    // Half of the crashes hit a node with writes or client answers in flight.
    size_t target = i;
    if (Rand(2) == 0) {
      std::vector<size_t> busy;
      for (size_t k = 0; k < nodes_.size(); ++k) {
        bool answers = false;
        for (const auto& [id, p] : pending_sends_) answers = answers || p.node == k;
        if (nodes_[k].node && (answers || nodes_[k].store->PendingWrites() > 0)) busy.push_back(k);
      }
      if (!busy.empty()) target = busy[Rand(busy.size())];
    }
    CrashNode(target);
  } else if (r < 370) {
    StartNode(i);
  } else if (r < 380) {
    if (config_.wipes) WipeNode(i);
  } else if (r < 400) {
    if (i != j) {
      net_.SetLink(i, j, false);
      ++counts_.partitions;
      Log(fmt::format("cut {} -> {}", n.id, nodes_[j].id));
    } else {
      Isolate(i);
    }
  } else if (r < 430) {
    net_.HealAll();
    ++counts_.heals;
    Log("heal all links");
  } else if (r < 440) {
    if (config_.pauses && Usable(i)) {
      const Millis d(100 + Rand(1900));
      net_.Pause(i, clock_.Now() + d);
      ++counts_.pauses;
      Log(fmt::format("pause {} for {} ms", n.id, d.count()));
    }
  } else if (r < 445) {
    if (config_.clock_jumps) {
      const Millis d(100 + Rand(2900));
      const double wall = static_cast<double>(Rand(120)) - 60;
      n.clock->JumpAhead(d);
      n.clock->ShiftWall(wall);
      ++counts_.clock_jumps;
      Log(fmt::format("clock of {} jumps {} ms ahead, wall {:+} s", n.id, d.count(), wall));
    }
  } else if (r < 450) {
    if (config_.disk_faults && Rand(2) == 0) {
      if (n.node && !n.disk_failed) {
        n.store->FailWrites(Status::IOError("simulated fsync failure"));
        n.disk_failed = true;
        ++counts_.disk_errors;
        Log("disk of " + n.id + " fails (until its process restarts)");
      }
    } else if (config_.disk_faults && !n.store->disk_full()) {
      const Millis d(200 + Rand(2800));
      n.store->SetDiskFull(true);
      ++counts_.disks_full;
      Log(fmt::format("disk of {} full for {} ms", n.id, d.count()));
      std::weak_ptr<MemoryLogStore> weak = n.store;
      net_.Schedule(d, [this, weak, id = n.id] {
        if (std::shared_ptr<MemoryLogStore> store = weak.lock()) {
          store->SetDiskFull(false);
          Log("disk of " + id + " has space again");
        }
      });
    }
  } else if (r < 455) {
    if (config_.forgeries) Forge(i);
  } else if (r < 460) {
    if (config_.wipes) StaleIncarnationScenario();
  } else if (r < 465) {
    if (config_.rollbacks) {
      n.image = n.store->TakeImage();
      n.image_store_id = n.store_id;
      Log(fmt::format("copy of {}'s data directory taken (seq {})", n.id, n.image->last_seq()));
    }
  } else if (r < 468) {
    if (config_.rollbacks) RollbackNode(i);
  } else if (r < 474) {
    if (config_.membership_changes) RemoveMember(i, j);
  } else if (Rand(2) == 0) {
    AdvanceOnce();
  } else {
    AdvanceFor(Millis(1 + Rand(250)));
  }
}

// ---- invariants ----

bool SimCluster::Forked(const std::string& origin, uint64_t origin_seq) const {
  auto it = forks_.find(origin);
  if (it == forks_.end()) return false;
  for (const auto& [lo, hi] : it->second) {
    if (origin_seq > lo && origin_seq <= hi) return true;
  }
  return false;
}

SimCluster::Violation SimCluster::ObserveLog(size_t i, bool full) {
  SimNode& n = nodes_[i];
  MemoryLogStore& log = *n.store;
  const uint64_t version = log.version();
  if (!full && version == n.observed_version) return {};
  n.observed_version = version;
  std::vector<Seen> before;
  std::map<std::string, uint64_t> hw_before = n.seen_hw;
  if (full) {
    before.swap(n.seen);
    n.seen_ids.clear();
    n.seen_hw.clear();
    n.last_record_position.clear();
  }
  const uint64_t last = log.LastSeq();
  if (!full && !n.seen.empty()) {
    if (last < n.seen.size()) {
      return {"stable-log", fmt::format("{}: its log went back from seq {} to {}: {} at seq {} is gone", n.id,
                         n.seen.size(), last, n.seen[last].msg_id, last + 1)};
    }
    Result<std::optional<Message>> m = log.Get(n.seen.size());
    if (!m.ok() || !m->has_value() || (*m)->msg_id != n.seen.back().msg_id) {
      return {"stable-log", fmt::format("{}: seq {} held {} and now holds {}", n.id, n.seen.size(),
                         n.seen.back().msg_id,
                         m.ok() && m->has_value() ? (*m)->msg_id : std::string("nothing"))};
    }
  }
  // New records.
  const uint64_t first_new = n.seen.size() + 1;
  uint64_t expect = n.seen.size();
  std::string problem;
  ScanOptions scan;
  scan.after = n.seen.size();
  Status s = log.Scan(scan, [&](const Message& m) {
    if (m.seq != ++expect) {
      problem = fmt::format("seq {} where {} was expected", m.seq, expect);
      return false;
    }
    if (!n.seen_ids.insert(m.msg_id).second) {
      problem = fmt::format("msg_id {} stored twice (again at seq {})", m.msg_id, m.seq);
      return false;
    }
    if (m.origin.empty() || m.origin_seq == 0) {
      problem = fmt::format("seq {} ({}) has no origin position", m.seq, m.msg_id);
      return false;
    }
    uint64_t& last_position = n.last_record_position[m.origin];
    if (m.origin_seq <= last_position) {
      problem = fmt::format("seq {} holds {}:{} after a record of position {} of that stream",
                            m.seq, m.origin, m.origin_seq, last_position);
      return false;
    }
    last_position = m.origin_seq;
    n.seen.push_back(Seen{m.msg_id, m.origin, m.origin_seq});
    return true;
  });
  if (!s.ok()) return {"log-shape", n.id + ": scan failed: " + s.ToString()};
  if (!problem.empty()) return {"log-shape", n.id + ": " + problem};
  if (expect != last) return {"log-shape", fmt::format("{}: LastSeq {} but {} records", n.id, last, expect)};
  for (uint64_t seq = first_new; seq <= n.seen.size(); ++seq) {
    Result<std::optional<Message>> m = log.FindByMsgId(n.seen[seq - 1].msg_id);
    if (!m.ok() || !m->has_value() || (*m)->seq != seq) {
      return {"log-shape", fmt::format("{}: the msg_id index does not point {} at its seq {}", n.id,
                         n.seen[seq - 1].msg_id, seq)};
    }
  }
  if (full) {
    for (size_t k = 0; k < before.size(); ++k) {
      if (k >= n.seen.size() || n.seen[k].msg_id != before[k].msg_id) {
        return {"stable-log", fmt::format("{}: seq {} held {} and now holds {}", n.id, k + 1, before[k].msg_id,
                           k < n.seen.size() ? n.seen[k].msg_id : std::string("nothing"))};
      }
    }
  }
  // Positions: what changed in each origin's index.
  std::map<std::pair<std::string, uint64_t>, uint64_t> new_positions;  // -> seq
  for (const auto& [origin, hw] : log.HighWaters()) {
    auto prev = hw_before.find(origin);
    if (prev != hw_before.end() && hw < prev->second) {
      return {"stable-log", fmt::format("{}: high water of {} went down from {} to {}", n.id, origin,
                         prev->second, hw)};
    }
    uint64_t& seen_hw = n.seen_hw[origin];
    if (hw == seen_hw) continue;
    Result<std::vector<Message>> entries = log.ReadOrigin(origin, seen_hw, SIZE_MAX, SIZE_MAX);
    if (!entries.ok()) return {"log-shape", n.id + ": ReadOrigin failed: " + entries.status().ToString()};
    uint64_t p = seen_hw;
    for (const Message& e : *entries) {
      ++p;
      if (e.origin_seq != p) {
        return {"log-shape", fmt::format("{}: stream {} has no position {} (next is {}), high water {}", n.id,
                           origin, p, e.origin_seq, hw)};
      }
      if (e.seq == 0 || e.seq > n.seen.size()) {
        return {"log-shape", fmt::format("{}: position {}:{} points at seq {}, beyond the log", n.id, origin, p,
                           e.seq)};
      }
      const Seen& rec = n.seen[e.seq - 1];
      // A message at two positions of one stream happens only where a rollback forked it: the
      // restored node wrote it again (a message it lost, retried) at another position.
      if (rec.origin == origin && rec.origin_seq != p && !Forked(origin, p) &&
          !Forked(origin, rec.origin_seq)) {
        return {"log-shape", fmt::format("{}: position {}:{} points at seq {}, which is position {}", n.id,
                           origin, p, e.seq, rec.origin_seq)};
      }
      new_positions[{origin, p}] = e.seq;
      auto [known, inserted] = positions_.emplace(std::make_pair(origin, p), rec.msg_id);
      if (Forked(origin, p)) {
        forked_ids_.insert(rec.msg_id);
        forked_ids_.insert(known->second);
      } else if (!inserted && known->second != rec.msg_id) {
        return {"agreement", fmt::format("{} holds {} at {}:{} where another log showed {}", n.id, rec.msg_id,
                           origin, p, known->second)};
      }
      uint64_t& max_position = max_position_[origin];
      max_position = std::max(max_position, p);
    }
    if (p != hw) {
      return {"log-shape", fmt::format("{}: stream {} has positions up to {}, high water {}", n.id, origin, p,
                         hw)};
    }
    seen_hw = hw;
  }
  // Every new record sits at a position new to its origin's index.
  for (uint64_t seq = first_new; seq <= n.seen.size(); ++seq) {
    const Seen& rec = n.seen[seq - 1];
    auto it = new_positions.find({rec.origin, rec.origin_seq});
    if (it == new_positions.end() || it->second != seq) {
      return {"log-shape", fmt::format("{}: seq {} holds {} at {}:{}, a position its index {}", n.id, seq,
                         rec.msg_id, rec.origin, rec.origin_seq,
                         it == new_positions.end() ? "held before"
                                                   : fmt::format("gives to seq {}", it->second))};
    }
  }
  return {};
}

SimCluster::Violation SimCluster::CheckPullCursors(size_t i) {
  SimNode& n = nodes_[i];
  for (size_t j = 0; j < nodes_.size(); ++j) {
    if (j == i) continue;
    const SimNode& peer = nodes_[j];
    const std::string url = PeerUrl(peer.id);
    const PullCursor c = n.store->GetPullCursor(url);
    PullCursor& checked = n.checked_pull[url];
    if (c == checked) continue;
    const uint64_t from =
        c.peer_stream == checked.peer_stream && c.seq >= checked.seq ? checked.seq : 0;
    checked = c;
    if (c.peer_stream != peer.store->stream_id() || peer.rolled_back) continue;
    for (uint64_t seq = from + 1; seq <= c.seq && seq <= peer.seen.size(); ++seq) {
      const Seen& m = peer.seen[seq - 1];
      if (n.seen_ids.count(m.msg_id)) continue;
      auto hw = n.seen_hw.find(m.origin);
      if (hw != n.seen_hw.end() && hw->second >= m.origin_seq) continue;
      return {"pull-cursor", fmt::format("{}'s pull cursor for {} is at its seq {}, past seq {} ({} at {}:{}), "
                         "which {} neither holds nor covers",
                         n.id, peer.id, c.seq, seq, m.msg_id, m.origin, m.origin_seq, n.id)};
    }
  }
  return {};
}

SimCluster::Violation SimCluster::CheckInvariants(bool full) {
  std::vector<uint64_t> versions;
  for (const SimNode& n : nodes_) versions.push_back(n.observed_version);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (Violation v = ObserveLog(i, full); v.found()) return v;
  }
  bool changed = full || acked_.size() != checked_acks_ || msgs_.size() != checked_msgs_;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].observed_version == versions[i]) continue;
    changed = true;
    if (Violation v = CheckPullCursors(i); v.found()) return v;
  }
  if (!changed) return {};
  checked_acks_ = acked_.size();
  checked_msgs_ = msgs_.size();
  auto held_anywhere = [&](const std::string& id) {
    for (const SimNode& n : nodes_) {
      if (n.seen_ids.count(id)) return true;
    }
    return false;
  };
  for (const std::string& id : acked_) {
    if (!lost_.count(id) && !held_anywhere(id)) return {"acked-kept", "acked " + id + " is on no node"};
  }
  for (const auto& [id, st] : msgs_) {
    if (st.refused && !st.maybe_written && st.in_flight == 0 && held_anywhere(id)) {
      return {"refused-nowhere", "refused " + id + " (503, never written) is stored"};
    }
  }
  return {};
}

std::string SimCluster::CheckFloors() const {
  std::vector<std::string> missing;
  auto floor = [&](const char* what, int got, int want) {
    if (got < want) missing.push_back(fmt::format("{} {} < {}", what, got, want));
  };
  floor("acks", counts_.acks, config_.min_acks);
  floor("503s", counts_.refused_503, config_.min_503);
  floor("504s", counts_.timeouts_504, config_.min_504);
  floor("crashes", counts_.crashes, config_.min_crashes);
  if (config_.wipes) floor("wipes", counts_.wipes, config_.min_wipes);
  floor("partitions", counts_.partitions, config_.min_partitions);
  if (missing.empty()) return "";
  return fmt::format("activity floor not reached: {} ({})", fmt::join(missing, ", "),
                     counts().ToString());
}

bool SimCluster::ExcusedFromConvergence(const std::string& msg_id) const {
  if (forked_ids_.count(msg_id)) return true;
  // Held only where a rollback reused seqs that peers' pull cursors had already passed?
  bool any = false;
  for (const SimNode& n : nodes_) {
    if (!n.seen_ids.count(msg_id)) continue;
    any = true;
    if (!n.rolled_back) return false;
    Result<std::optional<Message>> m = n.store->FindByMsgId(msg_id);
    if (!m.ok() || !m->has_value() || (*m)->seq > n.shadow_seq) return false;
  }
  return any;
}

bool SimCluster::Converged() {
  const std::set<std::string>* first = nullptr;
  for (const SimNode& n : nodes_) {
    if (!n.node) return false;
    if (first == nullptr) {
      first = &n.seen_ids;
      continue;
    }
    if (n.seen_ids == *first) continue;
    // Differences are allowed only for messages a rollback excuses.
    std::vector<std::string> diff;
    std::set_symmetric_difference(first->begin(), first->end(), n.seen_ids.begin(),
                                  n.seen_ids.end(), std::back_inserter(diff));
    for (const std::string& id : diff) {
      if (!ExcusedFromConvergence(id)) return false;
    }
  }
  return true;
}

std::string SimCluster::PeerView(size_t i) const {
  const SimNode& n = nodes_[i];
  if (!n.node) return " (down)";
  std::string out;
  for (const PeerStatus& p : n.node->GetStatus().peers) {
    out += fmt::format("\n   peer {} ({}) alive={} push={} lag={} problem='{}' pull={}:{}", p.url,
                       p.stream, p.alive, p.push_cursor, p.lag_messages, p.push_problem,
                       p.pull_cursor.peer_stream, p.pull_cursor.seq);
  }
  return out;
}

std::string SimCluster::Differences() {
  std::set<std::string> all;
  for (const SimNode& n : nodes_) all.insert(n.seen_ids.begin(), n.seen_ids.end());
  std::string out;
  for (const SimNode& n : nodes_) {
    std::vector<std::string> missing;
    for (const std::string& id : all) {
      if (!n.seen_ids.count(id)) missing.push_back(id);
    }
    out += fmt::format("\n{} ({}) holds {}, misses {}; high waters:", n.id, n.store->stream_id(),
                       n.seen_ids.size(), fmt::join(missing, ","));
    for (const auto& [o, hw] : n.store->HighWaters()) out += fmt::format(" {}={}", o, hw);
    if (n.node) {
      for (const PeerStatus& p : n.node->GetStatus().peers) {
        out += fmt::format("\n   peer {} alive={} fails={} push={} lag={} pull={}:{}", p.url,
                           p.alive, p.consecutive_failures, p.push_cursor, p.lag_messages,
                           p.pull_cursor.peer_stream, p.pull_cursor.seq);
      }
    }
  }
  return out;
}

// ---- the schedule ----

std::string SimCluster::Run() {
  // Some faults and both probes are placed at random steps (or the first step after, when
  // another forced action took that one), so that every run has them.
  auto somewhere = [&] { return config_.steps / 10 + static_cast<int>(Rand(config_.steps * 7 / 10)); };
  const int probe_503_at = somewhere();
  const int probe_504_at = somewhere();
  const int crash_at = somewhere();
  const int wipe_at = somewhere();
  bool probed_503 = false;
  bool probed_504 = false;
  const int force_probes_at = config_.steps - 40;
  for (step_ = 0; step_ < config_.steps && failure_.empty(); ++step_) {
    const int crashes = counts_.crashes;
    bool acted = false;
    if (!probed_503 && step_ >= probe_503_at) {
      acted = probed_503 = Probe503(step_ >= force_probes_at);
    }
    if (!acted && !probed_504 && step_ >= probe_504_at) {
      acted = probed_504 = Probe504(step_ >= force_probes_at);
    }
    if (!acted && step_ >= crash_at && counts_.crashes == 0) {
      for (size_t i = 0; i < nodes_.size() && !acted; ++i) {
        if (nodes_[i].node) {
          CrashNode(i);
          acted = true;
        }
      }
    }
    if (!acted && step_ >= wipe_at && counts_.wipes == 0 && config_.wipes) {
      WipeNode(Rand(nodes_.size()));
      acted = true;
    }
    if (!acted) RandomStep();
    if (!failure_.empty()) break;
    // In full after crashes (a crash drops what was not durable) and every 25 steps.
    const bool full = counts_.crashes != crashes || step_ % 25 == 0;
    if (Violation v = CheckInvariants(full); v.found()) Fail(v);
  }
  if (!failure_.empty()) return failure_;

  // Heal everything, restart what is down or has a failed disk, and wait for convergence.
  net_.HealAll();
  net_.options().drop_probability = 0;
  net_.options().duplicate_probability = 0;
  net_.options().late_probability = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].disk_failed) CrashNode(i);
    nodes_[i].store->SetDiskFull(false);
    StartNode(i);
  }
  for (size_t j : std::set<size_t>(removed_)) ReAdd(j);
  Log("final: healed, all nodes up, every removed node added back");
  const MonoTime give_up = clock_.Now() + std::chrono::seconds(120);
  MonoTime next_look = clock_.Now();
  int stalled = 0;
  while (failure_.empty() && clock_.Now() < give_up) {
    if (clock_.Now() >= next_look) {
      if (Converged()) break;
      // The operator's part: a node some member sees as out is added back.
      RepairMembership();
      next_look = clock_.Now() + Millis(100);
    }
    const MonoTime before = clock_.Now();
    if (!AdvanceBatch()) break;
    stalled = clock_.Now() == before ? stalled + 1 : 0;
    if (stalled > 10000) Fail("liveness", "time stands still: a node's deadline stays in the past");
    if (Violation v = CheckInvariants(false); v.found()) Fail(v);
  }
  if (!failure_.empty()) return failure_;
  if (Violation v = CheckInvariants(true); v.found()) Fail(v);
  if (failure_.empty() && !Converged()) {
    Fail("convergence",
         "no convergence within 120 simulated seconds after healing: " + Differences());
  }
  for (const std::string& id : acked_) {
    if (!failure_.empty()) break;
    if (lost_.count(id) || ExcusedFromConvergence(id)) continue;
    int holders = 0;
    for (const SimNode& n : nodes_) holders += n.seen_ids.count(id) ? 1 : 0;
    if (holders != static_cast<int>(nodes_.size())) {
      Fail("convergence", fmt::format("acked {} held by {} of {} nodes after convergence", id,
                                      holders, nodes_.size()));
    }
  }
  if (failure_.empty()) CheckLagAfterConvergence();
  if (failure_.empty()) {
    if (std::string floors = CheckFloors(); !floors.empty()) Fail("floors", floors);
  }
  return failure_;
}

// Replication never stops silently: a few seconds after convergence, with every node up and
// connected, each node's lag to each peer is gone, or the node names why (a conflict, a message
// the peer cannot take) in its status.
void SimCluster::CheckLagAfterConvergence() {
  AdvanceFor(Millis(3000));
  if (!failure_.empty()) return;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i].node) continue;
    for (const PeerStatus& p : nodes_[i].node->GetStatus().peers) {
      if (p.lag_messages == 0 || !p.push_problem.empty()) continue;
      Fail("replication-lag",
           fmt::format("{} still lags {} messages behind on {} 3 s after convergence, and its "
                       "status names no problem; its view:{}",
                       nodes_[i].id, p.lag_messages, p.url, PeerView(i)));
      return;
    }
  }
}

}  // namespace dsm

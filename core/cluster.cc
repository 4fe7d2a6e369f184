// Membership (include/dsm/membership.h): the changes made on this node (AddMember,
// RemoveMember), what peers' heartbeat answers say about it, learners promoting themselves, and
// GET /cluster.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/peer_url.h"
#include "core/node_impl.h"

namespace dsm {

const char* MemberRoleName(MemberRole role) {
  switch (role) {
    case MemberRole::kVoter:
      return "voter";
    case MemberRole::kLearner:
      return "learner";
    case MemberRole::kRemoved:
      return "removed";
  }
  return "voter";
}

namespace {

std::string JoinUrls(const std::set<std::string>& urls) {
  return urls.empty() ? std::string("none") : fmt::format("{}", fmt::join(urls, ", "));
}

}  // namespace

void Node::Impl::LoadMembership() {
  Result<std::string> stored = log->GetMembership();
  Actions ignored;
  MutexLock lock(&mu);
  for (const std::string& url : options.peers) membership.Insert(MemberEntry{url, "", 0, 0, true});
  std::optional<StoredMembership> doc;
  if (!stored.ok()) {
    Event(EventLevel::kWarning,
          fmt::format("reading the stored membership failed ({}): replicating with --peers",
                      stored.status().ToString()));
  } else if (!stored->empty() && !(doc = DecodeMembership(*stored))) {
    Event(EventLevel::kWarning,
          "the stored membership is unreadable: replicating with --peers until a member tells "
          "this node the cluster's membership");
  }
  if (doc) {
    // Once a change was made, the stored membership decides; --peers only starts a cluster.
    membership = std::move(doc->membership);
    self_url = std::move(doc->self_url);
    const std::set<std::string> given(options.peers.begin(), options.peers.end());
    std::set<std::string> members;
    for (const MemberEntry& e : membership.entries) {
      if (e.member() && e.url != self_url) members.insert(e.url);
    }
    for (PeerState& p : peers) {
      const MemberEntry* e = membership.Find(p.url);
      p.member = e != nullptr && e->member();
      p.voter = p.member && e->voter;
    }
    if (given != members) {
      Event(EventLevel::kWarning,
            fmt::format("--peers ({}) differs from the stored membership (version {}: {}); the "
                        "stored membership is used (change it with POST /cluster/members and "
                        "DELETE /cluster/members/{{id}})",
                        JoinUrls(given), membership.version, JoinUrls(members)));
    }
  }
  ApplyMembership(clock->Now(), /*persist=*/false, &ignored);
}

const MemberEntry* Node::Impl::SelfEntry() const {
  return self_url.empty() ? nullptr : membership.Find(self_url);
}

MemberRole Node::Impl::SelfRole() const {
  const MemberEntry* e = SelfEntry();
  // A node no change named is what its --peers make it.
  if (e == nullptr) return MemberRole::kVoter;
  if (!e->member()) return MemberRole::kRemoved;
  return e->voter ? MemberRole::kVoter : MemberRole::kLearner;
}

PeerState Node::Impl::NewPeer(size_t index, const std::string& url) const {
  PeerState p;
  p.index = index;
  p.url = url;
  p.push_max_messages = std::max<size_t>(1, options.batch_messages);
  p.push_max_bytes = MaxRequestBytes(options);
  return p;
}

bool Node::Impl::IsOwnUrl(const std::string& url) const {
  std::string host;
  int port = 0;
  return url == self_url ||
         (SplitUrl(url, &host, &port) && IsSelf(host, port, options.host, options.port));
}

void Node::Impl::StartPeer(PeerState& p, MonoTime now, uint64_t own_hw) {
  // A cursor beyond our stream means the cursor outlived a restored data directory: resend.
  const PushCursor cursor = log->GetPushCursor(p.url);
  p.push_cursor = std::min(cursor.origin_seq, own_hw);
  p.push_stream = cursor.peer_stream;
  p.push_sent = p.push_cursor;
  p.known_since = now;
  p.next_heartbeat = now;
  p.push_not_before = now;
  p.next_pull = now;
}

void Node::Impl::ApplyMembership(MonoTime now, bool persist, Actions* a) {
  if (self_url.empty()) {
    // A member told us which entry is ours (it learned our node id from our heartbeat answer).
    for (const MemberEntry& e : membership.entries) {
      if (!e.node_id.empty() && e.node_id == options.id) {
        self_url = e.url;
        persist = persist || membership.version > 0;
        break;
      }
    }
  }
  const uint64_t own_hw = log->HighWater(log->stream_id());
  for (const MemberEntry& e : membership.entries) {
    if (!e.member() || e.url == self_url) continue;
    if (std::any_of(peers.begin(), peers.end(),
                    [&](const PeerState& p) { return p.url == e.url; })) {
      continue;
    }
    PeerState p = NewPeer(peers.size(), e.url);
    p.added = true;
    p.voter = e.voter;
    StartPeer(p, started ? now : started_at, own_hw);
    transport->AddPeer(p.index, p.url);
    Event(EventLevel::kInfo, fmt::format("member {} joined (membership version {}) as a {}", p.url,
                                         membership.version, e.voter ? "voter" : "learner"));
    peers.push_back(std::move(p));
  }
  bool new_voter = false;
  for (PeerState& p : peers) {
    const MemberEntry* e = membership.Find(p.url);
    const bool member = e != nullptr && e->member();
    const bool voter = member && e->voter;
    if (!p.self && p.url == self_url) {
      p.self = true;
      Event(EventLevel::kInfo, fmt::format("{} is this node's own URL: not a peer", p.url));
    }
    if (p.member && !member && !p.self) {
      // Whatever is in flight counts for nothing when it returns; nothing new is sent.
      RewindPush(p);
      ++p.pull_epoch;
      Event(EventLevel::kWarning,
            fmt::format("{} was removed from the cluster (membership version {}): no more "
                        "heartbeats, pushes, pulls or quorum counting",
                        p.url, membership.version));
    } else if (!p.member && member) {
      p.added = true;  // a new add of the URL: heard from before anything is sent
      p.stream.clear();
      StartPeer(p, now, own_hw);
      p.pull_wanted = true;
      Event(EventLevel::kInfo,
            fmt::format("{} is a member again (membership version {})", p.url, membership.version));
    } else if (member && p.voter != voter && !p.self) {
      Event(EventLevel::kInfo,
            fmt::format("{} is {}", p.url,
                        voter ? "a voter: it counts toward quorums"
                              : "a learner: it counts toward no quorum until it catches up"));
    }
    new_voter = new_voter || (voter && !p.voter);
    p.member = member;
    p.voter = voter;
  }
  if (new_voter) CollectSatisfied(a);
  if (persist) a->persist_membership = true;
  a->wake = true;
}

uint64_t Node::Impl::LagOf(const PeerState& p, const std::map<std::string, uint64_t>& mine) const {
  uint64_t lag = 0;
  for (const auto& [origin, hw] : mine) {
    auto it = p.high_waters.find(origin);
    const uint64_t theirs = it == p.high_waters.end() ? 0 : it->second;
    if (hw > theirs) lag += hw - theirs;
  }
  return lag;
}

void Node::Impl::MaybePromote(Actions* a) {
  MemberEntry* e = self_url.empty() ? nullptr : membership.Find(self_url);
  if (e == nullptr || !e->member() || e->voter) return;
  // What each live member holds that this node lacks, by their last heartbeats; a member not
  // heard from yet (alive or dead) may hold more.
  uint64_t behind = 0;
  size_t heard = 0;
  for (const PeerState& p : peers) {
    if (!p.active() || p.liveness == Liveness::kDead) continue;
    if (p.liveness == Liveness::kUnknown) return;
    if (p.stream.empty()) continue;
    ++heard;
    uint64_t lacks = 0;
    for (const auto& [origin, hw] : p.high_waters) {
      const uint64_t held = log->HighWater(origin);
      if (hw > held) lacks += hw - held;
    }
    behind = std::max(behind, lacks);
  }
  if (heard == 0 || behind > options.learner_max_lag) return;
  e->voter = true;
  ++membership.version;
  Event(EventLevel::kInfo,
        fmt::format("caught up with every live member (at most {} messages behind, "
                    "--learner-max-lag {}): this node is now a voter (membership version {})",
                    behind, options.learner_max_lag, membership.version));
  a->persist_membership = true;
  a->wake = true;
}

void Node::Impl::NoteMembership(PeerState& p, const HeartbeatReply& r, MonoTime now, Actions* a) {
  bool changed = false;
  if (MemberEntry* e = membership.Find(p.url);
      e != nullptr && !r.node_id.empty() && e->node_id != r.node_id) {
    e->node_id = r.node_id;
    changed = true;
  }
  if (r.membership && r.membership->version > 0) {
    changed = MergeMembership(&membership, *r.membership) || changed;
  }
  if (changed) ApplyMembership(now, membership.version > 0, a);
  MaybePromote(a);
}

void Node::Impl::HearMembership(const Membership& m) {
  Actions a;
  {
    MutexLock lock(&mu);
    if (stopped || !MergeMembership(&membership, m)) return;
    ApplyMembership(clock->Now(), /*persist=*/true, &a);
    CollectDue(clock->Now(), &a);
  }
  Run(std::move(a));
}

Status Node::Impl::PersistMembership() {
  std::string doc;
  {
    MutexLock lock(&mu);
    doc = EncodeMembership(membership, self_url);
  }
  return log->SetMembership(doc);
}

Result<MemberStatus> Node::Impl::ChangeMembership(const Decide& decide) {
  Actions a;
  Result<MemberStatus> changed = Status::Unavailable("shutting down");
  {
    MutexLock change(&change_mu);
    Membership candidate;
    std::string self;
    std::string what;
    {
      MutexLock lock(&mu);
      if (stopped) return Status::Unavailable("shutting down");
      if (SelfRole() == MemberRole::kRemoved) {
        return Status::Conflict(
            "this node was removed from the cluster: make membership changes on a member");
      }
      candidate = membership;
      changed = decide(&candidate, &what);
      if (!changed.ok()) return changed;
      self = self_url;
    }
    // Stored first: a change that could not be stored is made nowhere (not even in memory,
    // where the heartbeats would spread it).
    Status stored = log->SetMembership(EncodeMembership(candidate, self));
    if (!stored.ok()) {
      const std::string text =
          "the membership could not be stored, so nothing changed: " + stored.message();
      return stored.code() == Code::kUnavailable ? Status::Unavailable(text)
                                                 : Status::IOError(text);
    }
    MutexLock lock(&mu);
    MergeMembership(&membership, candidate);
    Event(EventLevel::kInfo,
          fmt::format("membership change here: {} (version {})", what, candidate.version));
    // What heartbeats merged meanwhile is stored too.
    ApplyMembership(clock->Now(), /*persist=*/!(membership == candidate), &a);
  }
  Run(std::move(a));
  return changed;
}

Result<MemberStatus> Node::AddMember(const std::string& url) {
  Impl& d = *impl_;
  return d.ChangeMembership(
      [&](Membership* m, std::string* what) EXCLUSIVE_LOCKS_REQUIRED(d.mu) -> Result<MemberStatus> {
        // The URL is checked by the caller (the HTTP layer normalizes it).
        if (d.IsOwnUrl(url)) {
          return Status::InvalidArgument(url + " is this node");
        }
        MemberEntry* e = m->Find(url);
        if (e != nullptr && e->member()) {
          return Status::Conflict(
              fmt::format("{} is a member already (a {})", url, e->voter ? "voter" : "learner"));
        }
        // A learner until it catches up; a new add of the URL if it was removed before.
        MemberEntry added{url, "", m->version + 1, 0, false};
        m->version = added.added;
        if (e != nullptr) {
          *e = std::move(added);
        } else {
          m->Insert(std::move(added));
        }
        *what = "added " + url + " as a learner";
        MemberStatus status;
        status.url = url;
        status.role = MemberRole::kLearner;
        return status;
      });
}

Result<MemberStatus> Node::RemoveMember(const std::string& id) {
  Impl& d = *impl_;
  return d.ChangeMembership(
      [&](Membership* m, std::string* what) EXCLUSIVE_LOCKS_REQUIRED(d.mu) -> Result<MemberStatus> {
        if (id == options_.id || d.IsOwnUrl(id)) {
          return Status::Conflict(id + " is this node: send its removal to another member");
        }
        // By URL, by the id the member reported, or by the id in its stream (a peer of --peers
        // whose entry was not told its id yet).
        std::string url = id;
        for (const PeerState& p : d.peers) {
          if (p.active() && !p.stream.empty() && p.stream.substr(0, p.stream.find('@')) == id) {
            url = p.url;
          }
        }
        auto it = std::find_if(m->entries.begin(), m->entries.end(), [&](const MemberEntry& e) {
          return e.member() && (e.url == url || e.node_id == id);
        });
        if (it == m->entries.end()) {
          return Status::NotFound("no member " + id +
                                  " (GET /cluster lists them by id and URL; a member's id is known "
                                  "once it answered a heartbeat)");
        }
        // Removing a learner leaves the voters as they are.
        if (options_.mode == ReplicationMode::kSyncQuorum && it->voter) {
          int voters = 1;  // this node
          for (const PeerState& p : d.peers) {
            if (p.counts() && p.url != it->url) ++voters;
          }
          if (voters < options_.quorum) {
            return Status::Conflict(fmt::format(
                "removing {} would leave {} voter{} (this node included), fewer than --quorum {}",
                id, voters, voters == 1 ? "" : "s", options_.quorum));
          }
        }
        it->removed = ++m->version;
        *what = "removed " + it->url;
        MemberStatus status;
        status.id = it->node_id;
        status.url = it->url;
        status.role = MemberRole::kRemoved;
        return status;
      });
}

ClusterStatus Node::GetCluster() const {
  Impl& d = *impl_;
  const std::map<std::string, uint64_t> mine = d.log->HighWaters();
  ClusterStatus c;
  MutexLock lock(&d.mu);
  c.version = d.membership.version;
  MemberStatus self;
  self.id = options_.id;
  self.url = d.self_url;
  self.role = d.SelfRole();
  self.self = true;
  self.alive = true;
  c.members.push_back(std::move(self));
  const MonoTime now = d.clock->Now();
  for (const PeerState& p : d.peers) {
    if (!p.active()) continue;
    MemberStatus m;
    const MemberEntry* e = d.membership.Find(p.url);
    m.id =
        e != nullptr && !e->node_id.empty() ? e->node_id : p.stream.substr(0, p.stream.find('@'));
    m.url = p.url;
    m.role = p.voter ? MemberRole::kVoter : MemberRole::kLearner;
    m.alive = p.liveness == Liveness::kAlive && now - p.last_ok < d.options.heartbeat_timeout;
    m.lag = d.LagOf(p, mine);
    c.members.push_back(std::move(m));
  }
  return c;
}

}  // namespace dsm

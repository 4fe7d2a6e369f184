// Cluster membership: which nodes replicate with each other, as every node learns it.
//
// A node starts with its --peers and no membership changes (version 0): it replicates with
// exactly those peers, as the seed's topologies need. A change (POST /cluster/members,
// DELETE /cluster/members/{id}) is made on one node and reaches the others in heartbeat
// answers; each node merges what it hears into its own membership, persists it, and from then on
// replicates with every member.
//
// The membership is a set of entries keyed by URL that merges without coordination (a
// join-semilattice, so every order of hearing the same changes ends in the same membership):
//  - `added` is the Lamport stamp of the change that added the URL (0: a member from --peers).
//    A higher stamp is a newer add of the URL and replaces the entry: a learner again.
//  - `removed` is the stamp of the change that removed that add (0: still a member). At the same
//    `added`, the entry is removed once either side says so: a removal is never undone by an
//    older view, only by a newer add.
//  - `voter`: the member counts toward quorums. Members from --peers are voters; an added member
//    starts as a learner and promotes itself once it has caught up (at the same `added`, a voter
//    on either side is a voter).
// `version` is the highest stamp seen: the Lamport clock the next change is stamped after.
//
// Concurrent changes of different URLs all survive; concurrent changes of one URL resolve the
// same way everywhere (the newer add wins; a removal wins over a promotion). There is no
// consensus: two nodes told at once to remove two different voters may both accept, and each
// checks only its own view against its --quorum.
//
// Pure data and functions, thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsm {

struct MemberEntry {
  std::string url;      // "http://host:port", the key
  std::string node_id;  // as the member said in a heartbeat answer, "" until known
  uint64_t added = 0;
  uint64_t removed = 0;
  bool voter = true;

  bool member() const { return removed == 0; }
  bool operator==(const MemberEntry&) const = default;
};

struct Membership {
  uint64_t version = 0;
  std::vector<MemberEntry> entries;  // sorted by url, one per url

  const MemberEntry* Find(std::string_view url) const;
  MemberEntry* Find(std::string_view url);
  // Inserts `e` in url order (REQUIRES: no entry of its url).
  MemberEntry& Insert(MemberEntry e);
  bool operator==(const Membership&) const = default;
};

// Merges `other` into `*mine`. Returns whether `*mine` changed.
bool MergeMembership(Membership* mine, const Membership& other);

// The stored form (LogStore::SetMembership): a versioned binary document with the node's own
// URL when it learned it ("" when not).
std::string EncodeMembership(const Membership& m, std::string_view self_url);
// nullopt when the document is malformed.
struct StoredMembership {
  Membership membership;
  std::string self_url;
};
std::optional<StoredMembership> DecodeMembership(std::string_view document);

// Limits on what a peer may send (a heartbeat answer with more is not believed).
inline constexpr size_t kMaxMembers = 256;

}  // namespace dsm

// Cluster membership: the merge and the stored form (pure data, shared by the core, the storage
// reader and dsm-dbdump). See include/dsm/membership.h.
#include "dsm/membership.h"

#include <algorithm>

#include "common/encoding.h"

namespace dsm {
namespace {

constexpr char kDocumentFormat = 1;

bool UrlLess(const MemberEntry& e, std::string_view url) { return e.url < url; }

}  // namespace

const MemberEntry* Membership::Find(std::string_view url) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), url, UrlLess);
  return it != entries.end() && it->url == url ? &*it : nullptr;
}

MemberEntry* Membership::Find(std::string_view url) {
  return const_cast<MemberEntry*>(static_cast<const Membership*>(this)->Find(url));
}

MemberEntry& Membership::Insert(MemberEntry e) {
  auto it = std::lower_bound(entries.begin(), entries.end(), e.url, UrlLess);
  return *entries.insert(it, std::move(e));
}

bool MergeMembership(Membership* mine, const Membership& other) {
  const Membership before = *mine;
  mine->version = std::max(mine->version, other.version);
  for (const MemberEntry& theirs : other.entries) {
    MemberEntry* e = mine->Find(theirs.url);
    if (e == nullptr) {
      mine->Insert(theirs);
      continue;
    }
    if (theirs.added > e->added) {
      *e = theirs;  // a newer add of the URL
      continue;
    }
    if (theirs.added < e->added) continue;  // an older add: ours replaced it
    e->removed = std::max(e->removed, theirs.removed);
    e->voter = e->voter || theirs.voter;
    // The node id is what the member itself said; two different ones (a URL reused by another
    // node) resolve the same way everywhere.
    e->node_id = std::max(e->node_id, theirs.node_id);
  }
  return !(*mine == before);
}

std::string EncodeMembership(const Membership& m, std::string_view self_url) {
  std::string out(1, kDocumentFormat);
  PutVarint64(&out, m.version);
  PutLengthPrefixed(&out, self_url);
  PutVarint64(&out, m.entries.size());
  for (const MemberEntry& e : m.entries) {
    PutLengthPrefixed(&out, e.url);
    PutLengthPrefixed(&out, e.node_id);
    PutVarint64(&out, e.added);
    PutVarint64(&out, e.removed);
    out.push_back(e.voter ? 1 : 0);
  }
  return out;
}

std::optional<StoredMembership> DecodeMembership(std::string_view in) {
  if (in.empty() || in.front() != kDocumentFormat) return std::nullopt;
  in.remove_prefix(1);
  StoredMembership s;
  std::string_view self_url;
  uint64_t count = 0;
  if (!GetVarint64(&in, &s.membership.version) || !GetLengthPrefixed(&in, &self_url) ||
      !GetVarint64(&in, &count) || count > kMaxMembers) {
    return std::nullopt;
  }
  s.self_url = std::string(self_url);
  for (uint64_t i = 0; i < count; ++i) {
    MemberEntry e;
    std::string_view url, node_id;
    if (!GetLengthPrefixed(&in, &url) || url.empty() || !GetLengthPrefixed(&in, &node_id) ||
        !GetVarint64(&in, &e.added) || !GetVarint64(&in, &e.removed) || in.empty() ||
        static_cast<unsigned char>(in.front()) > 1) {
      return std::nullopt;
    }
    e.url = std::string(url);
    e.node_id = std::string(node_id);
    e.voter = in.front() == 1;
    in.remove_prefix(1);
    if (s.membership.Find(e.url) != nullptr) return std::nullopt;
    s.membership.Insert(std::move(e));
  }
  if (!in.empty()) return std::nullopt;
  return s;
}

}  // namespace dsm

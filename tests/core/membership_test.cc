// The membership merge (include/dsm/membership.h): every order of hearing the same views ends in
// the same membership, and the stored form round-trips and refuses damage.
#include "dsm/membership.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

namespace dsm {
namespace {

Membership Of(uint64_t version, std::vector<MemberEntry> entries) {
  Membership m;
  m.version = version;
  for (MemberEntry& e : entries) m.Insert(std::move(e));
  return m;
}

TEST(MembershipTest, ARemovalIsNeverUndoneByAnOlderViewOnlyByANewerAdd) {
  Membership mine = Of(2, {{"http://a:1", "a", 1, 2, false}});
  // A view from before the removal, where the member even got promoted.
  MergeMembership(&mine, Of(1, {{"http://a:1", "a", 1, 0, true}}));
  EXPECT_FALSE(mine.Find("http://a:1")->member());
  // A newer add of the URL: a learner again.
  EXPECT_TRUE(MergeMembership(&mine, Of(3, {{"http://a:1", "", 3, 0, false}})));
  EXPECT_TRUE(mine.Find("http://a:1")->member());
  EXPECT_FALSE(mine.Find("http://a:1")->voter);
  EXPECT_EQ(mine.version, 3u);
}

TEST(MembershipTest, APromotionOfTheSameAddIsKept) {
  Membership mine = Of(1, {{"http://a:1", "", 1, 0, false}});
  EXPECT_TRUE(MergeMembership(&mine, Of(2, {{"http://a:1", "a", 1, 0, true}})));
  EXPECT_TRUE(mine.Find("http://a:1")->voter);
  EXPECT_EQ(mine.Find("http://a:1")->node_id, "a");
  EXPECT_FALSE(MergeMembership(&mine, Of(1, {{"http://a:1", "", 1, 0, false}})))
      << "an older view changes nothing";
}

// Random views built from the same changes, merged in every order: one result.
TEST(MembershipTest, MergingIsOrderIndependentAndIdempotent) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<Membership> views;
    for (int v = 0; v < 4; ++v) {
      Membership m;
      for (int u = 0; u < 4; ++u) {
        if (rng() % 3 == 0) continue;
        MemberEntry e;
        e.url = "http://n" + std::to_string(u) + ":1";
        e.added = rng() % 3;
        e.removed = rng() % 2 == 0 ? 0 : e.added + 1 + rng() % 2;
        e.voter = e.added == 0 || rng() % 2 == 0;
        e.node_id = rng() % 2 == 0 ? "" : "n" + std::to_string(u);
        m.version = std::max({m.version, e.added, e.removed});
        m.Insert(std::move(e));
      }
      views.push_back(std::move(m));
    }
    std::vector<int> order = {0, 1, 2, 3};
    std::optional<Membership> first;
    do {
      Membership merged;
      for (int i : order) MergeMembership(&merged, views[i]);
      Membership again = merged;
      for (int i : order) EXPECT_FALSE(MergeMembership(&again, views[i]));
      if (!first) {
        first = merged;
      } else {
        ASSERT_EQ(merged, *first) << "round " << round;
      }
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

TEST(MembershipTest, TheStoredFormRoundTripsAndRefusesDamage) {
  const Membership m = Of(5, {{"http://a:1", "a", 0, 0, true}, {"http://b:2", "", 4, 5, false}});
  const std::string doc = EncodeMembership(m, "http://me:3");
  std::optional<StoredMembership> back = DecodeMembership(doc);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->membership, m);
  EXPECT_EQ(back->self_url, "http://me:3");
  for (size_t cut = 0; cut < doc.size(); ++cut) {
    EXPECT_FALSE(DecodeMembership(doc.substr(0, cut)).has_value()) << "cut at " << cut;
  }
  EXPECT_FALSE(DecodeMembership(doc + "x").has_value());
  std::string other_format = doc;
  other_format[0] = 2;
  EXPECT_FALSE(DecodeMembership(other_format).has_value());
}

}  // namespace
}  // namespace dsm

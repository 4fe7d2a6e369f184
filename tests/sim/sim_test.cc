// Deterministic simulation of dsm clusters (see sim_cluster.h). Runs DSM_SIM_SEEDS seeds
// (default 1000) over four topologies; DSM_SIM_SEED=<n> replays one seed and prints its trace.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "tests/sim/sim_cluster.h"

namespace dsm {
namespace {

SimConfig ConfigForSeed(uint64_t seed) {
  SimConfig c;
  switch (seed % 4) {
    case 0: c.nodes = 3; c.quorum = 2; c.quorum_mode = false; break;
    case 1: c.nodes = 3; c.quorum = 2; c.quorum_mode = true; break;
    case 2: c.nodes = 5; c.quorum = 3; c.quorum_mode = true; break;
    case 3: c.nodes = 4; c.quorum = 3; c.quorum_mode = false; break;
  }
  return c;
}

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string TraceTail(const SimCluster& sim, size_t lines) {
  const auto& t = sim.trace();
  std::string out;
  for (size_t k = t.size() > lines ? t.size() - lines : 0; k < t.size(); ++k) out += t[k] + "\n";
  return out;
}

TEST(SimTest, RandomSchedulesKeepTheContract) {
  if (const char* one = std::getenv("DSM_SIM_SEED"); one && *one) {
    uint64_t seed = std::strtoull(one, nullptr, 10);
    SimCluster sim(seed, ConfigForSeed(seed));
    std::string failure = sim.Run();
    std::printf("%s", TraceTail(sim, SIZE_MAX).c_str());
    EXPECT_EQ(failure, "");
    return;
  }
  const uint64_t seeds = EnvNumber("DSM_SIM_SEEDS", 1000);
  const uint64_t first = EnvNumber("DSM_SIM_FIRST_SEED", 1);
  int failures = 0;
  for (uint64_t seed = first; seed < first + seeds && failures < 3; ++seed) {
    SimCluster sim(seed, ConfigForSeed(seed));
    std::string failure = sim.Run();
    if (!failure.empty()) {
      ++failures;
      ADD_FAILURE() << failure << "\n--- last steps ---\n"
                    << TraceTail(sim, 40) << "replay: DSM_SIM_SEED=" << seed
                    << " build/tests/sim_test";
    }
  }
}

// The same schedule twice gives the same trace: a failing seed replays exactly.
TEST(SimTest, SeedsReplayExactly) {
  for (uint64_t seed : {7u, 8u, 9u, 10u}) {
    SimCluster a(seed, ConfigForSeed(seed));
    SimCluster b(seed, ConfigForSeed(seed));
    EXPECT_EQ(a.Run(), b.Run());
    EXPECT_EQ(a.trace(), b.trace()) << "seed " << seed;
  }
}

}  // namespace
}  // namespace dsm

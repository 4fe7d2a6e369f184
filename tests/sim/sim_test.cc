// Deterministic simulation of dsm clusters (see sim_cluster.h). Runs DSM_SIM_SEEDS seeds
// (default 1000) from DSM_SIM_FIRST_SEED (default 1) over four topologies and prints one
// summary line with the totals; DSM_SIM_SEED=<n> replays one seed and prints its trace and its
// summary line. DSM_SIM_IGNORE=check1,check2 only counts the violations of those checks (to look
// past a known failure; the list of seeds violating each check is printed at the end).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/sim_cluster.h"

namespace dsm {
namespace {

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// The topology of a seed, with the checks DSM_SIM_IGNORE names.
SimConfig ConfigFor(uint64_t seed) {
  SimConfig c = SimConfigForSeed(seed);
  if (const char* v = std::getenv("DSM_SIM_VERBOSE"); v && *v) c.verbose = true;
  if (const char* v = std::getenv("DSM_SIM_IGNORE"); v && *v) {
    std::stringstream list(v);
    for (std::string check; std::getline(list, check, ',');) c.ignore_checks.push_back(check);
  }
  return c;
}

std::string TraceTail(const SimCluster& sim, size_t lines) {
  const auto& t = sim.trace();
  std::string out;
  for (size_t k = t.size() > lines ? t.size() - lines : 0; k < t.size(); ++k) out += t[k] + "\n";
  return out;
}

TEST(SimTest, RandomSchedulesKeepTheContract) {
  if (const char* one = std::getenv("DSM_SIM_SEED"); one && *one) {
    const uint64_t seed = std::strtoull(one, nullptr, 10);
    SimCluster sim(seed, ConfigFor(seed));
    const std::string failure = sim.Run();
    std::printf("%s%s\n", TraceTail(sim, SIZE_MAX).c_str(), sim.Summary().c_str());
    for (const auto& [check, n] : sim.ignored()) std::printf("ignored [%s] x%d\n", check.c_str(), n);
    EXPECT_EQ(failure, "");
    return;
  }
  const uint64_t seeds = EnvNumber("DSM_SIM_SEEDS", 1000);
  const uint64_t first = EnvNumber("DSM_SIM_FIRST_SEED", 1);
  const auto start = std::chrono::steady_clock::now();
  SimCounts total;
  std::vector<uint64_t> failed;
  std::map<std::string, std::vector<uint64_t>> by_check;  // check -> seeds violating it
  // The lowest activity of a passing run, per topology (seed % 4), against which the floors
  // (SimConfigForSeed) are set.
  std::map<uint64_t, SimCounts> lowest;
  std::map<uint64_t, uint64_t> lowest_acks_seed;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    SimCluster sim(seed, ConfigFor(seed));
    const std::string failure = sim.Run();
    const SimCounts c = sim.counts();
    total.Add(c);
    auto [low, first_of_topology] = lowest.emplace(seed % 4, c);
    if (first_of_topology || (failure.empty() && c.acks < low->second.acks)) {
      lowest_acks_seed[seed % 4] = seed;
    }
    if (!first_of_topology && failure.empty()) {
      SimCounts& l = low->second;
      l.acks = std::min(l.acks, c.acks);
      l.refused_503 = std::min(l.refused_503, c.refused_503);
      l.timeouts_504 = std::min(l.timeouts_504, c.timeouts_504);
      l.crashes = std::min(l.crashes, c.crashes);
      l.wipes = std::min(l.wipes, c.wipes);
      l.partitions = std::min(l.partitions, c.partitions);
    }
    for (const auto& [check, n] : sim.ignored()) by_check[check].push_back(seed);
    if (failure.empty()) continue;
    by_check[sim.failed_check()].push_back(seed);
    failed.push_back(seed);
    if (failed.size() <= 3) {
      ADD_FAILURE() << failure << "\n--- last steps ---\n"
                    << TraceTail(sim, 40) << "replay: DSM_SIM_SEED=" << seed
                    << " build/tests/sim_test --gtest_filter=SimTest.RandomSchedulesKeepTheContract";
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("seeds %llu..%llu in %.1f s, %zu failed: %s\n",
              static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + seeds - 1), secs, failed.size(),
              total.ToString().c_str());
  for (const auto& [topology, l] : lowest) {
    std::printf("lowest of a passing run, topology %llu: acks %d (seed %llu), 503 %d, 504 %d, "
                "crashes %d, wipes %d, partitions %d\n",
                static_cast<unsigned long long>(topology), l.acks,
                static_cast<unsigned long long>(lowest_acks_seed[topology]), l.refused_503,
                l.timeouts_504, l.crashes, l.wipes, l.partitions);
  }
  for (const auto& [check, list] : by_check) {
    std::string seeds_text;
    for (size_t k = 0; k < list.size() && k < 20; ++k) seeds_text += " " + std::to_string(list[k]);
    std::printf("[%s] violated by %zu seeds:%s%s\n", check.c_str(), list.size(), seeds_text.c_str(),
                list.size() > 20 ? " ..." : "");
  }
  if (!failed.empty()) {
    std::string list;
    for (size_t k = 0; k < failed.size() && k < 50; ++k) list += " " + std::to_string(failed[k]);
    ADD_FAILURE() << failed.size() << " seeds failed:" << list << (failed.size() > 50 ? " ..." : "");
  }
}

// A node that answers every /send with 503 fails the run, on its activity floors.
TEST(SimTest, ANodeThatRefusesEverySendFailsTheFloors) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SimConfig c = SimConfigForSeed(seed);
    c.refuse_every_send = true;
    SimCluster sim(seed, c);
    const std::string failure = sim.Run();
    EXPECT_EQ(sim.failed_check(), "floors") << failure;
    EXPECT_NE(failure.find("acks 0 <"), std::string::npos) << failure;
  }
}

// The same schedule twice gives the same trace: a failing seed replays exactly.
TEST(SimTest, SeedsReplayExactly) {
  for (uint64_t seed : {7u, 8u, 9u, 10u}) {
    SimCluster a(seed, SimConfigForSeed(seed));
    SimCluster b(seed, SimConfigForSeed(seed));
    EXPECT_EQ(a.Run(), b.Run());
    EXPECT_EQ(a.trace(), b.trace()) << "seed " << seed;
  }
}

}  // namespace
}  // namespace dsm

// The simulation against each planted bug (common/planted_bugs.h): a checker is only as good as
// the bugs it has caught. For every bug, seeds run from 1 upward until the simulation reports a
// violation, up to DSM_PLANTED_BUG_SEEDS (default 300). A seed counts only if it passes without
// the bug: a failure the unmodified code has too proves nothing about the bug. The test fails
// naming every bug that survived, and prints how many seeds each took to catch.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "common/planted_bugs.h"
#include "tests/sim/sim_cluster.h"

namespace dsm {
namespace {

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Plants a bug for its scope.
class PlantedScope {
 public:
  explicit PlantedScope(PlantedBug b) { SetPlantedBug(b); }
  ~PlantedScope() { SetPlantedBug(PlantedBug::kNone); }
  PlantedScope(const PlantedScope&) = delete;
  PlantedScope& operator=(const PlantedScope&) = delete;
};

std::string RunSeed(uint64_t seed, PlantedBug bug) {
  PlantedScope scope(bug);
  SimCluster sim(seed, SimConfigForSeed(seed));
  return sim.Run();
}

TEST(PlantedBugsTest, TheSimulationCatchesEveryPlantedBug) {
  const uint64_t bound = EnvNumber("DSM_PLANTED_BUG_SEEDS", 300);
  std::map<uint64_t, bool> clean;  // seed -> passes without a planted bug
  auto passes_clean = [&](uint64_t seed) {
    auto it = clean.find(seed);
    if (it == clean.end()) it = clean.emplace(seed, RunSeed(seed, PlantedBug::kNone).empty()).first;
    return it->second;
  };
  std::vector<std::string> survivors;
  std::string table;
  for (int b = 1; b < static_cast<int>(PlantedBug::kCount); ++b) {
    const PlantedBug bug = static_cast<PlantedBug>(b);
    uint64_t caught_at = 0;
    int tried = 0;
    int excused = 0;  // seeds that fail without the bug too
    std::string failure;
    for (uint64_t seed = 1; seed <= bound && caught_at == 0; ++seed) {
      ++tried;
      std::string f = RunSeed(seed, bug);
      if (f.empty()) continue;
      if (!passes_clean(seed)) {
        ++excused;
        continue;
      }
      caught_at = seed;
      failure = f;
    }
    std::string line;
    if (caught_at != 0) {
      line = std::string(PlantedBugName(bug)) + ": caught after " + std::to_string(tried) +
             " seeds (seed " + std::to_string(caught_at) + ")";
    } else {
      line = std::string(PlantedBugName(bug)) + ": SURVIVED " + std::to_string(tried) + " seeds";
      survivors.push_back(std::string(PlantedBugName(bug)));
    }
    if (excused > 0) {
      line += ", " + std::to_string(excused) + " seeds skipped that fail without it too";
    }
    if (!failure.empty()) line += "\n    " + failure.substr(0, 400);
    table += line + "\n";
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  std::printf("planted bugs (seeds to catch, bound %llu):\n%s",
              static_cast<unsigned long long>(bound), table.c_str());
  std::string names;
  for (const std::string& s : survivors) names += " " + s;
  EXPECT_TRUE(survivors.empty()) << "planted bugs the simulation did not catch:" << names;
}

}  // namespace
}  // namespace dsm

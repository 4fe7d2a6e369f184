// dsm-microbench: Google Benchmark micro-benchmarks of the log store and the codecs.
//
// Unless the command line chooses otherwise, every benchmark runs 5 repetitions and only the
// aggregates (mean, median, stddev, cv) are reported: read the medians.

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  bool repetitions = false;
  bool aggregates = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0) repetitions = true;
    if (std::strncmp(argv[i], "--benchmark_report_aggregates_only", 34) == 0 ||
        std::strncmp(argv[i], "--benchmark_display_aggregates_only", 35) == 0) {
      aggregates = true;
    }
  }
  static char kRepetitions[] = "--benchmark_repetitions=5";
  static char kAggregates[] = "--benchmark_report_aggregates_only=true";
  if (!repetitions) args.push_back(kRepetitions);
  if (!aggregates) args.push_back(kAggregates);
  args.push_back(nullptr);

  int n = static_cast<int>(args.size()) - 1;
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

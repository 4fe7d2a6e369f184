// The SVG report of a dsm-bench run, written by hand (no plotting library): publish latency
// percentiles per mode and client count (log scale, with the base latency), throughput against
// client count (with the empty-request ceiling and the target fractions of it), and the bulk
// figures (batch publish, replication, catch-up) against the 100,000 msgs/s target.
//
// Pure function, thread-compatible.
#pragma once

#include <string>

#include "bench/dsm_bench/report.h"

namespace dsm::bench {

std::string RenderSvg(const BenchReport& report);

}  // namespace dsm::bench

// The entry point every fuzz target defines (libFuzzer's), and a check that fails loudly: a
// fuzz target reports a finding by aborting, which libFuzzer records with the input that caused
// it and the corpus replay test (replay_test.cc) reports as a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define DSM_FUZZ_CHECK(cond, what)                                                  \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   (what));                                                         \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

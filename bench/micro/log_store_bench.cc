// Micro-benchmarks of RocksLogStore: Append with 1, 8 and 32 concurrent writers, sync on and off,
// batches of 1, 16 and 256 messages per call (items/s = messages/s, wall time); and msg_id
// lookups (FindByMsgId) that hit and miss.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/micro/bench_util.h"
#include "storage/rocks_log_store.h"

namespace dsm::bench {
namespace {

constexpr size_t kPayloadBytes = 100;

std::unique_ptr<RocksLogStore> OpenStore(const std::string& dir, bool sync) {
  RocksLogStoreOptions options;
  options.path = dir + "/db";
  options.node_id = "bench";
  options.sync = sync;
  Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "cannot open a store in %s: %s\n", dir.c_str(),
                 store.status().ToString().c_str());
    std::abort();
  }
  return std::move(store).value();
}

// ---------------------------------------------------------------------------------------------
// Append. Every trial (each repetition and each iteration-count probe) gets a fresh store,
// created before the writer threads start and closed after they end.

ScratchDir* append_dir = nullptr;
RocksLogStore* append_store = nullptr;

void AppendSetup(const benchmark::State& state) {
  append_dir = new ScratchDir();
  append_store = OpenStore(append_dir->path(), state.range(0) != 0).release();
}

void AppendTeardown(const benchmark::State&) {
  delete append_store;
  append_store = nullptr;
  delete append_dir;
  append_dir = nullptr;
}

// Args: sync (0/1), batch (messages per Append call). Threads: concurrent writers.
void BM_Append(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    Result<std::vector<WriteOutcome>> r = append_store->Append(MakeMessages(batch, kPayloadBytes));
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}
BENCHMARK(BM_Append)
    ->Setup(AppendSetup)
    ->Teardown(AppendTeardown)
    ->ArgNames({"sync", "batch"})
    ->ArgsProduct({{1, 0}, {1, 16, 256}})
    ->Threads(1)
    ->Threads(8)
    ->Threads(32)
    ->UseRealTime()
    ->MinTime(0.5);

// ---------------------------------------------------------------------------------------------
// Apply: what a replica does with one /replicate batch (messages of one peer's stream, in
// origin_seq order). Fresh store per trial; each iteration applies the next `batch` positions.

uint64_t apply_next_origin_seq = 1;

void ApplySetup(const benchmark::State& state) {
  AppendSetup(state);
  apply_next_origin_seq = 1;
}

// Args: sync (0/1), batch (messages per Apply call).
void BM_ApplyPeerBatch(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(1));
  const std::string origin = "peer@0123456789abcdef";
  for (auto _ : state) {
    std::vector<Message> msgs;
    msgs.reserve(batch);
    for (size_t i = 0; i < batch; ++i) {
      msgs.push_back(MakePeerMessage(kPayloadBytes, origin, apply_next_origin_seq++));
    }
    Result<std::vector<WriteOutcome>> r = append_store->Apply(std::move(msgs));
    if (!r.ok() || r->back().kind != WriteOutcome::Kind::kAppended) {
      state.SkipWithError("apply failed");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}
BENCHMARK(BM_ApplyPeerBatch)
    ->Setup(ApplySetup)
    ->Teardown(AppendTeardown)
    ->ArgNames({"sync", "batch"})
    ->ArgsProduct({{1, 0}, {256, 1000}})
    ->UseRealTime()
    ->MinTime(0.5);

// ---------------------------------------------------------------------------------------------
// Reads and msg_id lookups on one store of kLookupMessages messages, filled once per process.

constexpr size_t kLookupMessages = 100000;

struct LookupFixture {
  ScratchDir dir;
  std::unique_ptr<RocksLogStore> store;
  std::vector<std::string> ids;

  LookupFixture() {
    store = OpenStore(dir.path(), /*sync=*/false);
    ids.reserve(kLookupMessages);
    while (ids.size() < kLookupMessages) {
      std::vector<Message> msgs = MakeMessages(1000, kPayloadBytes);
      for (const Message& m : msgs) ids.push_back(m.msg_id);
      Result<std::vector<WriteOutcome>> r = store->Append(std::move(msgs));
      if (!r.ok()) std::abort();
    }
  }
};

LookupFixture& Lookup() {
  // Built on first use, after RocksDB's own statics, so it is destroyed (store closed, directory
  // removed) before them at exit.
  static LookupFixture fixture;
  return fixture;
}

void BM_FindByMsgIdHit(benchmark::State& state) {
  LookupFixture& f = Lookup();
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<size_t> pick(0, f.ids.size() - 1);
  for (auto _ : state) {
    Result<std::optional<Message>> m = f.store->FindByMsgId(f.ids[pick(rng)]);
    if (!m.ok() || !m->has_value()) {
      state.SkipWithError("lookup of a stored msg_id failed");
      break;
    }
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FindByMsgIdHit);

void BM_FindByMsgIdMiss(benchmark::State& state) {
  LookupFixture& f = Lookup();
  std::mt19937_64 rng(43);
  std::vector<std::string> absent;
  for (int i = 0; i < 4096; ++i) absent.push_back("absent-" + std::to_string(rng()));
  size_t i = 0;
  for (auto _ : state) {
    Result<std::optional<Message>> m = f.store->FindByMsgId(absent[i++ & 4095]);
    if (!m.ok() || m->has_value()) {
      state.SkipWithError("lookup of an absent msg_id did not miss");
      break;
    }
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FindByMsgIdMiss);

}  // namespace
}  // namespace dsm::bench

namespace dsm::bench {
namespace {

// ReadOrigin: what a replicator reads for one push (the next `limit` positions of its own
// stream), from random positions (read from the database) or, with recent:1, the newest ones (a
// push that keeps up, served from the store's in-memory tail). items/s = messages/s.
void BM_ReadOrigin(benchmark::State& state) {
  LookupFixture& f = Lookup();
  const size_t limit = static_cast<size_t>(state.range(0));
  const bool recent = state.range(1) != 0;
  const uint64_t newest = f.store->HighWater(f.store->stream_id()) - limit;
  std::mt19937_64 rng(44);
  std::uniform_int_distribution<uint64_t> pick(0, kLookupMessages - limit);
  for (auto _ : state) {
    Result<std::vector<Message>> msgs =
        f.store->ReadOrigin(f.store->stream_id(), recent ? newest : pick(rng), limit, 4 << 20);
    if (!msgs.ok() || msgs->size() != limit) {
      state.SkipWithError("ReadOrigin failed");
      break;
    }
    benchmark::DoNotOptimize(msgs);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(limit));
}
BENCHMARK(BM_ReadOrigin)->ArgNames({"limit", "recent"})->Args({1000, 0})->Args({1000, 1});

// Scan: what a /sync page (catch-up pull) or a /messages page reads. items/s = messages/s.
void BM_ScanPage(benchmark::State& state) {
  LookupFixture& f = Lookup();
  const size_t limit = static_cast<size_t>(state.range(0));
  std::mt19937_64 rng(45);
  std::uniform_int_distribution<uint64_t> pick(0, kLookupMessages - limit);
  for (auto _ : state) {
    ScanOptions opts;
    opts.after = pick(rng);
    opts.limit = limit;
    size_t n = 0;
    Status s = f.store->Scan(opts, [&n](const Message&) {
      ++n;
      return true;
    });
    if (!s.ok() || n != limit) {
      state.SkipWithError("Scan failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(limit));
}
BENCHMARK(BM_ScanPage)->ArgName("limit")->Arg(1000);

}  // namespace
}  // namespace dsm::bench

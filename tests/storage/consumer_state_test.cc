// RocksConsumerState: the durable consumers' state in the "consumers" column family
// (storage/consumer_schema.h): what is committed is what Load() returns after a reopen, a
// consumer's keys are its own (erasing one leaves its neighbours), and concurrent commits share
// synced writes (group commit).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "storage/consumer_schema.h"
#include "storage/rocks_consumer_state.h"
#include "storage/rocks_log_store.h"
#include "tests/storage/test_util.h"

namespace dsm {
namespace {

using storage_test::ScopedTempDir;

class ConsumerStateTest : public ::testing::Test {
 protected:
  std::unique_ptr<RocksLogStore> Open() {
    RocksLogStoreOptions options;
    options.path = dir_.Sub("db");
    options.node_id = "node1";
    Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  static StoredConsumer Consumer(const std::string& name) {
    StoredConsumer c;
    c.name = name;
    c.uid = "0a1b2c3d";
    c.session = 1;
    c.definition.recipient = "bob";
    c.definition.sender = std::string("a\\0b", 3);
    c.definition.start.kind = ConsumerStart::Kind::kOrigins;
    c.definition.start.origins = {{"node1@00000000000000a1", 7}, {"node2@00000000000000b2", 0}};
    c.definition.ack_wait_ms = 1234;
    c.definition.max_in_flight = 5;
    c.definition.max_deliveries = 9;
    c.initial = 3;
    c.floor = 3;
    return c;
  }

  ScopedTempDir dir_;
};

TEST_F(ConsumerStateTest, WhatIsCommittedIsLoadedAfterAReopen) {
  {
    std::unique_ptr<RocksLogStore> store = Open();
    ConsumerStateStore* state = store->consumer_state();
    ConsumerChange create;
    create.name = "work";
    create.erase = true;
    create.create = Consumer("work");
    ASSERT_TRUE(state->CommitAndWait({create}).ok());
    ConsumerChange acks;
    acks.name = "work";
    acks.floor = 5;
    acks.acks = {4, 5, 8, 9};  // 4 and 5 are at or below the floor: not stored
    acks.dead = {DeadLetter{7, 3, 1.79e9}};
    acks.session = 2;
    ASSERT_TRUE(state->CommitAndWait({acks}).ok());
    ConsumerChange more;
    more.name = "work";
    more.floor = 8;  // drops the acknowledgement of 8
    ASSERT_TRUE(state->CommitAndWait({more}).ok());
  }
  std::unique_ptr<RocksLogStore> store = Open();
  Result<std::vector<StoredConsumer>> loaded = store->consumer_state()->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->size(), 1u);
  const StoredConsumer& c = (*loaded)[0];
  EXPECT_EQ(c.definition, Consumer("work").definition);
  EXPECT_EQ(c.uid, "0a1b2c3d");
  EXPECT_EQ(c.initial, 3u);
  EXPECT_EQ(c.floor, 8u);
  EXPECT_EQ(c.session, 2u);
  EXPECT_EQ(c.acked, std::vector<uint64_t>{9});
  ASSERT_EQ(c.dead.size(), 1u);
  EXPECT_EQ(c.dead[0], (DeadLetter{7, 3, 1.79e9}));
}

TEST_F(ConsumerStateTest, ErasingAConsumerLeavesTheOthers) {
  std::unique_ptr<RocksLogStore> store = Open();
  ConsumerStateStore* state = store->consumer_state();
  std::vector<ConsumerChange> creates;
  for (const std::string name : {"ab", "abc", "b", "abd"}) {
    ConsumerChange c;
    c.name = name;
    c.create = Consumer(name);
    c.acks = {10, 11};
    creates.push_back(c);
  }
  ASSERT_TRUE(state->CommitAndWait(creates).ok());
  ConsumerChange erase;
  erase.name = "abc";
  erase.erase = true;
  ASSERT_TRUE(state->CommitAndWait({erase}).ok());
  Result<std::vector<StoredConsumer>> loaded = state->Load();
  ASSERT_TRUE(loaded.ok());
  std::vector<std::string> names;
  for (const StoredConsumer& c : *loaded) {
    names.push_back(c.name);
    EXPECT_EQ(c.acked, (std::vector<uint64_t>{10, 11})) << c.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"ab", "abd", "b"}));
}

TEST_F(ConsumerStateTest, ConcurrentCommitsShareSyncedWrites) {
  std::unique_ptr<RocksLogStore> store = Open();
  auto* state = static_cast<RocksConsumerState*>(store->consumer_state());
  ConsumerChange create;
  create.name = "work";
  create.create = Consumer("work");
  ASSERT_TRUE(state->CommitAndWait({create}).ok());
  const uint64_t before = state->writes();
  constexpr int kThreads = 16;
  constexpr int kEach = 50;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        ConsumerChange c;
        c.name = "work";
        c.acks = {static_cast<uint64_t>(1000 + t * kEach + i)};
        if (!state->CommitAndWait({c}).ok()) ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  const uint64_t writes = state->writes() - before;
  EXPECT_LT(writes, static_cast<uint64_t>(kThreads * kEach)) << "no commit was grouped";
  Result<std::vector<StoredConsumer>> loaded = state->Load();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ((*loaded)[0].acked.size(), static_cast<size_t>(kThreads * kEach));
}

TEST_F(ConsumerStateTest, MalformedDefinitionsAreRefused) {
  StoredConsumer c = Consumer("x");
  const std::string good = schema::EncodeConsumerDefinition(c);
  StoredConsumer back;
  ASSERT_TRUE(schema::DecodeConsumerDefinition(good, &back).ok());
  EXPECT_EQ(back.definition, c.definition);
  EXPECT_FALSE(schema::DecodeConsumerDefinition(good + "x", &back).ok()) << "trailing bytes";
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(schema::DecodeConsumerDefinition(good.substr(0, n), &back).ok()) << n;
  }
  std::string other_version = good;
  other_version[0] = 2;
  EXPECT_FALSE(schema::DecodeConsumerDefinition(other_version, &back).ok());
}

}  // namespace
}  // namespace dsm

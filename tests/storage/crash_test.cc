// Crash test: runs storage_crash_child (8 threads appending with fsync, printing an ACK line per
// acknowledged message), SIGKILLs it at a random moment, reopens the data directory and checks
// that nothing acknowledged was lost and the log is whole:
//  - every ACKed msg_id is present exactly once, at the ACKed seq;
//  - seqs are dense 1..LastSeq;
//  - the msg_id index and the log agree both ways, and so do the origin index and the log;
//  - the high water of the node's stream equals the number of its messages.
// Several rounds run on the same directory, so appending resumes after each crash.
// Three ways to die:
//  - KilledWriterLosesNothingAcknowledged: a plain SIGKILL (the kernel keeps what was written);
//  - PowerCutLosesNothingAcknowledged: the child writes through PowerLossFs
//    (tests/storage/power_loss_fs.h) and the SIGKILL is turned into a power cut by ApplyPowerCut
//    before the directory is reopened: every byte not fsynced is gone;
//  - PowerCutWithoutFsyncLosesAcknowledgedMessages: the same with the child's store opened with
//    sync = false (a planted bug). The checker must report lost acknowledged messages, which
//    shows that the power-cut test would catch an acknowledgement before fsync.
// The seed is printed; DSM_TEST_SEED=<n> replays a run (same kill delays).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "storage/record.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"
#include "tests/storage/power_loss_fs.h"
#include "tests/storage/test_util.h"

#ifndef DSM_CRASH_CHILD_PATH
#error "DSM_CRASH_CHILD_PATH must name the storage_crash_child executable"
#endif

namespace dsm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRounds = 6;
constexpr int kNoSyncRounds = 3;
// Without fsync the child is killed as soon as this many ACKs of the round were read.
constexpr size_t kNoSyncAcksBeforeCut = 200;
constexpr auto kGenerous = std::chrono::seconds(60);  // only a broken child takes this long
constexpr char kNodeId[] = "crash-node";

uint64_t ChooseSeed() {
  if (const char* env = std::getenv("DSM_TEST_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 10);
  }
  return std::random_device()();
}

// A started crash child: its pid and the read end of its stdout.
class Child {
 public:
  Child(const std::string& path, const std::string& prefix, const std::vector<std::string>& flags) {
    std::vector<std::string> args = {DSM_CRASH_CHILD_PATH, path, kNodeId, prefix};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Dies with the test, whatever happens to it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      ::dup2(fds[1], STDOUT_FILENO);
      ::execv(DSM_CRASH_CHILD_PATH, argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    if (pid_ < 0) {
      ::close(fds[0]);
      return;
    }
    fd_ = fds[0];
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return fd_ >= 0; }

  // Reads what is available within `timeout` into complete lines. Returns false at EOF.
  bool Pump(std::chrono::milliseconds timeout, std::vector<std::string>* lines) {
    pollfd p{fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
    if (n <= 0) return true;
    char buf[65536];
    while (true) {
      const ssize_t got = ::read(fd_, buf, sizeof(buf));
      if (got > 0) {
        partial_.append(buf, static_cast<size_t>(got));
        continue;
      }
      if (got == 0) eof_ = true;
      break;  // EOF, EAGAIN or an error
    }
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines->push_back(partial_.substr(start, nl - start));
    }
    partial_.erase(0, start);
    return !eof_;
  }

  void Kill() { ::kill(pid_, SIGKILL); }

  // Waits for the exit. Returns the wait status.
  int Reap() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }

  const std::string& partial() const { return partial_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  bool eof_ = false;
  bool reaped_ = false;
  std::string partial_;
};

// Reopens the directory and checks every invariant against the ACKs seen so far. An ACKed msg_id
// that is missing fails the test, unless `lost` is given: then it is appended there.
void Verify(const std::string& path, const std::map<std::string, uint64_t>& acked,
            std::vector<std::string>* lost) {
  uint64_t last_seq = 0;
  std::string stream;
  {
    RocksLogStoreOptions options;
    options.path = path;
    options.node_id = kNodeId;
    Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    RocksLogStore& store = **opened;
    stream = store.stream_id();
    last_seq = store.LastSeq();

    std::vector<Message> log;
    log.reserve(last_seq);
    Status s = store.Scan({}, [&](const Message& m) {
      log.push_back(m);
      return true;
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(log.size(), last_seq) << "seqs are not dense";
    std::set<std::string> ids;
    for (uint64_t i = 0; i < log.size(); ++i) {
      const Message& m = log[i];
      ASSERT_EQ(m.seq, i + 1) << "seqs are not dense";
      ASSERT_TRUE(ids.insert(m.msg_id).second) << m.msg_id << " stored twice";
      ASSERT_EQ(m.origin, stream);
      ASSERT_EQ(m.origin_seq, m.seq) << "own stream out of log order";
      Result<std::optional<Message>> indexed = store.FindByMsgId(m.msg_id);
      ASSERT_TRUE(indexed.ok() && indexed->has_value()) << m.msg_id << " missing from the index";
      ASSERT_EQ((*indexed)->seq, m.seq);
    }
    EXPECT_EQ(store.HighWater(stream), last_seq) << "high water != number of own messages";
    for (const auto& [msg_id, seq] : acked) {
      Result<std::optional<Message>> m = store.FindByMsgId(msg_id);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      if (lost != nullptr && !m->has_value()) {
        lost->push_back(msg_id);
        continue;
      }
      ASSERT_TRUE(m->has_value()) << "acknowledged " << msg_id << " (seq " << seq << ") lost";
      ASSERT_EQ((*m)->seq, seq) << "acknowledged " << msg_id << " moved";
    }
  }

  // The indexes, read raw: every entry points at a record that agrees with it.
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(
      rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, descriptors, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  auto family = [&](const char* name) {
    for (auto* h : handles) {
      if (h->GetName() == name) return h;
    }
    return static_cast<rocksdb::ColumnFamilyHandle*>(nullptr);
  };
  auto record_at = [&](uint64_t seq) -> std::optional<std::string> {
    std::string value;
    if (!db->Get(rocksdb::ReadOptions(), family(schema::kLogFamily), schema::LogKey(seq), &value)
             .ok()) {
      return std::nullopt;
    }
    return value;
  };
  uint64_t msgid_entries = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), family(schema::kMsgIdFamily)));
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++msgid_entries) {
      uint64_t seq = 0;
      ASSERT_TRUE(schema::DecodeSeqValue(it->value().ToStringView(), &seq));
      std::optional<std::string> rec = record_at(seq);
      ASSERT_TRUE(rec.has_value()) << "index entry " << it->key().ToString() << " -> " << seq;
      Result<Message> m = DecodeRecord(seq, *rec);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_EQ(m->msg_id, it->key().ToString());
    }
    ASSERT_TRUE(it->status().ok());
  }
  EXPECT_EQ(msgid_entries, last_seq);
  uint64_t origin_entries = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), family(schema::kOriginFamily)));
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++origin_entries) {
      std::string_view origin;
      uint64_t origin_seq = 0;
      uint64_t seq = 0;
      ASSERT_TRUE(schema::ParseOriginKey(it->key().ToStringView(), &origin, &origin_seq));
      ASSERT_TRUE(schema::DecodeSeqValue(it->value().ToStringView(), &seq));
      ASSERT_EQ(origin, stream);
      ASSERT_EQ(origin_seq, origin_entries + 1);
      ASSERT_EQ(seq, origin_seq);
    }
    ASSERT_TRUE(it->status().ok());
  }
  EXPECT_EQ(origin_entries, last_seq);
  for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
}

// How a round's child dies.
enum class Death {
  kKill,            // SIGKILL: what was written survives in the kernel
  kPowerCut,        // SIGKILL, then ApplyPowerCut: only what was fsynced survives
  kPowerCutNoSync,  // the same, with the child's store opened with sync = false
};

// What the rounds saw.
struct Outcome {
  size_t acked = 0;  // ACKs read, all rounds
  size_t lost = 0;   // of which lost (only counted with kPowerCutNoSync)
  int rounds_with_loss = 0;
  uint64_t wal_bytes_dropped = 0;  // by the power cuts
};

// Runs `rounds` rounds on one directory: start the child, wait until it acknowledged appends,
// kill it (then cut the power, for the power-cut deaths), reopen and verify. With kKill and
// kPowerCut a lost ACK fails the test; with kPowerCutNoSync losses are counted in `outcome`.
void RunRounds(Death death, int rounds, Outcome* outcome) {
  const uint64_t seed = ChooseSeed();
  std::printf("storage crash test seed=%llu (DSM_TEST_SEED=%llu replays it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_ms(50, 400);

  storage_test::ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.Sub("db");
  const std::string journal = storage_test::PowerJournalPath(path);
  std::vector<std::string> flags;
  if (death != Death::kKill) flags.push_back("--power-loss");
  if (death == Death::kPowerCutNoSync) flags.push_back("--no-sync");
  std::map<std::string, uint64_t> acked;

  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(seed));
    // Without fsync the kill comes right after the first ACKs, long before a memtable could fill
    // (a flush would sync the write-ahead logs it closes): nothing acknowledged is durable.
    const auto delay = death == Death::kPowerCutNoSync ? std::chrono::milliseconds(0)
                                                       : std::chrono::milliseconds(delay_ms(rng));
    const size_t min_acks = death == Death::kPowerCutNoSync ? kNoSyncAcksBeforeCut : 1;
    Child child(path, "r" + std::to_string(round), flags);
    ASSERT_TRUE(child.started());

    std::vector<std::string> lines;
    bool ready = false;
    size_t round_acks = 0;
    bool alive = true;
    auto consume = [&] {
      for (const std::string& line : lines) {
        if (line == "READY") {
          ready = true;
          continue;
        }
        std::istringstream in(line);
        std::string word, msg_id;
        uint64_t seq = 0;
        ASSERT_TRUE(in >> word >> msg_id >> seq && word == "ACK") << "bad line: " << line;
        auto [it, inserted] = acked.emplace(msg_id, seq);
        ASSERT_TRUE(inserted) << msg_id << " acknowledged twice";
        ++round_acks;
      }
      lines.clear();
    };

    // Wait until the store is open and enough appends were acknowledged, then until the random
    // delay (counted from READY) has passed.
    const auto give_up = Clock::now() + kGenerous;
    Clock::time_point kill_at = Clock::time_point::max();
    while (alive && Clock::now() < give_up) {
      const auto now = Clock::now();
      if (ready && round_acks >= min_acks && now >= kill_at) break;
      const auto wait = kill_at == Clock::time_point::max() || now >= kill_at
                            ? std::chrono::milliseconds(100)
                            : std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - now);
      alive = child.Pump(std::max(wait, std::chrono::milliseconds(1)), &lines);
      const bool was_ready = ready;
      consume();
      if (::testing::Test::HasFatalFailure()) return;
      if (ready && !was_ready) kill_at = Clock::now() + delay;
    }
    ASSERT_TRUE(alive) << "the child exited before it was killed";
    ASSERT_TRUE(ready && round_acks >= min_acks) << "the child made no progress in time";

    child.Kill();
    // Everything written before the kill is still in the pipe: read it to EOF.
    const auto drain_deadline = Clock::now() + kGenerous;
    while (child.Pump(std::chrono::milliseconds(100), &lines)) {
      ASSERT_LT(Clock::now(), drain_deadline) << "no EOF from a killed child";
    }
    consume();
    if (::testing::Test::HasFatalFailure()) return;
    EXPECT_TRUE(child.partial().empty()) << "torn ACK line: " << child.partial();
    const int status = child.Reap();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;
    outcome->acked += round_acks;

    std::string cut = "no power cut";
    if (death != Death::kKill) {
      storage_test::PowerCutReport report;
      Status s = storage_test::ApplyPowerCut(journal, &report);
      ASSERT_TRUE(s.ok()) << s.ToString();
      ASSERT_TRUE(report.journal_found) << "the child wrote no power journal";
      ASSERT_GT(report.records, 0u) << "the child journaled nothing";
      outcome->wal_bytes_dropped += report.wal_bytes_dropped;
      cut = "power cut: " + report.ToString();
    }

    std::vector<std::string> lost;
    Verify(path, acked, death == Death::kPowerCutNoSync ? &lost : nullptr);
    if (::testing::Test::HasFatalFailure()) return;
    std::printf(
        "round %d: killed %lld ms after READY, %zu acks this round, %zu lost (%zu checked in "
        "all); %s\n",
        round, static_cast<long long>(delay.count()), round_acks, lost.size(), acked.size(),
        cut.c_str());
    std::fflush(stdout);
    // A lost message is counted once: later rounds check only what is still there.
    for (const std::string& msg_id : lost) acked.erase(msg_id);
    outcome->lost += lost.size();
    if (!lost.empty()) ++outcome->rounds_with_loss;
  }
}

TEST(CrashTest, KilledWriterLosesNothingAcknowledged) {
  Outcome outcome;
  RunRounds(Death::kKill, kRounds, &outcome);
}

TEST(CrashTest, PowerCutLosesNothingAcknowledged) {
  Outcome outcome;
  RunRounds(Death::kPowerCut, kRounds, &outcome);
  if (HasFatalFailure()) return;
  std::printf(
      "power cuts with fsync: %zu acknowledged, %zu lost over %d rounds; %llu unsynced "
      "write-ahead log bytes dropped\n",
      outcome.acked, outcome.lost, kRounds,
      static_cast<unsigned long long>(outcome.wal_bytes_dropped));
}

// The planted bug: without fsync, acknowledged messages exist only in the page cache, and a power
// cut must lose some of them. If this test fails, the power-cut test above proves nothing.
TEST(CrashTest, PowerCutWithoutFsyncLosesAcknowledgedMessages) {
  Outcome outcome;
  RunRounds(Death::kPowerCutNoSync, kNoSyncRounds, &outcome);
  if (HasFatalFailure()) return;
  std::printf(
      "power cuts without fsync: %zu of %zu acknowledged messages lost, in %d of %d "
      "rounds\n",
      outcome.lost, outcome.acked, outcome.rounds_with_loss, kNoSyncRounds);
  EXPECT_GT(outcome.lost, 0u) << "the checker did not notice acknowledged messages lost";
  EXPECT_GE(outcome.rounds_with_loss, 1);
}

}  // namespace
}  // namespace dsm

// Crash test: runs storage_crash_child (8 threads appending with fsync, printing an ACK line per
// acknowledged message), SIGKILLs it at a random moment, reopens the data directory and checks
// that nothing acknowledged was lost and the log is whole:
//  - every ACKed msg_id is present exactly once, at the ACKed seq;
//  - seqs are dense 1..LastSeq;
//  - the msg_id index and the log agree both ways, and so do the origin index and the log;
//  - the high water of the node's stream equals the number of its messages.
// Several rounds run on the same directory, so appending resumes after each crash.
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
#include "tests/storage/test_util.h"

#ifndef DSM_CRASH_CHILD_PATH
#error "DSM_CRASH_CHILD_PATH must name the storage_crash_child executable"
#endif

namespace dsm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRounds = 6;
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
  Child(const std::string& path, const std::string& prefix) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Dies with the test, whatever happens to it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      ::dup2(fds[1], STDOUT_FILENO);
      ::execl(DSM_CRASH_CHILD_PATH, DSM_CRASH_CHILD_PATH, path.c_str(), kNodeId, prefix.c_str(),
              static_cast<char*>(nullptr));
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

// Reopens the directory and checks every invariant against the ACKs seen so far.
void Verify(const std::string& path, const std::map<std::string, uint64_t>& acked) {
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

TEST(CrashTest, KilledWriterLosesNothingAcknowledged) {
  const uint64_t seed = ChooseSeed();
  std::printf("storage crash test seed=%llu (DSM_TEST_SEED=%llu replays it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_ms(50, 400);

  storage_test::ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.Sub("db");
  std::map<std::string, uint64_t> acked;

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(seed));
    const auto delay = std::chrono::milliseconds(delay_ms(rng));
    Child child(path, "r" + std::to_string(round));
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

    // Wait until the store is open and at least one append was acknowledged, then until the
    // random delay (counted from READY) has passed.
    const auto give_up = Clock::now() + kGenerous;
    Clock::time_point kill_at = Clock::time_point::max();
    while (alive && Clock::now() < give_up) {
      const auto now = Clock::now();
      if (ready && round_acks > 0 && now >= kill_at) break;
      const auto wait = kill_at == Clock::time_point::max()
                            ? std::chrono::milliseconds(100)
                            : std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - now);
      alive = child.Pump(std::max(wait, std::chrono::milliseconds(1)), &lines);
      const bool was_ready = ready;
      consume();
      if (HasFatalFailure()) return;
      if (ready && !was_ready) kill_at = Clock::now() + delay;
    }
    ASSERT_TRUE(alive) << "the child exited before it was killed";
    ASSERT_TRUE(ready && round_acks > 0) << "the child made no progress in time";

    child.Kill();
    // Everything written before the kill is still in the pipe: read it to EOF.
    const auto drain_deadline = Clock::now() + kGenerous;
    while (child.Pump(std::chrono::milliseconds(100), &lines)) {
      ASSERT_LT(Clock::now(), drain_deadline) << "no EOF from a killed child";
    }
    consume();
    if (HasFatalFailure()) return;
    EXPECT_TRUE(child.partial().empty()) << "torn ACK line: " << child.partial();
    const int status = child.Reap();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "wait status " << status;
    std::printf("round %d: killed after %lld ms, %zu acks this round, %zu in total\n", round,
                static_cast<long long>(delay.count()), round_acks, acked.size());
    std::fflush(stdout);

    Verify(path, acked);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace dsm

// PowerLossFs: a RocksDB FileSystem for tests that loses, at a simulated power cut, every byte
// that was not fsynced - LazyFS's "clear the page cache" under Jepsen, for one process - so a test
// can show that what a store acknowledged had really reached the disk, and that the same test
// fails when it had not. ApplyPowerCut applies a cut; PowerJournalPath names the journal.
//
// How it works: write-through, plus a journal of what is durable. Writes go straight to the real
// files, so reads, sizes and listings are always the real ones (RocksDB reading back a table file
// or its MANIFEST sees what it wrote). Every event that decides durability is appended, in order,
// to a journal file kept beside (not inside) the data directory. A cut is applied offline:
// ApplyPowerCut replays the journal, cuts each file written through the file system back to the
// length it had at its last fsync, removes the files whose name never became durable, and deletes
// the journal. One mechanism serves both uses:
//  - in one process: PowerCut() switches the power off - from then on every write, sync, create,
//    rename and delete fails with IOError("power cut"), so closing the store makes nothing more
//    durable - then the test destroys the store and calls ApplyPowerCut;
//  - across processes: a writer process opens its store through PowerLossFs and is killed with
//    SIGKILL. A sync is journaled after the real fsync returned and before the caller sees it
//    succeed, so the journal holds exactly what had been acknowledged as durable when the process
//    died: SIGKILL followed by ApplyPowerCut is a power cut at the moment of the kill.
//
// Modelled, for files created (NewWritableFile) or reopened (ReopenWritableFile) through it:
//  - Append, PositionedAppend, Truncate, Flush, Close, RangeSync (sync_file_range, which neither
//    waits nor flushes the disk cache) and InvalidateCache make nothing durable;
//  - Sync and Fsync make durable the bytes whose Append had returned before the call, and the
//    file's name (as ext4 and xfs do for a new file; POSIX also asks for a directory fsync);
//  - an fsync of a directory (FSDirectory::Fsync, FsyncWithDirOptions) makes the names of the
//    files it holds durable;
//  - at the cut a file whose name is not durable (never synced, its directory not fsynced since it
//    was created) disappears; any other file is cut back to its synced length (0 if never synced);
//  - a file that existed before the journal began is durable as it was when first reopened.
// Not modelled:
//  - renames and deletions are durable at once, without a directory fsync (a deleted file never
//    comes back, a renamed file never returns to its old name);
//  - directory creation and removal and FileSystem::Truncate are durable at once;
//  - partial persistence: the cut drops ALL unsynced bytes of a file, never keeps some of them
//    (no torn or reordered pages; torn tails are tested in disk_fault_test.cc);
//  - files written around it are left as they are: RocksDB's info log (LOG), which the default
//    file system's NewLogger writes directly, is never cut.
// Refused with NotSupported, so nothing writes around the model: ReuseWritableFile (WAL recycling,
// only with recycle_log_file_num > 0), NewRandomRWFile and LinkFile.
//
// Journal: one line per event, fields separated by tabs; ids number the files of one journal.
//   C <id> <path>         before NewWritableFile creates (or empties) <path>
//   O <id> <size> <path>  before an untracked file is reopened: durable up to <size>
//   S <id> <size>         after a Sync/Fsync returned OK: durable up to <size>, name durable
//   F <dir>               after <dir> was fsynced: the names of its files are durable
//   M <from> <to>         before a rename; "R" follows once it succeeded
//   D <path>              after <path> was deleted
// Creations, renames and deletions hold the journal's lock across the operation and its records,
// so a kill leaves at most one of them half done: a dangling last "M" is resolved by looking
// whether <from> still exists. A line cut short by the kill is ignored.
//
// Thread safety: PowerLossFs and its files are thread-safe. ApplyPowerCut REQUIRES that nothing
// writes the files of the journal any more (the store destroyed, or the writer process dead).
#pragma once

#include <fcntl.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dsm/status.h"

namespace dsm::storage_test {

// Where the journal of a data directory lives: beside it, so the store's directory holds only
// RocksDB's files.
inline std::string PowerJournalPath(const std::string& data_dir) {
  std::string dir = data_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + ".power-journal";
}

namespace power_loss_internal {

// The normal form of a path as the journal records it: lexically normal, no trailing slash.
inline std::string Normal(const std::string& path) {
  std::string p = std::filesystem::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

inline std::string Parent(const std::string& normal_path) {
  return std::filesystem::path(normal_path).parent_path().string();
}

inline bool IsWal(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".log") == 0;
}

inline rocksdb::IOStatus PowerOff() { return rocksdb::IOStatus::IOError("power cut"); }

// The journal of one PowerLossFs: the file, the ids of the tracked files and the power switch.
class Journal {
 public:
  explicit Journal(std::string path) : path_(std::move(path)) {}
  ~Journal() {
    if (fd_ >= 0) ::close(fd_);
  }
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  std::mutex& mu() { return mu_; }

  // REQUIRES: mu() held.
  bool off() const { return off_; }

  // Switches the power off: no record is written after this returns.
  void SwitchOff() {
    std::lock_guard<std::mutex> lock(mu_);
    off_ = true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Appends one record (fields joined by tabs). The journal is created by the first record and
  // must not exist yet: an unapplied journal of an earlier life is never appended to.
  // REQUIRES: mu() held, the power on.
  rocksdb::IOStatus Record(const std::vector<std::string>& fields) {
    std::string line;
    for (const std::string& f : fields) {
      if (f.find_first_of("\t\n") != std::string::npos) {
        return rocksdb::IOStatus::InvalidArgument("power journal: tab or newline in '" + f + "'");
      }
      if (!line.empty()) line += '\t';
      line += f;
    }
    line += '\n';
    if (fd_ < 0) {
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
      if (fd_ < 0) {
        return rocksdb::IOStatus::IOError("power journal " + path_ + ": " + std::strerror(errno));
      }
    }
    for (size_t done = 0; done < line.size();) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return rocksdb::IOStatus::IOError("power journal " + path_ + ": " + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    return rocksdb::IOStatus::OK();
  }

  // Records a completed sync of file `id` up to `size`.
  rocksdb::IOStatus RecordSync(uint64_t id, uint64_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    if (off_) return PowerOff();
    return Record({"S", std::to_string(id), std::to_string(size)});
  }
  rocksdb::IOStatus RecordDirSync(const std::string& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    if (off_) return PowerOff();
    return Record({"F", dir});
  }

  // Tracked files by normal path. REQUIRES: mu() held for all three.
  std::optional<uint64_t> IdOf(const std::string& path) const {
    auto it = ids_.find(path);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  uint64_t Track(const std::string& path) { return ids_[path] = ++last_id_; }
  void Rename(const std::string& from, const std::string& to) {
    auto it = ids_.find(from);
    if (it == ids_.end()) {
      ids_.erase(to);
      return;
    }
    const uint64_t id = it->second;
    ids_.erase(it);
    ids_[to] = id;
  }
  void Forget(const std::string& path) { ids_.erase(path); }

 private:
  const std::string path_;
  std::mutex mu_;
  bool off_ = false;                     // guarded by mu_
  int fd_ = -1;                          // guarded by mu_; -1 until the first record
  uint64_t last_id_ = 0;                 // guarded by mu_
  std::map<std::string, uint64_t> ids_;  // guarded by mu_: tracked files by normal path
};

// A file open for writing: writes through, counts its length, journals its syncs.
class File : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(std::unique_ptr<rocksdb::FSWritableFile> file, std::shared_ptr<Journal> journal, uint64_t id,
       uint64_t size)
      : FSWritableFileOwnerWrapper(std::move(file)),
        journal_(std::move(journal)),
        id_(id),
        size_(size) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Append(data, options, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
    if (s.ok()) Grow(data.size(), std::nullopt);
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    rocksdb::IOStatus s = FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    rocksdb::IOStatus s =
        FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) Grow(data.size(), offset);
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    rocksdb::IOStatus s = FSWritableFileOwnerWrapper::Truncate(size, options, dbg);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      size_ = size;
    }
    return s;
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    return FSWritableFileOwnerWrapper::Flush(options, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
  }
  rocksdb::IOStatus Allocate(uint64_t offset, uint64_t len, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    if (Off()) return PowerOff();
    return FSWritableFileOwnerWrapper::Allocate(offset, len, options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return FSWritableFileOwnerWrapper::Sync(options, dbg); });
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return FSWritableFileOwnerWrapper::Fsync(options, dbg); });
  }
  // Close makes nothing durable: it is forwarded (to release the descriptor) even with the power
  // off, since the cut is applied afterwards from the journal.

 private:
  bool Off() {
    std::lock_guard<std::mutex> lock(journal_->mu());
    return journal_->off();
  }
  void Grow(size_t n, std::optional<uint64_t> offset) {
    std::lock_guard<std::mutex> lock(mu_);
    size_ = offset ? std::max(size_, *offset + n) : size_ + n;
  }
  // Runs a real sync; once it returned OK, journals the length appended before it began.
  template <typename SyncFn>
  rocksdb::IOStatus Synced(SyncFn sync) {
    if (Off()) return PowerOff();
    uint64_t durable = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      durable = size_;
    }
    rocksdb::IOStatus s = sync();
    if (!s.ok()) return s;
    return journal_->RecordSync(id_, durable);
  }

  const std::shared_ptr<Journal> journal_;
  const uint64_t id_;
  std::mutex mu_;
  uint64_t size_;  // guarded by mu_: bytes whose Append returned OK
};

// A directory handle whose fsyncs are journaled.
class Directory : public rocksdb::FSDirectoryWrapper {
 public:
  Directory(std::unique_ptr<rocksdb::FSDirectory> dir, std::shared_ptr<Journal> journal,
            std::string path)
      : FSDirectoryWrapper(std::move(dir)), journal_(std::move(journal)), path_(std::move(path)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = FSDirectoryWrapper::Fsync(options, dbg);
    return s.ok() ? journal_->RecordDirSync(path_) : s;
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& dir_options) override {
    rocksdb::IOStatus s = FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options);
    return s.ok() ? journal_->RecordDirSync(path_) : s;
  }

 private:
  const std::shared_ptr<Journal> journal_;
  const std::string path_;  // normal form
};

}  // namespace power_loss_internal

class PowerLossFs : public rocksdb::FileSystemWrapper {
 public:
  // `journal_path` (usually PowerJournalPath(data dir)) must not exist: it is created by the
  // first event and removed by ApplyPowerCut.
  explicit PowerLossFs(std::string journal_path)
      : FileSystemWrapper(rocksdb::FileSystem::Default()),
        journal_(std::make_shared<power_loss_internal::Journal>(std::move(journal_path))) {}

  const char* Name() const override { return "PowerLossFs"; }

  // Switches the power off. Every later write, sync, creation, rename and deletion fails with
  // IOError("power cut"); reads and closes still work. The unsynced bytes are dropped by
  // ApplyPowerCut, once whatever used this file system is closed.
  void PowerCut() { journal_->SwitchOff(); }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* dbg) override {
    const std::string path = power_loss_internal::Normal(name);
    std::lock_guard<std::mutex> lock(journal_->mu());
    if (journal_->off()) return power_loss_internal::PowerOff();
    const uint64_t id = journal_->Track(path);
    rocksdb::IOStatus s = journal_->Record({"C", std::to_string(id), path});
    if (!s.ok()) return s;
    s = target()->NewWritableFile(name, options, file, dbg);
    if (s.ok()) file->reset(new power_loss_internal::File(std::move(*file), journal_, id, 0));
    return s;
  }

  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* file,
                                       rocksdb::IODebugContext* dbg) override {
    const std::string path = power_loss_internal::Normal(name);
    std::lock_guard<std::mutex> lock(journal_->mu());
    if (journal_->off()) return power_loss_internal::PowerOff();
    uint64_t size = 0;
    rocksdb::IOStatus s = target()->GetFileSize(name, rocksdb::IOOptions(), &size, dbg);
    if (s.IsPathNotFound() || s.IsNotFound()) {
      size = 0;
    } else if (!s.ok()) {
      return s;
    }
    std::optional<uint64_t> id = journal_->IdOf(path);
    if (!id) {
      // Untracked so far: it was there before the journal began, durable as it is.
      id = journal_->Track(path);
      s = journal_->Record({"O", std::to_string(*id), std::to_string(size), path});
      if (!s.ok()) return s;
    }
    s = target()->ReopenWritableFile(name, options, file, dbg);
    if (s.ok()) file->reset(new power_loss_internal::File(std::move(*file), journal_, *id, size));
    return s;
  }

  rocksdb::IOStatus ReuseWritableFile(const std::string&, const std::string&,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSWritableFile>*,
                                      rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFs: ReuseWritableFile (WAL recycling)");
  }
  rocksdb::IOStatus NewRandomRWFile(const std::string&, const rocksdb::FileOptions&,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>*,
                                    rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFs: NewRandomRWFile");
  }
  rocksdb::IOStatus LinkFile(const std::string&, const std::string&, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFs: LinkFile");
  }

  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* dir,
                                 rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewDirectory(name, options, dir, dbg);
    if (s.ok()) {
      dir->reset(new power_loss_internal::Directory(std::move(*dir), journal_,
                                                    power_loss_internal::Normal(name)));
    }
    return s;
  }

  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    const std::string f = power_loss_internal::Normal(from);
    const std::string t = power_loss_internal::Normal(to);
    std::lock_guard<std::mutex> lock(journal_->mu());
    if (journal_->off()) return power_loss_internal::PowerOff();
    rocksdb::IOStatus s = journal_->Record({"M", f, t});
    if (!s.ok()) return s;
    s = target()->RenameFile(from, to, options, dbg);
    if (!s.ok()) return s;
    journal_->Rename(f, t);
    return journal_->Record({"R"});
  }

  rocksdb::IOStatus DeleteFile(const std::string& name, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    const std::string path = power_loss_internal::Normal(name);
    std::lock_guard<std::mutex> lock(journal_->mu());
    if (journal_->off()) return power_loss_internal::PowerOff();
    rocksdb::IOStatus s = target()->DeleteFile(name, options, dbg);
    if (!s.ok()) return s;
    journal_->Forget(path);
    return journal_->Record({"D", path});
  }

  // Durable at once (not modelled), but refused with the power off.
  rocksdb::IOStatus Truncate(const std::string& name, size_t size,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    if (Off()) return power_loss_internal::PowerOff();
    return target()->Truncate(name, size, options, dbg);
  }
  rocksdb::IOStatus CreateDir(const std::string& name, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (Off()) return power_loss_internal::PowerOff();
    return target()->CreateDir(name, options, dbg);
  }
  rocksdb::IOStatus CreateDirIfMissing(const std::string& name, const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override {
    if (Off()) return power_loss_internal::PowerOff();
    return target()->CreateDirIfMissing(name, options, dbg);
  }
  rocksdb::IOStatus DeleteDir(const std::string& name, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (Off()) return power_loss_internal::PowerOff();
    return target()->DeleteDir(name, options, dbg);
  }

 private:
  bool Off() {
    std::lock_guard<std::mutex> lock(journal_->mu());
    return journal_->off();
  }

  const std::shared_ptr<power_loss_internal::Journal> journal_;
};

// An Env whose file I/O goes through a PowerLossFs journaling to `journal_path`.
struct PowerLossEnv {
  explicit PowerLossEnv(const std::string& journal_path)
      : fs(std::make_shared<PowerLossFs>(journal_path)), env(rocksdb::NewCompositeEnv(fs)) {}
  std::shared_ptr<PowerLossFs> fs;
  std::unique_ptr<rocksdb::Env> env;
};

// What ApplyPowerCut did.
struct PowerCutReport {
  bool journal_found = false;
  uint64_t records = 0;            // journal lines replayed
  uint64_t files_truncated = 0;    // cut back to their synced length
  uint64_t files_removed = 0;      // whose name was not durable
  uint64_t bytes_dropped = 0;      // unsynced bytes dropped, in all files
  uint64_t wal_bytes_dropped = 0;  // of which in write-ahead logs ("*.log")

  std::string ToString() const {
    std::ostringstream out;
    out << records << " journal records; " << files_truncated << " files truncated, "
        << files_removed << " removed; " << bytes_dropped << " unsynced bytes dropped ("
        << wal_bytes_dropped << " of write-ahead logs)";
    return out.str();
  }
};

// Applies a power cut from the journal at `journal_path`: every file written through the
// PowerLossFs since the journal began loses its unsynced bytes (see the top of this file), then
// the journal is deleted. A missing journal means nothing was written: nothing to do
// (report->journal_found tells). Returns Corruption for a malformed journal, IOError when a file
// cannot be cut. REQUIRES: nothing writes the journal's files any more.
inline Status ApplyPowerCut(const std::string& journal_path, PowerCutReport* report) {
  namespace fs = std::filesystem;
  *report = PowerCutReport();
  std::ifstream in(journal_path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(journal_path, ec)) return Status::Ok();
    return Status::IOError("cannot read power journal " + journal_path);
  }
  report->journal_found = true;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();

  struct Tracked {
    std::string path;
    int64_t synced = -1;  // -1: never synced
    bool named = false;   // the name is durable
  };
  std::map<uint64_t, Tracked> files;
  std::map<std::string, uint64_t> by_path;
  auto forget = [&](const std::string& path) {
    auto it = by_path.find(path);
    if (it == by_path.end()) return;
    files.erase(it->second);
    by_path.erase(it);
  };
  auto rename = [&](const std::string& from, const std::string& to) {
    forget(to);
    auto it = by_path.find(from);
    if (it == by_path.end()) return;
    const uint64_t id = it->second;
    by_path.erase(it);
    by_path[to] = id;
    files[id].path = to;
  };
  auto number = [](const std::string& s, uint64_t* out) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoull(s);
    return true;
  };

  std::optional<std::pair<std::string, std::string>> pending_rename;  // an "M" without its "R"
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::vector<std::string> f;
    std::stringstream line(text.substr(start, nl - start));
    for (std::string field; std::getline(line, field, '\t');) f.push_back(field);
    ++report->records;
    auto bad = [&] {
      return Status::Corruption("power journal " + journal_path + ": bad record '" +
                                text.substr(start, nl - start) + "'");
    };
    if (f.empty()) return bad();
    if (pending_rename) {
      // The rename failed unless its "R" follows at once (the lock is held across both).
      if (f[0] == "R") rename(pending_rename->first, pending_rename->second);
      pending_rename.reset();
      if (f[0] == "R") continue;
    }
    uint64_t id = 0;
    uint64_t size = 0;
    if (f[0] == "C" && f.size() == 3 && number(f[1], &id)) {
      forget(f[2]);
      files[id] = Tracked{f[2], -1, false};
      by_path[f[2]] = id;
    } else if (f[0] == "O" && f.size() == 4 && number(f[1], &id) && number(f[2], &size)) {
      forget(f[3]);
      files[id] = Tracked{f[3], static_cast<int64_t>(size), true};
      by_path[f[3]] = id;
    } else if (f[0] == "S" && f.size() == 3 && number(f[1], &id) && number(f[2], &size)) {
      auto it = files.find(id);
      if (it != files.end()) {
        it->second.synced = std::max(it->second.synced, static_cast<int64_t>(size));
        it->second.named = true;
      }
    } else if (f[0] == "F" && f.size() == 2) {
      for (auto& [unused, t] : files) {
        if (power_loss_internal::Parent(t.path) == f[1]) t.named = true;
      }
    } else if (f[0] == "M" && f.size() == 3) {
      pending_rename.emplace(f[1], f[2]);
    } else if (f[0] == "D" && f.size() == 2) {
      forget(f[1]);
    } else {
      return bad();
    }
  }
  if (pending_rename) {
    // Killed between "M" and "R": the rename happened if its source is gone.
    std::error_code ec;
    if (!fs::exists(pending_rename->first, ec)) {
      rename(pending_rename->first, pending_rename->second);
    }
  }

  for (const auto& [unused, t] : files) {
    struct stat st;
    if (::stat(t.path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // created, or deleted, around the kill
      return Status::IOError("power cut: stat " + t.path + ": " + std::strerror(errno));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t dropped = 0;
    if (!t.named) {
      if (::unlink(t.path.c_str()) != 0) {
        return Status::IOError("power cut: unlink " + t.path + ": " + std::strerror(errno));
      }
      ++report->files_removed;
      dropped = size;
    } else {
      const uint64_t keep = static_cast<uint64_t>(std::max<int64_t>(t.synced, 0));
      if (size <= keep) continue;
      if (::truncate(t.path.c_str(), static_cast<off_t>(keep)) != 0) {
        return Status::IOError("power cut: truncate " + t.path + ": " + std::strerror(errno));
      }
      ++report->files_truncated;
      dropped = size - keep;
    }
    report->bytes_dropped += dropped;
    if (power_loss_internal::IsWal(t.path)) report->wal_bytes_dropped += dropped;
  }
  std::error_code ec;
  if (!fs::remove(journal_path, ec) || ec) {
    return Status::IOError("cannot remove power journal " + journal_path + ": " + ec.message());
  }
  return Status::Ok();
}

}  // namespace dsm::storage_test

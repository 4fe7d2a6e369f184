// Thread-safety annotations checked by the compiler, and the mutex that carries them.
//
// Clang's -Wthread-safety analysis (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html) checks
// at compile time that a member marked GUARDED_BY(mu_) is only touched with mu_ held, that a
// function marked EXCLUSIVE_LOCKS_REQUIRED(mu_) is only called with it held, and that locks are
// released on every path. The macros expand to nothing on other compilers (GCC), so they are
// documentation there; every clang build (CMakeLists.txt; in CI, scripts/dev asan) has
// -Wthread-safety with its findings as errors.
//
// libstdc++'s std::mutex carries no annotations, so annotated code locks a dsm::Mutex (a
// std::mutex with the capability attribute) through a dsm::MutexLock (a scoped lock, like
// std::lock_guard, that can also be unlocked and relocked within its scope), and waits on a
// dsm::CondVar (a std::condition_variable that takes the Mutex).
//
// How to annotate a monitor (one mutex guarding its state):
//   mutable Mutex mu_;
//   CondVar changed_cv_;          // say which events notify it
//   int state_ GUARDED_BY(mu_);   // the members the mutex guards
//   void Helper() EXCLUSIVE_LOCKS_REQUIRED(mu_);  // private helpers called with mu_ held
//   void Entry() LOCKS_EXCLUDED(mu_);             // entry points that take mu_ themselves
// Waiting for a condition is an explicit loop, so the analysis sees the condition read with the
// lock held:
//   MutexLock lock(&mu_);
//   while (!ready_) changed_cv_.Wait(&mu_);
// A lambda that runs synchronously with the lock held (a Scan visitor, a predicate) is
// annotated itself: [&]() EXCLUSIVE_LOCKS_REQUIRED(mu_) { ... }. (The analysis does not follow a
// lambda through std::function: the annotation states the caller's promise, the compiler checks
// the lambda's body against it.)
//
// Names: LevelDB's and Abseil's spelling (EXCLUSIVE_LOCKS_REQUIRED, LOCKS_EXCLUDED) rather than
// the shorter REQUIRES / EXCLUDES of Clang's documentation, because Pistache's
// <pistache/type_checkers.h> (included by <pistache/http.h>) defines a macro REQUIRES(condition)
// of its own (a std::enable_if): both cannot coexist in one translation unit.
//
// Thread safety: Mutex, MutexLock and CondVar behave as std::mutex, std::unique_lock and
// std::condition_variable. A MutexLock belongs to one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define DSM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define DSM_THREAD_ANNOTATION(x)
#endif

// A type that is a capability (a mutex). `x` names the kind in the compiler's messages.
#define CAPABILITY(x) DSM_THREAD_ANNOTATION(capability(x))
// A RAII type that acquires a capability in its constructor and releases it in its destructor.
#define SCOPED_CAPABILITY DSM_THREAD_ANNOTATION(scoped_lockable)
// The member is read and written only with the given mutex held.
#define GUARDED_BY(x) DSM_THREAD_ANNOTATION(guarded_by(x))
// What the pointer (or smart pointer) member points to is accessed only with the mutex held; the
// pointer itself is not guarded.
#define PT_GUARDED_BY(x) DSM_THREAD_ANNOTATION(pt_guarded_by(x))
// Lock order: this mutex is taken before / after the given ones.
#define ACQUIRED_BEFORE(...) DSM_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) DSM_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
// The function is called with the given mutexes held (and leaves them held).
#define EXCLUSIVE_LOCKS_REQUIRED(...) DSM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The function is called without the given mutexes held (it takes them itself).
#define LOCKS_EXCLUDED(...) DSM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// The function acquires / releases the given mutexes (none given: `this`). TRY_ACQUIRE(r, mu):
// it tries to acquire them and returns r (true or false) when it did.
#define ACQUIRE(...) DSM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) DSM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DSM_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The function checks (or promises) that the mutex is held when it returns.
#define ASSERT_CAPABILITY(x) DSM_THREAD_ANNOTATION(assert_capability(x))
// The function returns a reference to the given mutex.
#define RETURN_CAPABILITY(x) DSM_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function. Say in a comment why it is safe.
#define NO_THREAD_SAFETY_ANALYSIS DSM_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace dsm {

// A non-recursive mutex (std::mutex) the analysis knows about.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // Tells the analysis that the calling thread holds the mutex where it cannot see it. Checks
  // nothing at run time: prefer EXCLUSIVE_LOCKS_REQUIRED on the function.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope, like std::lock_guard; Unlock() and Lock() release and retake it
// within the scope (around I/O, say), like std::unique_lock. The destructor releases it if held.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() {
    if (locked_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // REQUIRES: held by this lock.
  void Unlock() RELEASE() {
    locked_ = false;
    mu_->Unlock();
  }
  // REQUIRES: released by Unlock() before.
  void Lock() ACQUIRE() {
    mu_->Lock();
    locked_ = true;
  }

 private:
  Mutex* const mu_;
  bool locked_ = true;
};

// A condition variable waited on with a held Mutex. As with std::condition_variable, a wait may
// end spuriously: callers wait in a loop on their condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases *mu, waits for a notification and retakes *mu.
  void Wait(Mutex* mu) EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // still held: the caller's
  }
  // Same, until `deadline` at the latest. Returns false when the deadline has passed (as
  // std::cv_status::timeout), true otherwise.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, const std::chrono::time_point<Clock, Duration>& deadline)
      EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const std::cv_status status = cv_.wait_until(lock, deadline);
    lock.release();
    return status == std::cv_status::no_timeout;
  }
  // Same, for `timeout` at most.
  template <typename Rep, typename Period>
  bool WaitFor(Mutex* mu, const std::chrono::duration<Rep, Period>& timeout)
      EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + timeout);
  }

  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace dsm

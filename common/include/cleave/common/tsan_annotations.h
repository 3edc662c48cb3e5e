// Happens-before edges for ThreadSanitizer where the synchronisation lives in a library TSan
// cannot see. Debian's gRPC is not built with TSan: a reactor that starts an operation on one
// thread and sees it complete (OnWriteDone, OnReadDone, OnDone) on another is ordered by
// libgrpc's completion queue, out of TSan's sight. A reactor calls CLEAVE_TSAN_RELEASE(this)
// right before it hands itself to gRPC (StartRead, StartWrite, Finish, ...) and
// CLEAVE_TSAN_ACQUIRE(this) first thing in each reaction: TSan then orders what the reactor did
// before the hand-off before what the reaction does, as libgrpc really does, and still checks
// every access that gRPC does not order. Without TSan both compile to nothing.
#ifndef CLEAVE_COMMON_TSAN_ANNOTATIONS_H_
#define CLEAVE_COMMON_TSAN_ANNOTATIONS_H_

#if defined(__SANITIZE_THREAD__)
#define CLEAVE_TSAN_ENABLED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CLEAVE_TSAN_ENABLED 1
#endif
#endif

#if defined(CLEAVE_TSAN_ENABLED)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define CLEAVE_TSAN_RELEASE(addr) __tsan_release(const_cast<void*>(static_cast<const void*>(addr)))
#define CLEAVE_TSAN_ACQUIRE(addr) __tsan_acquire(const_cast<void*>(static_cast<const void*>(addr)))
#else
#define CLEAVE_TSAN_RELEASE(addr) static_cast<void>(0)
#define CLEAVE_TSAN_ACQUIRE(addr) static_cast<void>(0)
#endif

#endif  // CLEAVE_COMMON_TSAN_ANNOTATIONS_H_

import Testing
import Synchronization
import DarterCore
import DarterTestSupport
@testable import DarterIO

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    let now = Atomic<Int64>(0)
    var read: @Sendable () -> Int64 { { [self] in now.load(ordering: .relaxed) } }
}

/// Whether something happened, across threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

private func elapsedMilliseconds(since start: Int64) -> Int64 { (SystemCalls.monotonicNanoseconds() - start) / 1_000_000 }

// Timing is checked from below only (a wait at least as long as the bucket says): a loaded
// machine makes waits longer, never shorter.
@Suite("RateLimiter: the token bucket shared by a daemon's loops, tasks and threads")
struct RateLimiterTests {
    @Test("reserve answers the bucket's waits on its clock and counts bytes and waits")
    func reserveAndCounters() {
        let clock = ManualClock()
        let limit = RateLimiter(bytesPerSecond: 1_000_000, burst: 100_000, clock: clock.read)
        #expect(limit.chunk == TokenBucket.chunk(bytesPerSecond: 1_000_000))
        #expect(limit.reserve(100_000) == 0)
        #expect(limit.reserve(50_000) == 50_000_000, "50 kB at 1 MB/s past the burst: 50 ms")
        clock.now.store(1_000_000_000, ordering: .relaxed)
        #expect(limit.reserve(100_000) == 0, "refilled after a second")
        #expect(limit.bytesTaken == 250_000)
        #expect(limit.waitNanoseconds == 50_000_000)
    }

    @Test("defaults: the burst and chunk of TokenBucket for the rate")
    func defaults() {
        let limit = RateLimiter(bytesPerSecond: 4 << 20)
        #expect(limit.burst == TokenBucket.defaultBurst(bytesPerSecond: 4 << 20))
        #expect(limit.chunk == 256 << 10)
    }

    @Test("take sleeps the task until the bytes may be used; threads share one bucket")
    func asyncTake() async {
        let limit = RateLimiter(bytesPerSecond: 1_000_000, burst: 10_000)
        let start = SystemCalls.monotonicNanoseconds()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { await limit.take(25_000) } }
        }
        // 100 kB through a 10 kB burst at 1 MB/s: 90 ms at least, however they interleave.
        #expect(elapsedMilliseconds(since: start) >= 89)
        #expect(limit.bytesTaken == 100_000)
    }

    @Test("takeBlocking sleeps the thread, and stops early when told to")
    func blocking() async throws {
        // On a thread of its own, as libcurl's: sleeping one of the pool's threads holds up the
        // parallel suites' tasks.
        let (slept, stopped) = try await offPool { () -> (Int64, Int64) in
            let limit = RateLimiter(bytesPerSecond: 1_000_000, burst: 1_000)
            var start = SystemCalls.monotonicNanoseconds()
            #expect(limit.takeBlocking(61_000, stop: { false }))
            let slept = elapsedMilliseconds(since: start)
            // Ten seconds' debt, stopped at the first look (after one 50 ms slice).
            start = SystemCalls.monotonicNanoseconds()
            #expect(!limit.takeBlocking(10_000_000, stop: { true }))
            return (slept, elapsedMilliseconds(since: start))
        }
        #expect(slept >= 59)
        #expect(stopped < 5_000, "stopped after \(stopped) ms, not the debt's 10 s")
    }

    @Test("on an event loop: no timer while tokens are there; then `resume` runs on the loop after the wait")
    func loopTimer() async throws {
        let test = try TestLoop()
        let loop = test.loop
        let limit = RateLimiter(bytesPerSecond: 1_000_000, burst: 20_000)
        let (immediate, waitedMilliseconds, onLoopThread): (Bool, Int64, Bool) = await onLoop(loop) { done in
            let start = SystemCalls.monotonicNanoseconds()
            guard limit.take(20_000, on: loop, resume: { done((false, -1, false)) }) == nil else { return }
            let timer = limit.take(40_000, on: loop) {
                done((true, elapsedMilliseconds(since: start), loop.inLoopThread))
            }
            if timer == nil { done((true, -2, true)) }
        }
        #expect(immediate, "the burst needed no timer")
        #expect(waitedMilliseconds >= 39, "40 kB at 1 MB/s: \(waitedMilliseconds) ms (-2: no timer)")
        #expect(onLoopThread)
        withExtendedLifetime(test) {}
    }

    @Test("a cancelled timer never resumes")
    func cancelledTimer() async throws {
        let test = try TestLoop()
        let loop = test.loop
        let limit = RateLimiter(bytesPerSecond: 1_000_000, burst: 1_000)
        let fired = Flag()
        let pending: Int = await onLoop(loop) { done in
            let timer = limit.take(21_000, on: loop) { fired.set() }!
            loop.cancelTimer(timer)
            loop.schedule(after: .milliseconds(60)) { done(loop.pendingTimerCount) }
        }
        #expect(!fired.isSet)
        #expect(pending == 0)
        withExtendedLifetime(test) {}
    }
}

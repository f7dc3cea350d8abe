#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import Synchronization

/// A daemon's byte rate in one direction (`--upload-rate`, `--download-rate`, `--origin-rate`),
/// shared by all its loops, tasks and threads: the pure ``TokenBucket`` under a lock, on the
/// monotonic clock, with one way to wait for each kind of caller. Nothing is made for an
/// unlimited direction: callers hold an optional, so no limit costs one nil check.
public final class RateLimiter: Sendable {
    public let bytesPerSecond: Int64
    public let burst: Int64
    /// Bytes a paced stream asks for at a time (``TokenBucket/chunk(bytesPerSecond:)``).
    public let chunk: Int
    private let bucket: Mutex<TokenBucket>
    private let clock: @Sendable () -> Int64
    private let taken = Atomic<Int>(0)
    private let waited = Atomic<Int>(0)

    /// - Parameters:
    ///   - bytesPerSecond: more than 0.
    ///   - clock: monotonic nanoseconds (tests pass their own).
    public init(bytesPerSecond: Int64, burst: Int64? = nil,
                clock: @escaping @Sendable () -> Int64 = { SystemCalls.monotonicNanoseconds() }) {
        precondition(bytesPerSecond > 0, "an unlimited direction has no RateLimiter")
        self.bytesPerSecond = bytesPerSecond
        self.burst = burst ?? TokenBucket.defaultBurst(bytesPerSecond: bytesPerSecond)
        chunk = TokenBucket.chunk(bytesPerSecond: bytesPerSecond)
        bucket = Mutex(TokenBucket(bytesPerSecond: bytesPerSecond, burst: self.burst))
        self.clock = clock
    }

    /// Takes `n` bytes now; returns the nanoseconds to wait before using them.
    public func reserve(_ n: Int) -> Int64 {
        let now = clock()
        let delay = bucket.withLock { $0.take(Int64(n), now: now) }
        // Wrapping: a counter must never trap a daemon (absurd rates give absurd waits).
        taken.wrappingAdd(n, ordering: .relaxed)
        if delay > 0 { waited.wrappingAdd(Int(delay), ordering: .relaxed) }
        return delay
    }

    /// Takes `n` bytes and sleeps until they may be used (a cancelled task stops waiting; the
    /// bytes stay taken).
    public func take(_ n: Int) async {
        let delay = reserve(n)
        if delay > 0 { try? await Task.sleep(for: .nanoseconds(delay)) }
    }

    /// Takes `n` bytes and blocks this thread until they may be used: for threads that may
    /// block (libcurl's transfer thread), never an event loop. Sleeps in slices of at most
    /// 50 ms, asking `stop` after each; false when it said to stop.
    public func takeBlocking(_ n: Int, stop: () -> Bool) -> Bool {
        let until = clock() + reserve(n)
        while true {
            let left = until - clock()
            if left <= 0 { return true }
            var ts = timespec(tv_sec: 0, tv_nsec: Int(min(left, 50_000_000)))
            nanosleep(&ts, nil)
            if stop() { return false }
        }
    }

    /// The event loop's way: takes `n` bytes; when they may not be used yet, schedules `resume`
    /// on `loop` for when they may and returns its timer (cancel it to give up). Nil: use them
    /// now (`resume` is not called). On `loop`'s thread.
    public func take(_ n: Int, on loop: EventLoop, resume: @escaping () -> Void) -> TimerID? {
        let delay = reserve(n)
        guard delay > 0 else { return nil }
        return loop.schedule(after: .nanoseconds(delay), resume)
    }

    /// Bytes taken so far.
    public var bytesTaken: Int { taken.load(ordering: .relaxed) }
    /// Nanoseconds its takers were told to wait, summed over them (concurrent waits add up).
    public var waitNanoseconds: Int { waited.load(ordering: .relaxed) }
}

/// A daemon's limits: nil is unlimited.
public struct RateLimits: Sendable {
    /// Piece and content bytes its server sends (responses' bodies).
    public var upload: RateLimiter?
    /// Piece bytes it receives from parents in the swarm.
    public var download: RateLimiter?
    /// Bytes it receives from origins.
    public var origin: RateLimiter?

    public init(upload: RateLimiter? = nil, download: RateLimiter? = nil, origin: RateLimiter? = nil) {
        self.upload = upload
        self.download = download
        self.origin = origin
    }

    /// By direction, in the order `/metrics` lists them.
    public var byDirection: [(direction: String, limiter: RateLimiter?)] {
        [("upload", upload), ("download", download), ("origin", origin)]
    }
}

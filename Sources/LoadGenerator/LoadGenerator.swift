#if canImport(Glibc)
import Glibc
#endif
import BenchReport
import DarterCore
import DarterIO
import HTTPClient
import HTTPCore
import Synchronization

/// What every connection of a step sends, and where.
public struct LoadPlan: Sendable {
    public var url: HTTPClientURL
    public var address: SocketAddress
    public var keepAlive: Bool
    /// The share of requests (0...1) sent with a unique query string: a cache or shield in
    /// front of an origin misses on each of them.
    public var missRatio: Double
    /// The request's bytes (Host, User-Agent; `Connection: close` without keep-alive).
    let hitRequest: [UInt8]
    /// Differs per run, so a second run's misses are misses too.
    let runNonce: UInt64

    public init(url: HTTPClientURL, address: SocketAddress, keepAlive: Bool, missRatio: Double, runNonce: UInt64) {
        self.url = url
        self.address = address
        self.keepAlive = keepAlive
        self.missRatio = missRatio
        self.runNonce = runNonce
        hitRequest = Self.request(url: url, target: url.target, keepAlive: keepAlive)
    }

    static func request(url: HTTPClientURL, target: String, keepAlive: Bool) -> [UInt8] {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: url.hostHeader)
        headers.add(name: "User-Agent", value: "darter-bench")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        var out: [UInt8] = []
        HTTPRequestHead(method: .get, target: target, headers: headers).serialize(into: &out)
        return out
    }

    /// The target of a miss: the URL's with `darter-bench-miss=NONCE-LOOP-CONNECTION-N` added
    /// to its query (unique across loops, connections and runs).
    public static func missTarget(_ target: String, nonce: UInt64, loop: Int, connection: Int, counter: UInt64) -> String {
        let fragmentless = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? target
        let join = fragmentless.contains("?") ? (fragmentless.hasSuffix("?") || fragmentless.hasSuffix("&") ? "" : "&") : "?"
        return fragmentless + join + "darter-bench-miss=\(String(nonce, radix: 16))-\(loop)-\(connection)-\(counter)"
    }

    func missRequest(loop: Int, connection: Int, counter: UInt64) -> [UInt8] {
        Self.request(url: url, target: Self.missTarget(url.target, nonce: runNonce, loop: loop, connection: connection, counter: counter), keepAlive: keepAlive)
    }
}

/// Completed requests per loop, readable from any thread (the progress line).
final class LiveCount: Sendable {
    let requests = Atomic<UInt64>(0)
}

/// One loop's share of a step: its connections, the counters they record into (no locks:
/// loop-confined), the discard buffer they receive bodies into.
final class LoopLoad: @unchecked Sendable {
    let loop: EventLoop
    let plan: LoadPlan
    let windowStart: Int64
    let windowEnd: Int64
    let discard = SharedIOBuffer(IOBuffer(capacity: 256 << 10))
    let live: LiveCount
    var counters = LoadCounters()
    var stopping = false
    /// End the step after the first response (a probe).
    var stopAfterFirst = false
    private var endTimer: TimerID?
    private var connections: [LoadConnection] = []
    private var running = 0
    private var random: SplitMix64
    private let done: @Sendable (LoadCounters) -> Void

    init(loop: EventLoop, plan: LoadPlan, windowStart: Int64, windowEnd: Int64, live: LiveCount, seed: UInt64,
         done: @escaping @Sendable (LoadCounters) -> Void) {
        self.loop = loop
        self.plan = plan
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.live = live
        self.done = done
        random = SplitMix64(seed: seed)
    }

    /// On the loop: opens `count` connections and stops them all when the window closes.
    func start(connections count: Int, firstID: Int) {
        loop.assertInLoop()
        running = count
        connections = (0..<count).map { LoadConnection(engine: self, id: firstID + $0) }
        let untilEnd = max(0, windowEnd - SystemCalls.monotonicNanoseconds())
        endTimer = loop.schedule(after: .nanoseconds(untilEnd)) { [self] in
            endTimer = nil
            stop()
        }
        if count == 0 { return finishIfDone() }
        for c in connections { c.start() }
    }

    func stop() {
        stopping = true
        for c in connections { c.close(forGood: true) }
    }

    @inline(__always)
    func drawMiss() -> Bool {
        Double(random.next() >> 11) / Double(1 << 53) < plan.missRatio
    }

    @inline(__always)
    func recordResponse(at now: Int64, latency: Int64, status: Int, bytes: Int, bodyBytes: Int, miss: Bool) {
        guard now >= windowStart && now < windowEnd else { return }
        counters.requests &+= 1
        counters.bytes &+= UInt64(bytes)
        counters.bodyBytes &+= UInt64(bodyBytes)
        counters.statusClasses[min(max(status / 100, 0), 5)] &+= 1
        counters.latency.record(latency)
        if miss {
            counters.misses &+= 1
            counters.missLatency.record(latency)
        }
        counters.series.record(second: Int((now - windowStart) / 1_000_000_000), bytes: bytes)
        if status >= 400 && counters.firstBadStatus == nil { counters.firstBadStatus = status }
        live.requests.wrappingAdd(1, ordering: .relaxed)
        if stopAfterFirst && !stopping { stop() }
    }

    func recordError(_ kind: LoadConnection.Failure, _ message: String) {
        // Connections cut at the window's end are not failures.
        if stopping { return }
        switch kind {
        case .connect: counters.connectErrors += 1
        case .read: counters.readErrors += 1
        case .protocolError: counters.protocolErrors += 1
        }
        if counters.firstError == nil { counters.firstError = message }
    }

    func connectionFinished() {
        running -= 1
        finishIfDone()
    }

    private func finishIfDone() {
        guard running == 0 else { return }
        connections = []
        if let t = endTimer { loop.cancelTimer(t); endTimer = nil }
        done(counters)
    }
}

/// Drives load steps on an event loop group: each step opens its connections spread over the
/// loops (one per core by default), runs warmup then the measured window, and collects the
/// loops' counters.
public final class LoadGenerator: Sendable {
    public let group: EventLoopGroup
    private let nonce: UInt64

    public init(loops: Int) throws(Errno) {
        group = try EventLoopGroup(count: loops, entries: 4096)
        nonce = UInt64(truncatingIfNeeded: SystemCalls.wallClockSeconds()) &* 0x9E37_79B9 ^ UInt64(truncatingIfNeeded: SystemCalls.monotonicNanoseconds())
    }

    public func shutdown() { group.shutdown() }

    /// Resolves the URL's host (blocking: call it off the loops).
    public static func address(of url: HTTPClientURL) throws(ResolveError) -> SocketAddress {
        try Socket.resolve(host: url.host, port: url.port)[0]
    }

    public func plan(url: HTTPClientURL, address: SocketAddress, keepAlive: Bool, missRatio: Double) -> LoadPlan {
        LoadPlan(url: url, address: address, keepAlive: keepAlive, missRatio: missRatio, runNonce: nonce)
    }

    /// Runs one step: `concurrency` connections for `warmup` then `duration`. `progress` is
    /// called about every 250 ms with (seconds into the window, or negative in warmup;
    /// requests completed in the window so far).
    public func run(_ plan: LoadPlan, concurrency: Int, duration: Duration, warmup: Duration, stopAfterFirst: Bool = false,
                    progress: @escaping @Sendable (Double, UInt64) -> Void = { _, _ in }) async -> (counters: LoadCounters, cpuSeconds: Double, wallSeconds: Double) {
        let t0 = SystemCalls.monotonicNanoseconds()
        let cpu0 = Self.cpuSeconds()
        let windowStart = t0 + nanoseconds(warmup), windowEnd = windowStart + nanoseconds(duration)
        let loops = group.loops
        let results = Mutex<[LoadCounters]>([])
        let lives = loops.map { _ in LiveCount() }
        let finished = await withCheckedContinuation { (continuation: CheckedContinuation<[LoadCounters], Never>) in
            var firstID = 0
            for (i, loop) in loops.enumerated() {
                let share = concurrency / loops.count + (i < concurrency % loops.count ? 1 : 0)
                let id = firstID
                firstID += share
                let load = LoopLoad(loop: loop, plan: plan, windowStart: windowStart, windowEnd: windowEnd, live: lives[i],
                                    seed: nonce &+ UInt64(i) &* 0x5851_F42D_4C95_7F2D) { counters in
                    let all = results.withLock { r in r.append(counters); return r.count == loops.count ? r : nil }
                    if let all { continuation.resume(returning: all) }
                }
                load.stopAfterFirst = stopAfterFirst
                loop.execute { load.start(connections: share, firstID: id) }
            }
            // Progress from another task while the loops run.
            Task.detached { [lives] in
                while SystemCalls.monotonicNanoseconds() < windowEnd {
                    try? await Task.sleep(for: .milliseconds(250))
                    let now = SystemCalls.monotonicNanoseconds()
                    if now >= windowEnd { break }
                    progress(Double(now - windowStart) / 1e9, lives.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) })
                }
            }
        }
        var merged = LoadCounters()
        for c in finished { merged.merge(c) }
        return (merged, Self.cpuSeconds() - cpu0, Double(SystemCalls.monotonicNanoseconds() - t0) / 1e9)
    }

    /// User + system CPU seconds of this process so far.
    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

func nanoseconds(_ d: Duration) -> Int64 {
    let (s, a) = d.components
    return s * 1_000_000_000 + a / 1_000_000_000
}

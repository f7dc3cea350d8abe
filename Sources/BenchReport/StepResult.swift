/// Requests and bytes per second of a step, indexed by whole seconds since the step's
/// measurement began.
public struct ThroughputSeries: Sendable, Equatable {
    public private(set) var requests: [UInt64] = []
    public private(set) var bytes: [UInt64] = []

    public init() {}

    @inline(__always)
    public mutating func record(second: Int, bytes n: Int) {
        guard second >= 0 else { return }
        if second >= requests.count {
            requests.append(contentsOf: repeatElement(0, count: second + 1 - requests.count))
            bytes.append(contentsOf: repeatElement(0, count: second + 1 - bytes.count))
        }
        requests[second] &+= 1
        bytes[second] &+= UInt64(n)
    }

    public mutating func merge(_ other: ThroughputSeries) {
        let n = max(requests.count, other.requests.count)
        var r = [UInt64](repeating: 0, count: n), b = [UInt64](repeating: 0, count: n)
        for (s, v) in requests.enumerated() { r[s] = v }
        for (s, v) in bytes.enumerated() where s < n { b[s] = v }
        for (s, v) in other.requests.enumerated() { r[s] &+= v }
        for (s, v) in other.bytes.enumerated() where s < n { b[s] &+= v }
        requests = r
        bytes = b
    }
}

/// What one loop (or, merged, one step) measured: completed requests inside the measurement
/// window, their bytes, latencies and failures.
public struct LoadCounters: Sendable, Equatable {
    /// Responses that ended inside the window (any status).
    public var requests: UInt64 = 0
    /// Of those, requests sent with a unique query string (misses through a shield).
    public var misses: UInt64 = 0
    /// Every byte received for them: heads and bodies (what wrk's Transfer/sec counts).
    public var bytes: UInt64 = 0
    public var bodyBytes: UInt64 = 0
    /// Responses by status class: index 1 = 1xx … 5 = 5xx.
    public var statusClasses: [UInt64] = [0, 0, 0, 0, 0, 0]
    /// Connections that could not connect, broke, or sent a response that does not parse.
    public var connectErrors: UInt64 = 0
    public var readErrors: UInt64 = 0
    public var protocolErrors: UInt64 = 0
    /// Connections opened (1 per connection with keep-alive, 1 per request without).
    public var connects: UInt64 = 0
    public var latency = LatencyHistogram()
    public var missLatency = LatencyHistogram()
    public var series = ThroughputSeries()
    /// The first error seen, for the report.
    public var firstError: String?
    /// The first status of 400 or more seen.
    public var firstBadStatus: Int?

    public init() {}

    public var errors: UInt64 { connectErrors + readErrors + protocolErrors }
    /// Responses that were not 2xx or 3xx.
    public var badStatuses: UInt64 { statusClasses[1] + statusClasses[4] + statusClasses[5] + statusClasses[0] }

    public mutating func merge(_ o: LoadCounters) {
        requests += o.requests
        misses += o.misses
        bytes += o.bytes
        bodyBytes += o.bodyBytes
        for i in 0..<statusClasses.count { statusClasses[i] += o.statusClasses[i] }
        connectErrors += o.connectErrors
        readErrors += o.readErrors
        protocolErrors += o.protocolErrors
        connects += o.connects
        latency.merge(o.latency)
        missLatency.merge(o.missLatency)
        series.merge(o.series)
        if firstError == nil { firstError = o.firstError }
        if firstBadStatus == nil { firstBadStatus = o.firstBadStatus }
    }
}

/// One step of a sweep: one target at one concurrency.
public struct StepResult: Sendable {
    public var concurrency: Int
    /// The measured window's length (warmup excluded), seconds.
    public var seconds: Double
    /// Seconds since the run began when the window opened (to place the time series).
    public var startOffset: Double
    /// CPU seconds (user + system) the whole process used during the step, warmup included.
    public var cpuSeconds: Double
    /// Wall seconds of the whole step (warmup included), for cpuSeconds' share.
    public var wallSeconds: Double
    public var counters: LoadCounters

    public init(concurrency: Int, seconds: Double, startOffset: Double, cpuSeconds: Double, wallSeconds: Double, counters: LoadCounters) {
        self.concurrency = concurrency
        self.seconds = seconds
        self.startOffset = startOffset
        self.cpuSeconds = cpuSeconds
        self.wallSeconds = wallSeconds
        self.counters = counters
    }

    public var requestsPerSecond: Double { seconds > 0 ? Double(counters.requests) / seconds : 0 }
    public var bytesPerSecond: Double { seconds > 0 ? Double(counters.bytes) / seconds : 0 }
    /// Milliseconds at quantile q.
    public func latencyMilliseconds(_ q: Double) -> Double { Double(counters.latency.value(atQuantile: q)) / 1e6 }
}

/// One target swept over the concurrencies.
public struct SeriesResult: Sendable {
    /// A short name for legends (the URL's host:port and path, or a name given).
    public var label: String
    public var url: String
    public var steps: [StepResult]
    public init(label: String, url: String, steps: [StepResult] = []) {
        self.label = label
        self.url = url
        self.steps = steps
    }
}

/// The settings a run used (echoed into the report).
public struct BenchSettings: Sendable {
    public var concurrencies: [Int]
    public var durationSeconds: Double
    public var warmupSeconds: Double
    public var keepAlive: Bool
    public var missRatio: Double
    public var loops: Int
    /// Whether the targets are compared (`--compare A B`): the report adds B ÷ A per step.
    public var compare: Bool

    public init(concurrencies: [Int], durationSeconds: Double, warmupSeconds: Double, keepAlive: Bool, missRatio: Double, loops: Int, compare: Bool) {
        self.concurrencies = concurrencies
        self.durationSeconds = durationSeconds
        self.warmupSeconds = warmupSeconds
        self.keepAlive = keepAlive
        self.missRatio = missRatio
        self.loops = loops
        self.compare = compare
    }
}

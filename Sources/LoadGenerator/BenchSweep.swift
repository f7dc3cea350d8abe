import BenchReport
import DarterCore
import DarterIO
import HTTPClient

/// What `darter bench` runs: targets, the concurrency sweep, step lengths, keep-alive, the miss mix.
public struct BenchOptions: Sendable {
    public var urls: [String]
    public var labels: [String] = []
    public var concurrencies = [1, 4, 16, 64, 256]
    public var duration: Duration = .seconds(5)
    public var warmup: Duration = .seconds(1)
    public var keepAlive = true
    public var missRatio = 0.0
    public var loops = Socket.processorCount
    public var compare = false

    public init(urls: [String]) { self.urls = urls }

    /// "5s", "500ms", "2m", "5" (seconds); nil for anything else or a negative figure.
    public static func parseDuration(_ s: String) -> Duration? {
        let t = s.lowercased()
        let units: [(String, Double)] = [("ms", 1e-3), ("s", 1), ("m", 60)]
        var number = Substring(t), scale = 1.0
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            number = t.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let v = Double(number), v >= 0, v.isFinite, v * scale <= 86400 else { return nil }
        return .nanoseconds(Int64((v * scale * 1e9).rounded()))
    }

    /// "1,4,16" → [1, 4, 16]: each from 1 to 100000; nil otherwise.
    public static func parseConcurrencies(_ s: String) -> [Int]? {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingBlanks }
        guard !parts.isEmpty else { return nil }
        var out: [Int] = []
        for p in parts {
            guard let n = Int(p), (1...100_000).contains(n) else { return nil }
            if !out.contains(n) { out.append(n) }
        }
        return out
    }

    /// The legend name of a URL: host:port and target, shortened.
    public static func label(for url: HTTPClientURL) -> String {
        let t = url.target.count > 32 ? String(url.target.prefix(14)) + "…" + String(url.target.suffix(14)) : url.target
        return "\(url.hostHeader)\(t)"
    }
}

extension Substring {
    var trimmingBlanks: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// Why a sweep could not run.
public struct BenchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A sweep: every concurrency, and at each every target in turn (so targets compared share
/// the machine's drift), after one short probe per target that must answer 2xx or 3xx.
public struct BenchSweep: Sendable {
    public enum Event: Sendable {
        /// A step began (index from 0 of `total`).
        case stepStarted(index: Int, total: Int, label: String, concurrency: Int)
        /// Seconds into the window (negative: warmup), requests so far.
        case stepProgress(index: Int, seconds: Double, requests: UInt64)
        case stepFinished(index: Int, label: String, step: StepResult)
    }

    public let options: BenchOptions

    public init(options: BenchOptions) { self.options = options }

    public func run(events: @escaping @Sendable (Event) -> Void = { _ in }) async throws(BenchError) -> BenchReport {
        var targets: [(url: HTTPClientURL, label: String)] = []
        for (i, raw) in options.urls.enumerated() {
            let url: HTTPClientURL
            do { url = try HTTPClientURL(parsing: raw) } catch { throw BenchError("\(raw): \(error)") }
            targets.append((url, i < options.labels.count ? options.labels[i] : BenchOptions.label(for: url)))
        }
        let started = SystemCalls.wallClockSeconds()
        let generator: LoadGenerator
        do { generator = try LoadGenerator(loops: max(1, options.loops)) } catch { throw BenchError("cannot start the event loops: \(error)") }
        defer { generator.shutdown() }
        var plans: [LoadPlan] = []
        for t in targets {
            let address: SocketAddress
            do { address = try LoadGenerator.address(of: t.url) } catch { throw BenchError("\(t.url): \(error)") }
            let plan = generator.plan(url: t.url, address: address, keepAlive: options.keepAlive, missRatio: options.missRatio)
            try await probe(generator, plan, t.url)
            plans.append(plan)
        }
        var series = targets.map { SeriesResult(label: $0.label, url: $0.url.description) }
        let total = options.concurrencies.count * targets.count
        let t0 = SystemCalls.monotonicNanoseconds()
        var index = 0
        for c in options.concurrencies {
            for (i, plan) in plans.enumerated() {
                events(.stepStarted(index: index, total: total, label: series[i].label, concurrency: c))
                let windowOffset = Double(SystemCalls.monotonicNanoseconds() - t0) / 1e9 + seconds(options.warmup)
                let step = index
                let r = await generator.run(plan, concurrency: c, duration: options.duration, warmup: options.warmup) { s, n in
                    events(.stepProgress(index: step, seconds: s, requests: n))
                }
                let result = StepResult(concurrency: c, seconds: seconds(options.duration), startOffset: windowOffset,
                                        cpuSeconds: r.cpuSeconds, wallSeconds: r.wallSeconds, counters: r.counters)
                series[i].steps.append(result)
                events(.stepFinished(index: index, label: series[i].label, step: result))
                index += 1
            }
        }
        let settings = BenchSettings(concurrencies: options.concurrencies, durationSeconds: seconds(options.duration),
                                     warmupSeconds: seconds(options.warmup), keepAlive: options.keepAlive, missRatio: options.missRatio,
                                     loops: generator.group.loops.count, compare: options.compare)
        return BenchReport(settings: settings, series: series, startedAt: started)
    }

    /// One connection for up to 2 s: a target that refuses, breaks or answers 4xx/5xx stops
    /// the run before its sweep (one slow response that does not end in time is fine).
    private func probe(_ generator: LoadGenerator, _ plan: LoadPlan, _ url: HTTPClientURL) async throws(BenchError) {
        var probePlan = plan
        probePlan.missRatio = 0
        let r = await generator.run(probePlan, concurrency: 1, duration: .seconds(2), warmup: .zero, stopAfterFirst: true)
        let c = r.counters
        if c.requests == 0, c.errors > 0 { throw BenchError("\(url): \(c.firstError ?? "no response")") }
        if c.statusClasses[4] + c.statusClasses[5] > 0 {
            throw BenchError("\(url) answered \(c.firstBadStatus ?? 0) (darter bench measures URLs that answer 2xx or 3xx)")
        }
    }
}

func seconds(_ d: Duration) -> Double { Double(nanoseconds(d)) / 1e9 }

import Synchronization

/// The counts of one histogram series, Prometheus-style: a count per bucket (not cumulative:
/// `counts[i]` holds observations in (bounds[i-1], bounds[i]], the last one those above every
/// bound), their sum and how many. A value: recording and exposition are tested without a clock.
public struct HistogramCounts: Sendable, Equatable {
    /// Upper bounds in base units (seconds, bytes), ascending; `+Inf` is implied.
    public let bounds: [Double]
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0

    public init(bounds: [Double], counts: [UInt64], sum: Double) {
        precondition(counts.count == bounds.count + 1, "one count per bucket and +Inf")
        self.bounds = bounds
        self.counts = counts
        self.sum = sum
    }

    public init(bounds: [Double]) {
        precondition(!bounds.isEmpty && zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "bucket bounds must ascend")
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count + 1)
    }

    public var count: UInt64 { counts.reduce(0, +) }

    /// The bucket `value` falls in: the first bound at or above it (`le` is inclusive).
    public func bucket(of value: Double) -> Int {
        var i = 0
        while i < bounds.count && value > bounds[i] { i += 1 }
        return i
    }

    public mutating func observe(_ value: Double) {
        counts[bucket(of: value)] += 1
        sum += value
    }

    /// Observations at or below each bound, then the total (the `_bucket` series).
    public var cumulative: [UInt64] {
        var running: UInt64 = 0
        return counts.map { running += $0; return running }
    }
}

/// Bucket bounds shared by Darter's histograms (seconds).
public enum HistogramBuckets {
    /// Requests, pieces, store operations, origin first bytes: 100 µs (a 1 MiB piece from the
    /// page cache) to a minute (a slow origin).
    public static let seconds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Scheduler decisions: in-memory policy calls, 10 µs to 100 ms.
    public static let fastSeconds: [Double] = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                               0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]
}

/// One histogram series, recorded lock-free from any thread: a relaxed atomic add to its
/// bucket and one to the sum (integer nanoseconds, so seconds to 1 ns). A scrape reads the
/// buckets one by one: `_count` is always the `+Inf` bucket, the sum may be one observation
/// ahead or behind. Measured cost: `darter-bench metrics` (see ``HistogramFamily``).
public final class Histogram: Sendable {
    public let bounds: [Double]
    private final class Cell: Sendable { let value = Atomic<UInt64>(0) }
    /// One cell each (separate allocations: two threads in different buckets share no line).
    private let cells: [Cell]
    private let sumNanoseconds = Atomic<Int64>(0)

    public init(bounds: [Double]) {
        _ = HistogramCounts(bounds: bounds)  // checks them
        self.bounds = bounds
        cells = (0...bounds.count).map { _ in Cell() }
    }

    public func observe(_ seconds: Double) {
        var i = 0
        while i < bounds.count && seconds > bounds[i] { i += 1 }
        cells[i].value.add(1, ordering: .relaxed)
        sumNanoseconds.add(Int64((seconds * 1e9).rounded()), ordering: .relaxed)
    }

    public func observe(_ duration: Duration) { observe(duration.seconds) }

    public var snapshot: HistogramCounts {
        HistogramCounts(bounds: bounds, counts: cells.map { $0.value.load(ordering: .relaxed) },
                        sum: Double(sumNanoseconds.load(ordering: .relaxed)) / 1e9)
    }
}

/// A histogram metric with at most one label (`route`, `source`, `op`, `kind`), safe to record
/// from any thread. The label values given at init are found without a lock (a dictionary
/// lookup, then ``Histogram``'s two atomic adds); others are added under a lock the first time.
/// Recording is done once per request, piece or store operation, never per chunk of a body.
public final class HistogramFamily: Sendable {
    public let name: String
    public let help: String
    /// The label's name; nil for a histogram without one.
    public let label: String?
    public let bounds: [Double]
    private let fixed: [String: Histogram]
    private let added = Mutex<[String: Histogram]>([:])

    /// - Parameter values: label values shown (at zero) before anything is recorded, so rates
    ///   exist from the first scrape.
    public init(name: String, help: String, label: String? = nil, values: [String] = [], bounds: [Double] = HistogramBuckets.seconds) {
        self.name = name
        self.help = help
        self.label = label
        self.bounds = bounds
        fixed = Dictionary(uniqueKeysWithValues: (label == nil ? [""] : values).map { ($0, Histogram(bounds: bounds)) })
    }

    /// The series for `labelValue` ("" without a label); callers on a hot path may keep it.
    public func series(_ labelValue: String = "") -> Histogram {
        if let h = fixed[labelValue] { return h }
        let bounds = self.bounds
        return added.withLock { a in
            if let h = a[labelValue] { return h }
            let h = Histogram(bounds: bounds)
            a[labelValue] = h
            return h
        }
    }

    /// Records `value` (seconds) for label value `labelValue` ("" without a label).
    public func observe(_ value: Double, _ labelValue: String = "") { series(labelValue).observe(value) }

    public func observe(_ duration: Duration, _ labelValue: String = "") { series(labelValue).observe(duration.seconds) }

    /// Each series, by label value.
    public var snapshot: [String: HistogramCounts] {
        fixed.merging(added.withLock { $0 }) { a, _ in a }.mapValues(\.snapshot)
    }

    public var exposition: String {
        MetricsText.histogram(name: name, help: help, label: label, series: snapshot)
    }
}

/// A counter with at most one label, safe to add to from any thread.
public final class CounterFamily: Sendable {
    public let name: String
    public let help: String
    public let label: String?
    private let values: Mutex<[String: Int64]>

    public init(name: String, help: String, label: String? = nil, values: [String] = []) {
        self.name = name
        self.help = help
        self.label = label
        self.values = Mutex(Dictionary(uniqueKeysWithValues: (label == nil ? [""] : values).map { ($0, 0) }))
    }

    public func add(_ n: Int64, _ labelValue: String = "") {
        values.withLock { $0[labelValue, default: 0] += n }
    }

    public var snapshot: [String: Int64] { values.withLock { $0 } }

    public var exposition: String {
        MetricsText.family(name: name, type: "counter", help: help, label: label, values: snapshot.mapValues { String($0) })
    }
}

/// The Prometheus text exposition format (version 0.0.4), pure.
public enum MetricsText {
    /// `# HELP`, `# TYPE … histogram`, then per series (label values sorted) its `_bucket{le=…}`
    /// lines (cumulative, ending with `+Inf`), `_sum` and `_count`.
    public static func histogram(name: String, help: String, label: String?, series: [String: HistogramCounts]) -> String {
        var out = "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) histogram\n"
        for value in series.keys.sorted() {
            let h = series[value]!
            let own = label.map { "\($0)=\"\(escapeLabel(value))\"" }
            let cumulative = h.cumulative
            for (i, c) in cumulative.enumerated() {
                let le = i < h.bounds.count ? number(h.bounds[i]) : "+Inf"
                out += "\(name)_bucket{\(own.map { $0 + "," } ?? "")le=\"\(le)\"} \(c)\n"
            }
            let braces = own.map { "{\($0)}" } ?? ""
            out += "\(name)_sum\(braces) \(number(h.sum))\n\(name)_count\(braces) \(cumulative.last ?? 0)\n"
        }
        return out
    }

    /// A counter or gauge family: HELP, TYPE and one line per label value (sorted).
    public static func family(name: String, type: String, help: String, label: String?, values: [String: String]) -> String {
        var out = "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
        for key in values.keys.sorted() {
            out += name + (label.map { "{\($0)=\"\(escapeLabel(key))\"}" } ?? "") + " \(values[key]!)\n"
        }
        return out
    }

    /// A number as Prometheus reads it: integers without a fraction (`1`, not `1.0`), others
    /// in the shortest form that reads back the same (`0.00025`, `1e-05`).
    public static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    /// A label value with `\`, `"` and newlines escaped.
    public static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }
}

extension Duration {
    /// The duration in seconds (a histogram's base unit).
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

/// The version `darter_build_info` and `darter --version` report.
public enum DarterBuild {
    public static let version = "0.1.0"
}

/// Metrics of the whole process that several targets record into (the piece sources, the
/// store, the origin), shown by the seed's and peer's `/metrics`. Per-server metrics (requests,
/// connections) live with the server. No task ids in labels: only the fixed values listed.
public enum DarterMetrics {
    /// Where pieces come from: the origin (a seed's fetch, a peer's ranged back-to-source
    /// pieces), a seed parent or a peer parent.
    public enum Source: String, Sendable, CaseIterable { case origin, seed, peer }

    public static let pieceDownloadSeconds = HistogramFamily(
        name: "darter_piece_download_duration_seconds",
        help: "Time to receive one piece, by source (origin, seed, peer).",
        label: "source", values: Source.allCases.map(\.rawValue))
    public static let downloadBytes = CounterFamily(
        name: "darter_download_bytes_total",
        help: "Piece bytes received, by source (origin, seed, peer).",
        label: "source", values: Source.allCases.map(\.rawValue))
    public static let storeOperationSeconds = HistogramFamily(
        name: "darter_store_operation_duration_seconds",
        help: "Piece store operations: read (a direct read), write (a piece's data write), commit (a group commit: data and journal synced).",
        label: "op", values: ["read", "write", "commit"])
    public static let originFirstByteSeconds = HistogramFamily(
        name: "darter_origin_first_byte_seconds",
        help: "Time from asking an origin to its response head, per attempt of a fetch.")

    /// One whole piece arrived from `source` after `elapsed`.
    public static func pieceReceived(from source: Source, bytes: Int, elapsed: Duration) {
        pieceDownloadSeconds.observe(elapsed, source.rawValue)
        downloadBytes.add(Int64(bytes), source.rawValue)
    }

    /// `darter_build_info{version=…} 1`.
    public static var buildInfo: String {
        MetricsText.family(name: "darter_build_info", type: "gauge", help: "Always 1; the labels say which build runs.",
                           label: "version", values: [DarterBuild.version: "1"])
    }

    /// The process-wide families above and the build info.
    public static var exposition: String {
        pieceDownloadSeconds.exposition + downloadBytes.exposition + storeOperationSeconds.exposition
            + originFirstByteSeconds.exposition + buildInfo
    }
}

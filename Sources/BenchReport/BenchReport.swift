import DarterCore

/// A finished sweep as files: `bench.json` (every figure, the CDFs and time series included)
/// and three SVG plots. Pure: built from the results, rendered to text.
public struct BenchReport: Sendable {
    public var settings: BenchSettings
    public var series: [SeriesResult]
    /// Wall-clock seconds since the epoch when the run began.
    public var startedAt: Int64

    public init(settings: BenchSettings, series: [SeriesResult], startedAt: Int64) {
        self.settings = settings
        self.series = series
        self.startedAt = startedAt
    }

    /// The percentiles every step reports.
    public static let quantiles: [(name: String, q: Double)] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]

    // MARK: JSON

    public var json: JSONValue {
        var root: [String: JSONValue] = [
            "tool": "darter bench",
            "started_at": .number(Double(startedAt)),
            "settings": [
                "concurrency": .array(settings.concurrencies.map { JSONValue($0) }),
                "duration_s": .number(settings.durationSeconds),
                "warmup_s": .number(settings.warmupSeconds),
                "keep_alive": .bool(settings.keepAlive),
                "miss_ratio": .number(settings.missRatio),
                "loops": JSONValue(settings.loops),
            ],
            "series": .array(series.map(Self.json(series:))),
        ]
        if settings.compare, series.count == 2 { root["compare"] = compareJSON }
        return .object(root)
    }

    static func json(series s: SeriesResult) -> JSONValue {
        ["label": .string(s.label), "url": .string(s.url), "steps": .array(s.steps.map(json(step:)))]
    }

    static func json(step: StepResult) -> JSONValue {
        let c = step.counters
        var latency: [String: JSONValue] = [:]
        for (name, q) in quantiles { latency[name] = .number(round3(step.latencyMilliseconds(q))) }
        latency["min"] = .number(round3(c.latency.count > 0 ? Double(c.latency.min) / 1e6 : 0))
        latency["max"] = .number(round3(Double(c.latency.max) / 1e6))
        latency["mean"] = .number(round3(c.latency.mean / 1e6))
        var step_: [String: JSONValue] = [
            "concurrency": JSONValue(step.concurrency),
            "seconds": .number(round3(step.seconds)),
            "start_offset_s": .number(round3(step.startOffset)),
            "requests": .number(Double(c.requests)),
            "misses": .number(Double(c.misses)),
            "rps": .number(round3(step.requestsPerSecond)),
            "bytes_per_s": .number(step.bytesPerSecond.rounded()),
            "body_bytes_per_s": .number(step.seconds > 0 ? (Double(c.bodyBytes) / step.seconds).rounded() : 0),
            "latency_ms": .object(latency),
            "status": ["1xx": .number(Double(c.statusClasses[1])), "2xx": .number(Double(c.statusClasses[2])), "3xx": .number(Double(c.statusClasses[3])),
                       "4xx": .number(Double(c.statusClasses[4])), "5xx": .number(Double(c.statusClasses[5]))],
            "errors": ["connect": .number(Double(c.connectErrors)), "read": .number(Double(c.readErrors)), "protocol": .number(Double(c.protocolErrors))],
            "connects": .number(Double(c.connects)),
            "cpu_s": .number(round3(step.cpuSeconds)),
            "wall_s": .number(round3(step.wallSeconds)),
            "timeseries": .array(c.series.requests.indices.map { i in
                ["t": JSONValue(i), "requests": .number(Double(c.series.requests[i])), "bytes": .number(Double(c.series.bytes[i]))]
            }),
            "latency_cdf_ms": .array(c.latency.cumulative.map { .array([.number(round6($0.fraction)), .number(round3(Double($0.value) / 1e6))]) }),
        ]
        if c.misses > 0 {
            var miss: [String: JSONValue] = [:]
            for (name, q) in quantiles { miss[name] = .number(round3(Double(c.missLatency.value(atQuantile: q)) / 1e6)) }
            step_["miss_latency_ms"] = .object(miss)
        }
        if let e = c.firstError { step_["first_error"] = .string(e) }
        return .object(step_)
    }

    /// B ÷ A per concurrency, for `--compare A B`.
    var compareJSON: JSONValue {
        let (a, b) = (series[0], series[1])
        var rows: [JSONValue] = []
        for sa in a.steps {
            guard let sb = b.steps.first(where: { $0.concurrency == sa.concurrency }) else { continue }
            rows.append([
                "concurrency": JSONValue(sa.concurrency),
                "rps_ratio": .number(round3(ratio(sb.requestsPerSecond, sa.requestsPerSecond))),
                "bytes_per_s_ratio": .number(round3(ratio(sb.bytesPerSecond, sa.bytesPerSecond))),
                "p99_ratio": .number(round3(ratio(sb.latencyMilliseconds(0.99), sa.latencyMilliseconds(0.99)))),
            ])
        }
        return ["a": .string(a.label), "b": .string(b.label), "b_over_a": .array(rows)]
    }

    // MARK: Plots

    /// req/s (solid) per series against concurrency, log x.
    public var throughputPlot: SVGPlot {
        var plot = SVGPlot(title: "Throughput vs concurrency", xLabel: "concurrent connections (log)", yLabel: "requests per second",
                           xScale: .log10, yScale: .linear)
        plot.xTicks = settings.concurrencies.sorted().map(Double.init)
        plot.lines = series.enumerated().map { i, s in
            let pts = s.steps.sorted { $0.concurrency < $1.concurrency }.map { (x: Double($0.concurrency), y: $0.requestsPerSecond) }
            let peak = s.steps.max { $0.requestsPerSecond < $1.requestsPerSecond }
            return SVGPlot.Line(name: s.label + (peak.map { " (peak \(siLabel($0.requestsPerSecond)) req/s, \(siLabel($0.bytesPerSecond))B/s)" } ?? ""),
                                segments: [pts], color: i)
        }
        return plot
    }

    /// Latency by quantile (tail-stretched x, log y): a line per series and concurrency.
    public var latencyPlot: SVGPlot {
        var plot = SVGPlot(title: "Latency distribution", xLabel: "percentile", yLabel: "latency (ms, log)",
                           xScale: .tailQuantile, yScale: .log10)
        plot.yFromZero = false
        let concurrencies = settings.concurrencies.sorted()
        for (si, s) in series.enumerated() {
            for step in s.steps.sorted(by: { $0.concurrency < $1.concurrency }) {
                let cdf = step.counters.latency.cumulative
                guard !cdf.isEmpty else { continue }
                // Each bucket's value from the quantile the previous one ended at (a step curve's corners).
                var pts: [(x: Double, y: Double)] = []
                var lastFraction = 0.0
                for (fraction, value) in cdf {
                    let ms = Double(value) / 1e6
                    if lastFraction < 0.999999 { pts.append((lastFraction, ms)) }
                    lastFraction = fraction
                    if fraction < 0.999999 { pts.append((fraction, ms)) }
                }
                let ci = concurrencies.firstIndex(of: step.concurrency) ?? 0
                plot.lines.append(SVGPlot.Line(name: (series.count > 1 ? s.label + " " : "") + "c=\(step.concurrency)",
                                               segments: [pts], color: series.count > 1 ? ci : ci, dashed: si % 2 == 1, markers: false))
            }
        }
        return plot
    }

    /// req/s second by second over the whole run; each step is its own segment.
    public var timeSeriesPlot: SVGPlot {
        var plot = SVGPlot(title: "Throughput over time", xLabel: "seconds since start", yLabel: "requests per second", xScale: .linear, yScale: .linear)
        plot.lines = series.enumerated().map { i, s in
            let segments = s.steps.map { step in
                step.counters.series.requests.enumerated().map { t, n in (x: step.startOffset + Double(t) + 0.5, y: Double(n)) }
                    .filter { $0.x - step.startOffset < step.seconds }  // a last, partial second would read as a drop
            }
            return SVGPlot.Line(name: s.label, segments: segments, color: i, markers: false)
        }
        plot.xFromZero = true
        // Each step's concurrency above its segment (once per step of the first series).
        if let first = series.first {
            for step in first.steps {
                let peak = series.flatMap(\.steps).filter { $0.concurrency == step.concurrency }.compactMap { $0.counters.series.requests.max() }.max() ?? 0
                plot.annotations.append((x: step.startOffset + step.seconds / 2, y: Double(peak), text: "c=\(step.concurrency)"))
            }
        }
        return plot
    }

    /// file name → content.
    public var files: [(name: String, text: String)] {
        [("bench.json", json.serialized + "\n"),
         ("throughput.svg", throughputPlot.render()),
         ("latency-cdf.svg", latencyPlot.render()),
         ("throughput-over-time.svg", timeSeriesPlot.render())]
    }

    // MARK: Text

    /// The summary table printed after a run.
    public var summary: String {
        var out = "target                              conns      req/s       MB/s   p50 ms   p90 ms   p99 ms p99.9 ms  errors\n"
        for s in series {
            for step in s.steps {
                let c = step.counters
                out += String(s.label.prefix(34)).padded(36) + String(step.concurrency).leftPadded(5)
                    + fixed(step.requestsPerSecond, 0).leftPadded(11) + fixed(step.bytesPerSecond / 1e6, 1).leftPadded(11)
                out += Self.quantiles.map { fixed(step.latencyMilliseconds($0.q), 2).leftPadded(9) }.joined()
                out += String(c.errors + c.badStatuses).leftPadded(8) + "\n"
            }
        }
        if settings.compare, series.count == 2 {
            out += "\n\(series[1].label) ÷ \(series[0].label):\n"
            for sa in series[0].steps {
                guard let sb = series[1].steps.first(where: { $0.concurrency == sa.concurrency }) else { continue }
                out += "  c=\(sa.concurrency): req/s \(fixed(ratio(sb.requestsPerSecond, sa.requestsPerSecond), 2))x, p99 \(fixed(ratio(sb.latencyMilliseconds(0.99), sa.latencyMilliseconds(0.99)), 2))x\n"
            }
        }
        return out
    }
}

func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? a / b : 0 }
func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
func round6(_ v: Double) -> Double { (v * 1_000_000).rounded() / 1_000_000 }

extension String {
    func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadded(_ n: Int) -> String { count >= n ? " " + self : String(repeating: " ", count: n - count) + self }
}

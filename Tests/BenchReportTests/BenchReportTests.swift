import Testing
import DarterCore
import Foundation
import FoundationXML
@testable import BenchReport

@Suite("LatencyHistogram: log-linear buckets")
struct LatencyHistogramTests {
    @Test("every value lands in a bucket that holds it; buckets are within 1/64 of their values")
    func buckets() {
        var values: [Int64] = Array(0..<300)
        var rng = SplitMix64(seed: 9)
        for _ in 0..<20_000 { values.append(Int64(rng.next() >> UInt64(1 + rng.next() % 62))) }
        values += [Int64.max, Int64.max - 1, 1 << 40, (1 << 40) - 1]
        for v in values {
            let i = LatencyHistogram.index(of: v)
            #expect(i >= 0 && i < LatencyHistogram.bucketCount)
            let b = LatencyHistogram.bounds(of: i)
            #expect(b.contains(v), "\(v) in bucket \(i) \(b)")
            #expect(Double(b.upperBound - b.lowerBound) <= Double(b.lowerBound) / 64 + 1)
        }
        #expect(LatencyHistogram.index(of: -5) == 0)
        // Consecutive buckets tile the values.
        for i in 1..<LatencyHistogram.bucketCount { #expect(LatencyHistogram.bounds(of: i).lowerBound == LatencyHistogram.bounds(of: i - 1).upperBound + 1) }
    }

    @Test("quantiles of 1...100000 µs within 1.6 %; p100 is the max, p0 the min; empty is 0")
    func quantiles() {
        var h = LatencyHistogram()
        #expect(h.value(atQuantile: 0.5) == 0 && h.count == 0 && h.mean == 0)
        for v in 1...100_000 { h.record(Int64(v) * 1000) }
        for q in [0.5, 0.9, 0.99, 0.999] {
            let want = q * 100_000 * 1000, got = Double(h.value(atQuantile: q))
            #expect(abs(got - want) / want < 0.016, "q=\(q): \(got) vs \(want)")
        }
        #expect(h.value(atQuantile: 1) == 100_000_000)
        #expect(h.value(atQuantile: 0) == 1000)
        #expect(h.count == 100_000)
        #expect(abs(h.mean - 50_000.5 * 1000) < 1)
        #expect(h.min == 1000 && h.max == 100_000_000)
    }

    @Test("merging equals recording everything in one; the CDF ends at 1 with the max")
    func merge() {
        var a = LatencyHistogram(), b = LatencyHistogram(), all = LatencyHistogram()
        var rng = SplitMix64(seed: 3)
        for i in 0..<5000 {
            let v = Int64(rng.next() % 10_000_000)
            if i % 3 == 0 { a.record(v) } else { b.record(v) }
            all.record(v)
        }
        a.merge(b)
        #expect(a == all)
        let cdf = all.cumulative
        #expect(cdf.last?.fraction == 1 && cdf.last?.value == all.max)
        #expect(zip(cdf, cdf.dropFirst()).allSatisfy { $0.fraction < $1.fraction && $0.value <= $1.value })
    }

    @Test("the throughput series counts per second and merges")
    func series() {
        var s = ThroughputSeries(), t = ThroughputSeries()
        s.record(second: 0, bytes: 10)
        s.record(second: 2, bytes: 5)
        s.record(second: -1, bytes: 5)
        t.record(second: 3, bytes: 1)
        s.merge(t)
        #expect(s.requests == [1, 0, 1, 1] && s.bytes == [10, 0, 5, 1])
    }
}

/// Parses `text` as XML; the first error, or nil.
func xmlError(_ text: String) -> String? {
    let parser = XMLParser(data: Data(text.utf8))
    final class Delegate: NSObject, XMLParserDelegate {
        var error: String?
        var elements = 0
        func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) { error = "\(parseError)" }
        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) { elements += 1 }
    }
    let d = Delegate()
    parser.delegate = d
    let ok = parser.parse()
    if !ok { return d.error ?? "parse failed at line \(parser.lineNumber)" }
    return d.elements > 0 ? nil : "no elements"
}

func sampleReport(compare: Bool = true) -> BenchReport {
    func step(_ c: Int, _ scale: Int64, offset: Double) -> StepResult {
        var counters = LoadCounters()
        for i in 0..<(1000 * Int64(c)) {
            counters.latency.record(scale * (100_000 + i * 37 % 900_000))
            counters.series.record(second: Int(i % 3), bytes: 65_800)
        }
        counters.requests = UInt64(1000 * c)
        counters.bytes = counters.requests * 65_800
        counters.bodyBytes = counters.requests * 65_536
        counters.statusClasses[2] = counters.requests
        return StepResult(concurrency: c, seconds: 3, startOffset: offset, cpuSeconds: 1.5, wallSeconds: 4, counters: counters)
    }
    let a = SeriesResult(label: "darter <seed> & co", url: "http://127.0.0.1:1/tasks/x?a=1&b=2", steps: [step(1, 1, offset: 1), step(4, 2, offset: 9)])
    let b = SeriesResult(label: "nginx \"on\"", url: "http://127.0.0.1:2/x", steps: [step(1, 2, offset: 5), step(4, 3, offset: 13)])
    let settings = BenchSettings(concurrencies: [1, 4], durationSeconds: 3, warmupSeconds: 1, keepAlive: true, missRatio: 0.1, loops: 2, compare: compare)
    return BenchReport(settings: settings, series: [a, b], startedAt: 1_700_000_000)
}

@Suite("SVG plots and the JSON report")
struct BenchReportTests {
    @Test("every plot is well-formed XML (names with <, &, quotes escaped), with its title, axes and legend")
    func wellFormed() {
        let report = sampleReport()
        for (name, text) in report.files where name.hasSuffix(".svg") {
            #expect(xmlError(text) == nil, "\(name): \(xmlError(text) ?? "")")
            #expect(text.hasPrefix("<?xml") && text.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""))
            #expect(text.contains("darter &lt;seed&gt; &amp; co"), "\(name): the legend names the series, escaped")
            #expect(text.contains("<polyline"), "\(name) draws lines")
        }
        #expect(report.throughputPlot.render().contains(">Throughput vs concurrency<"))
        #expect(report.latencyPlot.render().contains(">99.9%<"), "the percentile axis is labelled")
        #expect(report.timeSeriesPlot.render().contains(">c=4<"), "each step is named on the time series")
        // An empty plot says so and is still an SVG.
        let empty = SVGPlot(title: "t", xLabel: "x", yLabel: "y").render()
        #expect(xmlError(empty) == nil && empty.contains("no data"))
        // Control bytes are not allowed in XML: replaced.
        #expect(xmlError(SVGPlot(title: "a\u{01}b", xLabel: "x", yLabel: "y", lines: [.init(name: "n\u{02}", segments: [[(1, 1), (2, 2)]], color: 0)]).render()) == nil)
    }

    @Test("ticks: log decades (with 2 and 5 over short spans), nice linear steps from zero, tail quantiles")
    func ticks() {
        let log = SVGPlot.ticks(1, 256, .log10, fromZero: false)
        #expect(log.ticks == [1, 10, 100, 1000] && log.range == 0...3)
        #expect(SVGPlot.ticks(1, 64, .log10, fromZero: false).ticks == [1, 2, 5, 10, 20, 50, 100])
        let linear = SVGPlot.ticks(3, 97, .linear, fromZero: true)
        #expect(linear.ticks == [0, 20, 40, 60, 80, 100])
        let tail = SVGPlot.ticks(0, 0.9995, .tailQuantile, fromZero: false)
        #expect(tail.ticks.map { percentLabel($0) } == ["0%", "90%", "99%", "99.9%", "99.99%"])
        #expect(siLabel(1234) == "1.23k" && siLabel(2.5e9) == "2.5G" && siLabel(0.0042) == "0.0042" && siLabel(0) == "0" && siLabel(150) == "150")
        #expect(fixed(1.005, 2) == "1.01" || fixed(1.005, 2) == "1.00")
        #expect(fixed(-2.5, 1) == "-2.5" && fixed(3, 0) == "3" && fixed(0.05, 3) == "0.050")
    }

    @Test("bench.json: settings, steps with rps, bytes/s, percentiles, time series and CDF; B ÷ A when comparing")
    func json() throws {
        let report = sampleReport()
        let text = report.files.first { $0.name == "bench.json" }!.text
        let v = try JSONValue.parse(Array(text.utf8))
        #expect(v["tool"]?.string == "darter bench")
        #expect(v["settings"]?["concurrency"]?.array?.compactMap(\.integer) == [1, 4])
        #expect(v["settings"]?["miss_ratio"]?.number == 0.1)
        let steps = try #require(v["series"]?.array?.first?["steps"]?.array)
        #expect(steps.count == 2)
        let s = steps[1]
        #expect(s["concurrency"]?.integer == 4)
        #expect(s["requests"]?.integer == 4000)
        #expect(abs((s["rps"]?.number ?? 0) - 4000.0 / 3) < 0.01)
        #expect(s["bytes_per_s"]?.number == (4000.0 * 65_800 / 3).rounded())
        for p in ["p50", "p90", "p99", "p99.9", "max", "mean", "min"] { #expect(s["latency_ms"]?[p]?.number != nil, "\(p)") }
        #expect(s["timeseries"]?.array?.count == 3)
        #expect((s["latency_cdf_ms"]?.array?.count ?? 0) > 10)
        let rows = try #require(v["compare"]?["b_over_a"]?.array)
        #expect(rows.count == 2 && rows[0]["rps_ratio"]?.number == 1)
        #expect(rows[0]["p99_ratio"].flatMap(\.number).map { abs($0 - 2) < 0.05 } == true, "\(rows[0])")
        #expect(!sampleReport(compare: false).json.serialized.contains("b_over_a"))
        #expect(report.summary.contains("c=4: req/s 1.00x"))
    }
}

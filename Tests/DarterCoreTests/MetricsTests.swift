import Dispatch
import Testing
@testable import DarterCore

@Suite("Metrics: histograms, counters and their text exposition")
struct MetricsTests {
    @Test("a value lands in the first bucket whose bound is at or above it; +Inf takes the rest")
    func buckets() {
        var h = HistogramCounts(bounds: [0.1, 1, 10])
        for v in [0.05, 0.1, 0.2, 1, 5, 10, 11, 1e9] { h.observe(v) }
        #expect(h.counts == [2, 2, 2, 2])
        #expect(h.cumulative == [2, 4, 6, 8])
        #expect(h.count == 8)
        #expect(h.sum == 0.05 + 0.1 + 0.2 + 1 + 5 + 10 + 11 + 1e9)
        #expect(h.bucket(of: -1) == 0)
        #expect(h.bucket(of: 0.1.nextUp) == 1)
    }

    @Test("histogram exposition: HELP, TYPE, cumulative _bucket lines ending in +Inf, _sum, _count, series sorted")
    func histogramText() {
        let family = HistogramFamily(name: "x_seconds", help: "Time.", label: "source", values: ["seed", "origin"], bounds: [0.001, 0.5, 2])
        family.observe(0.25, "origin")
        family.observe(3, "origin")
        family.observe(.milliseconds(1), "seed")
        #expect(family.exposition == """
            # HELP x_seconds Time.
            # TYPE x_seconds histogram
            x_seconds_bucket{source="origin",le="0.001"} 0
            x_seconds_bucket{source="origin",le="0.5"} 1
            x_seconds_bucket{source="origin",le="2"} 1
            x_seconds_bucket{source="origin",le="+Inf"} 2
            x_seconds_sum{source="origin"} 3.25
            x_seconds_count{source="origin"} 2
            x_seconds_bucket{source="seed",le="0.001"} 1
            x_seconds_bucket{source="seed",le="0.5"} 1
            x_seconds_bucket{source="seed",le="2"} 1
            x_seconds_bucket{source="seed",le="+Inf"} 1
            x_seconds_sum{source="seed"} 0.001
            x_seconds_count{source="seed"} 1

            """)
    }

    @Test("a histogram without a label, before anything is recorded, shows zeros")
    func unlabeled() {
        let family = HistogramFamily(name: "y_seconds", help: "Y.", bounds: [1])
        #expect(family.exposition == "# HELP y_seconds Y.\n# TYPE y_seconds histogram\ny_seconds_bucket{le=\"1\"} 0\ny_seconds_bucket{le=\"+Inf\"} 0\ny_seconds_sum 0\ny_seconds_count 0\n")
    }

    @Test("counters: listed values at zero, added ones appear; label values escaped")
    func counters() {
        let c = CounterFamily(name: "z_bytes_total", help: "Bytes\nin.", label: "source", values: ["peer"])
        c.add(5, "seed")
        c.add(2, "seed")
        c.add(1, "a\"b\\c")
        #expect(c.exposition == "# HELP z_bytes_total Bytes\\nin.\n# TYPE z_bytes_total counter\nz_bytes_total{source=\"a\\\"b\\\\c\"} 1\nz_bytes_total{source=\"peer\"} 0\nz_bytes_total{source=\"seed\"} 7\n")
    }

    @Test("numbers as Prometheus reads them")
    func numbers() {
        #expect(MetricsText.number(1) == "1")
        #expect(MetricsText.number(60) == "60")
        #expect(MetricsText.number(0.00025) == "0.00025")
        #expect(Double(MetricsText.number(0.00001)) == 0.00001)
        #expect(MetricsText.number(.infinity) == "+Inf")
        #expect(MetricsText.number(.nan) == "NaN")
        #expect(Duration.milliseconds(1500).seconds == 1.5)
    }

    @Test("the bucket sets ascend, and the process's families carry the fixed label values")
    func processFamilies() {
        for b in [HistogramBuckets.seconds, HistogramBuckets.fastSeconds] { #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 }) }
        let text = DarterMetrics.exposition
        for source in ["origin", "seed", "peer"] {
            #expect(text.contains("darter_piece_download_duration_seconds_count{source=\"\(source)\"}"))
            #expect(text.contains("darter_download_bytes_total{source=\"\(source)\"}"))
        }
        for op in ["read", "write", "commit"] { #expect(text.contains("darter_store_operation_duration_seconds_count{op=\"\(op)\"}")) }
        #expect(text.contains("darter_origin_first_byte_seconds_count "))
        #expect(text.contains("darter_build_info{version=\"\(DarterBuild.version)\"} 1\n"))
    }

    /// The cost of one observation, single-threaded and from two threads at once, is printed
    /// (a debug build; `darter-bench metrics` measures the release build). The bound only catches
    /// a pathological regression.
    @Test("recording from two threads at once loses no observation")
    func recordingCost() {
        let family = HistogramFamily(name: "bench_seconds", help: "B.", label: "route", values: ["tasks"])
        let n = 1_000_000
        var start = ContinuousClock.now
        for i in 0..<n { family.observe(Double(i & 1023) * 1e-5, "tasks") }
        let single = (ContinuousClock.now - start).seconds / Double(n) * 1e9
        start = ContinuousClock.now
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for i in 0..<n { family.observe(Double(i & 1023) * 1e-5, "tasks") }
        }
        let contended = (ContinuousClock.now - start).seconds / Double(2 * n) * 1e9
        print("histogram observe: \(Int(single)) ns single-threaded, \(Int(contended)) ns per observation from 2 threads at once")
        #expect(family.snapshot["tasks"]?.count == UInt64(3 * n))
        #expect(single < 20_000)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import BenchReport
import DarterIO
import HTTPClient
import LoadGenerator
import Synchronization

/// `darter bench URL…`: a load generator on the event loops against any HTTP/1.1 server, a
/// concurrency sweep per URL, written as JSON and SVG plots (docs/API.md "darter bench").
enum BenchCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "bench", flags: [
            .init(name: "concurrency", defaultValue: "1,4,16,64,256", help: "the sweep: connections at once, a comma-separated list"),
            .init(name: "duration", defaultValue: "5s", help: "the measured time of each step (5s, 500ms, 1m)"),
            .init(name: "warmup", defaultValue: "1s", help: "load before each step's measurement, not counted"),
            .init(name: "keep-alive", defaultValue: "on", help: "on: requests back to back on each connection; off: a new connection per request (Connection: close)"),
            .init(name: "miss-ratio", defaultValue: "0", help: "share of requests (0 to 1) with a unique query string: misses through a cache or shield"),
            .init(name: "output", defaultValue: "", help: "directory for bench.json, throughput.svg, latency-cdf.svg, throughput-over-time.svg, index.html (default: ./darter-bench-EPOCHSECONDS)", short: "o"),
            .init(name: "loops", defaultValue: String(Socket.processorCount), help: "event loops (threads) of the load generator"),
            .init(name: "label", defaultValue: "", help: "a legend name for each URL in order (repeatable)", kind: .repeated),
            .init(name: "compare", defaultValue: "", help: "two URLs, A and B, side by side: the summary and bench.json add B ÷ A per step", kind: .toggle),
            .init(name: "no-progress", defaultValue: "", help: "no progress line on a terminal (a line per step is printed otherwise)", kind: .toggle),
        ], arguments: argv)
        if args.wantsHelp {
            print("usage: darter bench URL… [flags]\n       darter bench --compare A B [flags]\n\n"
                  + "Sweeps each http:// URL over the concurrencies (every URL at one concurrency before the next), and writes\n"
                  + "the results as JSON and SVG plots. Throughput counts every byte received (heads and bodies, as wrk).\n\n"
                  + args.usage.split(separator: "\n", maxSplits: 1).dropFirst().joined())
            return
        }
        let options = try parse(args)
        signal(SIGPIPE, SIG_IGN)
        _ = Socket.raiseOpenFileLimit()
        let output = args.string("output").isEmpty ? "darter-bench-\(SystemCalls.wallClockSeconds())" : args.string("output")
        let tty = !args.isSet("no-progress") && SystemCalls.isTerminal(FileDescriptor(rawValue: 2))
        let progress = ProgressLine(terminal: tty, duration: Double(options.duration.components.seconds) + Double(options.duration.components.attoseconds) / 1e18)
        let report: BenchReport
        do {
            report = try await BenchSweep(options: options).run { progress.show($0) }
        } catch {
            progress.clear()
            writeError("darter bench: \(error)\n")
            exit(1)
        }
        progress.clear()
        print(report.summary, terminator: "")
        do {
            try SystemCalls.makeDirectories(output)
            for (name, text) in report.files + [("index.html", indexPage(report))] {
                try SystemCalls.writeFileAtomically(output + "/" + name, Array(text.utf8), mode: 0o644)
            }
        } catch {
            writeError("darter bench: cannot write to \(output): \(error)\n")
            exit(6)
        }
        print("wrote \(output)/bench.json, throughput.svg, latency-cdf.svg, throughput-over-time.svg, index.html")
        let failed = report.series.flatMap(\.steps).reduce(UInt64(0)) { $0 + $1.counters.errors + $1.counters.badStatuses }
        if failed > 0 { writeError("darter bench: warning: \(failed) requests failed or answered 1xx/4xx/5xx (see bench.json)\n") }
    }

    static func parse(_ args: Arguments) throws(UsageError) -> BenchOptions {
        let compare = args.isSet("compare")
        guard !args.positional.isEmpty else { throw UsageError("bench: name at least one http:// URL to measure (see darter bench --help)") }
        if compare && args.positional.count != 2 {
            throw UsageError("bench: --compare takes two URLs, A and B, got \(args.positional.count)")
        }
        for url in args.positional {
            do { _ = try HTTPClientURL(parsing: url) } catch { throw UsageError("bench: \(error) (darter bench measures http:// URLs)") }
        }
        var options = BenchOptions(urls: args.positional)
        options.compare = compare
        guard let c = BenchOptions.parseConcurrencies(args.string("concurrency")) else {
            throw UsageError("bench: --concurrency must be a comma-separated list of connection counts from 1 to 100000, got '\(args.string("concurrency").prefix(80))'")
        }
        options.concurrencies = c
        guard let d = BenchOptions.parseDuration(args.string("duration")), d > .zero else {
            throw UsageError("bench: --duration must be a positive time such as 5s, 500ms or 1m, got '\(args.string("duration").prefix(40))'")
        }
        options.duration = d
        guard let w = BenchOptions.parseDuration(args.string("warmup")) else {
            throw UsageError("bench: --warmup must be a time such as 1s, 500ms or 0, got '\(args.string("warmup").prefix(40))'")
        }
        options.warmup = w
        switch args.string("keep-alive").lowercased() {
        case "on", "true", "yes", "1": options.keepAlive = true
        case "off", "false", "no", "0": options.keepAlive = false
        default: throw UsageError("bench: --keep-alive must be on or off, got '\(args.string("keep-alive").prefix(40))'")
        }
        guard let m = Double(args.string("miss-ratio")), (0...1).contains(m) else {
            throw UsageError("bench: --miss-ratio must be a number from 0 to 1, got '\(args.string("miss-ratio").prefix(40))'")
        }
        options.missRatio = m
        let loops = try args.int("loops")
        guard (1...256).contains(loops) else { throw UsageError("bench: --loops must be from 1 to 256, got \(loops)") }
        options.loops = loops
        options.labels = args.all("label")
        if !options.labels.isEmpty && options.labels.count != options.urls.count {
            throw UsageError("bench: --label given \(options.labels.count) times for \(options.urls.count) URLs (one per URL, in order)")
        }
        return options
    }

    /// A page showing the three plots and the summary (the SVGs beside it, by relative path).
    static func indexPage(_ report: BenchReport) -> String {
        """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>darter bench</title>
        <style>body{font-family:Helvetica,Arial,sans-serif;margin:24px;} img{display:block;margin:16px 0;max-width:100%;} pre{background:#f6f6f6;padding:12px;}</style>
        </head><body>
        <h1>darter bench</h1>
        <pre>\(escape(report.summary))</pre>
        <img src="throughput.svg" alt="throughput vs concurrency">
        <img src="latency-cdf.svg" alt="latency distribution">
        <img src="throughput-over-time.svg" alt="throughput over time">
        <p>Every figure: <a href="bench.json">bench.json</a></p>
        </body></html>

        """
    }
}

/// The progress line on a terminal (redrawn in place); a line per finished step otherwise.
final class ProgressLine: Sendable {
    let terminal: Bool
    let duration: Double
    private let state = Mutex<(index: Int, total: Int, label: String, concurrency: Int)>((0, 0, "", 0))

    init(terminal: Bool, duration: Double) {
        self.terminal = terminal
        self.duration = duration
    }

    func show(_ event: BenchSweep.Event) {
        switch event {
        case .stepStarted(let index, let total, let label, let concurrency):
            state.withLock { $0 = (index, total, label, concurrency) }
            if terminal { draw("warming up") }
        case .stepProgress(_, let seconds, let requests):
            guard terminal else { return }
            if seconds < 0 { return draw("warming up") }
            draw("\(fixed(seconds, 1))/\(fixed(duration, 1))s  \(fixed(seconds > 0 ? Double(requests) / seconds : 0, 0)) req/s")
        case .stepFinished(_, let label, let step):
            let s = state.withLock { $0 }
            let line = "[\(s.index + 1)/\(s.total)] \(label) c=\(step.concurrency): \(fixed(step.requestsPerSecond, 0)) req/s, "
                + "\(fixed(step.bytesPerSecond / 1e6, 1)) MB/s, p50 \(fixed(step.latencyMilliseconds(0.5), 2)) ms, p99 \(fixed(step.latencyMilliseconds(0.99), 2)) ms"
                + (step.counters.errors + step.counters.badStatuses > 0 ? ", \(step.counters.errors + step.counters.badStatuses) failed" : "")
            if terminal { clear() }
            writeError(line + "\n")
        }
    }

    private func draw(_ what: String) {
        let s = state.withLock { $0 }
        writeError("\r\u{1B}[K[\(s.index + 1)/\(s.total)] \(s.label) c=\(s.concurrency)  \(what)")
    }

    func clear() {
        if terminal { writeError("\r\u{1B}[K") }
    }
}

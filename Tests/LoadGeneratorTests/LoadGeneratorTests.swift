#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import BenchReport
import DarterCore
import DarterIO
import DarterTestSupport
import HTTPClient
import HTTPCore
import HTTPServer
@testable import LoadGenerator

/// `/bytes/N` N bytes (Content-Length); `/chunked/K?size=N` K chunks of N bytes; `/close` a
/// response that ends the connection; `/status/C`. Counts requests, those asking to close,
/// and the distinct miss query strings.
final class LoadTestHandler: HTTPHandler {
    let requests = Atomic<Int>(0)
    let closeRequests = Atomic<Int>(0)
    let missTargets = Mutex<Set<String>>([])

    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        requests.add(1, ordering: .relaxed)
        if request.headers.containsToken("close", in: "Connection") { closeRequests.add(1, ordering: .relaxed) }
        if let q = request.query, q.contains("darter-bench-miss=") { _ = missTargets.withLock { $0.insert(request.target) } }
        let parts = request.path.split(separator: "/").map(String.init)
        switch parts.first {
        case "bytes":
            var head = HTTPResponseHead(status: 200)
            head.setContentLength(Int(parts[1])!)
            respond(Response(head: head, body: .bytes([UInt8](repeating: 7, count: Int(parts[1])!))))
        case "chunked":
            let size = Int(request.query?.split(separator: "=").last ?? "100") ?? 100
            respond(Response(head: HTTPResponseHead(status: 200), body: .stream(Chunks(count: Int(parts[1])!, size: size))))
        case "close":
            var r = Response.text(200, "bye")
            r.head.headers.add(name: "Connection", value: "close")
            respond(r)
        case "status":
            respond(.text(Int(parts[1])!, "status\n"))
        default:
            respond(.text(404, "no route\n"))
        }
    }
}

final class Chunks: StreamBodySource {
    let count: Int, size: Int
    let sent = Atomic<Int>(0)
    init(count: Int, size: Int) { self.count = count; self.size = size }
    func next(_ deliver: @escaping @Sendable ([UInt8]?) -> Void) {
        let i = sent.add(1, ordering: .relaxed).newValue
        deliver(i <= count ? [UInt8](repeating: 1, count: size) : nil)
    }
    func cancel() {}
}

final class ServerFixture: Sendable {
    let group: EventLoopGroup
    let server: HTTPServer
    let handler = LoadTestHandler()

    init() throws {
        group = try EventLoopGroup(count: 1)
        var config = ServerConfiguration()
        config.port = 0
        server = try HTTPServer(configuration: config, handler: handler, group: group)
        server.start()
    }

    func url(_ target: String) -> String { "http://127.0.0.1:\(server.port)\(target)" }

    func stop() async {
        await server.shutdown(grace: .milliseconds(200))
        group.shutdown()
    }
}

func runStep(_ url: String, concurrency: Int, keepAlive: Bool = true, missRatio: Double = 0, seconds: Double = 0.6) async throws -> LoadCounters {
    let generator = try LoadGenerator(loops: 2)
    defer { generator.shutdown() }
    let u = try HTTPClientURL(parsing: url)
    let plan = generator.plan(url: u, address: try LoadGenerator.address(of: u), keepAlive: keepAlive, missRatio: missRatio)
    return await generator.run(plan, concurrency: concurrency, duration: .milliseconds(Int(seconds * 1000)), warmup: .milliseconds(100)).counters
}

@Suite("LoadGenerator against HTTPServer, in one process", .serialized)
struct LoadGeneratorTests {
    @Test("keep-alive: one connect per connection, every body counted, latencies and the series add up")
    func keepAlive() async throws {
        let f = try ServerFixture()
        let c = try await runStep(f.url("/bytes/65536"), concurrency: 4)
        #expect(c.requests > 10, "\(c)")
        #expect(c.errors == 0, "\(c.firstError ?? "")")
        #expect(c.connects == 4)
        #expect(c.bodyBytes == c.requests * 65536)
        #expect(c.bytes > c.bodyBytes)
        #expect(c.statusClasses[2] == c.requests)
        #expect(c.latency.count == c.requests)
        #expect(c.series.requests.reduce(0, +) == c.requests)
        #expect(c.series.bytes.reduce(0, +) == c.bytes)
        #expect(c.latency.value(atQuantile: 0.5) > 0)
        await f.stop()
    }

    @Test("keep-alive off: Connection: close on each request and a connection per request, no errors")
    func keepAliveOff() async throws {
        let f = try ServerFixture()
        let c = try await runStep(f.url("/bytes/1000"), concurrency: 2, keepAlive: false)
        #expect(c.requests > 10)
        #expect(c.errors == 0, "\(c.firstError ?? "")")
        #expect(c.connects >= c.requests)
        #expect(f.handler.closeRequests.load(ordering: .relaxed) == f.handler.requests.load(ordering: .relaxed))
        #expect(c.bodyBytes == c.requests * 1000)
        await f.stop()
    }

    @Test("chunked bodies and a server that closes after each response (reconnects, no errors)")
    func framings() async throws {
        let f = try ServerFixture()
        let chunked = try await runStep(f.url("/chunked/3?size=20000"), concurrency: 3)
        #expect(chunked.requests > 5 && chunked.errors == 0, "\(chunked.firstError ?? "")")
        #expect(chunked.bodyBytes == chunked.requests * 60000)
        let closing = try await runStep(f.url("/close"), concurrency: 2)
        #expect(closing.requests > 5 && closing.errors == 0, "\(closing.firstError ?? "")")
        #expect(closing.connects >= closing.requests)
        await f.stop()
    }

    @Test("a miss ratio sends that share with unique query strings (the rest without)")
    func misses() async throws {
        let f = try ServerFixture()
        let c = try await runStep(f.url("/bytes/100?x=1"), concurrency: 4, missRatio: 0.5)
        #expect(c.requests > 100)
        let share = Double(c.misses) / Double(c.requests)
        #expect(share > 0.35 && share < 0.65, "\(c.misses) of \(c.requests)")
        #expect(c.missLatency.count == c.misses)
        let unique = f.handler.missTargets.withLock { $0 }
        #expect(unique.count >= Int(c.misses), "every miss asked for a target of its own")
        #expect(unique.allSatisfy { $0.hasPrefix("/bytes/100?x=1&darter-bench-miss=") })
        await f.stop()
    }

    @Test("a refused port: connect errors, no requests; the sweep's probe names the URL; a 404 stops the sweep")
    func failures() async throws {
        let port = try freePort()
        let c = try await runStep("http://127.0.0.1:\(port)/x", concurrency: 2, seconds: 0.3)
        #expect(c.requests == 0 && c.connectErrors > 0)
        var options = BenchOptions(urls: ["http://127.0.0.1:\(port)/x"])
        options.concurrencies = [1]
        options.duration = .milliseconds(200)
        options.warmup = .zero
        do {
            _ = try await BenchSweep(options: options).run()
            Issue.record("a refused port must fail the sweep")
        } catch {
            #expect(error.description.contains("127.0.0.1:\(port)") && error.description.contains("connect"), "\(error)")
        }
        let f = try ServerFixture()
        options.urls = [f.url("/status/404")]
        await #expect(throws: BenchError.self) { _ = try await BenchSweep(options: options).run() }
        do { _ = try await BenchSweep(options: options).run() } catch { #expect(error.description.contains("answered 404"), "\(error)") }
        await f.stop()
    }

    @Test("a sweep: a step per concurrency and URL, in order, with the report's files")
    func sweep() async throws {
        let f = try ServerFixture()
        var options = BenchOptions(urls: [f.url("/bytes/4096"), f.url("/bytes/100")])
        options.concurrencies = [1, 3]
        options.duration = .milliseconds(300)
        options.warmup = .milliseconds(50)
        options.compare = true
        let seen = Mutex<[String]>([])
        let report = try await BenchSweep(options: options).run { e in
            if case .stepFinished(_, let label, let step) = e { seen.withLock { $0.append("\(label) c=\(step.concurrency)") } }
        }
        #expect(seen.withLock { $0 } == ["127.0.0.1:\(f.server.port)/bytes/4096 c=1", "127.0.0.1:\(f.server.port)/bytes/100 c=1",
                                         "127.0.0.1:\(f.server.port)/bytes/4096 c=3", "127.0.0.1:\(f.server.port)/bytes/100 c=3"])
        #expect(report.series.allSatisfy { $0.steps.count == 2 && $0.steps.allSatisfy { $0.counters.requests > 0 && $0.counters.errors == 0 } })
        #expect(report.series[0].steps[1].startOffset > report.series[1].steps[0].startOffset)
        #expect(report.files.map(\.name) == ["bench.json", "throughput.svg", "latency-cdf.svg", "throughput-over-time.svg"])
        await f.stop()
    }

    @Test("options: durations, concurrency lists, miss targets")
    func options() {
        #expect(BenchOptions.parseDuration("5s") == .seconds(5))
        #expect(BenchOptions.parseDuration("500ms") == .milliseconds(500))
        #expect(BenchOptions.parseDuration("2m") == .seconds(120))
        #expect(BenchOptions.parseDuration("1.5") == .milliseconds(1500))
        #expect(BenchOptions.parseDuration("0") == .zero)
        for bad in ["", "-1s", "x", "5h", "1e9"] { #expect(BenchOptions.parseDuration(bad) == nil, "\(bad)") }
        #expect(BenchOptions.parseConcurrencies("1,4, 16,4") == [1, 4, 16])
        for bad in ["", "0", "1,,2", "a", "1,200000"] { #expect(BenchOptions.parseConcurrencies(bad) == nil, "\(bad)") }
        #expect(LoadPlan.missTarget("/a", nonce: 255, loop: 1, connection: 2, counter: 3) == "/a?darter-bench-miss=ff-1-2-3")
        #expect(LoadPlan.missTarget("/a?b=1", nonce: 1, loop: 0, connection: 0, counter: 9) == "/a?b=1&darter-bench-miss=1-0-0-9")
        #expect(LoadPlan.missTarget("/a?", nonce: 1, loop: 0, connection: 0, counter: 9) == "/a?darter-bench-miss=1-0-0-9")
    }
}

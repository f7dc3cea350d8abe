import Testing
import DarterCore
import DarterIO
import Origin

/// `--origin-rate` in both backends: one limit over every transfer.
@Suite("Origin backends under --origin-rate")
struct OriginRateLimitTests {
    func limited(_ kind: HTTPBackendKind, _ limit: RateLimiter) -> OriginBackends {
        var config = OriginConfiguration()
        config.rateLimit = limit
        return kind.make(config)
    }

    func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    @Test("a body comes at the limit, every byte in order", arguments: HTTPBackendKind.allCases)
    func pacedBody(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        // 1 MiB/s: a 128 KiB burst, 64 KiB takes; small.bin is 1 MiB + 123.
        let limit = RateLimiter(bytesPerSecond: 1 << 20)
        let sink = CollectingSink()
        let start = ContinuousClock.now
        let head = try await limited(kind, limit).fetch(OriginRequest(url: origin.url("/files/small.bin")), into: sink)
        let s = seconds(since: start)
        #expect(head.status == 200 && sink.body == OriginServer.sharedSmall)
        // The loop backend pays for what it received before the next receive, so its last
        // chunk (at most 64 KiB) is not waited for.
        #expect(s >= 0.75, "\(s) s for 1 MiB at 1 MiB/s past a 128 KiB burst")
        #expect(limit.bytesTaken == OriginServer.sharedSmall.count)
        #expect(limit.waitNanoseconds > 0)
    }

    @Test("transfers at once share the one limit", arguments: HTTPBackendKind.allCases)
    func sharedLimit(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        let limit = RateLimiter(bytesPerSecond: 2 << 20)
        let backends = limited(kind, limit)
        let url = origin.url("/files/small.bin")
        let start = ContinuousClock.now
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let sink = CollectingSink()
                    _ = try await backends.fetch(OriginRequest(url: url), into: sink)
                    return sink.body == OriginServer.sharedSmall ? 1 : 0
                }
            }
            return try await group.reduce(0, +)
        }
        let s = seconds(since: start)
        #expect(counts == 4, "every transfer exact")
        // 4 MiB at 2 MiB/s past a 256 KiB burst, less up to four unpaid last chunks: 1.6 s at least.
        #expect(s >= 1.6, "\(s) s")
    }

    @Test("a ranged piece into its buffer (the swarm's way to the origin) is paced too", arguments: HTTPBackendKind.allCases)
    func pacedPiece(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        let limit = RateLimiter(bytesPerSecond: 1 << 20)
        let buffer = SharedIOBuffer(IOBuffer(capacity: 1 << 20))
        let start = ContinuousClock.now
        let r = await limited(kind, limit).fetchPiece(url: origin.url("/files/small.bin"), headers: [], offset: 123, length: 1 << 20, into: buffer)
        let s = seconds(since: start)
        guard case .success = r else { Issue.record("\(r)"); return }
        #expect(buffer.buffer.bytes(0..<(1 << 20)) == Array(OriginServer.sharedSmall[123...]))
        #expect(s >= 0.75, "\(s) s")
    }

    @Test("cancelling a transfer that waits for the limit aborts it at once", arguments: HTTPBackendKind.allCases)
    func cancelWhileWaiting(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        // 16 KiB/s: the body would take a minute.
        let backends = limited(kind, RateLimiter(bytesPerSecond: 16 << 10))
        let url = origin.url("/files/small.bin")
        let task = Task { () async throws(OriginError) -> OriginResponseHead in
            try await backends.fetch(OriginRequest(url: url), into: CollectingSink())
        }
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        task.cancel()
        let result = await task.result
        #expect(seconds(since: start) < 2)
        guard case .failure(let error) = result else { Issue.record("the transfer was not cancelled"); return }
        #expect((error as? OriginError) == .aborted)
    }
}

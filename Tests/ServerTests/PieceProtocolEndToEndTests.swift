#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import DarterCore
import DarterIO
import HTTPCore
import HTTPClient
import PieceProtocol

/// The piece protocol against a real `darter seed` in front of origin.py, spoken with the
/// project's own HTTP client (docs/PROTOCOL.md).
@Suite("Piece protocol: end to end (darter seed, origin.py, HTTPClient)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable, "needs `darter seed` with the origin shield and Tests/Fixtures/origin.py"))
struct PieceProtocolEndToEndTests {
    struct Fixture {
        let origin: OriginServer
        let seed: SeedProcess
        let dir: String
        let group: EventLoopGroup
        let client: HTTPClient
        let file: [UInt8]

        func url(_ target: String) -> HTTPClientURL { HTTPClientURL(host: "127.0.0.1", port: seed.port, target: target) }
        func open(_ originURL: String, digest: String? = nil) async throws -> HTTPClientResponse {
            var body: JSONValue = ["url": .string(originURL)]
            if let digest { body = ["url": .string(originURL), "digest": .string(digest)] }
            return try await client.send(HTTPClientRequest(method: .post, url: url("/tasks"), body: body.serializedBytes))
        }
        func stop() async {
            _ = await seed.stop()
            await origin.stop()
            group.shutdown()
            removeTree(dir)
        }
    }

    func start(size: Int = (24 << 20) + 5) async throws -> Fixture {
        raiseFileLimit()
        let dir = makeServerTestDirectory("protocol")
        try SystemCalls.makeDirectories(dir + "/origin")
        let file = SplitMix64.bytes(size, seed: 0x9C0)
        try writeFile(dir + "/origin/big.bin", file)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        let group = try EventLoopGroup(count: 1)
        return Fixture(origin: origin, seed: seed, dir: dir, group: group, client: HTTPClient(group: group), file: file)
    }

    @Test("POST /tasks opens a fetch and answers the metadata (MISS, then HIT); bad requests are 400 naming the field; an origin 404 passes")
    func open() async throws {
        let fx = try await start()
        let r = try await fx.open(fx.origin.url(file: "big.bin"))
        #expect(r.status == 200 && r.head.headers["X-Darter-Cache"] == "MISS")
        let meta = try TaskMetadata(parsing: r.body)
        #expect(meta.contentLength == Int64(fx.file.count) && meta.pieceLength == 1 << 20 && meta.pieceCount == 25)
        #expect(meta.id == (try TaskID.forURL(fx.origin.url(file: "big.bin"))))
        // Wait for it to complete, then the same request is a hit with every piece held.
        for _ in 0..<200 {
            let m = try TaskMetadata(parsing: try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.metaPath(meta.id)))).body)
            if m.complete { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let again = try await fx.open(fx.origin.url(file: "big.bin"))
        #expect(again.head.headers["X-Darter-Cache"] == "HIT")
        let done = try TaskMetadata(parsing: again.body)
        #expect(done.complete && done.pieces.isComplete(pieceCount: 25))
        for (body, field) in [("{}", "url"), ("[1]", "JSON object"), (#"{"url":"http://x/","digest":"md5:1"}"#, "digest"), (#"{"url":"ftp://x/"}"#, "url")] {
            let bad = try await fx.client.send(HTTPClientRequest(method: .post, url: fx.url("/tasks"), body: Array(body.utf8)))
            #expect(bad.status == 400 && String(decoding: bad.body, as: UTF8.self).contains(field), "\(body): \(bad.status) \(String(decoding: bad.body, as: UTF8.self))")
        }
        let missing = try await fx.open(fx.origin.url(file: "nope.bin"))
        #expect(missing.status == 404)
        let get = try await fx.client.send(HTTPClientRequest(url: fx.url("/tasks")))
        #expect(get.status == 405 && get.head.headers["Allow"] == "POST")
        await fx.stop()
    }

    @Test("the availability feed pushes pieces as they land (the first before the fetch ends) and ends with complete")
    func feed() async throws {
        let fx = try await start()
        // A slow origin (4 MiB/s): the fetch takes ~6 s, so the feed is seen filling up.
        let originURL = fx.origin.url(file: "big.bin", "drip=4000000")
        let meta = try TaskMetadata(parsing: try await fx.open(originURL).body)
        final class Collector: HTTPResponseHandler, @unchecked Sendable {
            let buffer = SharedIOBuffer(IOBuffer(capacity: 64 << 10))
            var decoder = AvailabilityDecoder()
            var events: [(AvailabilityEvent, ContinuousClock.Instant)] = []
            let done: @Sendable ([(AvailabilityEvent, ContinuousClock.Instant)], Result<Void, HTTPClientError>) -> Void
            init(done: @escaping @Sendable ([(AvailabilityEvent, ContinuousClock.Instant)], Result<Void, HTTPClientError>) -> Void) { self.done = done }
            func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool { head.status == 200 && body == .chunked }
            func bodySpace() -> BufferSpace? { BufferSpace(buffer: buffer, range: 0..<buffer.buffer.capacity) }
            func bodyReceived(_ count: Int) {
                let now = ContinuousClock.now
                events += ((try? decoder.feed(buffer.buffer.bytes(0..<count))) ?? [.failed("undecodable")]).map { ($0, now) }
            }
            func responseEnded(_ result: Result<Void, HTTPClientError>) { done(events, result) }
        }
        let (events, result): ([(AvailabilityEvent, ContinuousClock.Instant)], Result<Void, HTTPClientError>) = await withCheckedContinuation { c in
            fx.client.execute(HTTPClientRequest(url: fx.url(PieceProtocol.availabilityPath(meta.id))), handler: Collector { c.resume(returning: ($0, $1)) })
        }
        #expect(throws: Never.self) { try result.get() }
        guard case .snapshot(let first)? = events.first?.0 else { Issue.record("no snapshot first: \(events.map(\.0))"); return await fx.stop() }
        var held = first.pieces
        var haveLines = 0
        for (e, _) in events.dropFirst() { if case .have(let p, _) = e { held.formUnion(p); haveLines += 1 } }
        #expect(held.isComplete(pieceCount: 25), "pieces heard: \(held)")
        #expect(haveLines >= 2, "pieces came in several pushes, not one: \(events.map(\.0))")
        #expect(events.last?.0 == .complete)
        if let firstHave = events.first(where: { if case .have = $0.0 { return true }; return false })?.1, let end = events.last?.1 {
            #expect(end - firstHave > .milliseconds(500), "the first piece was pushed well before the end")
        }
        // HEAD gets GET's head, Transfer-Encoding included (RFC 9110 §9.3.2), and no body; the
        // connection goes on.
        let path = PieceProtocol.availabilityPath(meta.id)
        let get = try await fx.client.send(HTTPClientRequest(url: fx.url(path)))
        let head = try await fx.client.send(HTTPClientRequest(method: .head, url: fx.url(path)))
        func fields(_ r: HTTPClientResponse) -> [String] { r.head.headers.filter { $0.name.lowercased() != "date" }.map { "\($0.name.lowercased()): \($0.value)" }.sorted() }
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(fields(head) == fields(get))
        #expect(head.head.headers["Transfer-Encoding"] == "chunked" && head.head.headers["Content-Type"] == "application/x-ndjson")
        #expect(try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.metaPath(meta.id)))).status == 200)
        await fx.stop()
    }

    @Test("a piece still arriving is waited for (?wait) and comes with its CRC32C; one that cannot come in time is 503; pipelined on one connection")
    func pieces() async throws {
        let fx = try await start()
        let originURL = fx.origin.url(file: "big.bin", "drip=8000000")
        let meta = try TaskMetadata(parsing: try await fx.open(originURL).body)
        // The last piece arrives last: asked at once with a long wait, it comes when it lands.
        let last = 24
        let piece = SharedIOBuffer(IOBuffer(capacity: 1 << 20))
        // The last piece, not an early one: at 8 MB/s it lands 3 s after the open, so the test
        // task being held up by parallel suites cannot make it here in time.
        let soon = try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.piecePath(meta.id, last, waitMilliseconds: 1))), into: piece, range: 0..<(1 << 20))
        #expect(soon.status == 503 && soon.head.headers["Retry-After"] == "1", "piece \(last) cannot be here within 1 ms: \(soon.status)")
        let r = try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.piecePath(meta.id, last, waitMilliseconds: 30_000))), into: piece, range: 0..<(1 << 20))
        #expect(r.status == 200)
        let start = last * (1 << 20)
        let want = Array(fx.file[start...])
        #expect(r.bodyLength == want.count)
        #expect(piece.buffer.bytes(0..<want.count) == want)
        #expect(r.head.headers[PieceProtocol.crcHeader].flatMap { PieceProtocol.parseCRC($0) } == CRC32C.checksum(want))
        // Now every piece, pipelined over one connection.
        var config = HTTPClientConfiguration()
        config.maxConnectionsPerHost = 1
        config.pipelineDepth = 7
        let one = HTTPClient(group: fx.group, configuration: config)
        let buffers = (0..<25).map { _ in SharedIOBuffer(IOBuffer(capacity: 1 << 20)) }
        try await withThrowingTaskGroup(of: (Int, HTTPClientResponse).self) { g in
            for i in 0..<25 {
                g.addTask { (i, try await one.send(HTTPClientRequest(url: fx.url(PieceProtocol.piecePath(meta.id, i, waitMilliseconds: 30_000))), into: buffers[i], range: 0..<(1 << 20))) }
            }
            for try await (i, r) in g {
                let bytes = Array(fx.file[(i * (1 << 20))..<min(fx.file.count, (i + 1) * (1 << 20))])
                #expect(r.status == 200 && r.bodyLength == bytes.count && buffers[i].buffer.bytes(0..<bytes.count) == bytes, "piece \(i)")
                #expect(r.head.headers[PieceProtocol.crcHeader].flatMap { PieceProtocol.parseCRC($0) } == CRC32C.checksum(bytes), "piece \(i) CRC")
            }
        }
        #expect(await one.connectionCount() == 1)
        let beyond = try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.piecePath(meta.id, 25))))
        #expect(beyond.status == 404)
        let badWait = try await fx.client.send(HTTPClientRequest(url: fx.url("/tasks/\(meta.id)/pieces/0?wait=soon")))
        #expect(badWait.status == 400)
        // A complete task's feed: the snapshot, complete, and the end.
        let feed = try await fx.client.send(HTTPClientRequest(url: fx.url(PieceProtocol.availabilityPath(meta.id))))
        var d = AvailabilityDecoder()
        let events = try d.feed(feed.body)
        #expect(events.count == 2 && events.last == .complete, "\(events)")
        await fx.stop()
    }
}

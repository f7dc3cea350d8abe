#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import DarterIO
import DarterCore

/// Content imported into the shared seed's data directory.
struct TestFile: Sendable {
    let name: String
    let bytes: [UInt8]
    let id: String          // as `darter import` printed it: sha256:<hex>
    var hex: String { String(id.dropFirst("sha256:".count)) }
    var path: String { "/tasks/" + id }
    var etag: String { "\"" + hex + "\"" }
}

/// One `darter seed` shared by the suite (started once, stopped after the last test).
struct SeedFixture: Sendable {
    let seed: SeedProcess
    let dir: String
    let files: [String: TestFile]

    @TaskLocal static var current: SeedFixture?

    static func get() throws -> SeedFixture { try #require(current, "the suite's seed did not start") }

    func file(_ name: String) -> TestFile { files[name]! }
    var base: String { seed.base }
}

struct SharedSeedTrait: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard DarterBinary.hasSeed else { return try await function() }  // the suite is skipped anyway
        raiseFileLimit()
        let dir = makeServerTestDirectory("shared")
        defer { removeTree(dir) }
        // name, size, seed, piece length (nil: darter's default)
        let specs: [(String, Int, UInt64, String?)] = [
            ("one", 1, 1, nil), ("small", 100 << 10, 2, nil), ("large", (5 << 20) + 123, 3, nil), ("pieced", (300 << 10) + 7, 4, "64k"),
        ]
        var files: [String: TestFile] = [:]
        for (name, size, seed, pieceLength) in specs {
            let bytes = SplitMix64.bytes(size, seed: seed)
            let path = dir + "/" + name + ".bin"
            try writeFile(path, bytes)
            let args = ["import", "--data-dir", dir + "/data"] + (pieceLength.map { ["--piece-length", $0] } ?? []) + [path]
            let r = try await runProcess(DarterBinary.path, args, scratch: dir)
            guard r.exitCode == 0, let line = r.stdoutText.split(separator: "\n").first, line.hasSuffix(" " + path) else {
                throw TestError("darter import \(path) exited with \(r.exitCode): \(r.stdoutText) \(r.stderr)")
            }
            let id = String(line.split(separator: " ")[0])
            files[name] = TestFile(name: name, bytes: bytes, id: id)
        }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        try await SeedFixture.$current.withValue(SeedFixture(seed: seed, dir: dir, files: files)) {
            try await function()
        }
        _ = await seed.stop()
    }
}

extension Trait where Self == SharedSeedTrait {
    static var sharedSeed: Self { SharedSeedTrait() }
}

@Suite("Seed peer: end to end over HTTP (darter seed, curl, raw sockets)", .serialized,
       .enabled(if: DarterBinary.hasSeed, "needs `darter seed` (swift build, once the server has landed)"),
       .sharedSeed)
struct SeedEndToEndTests {

    // MARK: content

    @Test("GET returns every byte with Content-Length, Content-Type, ETag and Accept-Ranges")
    func fullContent() async throws {
        let fx = try SeedFixture.get()
        for f in fx.files.values {
            #expect(f.id == "sha256:" + hexString(SHA256Hasher.hash(f.bytes)), "the task id is the content digest")
            let r = try await curl(fx.base + f.path, scratch: fx.dir)
            #expect(r.status == 200, "\(f.name)")
            #expect(r.body == f.bytes, "\(f.name): \(r.body.count) bytes, expected \(f.bytes.count)")
            #expect(r.headers["content-length"] == "\(f.bytes.count)")
            #expect(r.headers["content-type"] == "application/octet-stream")
            #expect(r.headers["etag"] == f.etag)
            #expect(r.headers["accept-ranges"] == "bytes")
        }
        // The id without its sha256: prefix names the same task.
        let f = fx.file("small")
        let r = try await curl(fx.base + "/tasks/" + f.hex, scratch: fx.dir)
        #expect(r.status == 200 && r.body == f.bytes)
    }

    @Test("HEAD sends the headers of a GET and no body")
    func head() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("large")
        let r = try await curl(fx.base + f.path, ["-I"], scratch: fx.dir)
        #expect(r.status == 200)
        #expect(r.headers["content-length"] == "\(f.bytes.count)")
        #expect(r.headers["etag"] == f.etag)
        // On one connection: if HEAD leaked a body, the next response would be garbage.
        let port = fx.seed.port, path = f.path
        let (first, second) = try await offPool {
            let c = try RawConnection(port: port)
            try c.send("HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return (try c.readResponse(head: true), try c.readResponse())
        }
        #expect(first.status == 200 && first.headers["content-length"] == "\(f.bytes.count)")
        #expect(second.statusLine.hasPrefix("HTTP/1.1 200") && second.text == "ok\n", "after HEAD: \(second.statusLine)")
    }

    @Test("single ranges: first byte, middle, suffix, open-ended, across a piece boundary, clamped end")
    func ranges() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("large")
        let n = f.bytes.count
        let cases: [(String, Int, Int)] = [
            ("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), ("bytes=-500", n - 500, n - 1),
            ("bytes=5000000-", 5_000_000, n - 1), ("bytes=4194000-4195000", 4_194_000, 4_195_000),
            ("bytes=5242000-99999999", 5_242_000, n - 1), ("bytes=\(n - 1)-\(n - 1)", n - 1, n - 1),
        ]
        for (range, first, last) in cases {
            let r = try await curl(fx.base + f.path, ["-H", "Range: " + range], scratch: fx.dir)
            #expect(r.status == 206, "\(range)")
            #expect(r.headers["content-range"] == "bytes \(first)-\(last)/\(n)", "\(range)")
            #expect(r.headers["content-length"] == "\(last - first + 1)", "\(range)")
            #expect(r.body == Array(f.bytes[first...last]), "\(range): \(r.body.count) bytes")
        }
        let one = fx.file("one")
        for range in ["bytes=0-0", "bytes=-1", "bytes=0-"] {
            let r = try await curl(fx.base + one.path, ["-H", "Range: " + range], scratch: fx.dir)
            #expect(r.status == 206 && r.headers["content-range"] == "bytes 0-0/1" && r.body == one.bytes, "\(range)")
        }
        // A suffix longer than the content means all of it: 206 of everything (RFC 9110 §14.1.3).
        let all = try await curl(fx.base + f.path, ["-H", "Range: bytes=-99999999"], scratch: fx.dir)
        #expect(all.status == 206 && all.headers["content-range"] == "bytes 0-\(f.bytes.count - 1)/\(f.bytes.count)")
        #expect(all.body == f.bytes)
    }

    @Test("an unsatisfiable range is 416 with Content-Range: bytes */LENGTH")
    func unsatisfiable() async throws {
        let fx = try SeedFixture.get()
        for (name, range) in [("large", "bytes=\((5 << 20) + 123)-"), ("large", "bytes=99999999-100000000"), ("one", "bytes=1-")] {
            let f = fx.file(name)
            let r = try await curl(fx.base + f.path, ["-H", "Range: " + range], scratch: fx.dir)
            #expect(r.status == 416, "\(name) \(range)")
            #expect(r.headers["content-range"] == "bytes */\(f.bytes.count)", "\(name) \(range)")
        }
    }

    @Test("several ranges are answered with 200 and the whole content")
    func multipleRanges() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("small")
        let r = try await curl(fx.base + f.path, ["-H", "Range: bytes=0-9,20-29"], scratch: fx.dir)
        #expect(r.status == 200)
        #expect(r.body == f.bytes)
    }

    @Test("If-None-Match with the ETag is 304; If-Range honours the range only for the right ETag")
    func conditionals() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("small")
        let notModified = try await curl(fx.base + f.path, ["-H", "If-None-Match: " + f.etag], scratch: fx.dir)
        #expect(notModified.status == 304)
        #expect(notModified.body.isEmpty)
        let other = try await curl(fx.base + f.path, ["-H", "If-None-Match: \"0000\""], scratch: fx.dir)
        #expect(other.status == 200 && other.body == f.bytes)
        let ifRange = try await curl(fx.base + f.path, ["-H", "Range: bytes=10-19", "-H", "If-Range: " + f.etag], scratch: fx.dir)
        #expect(ifRange.status == 206 && ifRange.body == Array(f.bytes[10...19]))
        let stale = try await curl(fx.base + f.path, ["-H", "Range: bytes=10-19", "-H", "If-Range: \"0000\""], scratch: fx.dir)
        #expect(stale.status == 200 && stale.body == f.bytes)
    }

    // MARK: pieces and meta

    @Test("every piece comes with X-Darter-Piece-CRC32C, the CRC32C of its bytes")
    func pieces() async throws {
        let fx = try SeedFixture.get()
        for name in ["pieced", "large", "one"] {
            let f = fx.file(name)
            let meta = try await fetchMeta(fx, f)
            let pieceLength = try #require(meta["pieceLength"] as? Int)
            let count = try #require(meta["pieceCount"] as? Int)
            if name == "pieced" { #expect(pieceLength == 64 << 10 && count == 5) }
            for n in 0..<count {
                let r = try await curl(fx.base + f.path + "/pieces/\(n)", scratch: fx.dir)
                let expected = Array(f.bytes[(n * pieceLength)..<min(f.bytes.count, (n + 1) * pieceLength)])
                #expect(r.status == 200, "\(name) piece \(n)")
                #expect(r.body == expected, "\(name) piece \(n): \(r.body.count) bytes, expected \(expected.count)")
                #expect(r.headers["x-darter-piece-crc32c"] == hex8(CRC32C.checksum(expected)), "\(name) piece \(n)")
            }
            let past = try await curl(fx.base + f.path + "/pieces/\(count)", scratch: fx.dir)
            #expect((400..<500).contains(past.status), "\(name): piece \(count) is past the end: \(past.status)")
        }
    }

    @Test("meta is JSON with the task's length, geometry, committed bitmap and digest")
    func meta() async throws {
        let fx = try SeedFixture.get()
        for f in fx.files.values {
            let m = try await fetchMeta(fx, f)
            #expect((m["id"] as? String)?.hasSuffix(f.hex) == true, "\(f.name): id \(String(describing: m["id"]))")
            #expect(m["contentLength"] as? Int == f.bytes.count)
            let pieceLength = try #require(m["pieceLength"] as? Int)
            #expect(pieceLength > 0)
            let count = (f.bytes.count + pieceLength - 1) / pieceLength
            #expect(m["pieceCount"] as? Int == count)
            #expect(m["complete"] as? Bool == true)
            #expect(m["committedPieces"] as? String == String(repeating: "1", count: count))
            #expect(m["digest"] as? String == "sha256:" + f.hex)
            #expect(m["contentType"] is NSNull || m["contentType"] is String)
        }
    }

    func fetchMeta(_ fx: SeedFixture, _ f: TestFile) async throws -> [String: Any] {
        let r = try await curl(fx.base + f.path + "/meta", scratch: fx.dir)
        #expect(r.status == 200)
        let json = try JSONSerialization.jsonObject(with: Data(r.body))
        return try #require(json as? [String: Any], "meta is not a JSON object: \(r.text)")
    }

    // MARK: errors

    @Test("a malformed id is 400 with a one-line reason; path tricks never reach a file")
    func malformedIDs() async throws {
        let fx = try SeedFixture.get()
        let hex = fx.file("small").hex
        for path in ["/tasks/xyz", "/tasks/" + hex.uppercased(), "/tasks/sha256:" + hex.dropLast(), "/tasks/" + hex + "0",
                     "/tasks/sha512:" + hex, "/tasks/sha256:", "/tasks/%2e%2e%2fjournal"] {
            let r = try await curl(fx.base + path, scratch: fx.dir)
            #expect(r.status == 400, "\(path)")
            let lines = r.text.split(separator: "\n")
            #expect(lines.count == 1 && !lines[0].isEmpty, "\(path): reason \(r.text.debugDescription)")
        }
        // `..` is never a task id (400); deeper paths name no route (404). Neither reads a file.
        for (path, status) in [("/tasks/../journal", 400), ("/tasks/../../etc/passwd", 404), ("/../journal", 404)] {
            let r = try await curl(fx.base + path, ["--path-as-is"], scratch: fx.dir)
            #expect(r.status == status, "\(path): \(r.status)")
        }
    }

    @Test("unknown tasks and paths are 404; other methods are 405 with Allow")
    func notFoundAndMethods() async throws {
        let fx = try SeedFixture.get()
        let unknown = "/tasks/sha256:" + String(repeating: "ab", count: 32)
        for path in [unknown, unknown + "/meta", unknown + "/pieces/0", unknown + "/pieces", "/nope", "/"] {
            let r = try await curl(fx.base + path, scratch: fx.dir)
            #expect(r.status == 404, "\(path)")
        }
        // /tasks takes the piece protocol's POST only.
        let tasks = try await curl(fx.base + "/tasks", scratch: fx.dir)
        #expect(tasks.status == 405 && tasks.headers["allow"] == "POST")
        let r = try await curl(fx.base + unknown, scratch: fx.dir)
        #expect(!r.body.isEmpty, "a 404 says why")
        let f = fx.file("small")
        for args in [["-X", "DELETE"], ["-X", "POST", "--data-binary", "x"]] {
            let r = try await curl(fx.base + f.path, args, scratch: fx.dir)
            #expect(r.status == 405, "\(args[1])")
            #expect(r.headers["allow"]?.contains("GET") == true, "\(args[1]): Allow \(String(describing: r.headers["allow"]))")
            #expect(r.headers["allow"]?.contains("PUT") == true, "\(args[1]): a task takes PUT (an import)")
        }
        // PUT is an import: bytes that are not the id's content are refused and change nothing.
        let put = try await curl(fx.base + f.path, ["-X", "PUT", "--data-binary", "x"], scratch: fx.dir)
        #expect(put.status == 422, "\(put.text)")
        #expect(bodyDiff(try await curl(fx.base + f.path, scratch: fx.dir).body, f.bytes) == nil)
    }

    // MARK: health and metrics

    @Test("/healthz is ok; /metrics has the request, connection and store series")
    func healthAndMetrics() async throws {
        let fx = try SeedFixture.get()
        let h = try await curl(fx.base + "/healthz", scratch: fx.dir)
        #expect(h.status == 200 && h.text == "ok\n")
        let m = try await curl(fx.base + "/metrics", scratch: fx.dir)
        #expect(m.status == 200)
        for name in ["darter_http_requests_total{", "darter_http_response_bytes_total", "darter_http_connections_active",
                     "darter_store_bytes_used", "darter_store_quota_bytes", "darter_store_evictions_total", "darter_store_tasks"] {
            #expect(m.text.contains(name), "no \(name) in /metrics")
        }
        let requests = m.text.split(separator: "\n").filter { $0.hasPrefix("darter_http_requests_total{") }
        #expect(requests.contains { $0.contains("route=\"") && $0.contains("status=\"200\"") }, "\(requests)")
        #expect(metricValue("darter_store_tasks", in: m.text).map { $0 >= Double(fx.files.count) } == true)
        #expect(metricValue("darter_store_quota_bytes", in: m.text) == 0)
        #expect(metricValue("darter_http_response_bytes_total", in: m.text).map { $0 > 0 } == true)
    }

    // MARK: connections

    @Test("keep-alive: two requests on one connection (curl and a raw socket)")
    func keepAlive() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("small")
        let r = try await runProcess("curl", ["-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                                              fx.base + f.path, fx.base + "/healthz"], scratch: fx.dir)
        #expect(r.exitCode == 0)
        #expect(r.stdoutText == "200 1\n200 0\n", "curl reused no connection: \(r.stdoutText.debugDescription)")
        let port = fx.seed.port, path = f.path
        let (a, b) = try await offPool {
            let c = try RawConnection(port: port)
            try c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            let a = try c.readResponse()
            try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return (a, try c.readResponse())
        }
        #expect(a.status == 200 && a.body == f.bytes)
        #expect(b.status == 200 && b.text == "ok\n")
    }

    @Test("pipelining: three requests written at once are answered in order")
    func pipelining() async throws {
        let fx = try SeedFixture.get()
        let one = fx.file("one"), small = fx.file("small")
        let port = fx.seed.port
        let responses = try await offPool {
            let c = try RawConnection(port: port)
            try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET \(one.path) HTTP/1.1\r\nHost: x\r\n\r\n"
                       + "GET \(small.path) HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n")
            return try (0..<3).map { _ in try c.readResponse() }
        }
        #expect(responses[0].status == 200 && responses[0].text == "ok\n")
        #expect(responses[1].status == 200 && responses[1].body == one.bytes)
        #expect(responses[2].status == 206 && responses[2].body == Array(small.bytes[5...9]))
    }

    @Test("HTTP/1.0 clients are served (curl -0, and a raw request the server then closes)")
    func http10() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("small")
        let r = try await curl(fx.base + f.path, ["-0"], scratch: fx.dir)
        #expect(r.status == 200 && r.body == f.bytes)
        let port = fx.seed.port, path = f.path
        let (response, closed) = try await offPool {
            let c = try RawConnection(port: port)
            try c.send("GET \(path) HTTP/1.0\r\n\r\n")
            let response = try c.readResponse()
            return (response, c.readUntilClosed(timeout: 5))
        }
        #expect(response.statusLine.hasPrefix("HTTP/1.") && response.status == 200)
        #expect(response.body == f.bytes)
        #expect(closed, "an HTTP/1.0 request without keep-alive leaves the connection open")
    }

    @Test("a TLS ClientHello or an HTTP/2 preface on the plain port: 400 or a clean close, and the server keeps serving")
    func foreignProtocols() async throws {
        let fx = try SeedFixture.get()
        // TLS 1.2 ClientHello: record header, handshake header, version, random, no session,
        // one cipher suite, null compression, no extensions.
        let hello: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03]
            + SplitMix64.bytes(32, seed: 9) + [0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00, 0x00, 0x00]
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        let port = fx.seed.port
        for (label, bytes) in [("TLS ClientHello", hello), ("HTTP/2 preface", preface)] {
            let (answer, closed) = try await offPool {
                let c = try RawConnection(port: port)
                try c.send(bytes)
                let closed = c.readUntilClosed(timeout: 5)
                return (String(decoding: c.buffer, as: UTF8.self), closed)
            }
            let is400 = answer.hasPrefix("HTTP/1.1 400") || answer.hasPrefix("HTTP/1.0 400")
            #expect(is400 || (answer.isEmpty && closed), "\(label): answered \(answer.prefix(80).debugDescription), closed \(closed)")
            #expect(closed || is400, "\(label): neither answered nor closed within 5 s")
            let h = try await curl(fx.base + "/healthz", scratch: fx.dir)
            #expect(h.status == 200, "after a \(label)")
        }
    }

    @Test("200 concurrent connections each get their content")
    func concurrentConnections() async throws {
        let fx = try SeedFixture.get()
        let f = fx.file("small")
        let port = fx.seed.port, path = f.path
        let results = try await offPool { try concurrentGets(port: port, path: path, count: 200, timeout: 30) }
        var ok = 0
        for (i, r) in results.enumerated() {
            switch r {
            case .success(let response):
                if response.status == 200 && response.body == f.bytes { ok += 1 } else { Issue.record("connection \(i): \(response.statusLine), \(response.body.count) bytes") }
            case .failure(let e):
                Issue.record("connection \(i): \(e)")
            }
        }
        #expect(ok == 200)
    }

    // MARK: timeouts, memory, shutdown (each on a seed of its own)

    @Test("a slowloris client (half a request line, then nothing) is cut off after --header-timeout")
    func slowloris() async throws {
        let dir = makeServerTestDirectory("slowloris")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/data")
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--header-timeout", "1"])
        let port = seed.port
        let (elapsed, closed, healthy) = try await offPool {
            let slow = try RawConnection(port: port)
            try slow.send("GET /tasks/")
            let start = now()
            // A prompt client on another connection is unaffected.
            let prompt = try RawConnection(port: port)
            try prompt.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let healthy = try prompt.readResponse().status == 200
            let closed = slow.readUntilClosed(timeout: 10)
            return (now() - start, closed, healthy)
        }
        #expect(healthy)
        #expect(closed, "the slow client is still connected after 10 s")
        #expect(elapsed >= 0.5 && elapsed <= 5, "cut off after \(elapsed) s with --header-timeout 1")
        let h = try await curl(seed.base + "/healthz", scratch: dir)
        #expect(h.status == 200)
        #expect(await seed.stop() == 0)
    }

    @Test("1,000 idle keep-alive connections keep the seed under 128 MiB RSS")
    func idleConnectionsMemory() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("idle")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/data")
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--max-connections", "4000", "--idle-timeout", "120"])
        let port = seed.port
        let (rss, active, stillServes) = try await offPool {
            var held: [RawConnection] = []
            for _ in 0..<1000 {
                let c = try RawConnection(port: port)
                try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                guard try c.readResponse().status == 200 else { throw TestError("GET /healthz failed") }
                held.append(c)
            }
            usleep(500_000)
            let rss = seed.residentMiB()
            let probe = try RawConnection(port: port)
            try probe.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            let metrics = try probe.readResponse()
            let active = metrics.text.split(separator: "\n").first { $0.hasPrefix("darter_http_connections_active") }
                .flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            withExtendedLifetime(held) {}
            return (rss, active, metrics.status == 200)
        }
        let mib = try #require(rss)
        #expect(mib < 128, "VmRSS \(mib) MiB with 1,000 idle connections")
        #expect(stillServes)
        #expect(active.map { $0 >= 1000 } == true, "darter_http_connections_active = \(String(describing: active))")
        #expect(await seed.stop() == 0)
    }

    @Test("SIGTERM shuts down gracefully: exit status 0, open connections closed")
    func gracefulShutdown() async throws {
        let dir = makeServerTestDirectory("sigterm")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/data")
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        let port = seed.port
        let connection = try await offPool { () -> SendableBox<RawConnection> in
            let c = try RawConnection(port: port)
            try c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            _ = try c.readResponse()
            return SendableBox(c)
        }
        let code = await seed.stop(signal: SIGTERM, timeout: 10)
        #expect(code == 0, "exit \(String(describing: code)); log:\n\(seed.log)")
        let closed = try await offPool { connection.value.readUntilClosed(timeout: 2) }
        #expect(closed, "an idle keep-alive connection outlived the process")
    }
}

/// Hands a non-Sendable value between Dispatch threads used one after another.
final class SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Every `--serve-mode` sends the same bytes: whole bodies small and large (several pieces),
/// ranges across piece boundaries, HEAD, and keep-alive (several requests on one connection).
@Suite("Seed peer: every serve mode sends the same bytes", .serialized,  // one seed at a time: each holds 9 MiB bodies
       .enabled(if: DarterBinary.hasSeed, "needs `darter seed`"))
struct ServeModeTests {
    @Test("whole bodies, ranges across pieces, HEAD and keep-alive", arguments: ["copy", "sendfile", "splice", "zerocopy", "mixed", "auto"])
    func serveMode(_ mode: String) async throws {
        let dir = makeServerTestDirectory("mode-" + mode)
        defer { removeTree(dir) }
        var files: [(TestFile, [UInt8])] = []
        for (name, size, seed) in [("small", (100 << 10) + 3, UInt64(11)), ("large", (9 << 20) + 4097, UInt64(12))] {
            let bytes = SplitMix64.bytes(size, seed: seed)
            let path = dir + "/" + name + ".bin"
            try writeFile(path, bytes)
            let r = try await runProcess(DarterBinary.path, ["import", "--data-dir", dir + "/data", "--piece-length", "4m", path], scratch: dir)
            let id = try #require(r.stdoutText.split(separator: " ").first.map(String.init), "import: \(r.stderr)")
            files.append((TestFile(name: name, bytes: bytes, id: id), bytes))
        }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--serve-mode", mode])
        defer { Task { _ = await seed.stop() } }
        for (file, bytes) in files {
            let whole = try await curl(seed.base + file.path, scratch: dir)
            #expect(whole.status == 200 && bodyDiff(whole.body, bytes) == nil, "\(mode) \(file.name): \(whole.status) \(bodyDiff(whole.body, bytes) ?? "")")
            let head = try await curl(seed.base + file.path, ["-I"], scratch: dir)
            #expect(head.status == 200 && head.headers["content-length"] == "\(bytes.count)", "\(mode) \(file.name) HEAD")
        }
        // A range across the first piece boundary of the large file, and an open-ended tail.
        let large = files[1]
        let lo = (4 << 20) - 1000, hi = (4 << 20) + 70_000
        let range = try await curl(seed.base + large.0.path, ["-r", "\(lo)-\(hi)"], scratch: dir)
        #expect(range.status == 206 && bodyDiff(range.body, Array(large.1[lo...hi])) == nil, "\(mode) range")
        let tail = try await curl(seed.base + large.0.path, ["-r", "\(large.1.count - 5000)-"], scratch: dir)
        #expect(tail.status == 206 && bodyDiff(tail.body, Array(large.1.suffix(5000))) == nil, "\(mode) tail")
        // Keep-alive: curl sends both requests on one connection (it reports 1 connect).
        let out = dir + "/ka"
        let both = try await runProcess("curl", ["-sS", "--noproxy", "*", "-w", "%{num_connects} ",
                                                 "-o", out + "1", seed.base + files[0].0.path, "-o", out + "2", seed.base + large.0.path], scratch: dir)
        #expect(both.exitCode == 0 && both.stdoutText.split(separator: " ").map(String.init) == ["1", "0"], "\(mode) keep-alive: \(both.stdoutText) \(both.stderr)")
        let (got1, got2) = (try readFile(out + "1"), try readFile(out + "2"))
        #expect(bodyDiff(got1, files[0].1) == nil && bodyDiff(got2, large.1) == nil, "\(mode) keep-alive bodies")
    }
}

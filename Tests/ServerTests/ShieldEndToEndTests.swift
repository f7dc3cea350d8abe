#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import DarterIO
import DarterCore

// End-to-end tests of the origin shield: a real `darter seed` in front of the Python origin
// fixture (Tests/Fixtures/origin.py), driven with curl and raw sockets.
//
// The fixture's contract: `python3 origin.py --port P --dir DIR` prints
// `origin: listening on 127.0.0.1:P`, serves `/files/<name>` (GET/HEAD, Range, ETag,
// Last-Modified) and misbehaves on request: `?drop=N` (close after N body bytes), `?fail=K`
// (the first K requests get 503), `?chunked=1`, `?drip=BYTES_PER_SEC`, `?short=N`
// (Content-Length of the whole file, N bytes sent), `?norange=1`, `?etag=rotate`,
// `?status=404`. `GET /__stats` → {"requests": {path_with_query: n}, "body_bytes": {path: n}};
// `POST /__reset`.
//
// Every test uses files (or queries) of its own, so the origin's counters for them are its own.

/// A file the origin serves: `/files/<name>`.
struct OriginFile: Sendable {
    let name: String
    let bytes: [UInt8]
    var path: String { "/files/" + name }
    var digest: String { "sha256:" + hexString(SHA256Hasher.hash(bytes)) }
}

/// Every concurrent client got a 200 with exactly `bytes`.
func expectEveryClientExact(_ results: [Result<RawResponse, TestError>], _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    for (i, result) in results.enumerated() {
        switch result {
        case .success(let r):
            let diff = bodyDiff(r.body, bytes)
            #expect(r.status == 200 && diff == nil, "client \(i): \(r.status), \(diff ?? "exact")", sourceLocation: sourceLocation)
        case .failure(let e):
            Issue.record("client \(i): \(e)", sourceLocation: sourceLocation)
        }
    }
}

/// One origin and one `darter seed` (default flags) shared by the suite.
struct ShieldFixture: Sendable {
    let origin: OriginServer
    let seed: SeedProcess
    let dir: String
    let files: [String: OriginFile]

    @TaskLocal static var current: ShieldFixture?

    static func get() throws -> ShieldFixture { try #require(current, "the suite's origin and seed did not start") }

    func file(_ name: String) -> OriginFile { files[name]! }

    /// Origin counters, polled until they stop changing (the origin counts a request when it ends).
    func settledStats(quiet: Double = 0.3, timeout: Double = 10) async throws -> OriginStats {
        let deadline = now() + timeout
        var last = try await origin.stats(scratch: dir)
        var stableSince = now()
        while now() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            let s = try await origin.stats(scratch: dir)
            if s.requests != last.requests || s.bodyBytes != last.bodyBytes {
                last = s
                stableSince = now()
            } else if now() - stableSince >= quiet {
                break
            }
        }
        return last
    }

    /// Waits until `/tasks/<id>/meta` says complete (false on timeout).
    func waitComplete(task: String, timeout: Double = 15) async throws -> Bool {
        let deadline = now() + timeout
        while now() < deadline {
            let r = try await curl(seed.base + "/tasks/" + task + "/meta", scratch: dir)
            if r.status == 200, r.text.replacingOccurrences(of: " ", with: "").contains("\"complete\":true") { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

struct SharedShieldTrait: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard DarterBinary.shieldAvailable else { return try await function() }  // the suite is skipped anyway
        raiseFileLimit()
        let dir = makeServerTestDirectory("shield")
        defer { removeTree(dir) }
        let originDir = dir + "/origin"
        try SystemCalls.makeDirectories(originDir)
        let specs: [(String, Int)] = [
            ("empty.bin", 0), ("one.bin", 1), ("small.bin", (100 << 10) + 7), ("medium.bin", (5 << 20) + 3),
            ("herd.bin", (8 << 20) + 123), ("late.bin", 12 << 20), ("drop.bin", (3 << 20) + 11), ("fail.bin", (1 << 20) + 5),
            ("chunked.bin", (2 << 20) + 17), ("short.bin", (2 << 20) + 19), ("norange.bin", (3 << 20) + 23),
            ("gone.bin", 1000), ("digest.bin", (1 << 20) + 29), ("proxy.bin", (2 << 20) + 31), ("preheat.bin", (4 << 20) + 37),
            ("allow.bin", 4096), ("split.bin", (26 << 20) + 41), ("follow.bin", (20 << 20) + 43),
            ("tail.bin", (4 << 20) + 10_000),
        ]
        var files: [String: OriginFile] = [:]
        for (i, (name, size)) in specs.enumerated() {
            let f = OriginFile(name: name, bytes: SplitMix64.bytes(size, seed: 100 + UInt64(i)))
            try writeFile(originDir + "/" + name, f.bytes)
            files[name] = f
        }
        let origin = try await OriginServer.start(dir: originDir)
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        try await ShieldFixture.$current.withValue(ShieldFixture(origin: origin, seed: seed, dir: dir, files: files)) {
            try await function()
        }
        _ = await seed.stop()
        await origin.stop()
    }
}

extension Trait where Self == SharedShieldTrait {
    static var sharedShield: Self { SharedShieldTrait() }
}

@Suite("Origin shield: end to end (darter seed in front of Tests/Fixtures/origin.py)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable,
                "needs `darter seed` with --origin-allow (the origin shield) and Tests/Fixtures/origin.py"),
       .sharedShield)
struct ShieldEndToEndTests {

    // MARK: /download

    @Test("/download of each file is byte-exact: MISS then HIT, X-Darter-Task, HEAD and Range")
    func downloadEachFile() async throws {
        let fx = try ShieldFixture.get()
        for name in ["empty.bin", "one.bin", "small.bin", "medium.bin"] {
            let f = fx.file(name)
            let url = fx.seed.download(fx.origin.url(file: name))
            let r = try await curl(url, scratch: fx.dir)
            #expect(r.status == 200, "\(name): \(r.status) \(printable(r.body))")
            let diff = bodyDiff(r.body, f.bytes)
            #expect(diff == nil, "\(name): \(diff ?? "")")
            #expect(r.headers["content-length"] == "\(f.bytes.count)", "\(name)")
            #expect(r.headers["x-darter-cache"] == "MISS", "\(name): the first request is a miss")
            let task = try #require(r.headers["x-darter-task"], "\(name): X-Darter-Task")
            #expect(try await fx.waitComplete(task: task), "\(name): task \(task) complete after the download")
            let before = try await fx.settledStats().requests(path: f.path)
            let again = try await curl(url, scratch: fx.dir)
            let againDiff = bodyDiff(again.body, f.bytes)
            #expect(again.status == 200 && againDiff == nil, "\(name): second download: \(again.status), \(againDiff ?? "")")
            #expect(again.headers["x-darter-cache"] == "HIT", "\(name): the second request is a hit")
            #expect(again.headers["x-darter-task"] == task)
            let head = try await curl(url, ["-I"], scratch: fx.dir)
            // (curl -I writes the head to its output; that a HEAD carries no body is checked on a
            // kept-alive connection in ServerTests.)
            #expect(head.status == 200 && head.headers["content-length"] == "\(f.bytes.count)", "\(name): HEAD")
            #expect(try await fx.settledStats().requests(path: f.path) == before, "\(name): hits do not go to the origin")
        }
        let f = fx.file("medium.bin")
        let r = try await curl(fx.seed.download(fx.origin.url(file: f.name)), ["-H", "Range: bytes=4194000-4195999"], scratch: fx.dir)
        #expect(r.status == 206)
        #expect(r.headers["content-range"] == "bytes 4194000-4195999/\(f.bytes.count)")
        let diff = bodyDiff(r.body, Array(f.bytes[4_194_000...4_195_999]))
        #expect(diff == nil, "range: \(diff ?? "")")
    }

    @Test("20 concurrent clients on one cold object: all byte-exact, the origin sends the object exactly once")
    func herd() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("herd.bin")
        let port = fx.seed.port, path = fx.seed.downloadPath(fx.origin.url(file: f.name))
        let results = try await offPool { try concurrentGets(port: port, path: path, count: 20, timeout: 60) }
        expectEveryClientExact(results, f.bytes)
        let stats = try await fx.settledStats()
        #expect(stats.bodyBytes(path: f.path) == f.bytes.count,
                "origin body bytes \(stats.bodyBytes(path: f.path)) for an object of \(f.bytes.count) (requests: \(stats.requests(path: f.path)))")
    }

    @Test("--origin-connections 4: an object split over ranged connections arrives byte-exact, and the origin sends each byte once")
    func splitFetch() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("split.bin")
        let dir = makeServerTestDirectory("split")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--origin-connections", "4", "--origin-split-size", "8m"])
        defer { Task { _ = await seed.stop() } }
        let before = try await fx.settledStats()
        let r = try await curl(seed.download(fx.origin.url(file: f.name)), scratch: dir)
        #expect(r.status == 200 && bodyDiff(r.body, f.bytes) == nil, "\(r.status) \(bodyDiff(r.body, f.bytes) ?? "exact")")
        let after = try await fx.settledStats()
        let requests = after.requests(path: f.path) - before.requests(path: f.path)
        let bytes = after.bodyBytes(path: f.path) - before.bodyBytes(path: f.path)
        // 7 pieces of 4 MiB over 4 connections: segments of 2 pieces. A one-byte size probe,
        // the rest of the first segment, and three more segments.
        #expect(requests == 5, "origin requests: \(requests)")
        #expect(bytes == f.bytes.count, "origin body bytes \(bytes) for an object of \(f.bytes.count)")
    }

    @Test("a late joiner (halfway through a slow fetch) gets its first byte well before the fetch ends")
    func lateJoiner() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("late.bin")
        // One origin connection: the object arrives in order, 4 MiB/s (about 3 s).
        let dir = makeServerTestDirectory("late")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--origin-connections", "1"])
        let url = seed.download(fx.origin.url(file: f.name, "drip=4194304"))
        let fileA = dir + "/a.bin", fileB = dir + "/b.bin"
        func size(_ path: String) -> Int {
            var st = stat()
            return stat(path, &st) == 0 ? Int(st.st_size) : 0
        }
        func startCurl(_ out: String, _ tag: String) throws -> ChildProcess {
            try ChildProcess("curl", ["-sS", "--noproxy", "*", "--max-time", "60", "-o", out, "-w", "%{http_code}", url],
                             logPath: dir + "/\(tag).out", errorLogPath: dir + "/\(tag).err")
        }
        let tA0 = now()
        let a = try startCurl(fileA, "a")
        var b: ChildProcess? = nil
        var tB0 = 0.0, tBFirst: Double? = nil, tAEnd: Double? = nil, codeA: Int32? = nil, codeB: Int32? = nil
        while now() - tA0 < 60 && (codeA == nil || codeB == nil) {
            if b == nil && (size(fileA) >= f.bytes.count / 2 || now() - tA0 >= 1.5) {
                tB0 = now()
                b = try startCurl(fileB, "b")
            }
            if b != nil, tBFirst == nil, size(fileB) > 0 { tBFirst = now() }
            if codeA == nil, let code = a.exitCode { codeA = code; tAEnd = now() }
            if let b, codeB == nil, let code = b.exitCode {
                codeB = code
                if tBFirst == nil && size(fileB) > 0 { tBFirst = now() }
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        if codeA == nil { _ = await a.stop(signal: SIGKILL, timeout: 5) }
        if let b, codeB == nil { _ = await b.stop(signal: SIGKILL, timeout: 5) }
        let metrics = try await curl(seed.base + "/metrics", scratch: dir).text
        // Fresh pieces stay in memory until the object has been read through the page cache
        // (the background pass once no client is served), then go.
        var held = metricValue("darter_shield_memory_bytes", in: metrics) ?? -1
        for _ in 0..<400 where held != 0 {  // up to 20 s: the pass runs at idle CPU priority
            try await Task.sleep(for: .milliseconds(50))
            held = metricValue("darter_shield_memory_bytes", in: try await curl(seed.base + "/metrics", scratch: dir).text) ?? -1
        }
        _ = await seed.stop()
        // Both clients' bytes came from the pieces in memory, not from the disk.
        let fromMemory = metricValue("darter_shield_memory_sent_bytes_total", in: metrics) ?? -1
        #expect(fromMemory >= Double(f.bytes.count) * 1.9 && fromMemory <= Double(f.bytes.count) * 2,
                "bytes sent from memory: \(fromMemory) for two clients of \(f.bytes.count) bytes")
        #expect(held == 0, "pieces still held 20 s after both clients finished: \(held)")
        #expect(codeA == 0 && readText(dir + "/a.out") == "200", "first client: curl \(String(describing: codeA)), \(readText(dir + "/a.err"))")
        #expect(codeB == 0 && readText(dir + "/b.out") == "200", "late joiner: curl \(String(describing: codeB)), \(readText(dir + "/b.err"))")
        let diffA = bodyDiff((try? readFile(fileA)) ?? [], f.bytes), diffB = bodyDiff((try? readFile(fileB)) ?? [], f.bytes)
        #expect(diffA == nil, "first client's bytes: \(diffA ?? "")")
        #expect(diffB == nil, "late joiner's bytes: \(diffB ?? "")")
        let end = try #require(tAEnd, "the first client finished")
        let first = try #require(tBFirst, "the late joiner received bytes")
        let fetch = end - tA0
        #expect(fetch > 1.5, "the dripped fetch took \(fetch)s: too fast for the test to mean anything")
        #expect(first < end - 0.25 * fetch,
                "late joiner started at \(tB0 - tA0)s, first body byte at \(first - tA0)s, the fetch ended at \(fetch)s")
        let stats = try await fx.settledStats()
        #expect(stats.bodyBytes(path: f.path) == f.bytes.count, "one origin fetch for both clients")
    }

    @Test("a fetch holds in memory what its pieces need: 4 MiB + 10,000 bytes take 4 MiB + 12 KiB, not two whole pieces")
    func lastPieceBufferFitsTheObject() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("tail.bin")
        let dir = makeServerTestDirectory("tail")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        defer { Task { _ = await seed.stop() } }
        // The pieces are held until the object has been read through the page cache, which
        // waits for 250 ms without clients: a machine that stalls longer between the download
        // and the metrics request sees 0, so up to three fetches (each a new object).
        var seen: [Double] = []
        for round in 0..<3 where seen.allSatisfy({ $0 == 0 }) {
            let r = try await curl(seed.download(fx.origin.url(file: f.name, "round=\(round)")), scratch: dir)
            #expect(r.status == 200 && bodyDiff(r.body, f.bytes) == nil, "round \(round): \(r.status)")
            seen.append(metricValue("darter_shield_memory_bytes", in: try await curl(seed.base + "/metrics", scratch: dir).text) ?? -1)
        }
        #expect(seen.last == Double((4 << 20) + alignUp(10_000)), "bytes held in memory right after each fetch: \(seen)")
    }

    @Test("--follow-memory 0: 8 clients behind a slow fetch read every piece from the store; all byte-exact, one origin fetch")
    func followMemoryOverflow() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("follow.bin")
        let dir = makeServerTestDirectory("follow")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--follow-memory", "0"])
        defer { Task { _ = await seed.stop() } }
        let port = seed.port, path = seed.downloadPath(fx.origin.url(file: f.name, "drip=16777216"))
        let results = try await offPool { try concurrentGets(port: port, path: path, count: 8, timeout: 60) }
        expectEveryClientExact(results, f.bytes)
        let metrics = try await curl(seed.base + "/metrics", scratch: dir).text
        let fromMemory = metricValue("darter_shield_memory_sent_bytes_total", in: metrics) ?? -1
        #expect(fromMemory == 0, "bytes sent from memory: \(fromMemory)")
        #expect(metricValue("darter_shield_memory_bytes", in: metrics) == 0)
        let stats = try await fx.settledStats()
        #expect(stats.bodyBytes(path: f.path) == f.bytes.count, "origin body bytes \(stats.bodyBytes(path: f.path))")
    }

    @Test("--page-cache-on-ingest false: a client following a fetch and a hit right after it (from disk) get exact bytes")
    func pageCacheOnIngest() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("medium.bin")
        let dir = makeServerTestDirectory("pagecache")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--page-cache-on-ingest", "false"])
        defer { Task { _ = await seed.stop() } }
        let url = seed.download(fx.origin.url(file: f.name, "pagecache=1"))
        let cold = try await curl(url, scratch: dir)
        let warm = try await curl(url, scratch: dir)
        #expect(cold.status == 200 && bodyDiff(cold.body, f.bytes) == nil, "cold: \(cold.status) \(bodyDiff(cold.body, f.bytes) ?? "exact")")
        #expect(warm.status == 200 && bodyDiff(warm.body, f.bytes) == nil, "warm: \(warm.status) \(bodyDiff(warm.body, f.bytes) ?? "exact")")
    }

    @Test("bad shield flags are refused with a message naming the flag")
    func badFlags() async throws {
        let fx = try ShieldFixture.get()
        try writeFile(fx.dir + "/not-auth.json", Array(#"{"auths": {"r.example": {"auth": "not base64!"}}}"#.utf8))
        for (flag, value) in [("--page-cache-on-ingest", "maybe"), ("--follow-memory", "lots"), ("--origin-split-size", "1m"),
                              ("--registry-auth-file", fx.dir + "/no-such-file"), ("--registry-auth-file", fx.dir + "/not-auth.json")] {
            let r = try await runProcess(DarterBinary.path, ["seed", "--data-dir", fx.dir + "/unused", flag, value], scratch: fx.dir, timeout: 10)
            #expect(r.exitCode != 0 && r.stderr.contains(flag), "\(flag) \(value): exit \(r.exitCode), \(r.stderr)")
        }
    }

    // MARK: origin failures

    @Test("?drop=N: Darter resumes with Range; the client gets exact bytes")
    func dropResume() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("drop.bin")
        let r = try await curl(fx.seed.download(fx.origin.url(file: f.name, "drop=2097152")), scratch: fx.dir)
        let diff = bodyDiff(r.body, f.bytes)
        #expect(r.status == 200 && diff == nil, "\(r.status), \(diff ?? "exact")")
        let stats = try await fx.settledStats()
        #expect(stats.requests(path: f.path) >= 2, "origin requests: \(stats.requests)")
    }

    @Test("?fail=2: the two 503s are retried; exact bytes")
    func failRetried() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("fail.bin")
        let r = try await curl(fx.seed.download(fx.origin.url(file: f.name, "fail=2")), scratch: fx.dir)
        let diff = bodyDiff(r.body, f.bytes)
        #expect(r.status == 200 && diff == nil, "\(r.status), \(diff ?? "exact")")
        let stats = try await fx.settledStats()
        #expect(stats.requests(path: f.path) >= 3, "origin requests: \(stats.requests)")
    }

    @Test("?chunked=1 (no Content-Length from the origin): exact bytes")
    func chunkedOrigin() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("chunked.bin")
        let r = try await curl(fx.seed.download(fx.origin.url(file: f.name, "chunked=1")), scratch: fx.dir)
        let diff = bodyDiff(r.body, f.bytes)
        #expect(r.status == 200 && diff == nil, "\(r.status), \(diff ?? "exact")")
    }

    @Test("?short=N (the origin sends less than its Content-Length): never a 200 with a short body")
    func shortBody() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("short.bin")
        let url = fx.seed.download(fx.origin.url(file: f.name, "short=1048576"))
        for attempt in 1...2 {  // the second must not find a short object cached as complete
            let r = try await curlResult(url, scratch: fx.dir, maxTime: 30)
            if r.exitCode == 0 && r.status == 200 {
                let diff = bodyDiff(r.body, f.bytes)
                #expect(diff == nil, "attempt \(attempt): 200 with \(diff ?? "")")
            } else {
                // An error status, or the connection closed (curl 18: partial file, 52, 56).
                #expect(r.exitCode != 0 || r.status >= 400, "attempt \(attempt): curl \(r.exitCode), status \(r.status)")
            }
        }
    }

    @Test("?norange=1 with ?drop: the origin ignores Range and always dies at the same byte: a clean failure, never a wrong 200")
    func noRangeDrop() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("norange.bin")
        // Every attempt restarts at byte 0 (no Range) and ends before 1 MiB, so the object can
        // never be completed: the client must see an error or a closed connection.
        let r = try await curlResult(fx.seed.download(fx.origin.url(file: f.name, "norange=1&drop=1048576")), scratch: fx.dir)
        #expect(r.exitCode != 0 || r.status >= 400, "curl \(r.exitCode), status \(r.status), \(r.body.count) bytes of \(f.bytes.count)")
        let wrong200 = r.exitCode == 0 && r.status == 200 && bodyDiff(r.body, f.bytes) != nil
        #expect(!wrong200, "never a 200 with wrong bytes")
        let stats = try await fx.settledStats()
        #expect(stats.requests(path: f.path) >= 2, "the shield retried: origin requests \(stats.requests)")
    }

    @Test("?norange=1 with a drop past a first resume: the shield skips what it has and finishes exactly")
    func noRangeRecovers() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("small.bin")
        // fail=1: the first request gets 503, the retry (no Range on the first byte) succeeds.
        let r = try await curl(fx.seed.download(fx.origin.url(file: f.name, "norange=1&fail=1")), scratch: fx.dir)
        let diff = bodyDiff(r.body, f.bytes)
        #expect(r.status == 200 && diff == nil, "\(r.status), \(diff ?? "exact")")
    }

    @Test("an origin 404 is passed through and remembered briefly (no second origin request within 10 s)")
    func notFoundRemembered() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("gone.bin")
        let url = fx.seed.download(fx.origin.url(file: f.name, "status=404"))
        let t0 = now()
        let first = try await curl(url, scratch: fx.dir)
        let second = try await curl(url, scratch: fx.dir)
        let elapsed = now() - t0
        #expect(first.status == 404 && second.status == 404, "\(first.status), \(second.status)")
        let stats = try await fx.settledStats()
        #expect(stats.requests(f.path + "?status=404") == 1 || elapsed > 10,
                "origin requests \(stats.requests(f.path + "?status=404")) for two requests in \(elapsed)s")
    }

    // MARK: digests

    @Test("digest=: the right one serves exact bytes; a wrong one fails and is never served as complete")
    func digests() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("digest.bin")
        let wrongHex = String(repeating: "0", count: 63) + "1"
        let bad = try await curlResult(fx.seed.download(fx.origin.url(file: f.name, "v=wrong"), digest: "sha256:" + wrongHex),
                                       scratch: fx.dir, maxTime: 30)
        #expect(bad.exitCode != 0 || bad.status >= 400, "wrong digest: curl \(bad.exitCode), status \(bad.status), \(bad.body.count) bytes")
        // Neither the task named in the response nor the wrong digest is served as complete content.
        var ids = [wrongHex, "sha256:" + wrongHex]
        if let task = bad.headers["x-darter-task"] { ids.append(task) }
        for id in ids {
            let r = try await curlResult(fx.seed.base + "/tasks/" + id, scratch: fx.dir, maxTime: 10)
            #expect(!(r.exitCode == 0 && r.status == 200), "/tasks/\(id) after a digest mismatch: \(r.status), \(r.body.count) bytes")
            let meta = try await curlResult(fx.seed.base + "/tasks/" + id + "/meta", scratch: fx.dir, maxTime: 10)
            #expect(!(meta.status == 200 && meta.text.replacingOccurrences(of: " ", with: "").contains("\"complete\":true")),
                    "/tasks/\(id)/meta after a digest mismatch: \(printable(meta.body))")
        }
        let again = try await curlResult(fx.seed.download(fx.origin.url(file: f.name, "v=wrong"), digest: "sha256:" + wrongHex),
                                         scratch: fx.dir, maxTime: 30)
        #expect(again.exitCode != 0 || again.status >= 400, "wrong digest again: curl \(again.exitCode), status \(again.status)")
        let good = try await curl(fx.seed.download(fx.origin.url(file: f.name, "v=right"), digest: f.digest), scratch: fx.dir)
        let diff = bodyDiff(good.body, f.bytes)
        #expect(good.status == 200 && diff == nil, "right digest: \(good.status), \(diff ?? "exact")")
    }

    // MARK: forward proxy

    @Test("forward proxy: curl -x gets exact bytes, the second time from the cache")
    func forwardProxy() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("proxy.bin")
        let proxy = ["-x", fx.seed.base]
        let r = try await curl(fx.origin.url(file: f.name), proxy, scratch: fx.dir)
        let diff = bodyDiff(r.body, f.bytes)
        #expect(r.status == 200 && diff == nil, "\(r.status), \(diff ?? "exact")")
        if let task = r.headers["x-darter-task"] {
            #expect(try await fx.waitComplete(task: task))
        }
        let before = try await fx.settledStats().requests(path: f.path)
        let again = try await curl(fx.origin.url(file: f.name), proxy, scratch: fx.dir)
        let againDiff = bodyDiff(again.body, f.bytes)
        #expect(again.status == 200 && againDiff == nil, "second proxied GET: \(again.status), \(againDiff ?? "exact")")
        #expect(try await fx.settledStats().requests(path: f.path) == before, "the second proxied GET is served from the cache")
    }

    @Test("CONNECT is 405 with a one-line reason; every 405 carries Allow")
    func connectRefused() async throws {
        let fx = try ShieldFixture.get()
        let port = fx.seed.port
        let r = try await offPool {
            let c = try RawConnection(port: port)
            try c.send("CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
            return try c.readResponse()
        }
        #expect(r.status == 405, "\(r.statusLine)")
        #expect(r.headers["allow"] == "GET, HEAD")
        let reason = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!reason.isEmpty && !reason.contains("\n"), "reason: \(printable(r.body))")
        // Every 405 names what is allowed.
        for (args, path, allow) in [(["-X", "PUT"], "/download?url=x", "GET, HEAD"), (["-X", "GET"], "/preheat", "POST"),
                                    (["-X", "DELETE"], "/healthz", "GET, HEAD")] {
            let other = try await curl(fx.seed.base + path, args, scratch: fx.dir)
            #expect(other.status == 405 && other.headers["allow"] == allow, "\(args) \(path): \(other.status) Allow \(other.headers["allow"] ?? "none")")
        }
    }

    // MARK: allowlist and bad URLs

    @Test("origins outside --origin-allow are 403 (and never contacted); link-local metadata is 403 by default; bad url is 400")
    func allowlist() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("allow.bin")
        for url in ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/"] {
            let r = try await curlResult(fx.seed.download(url), scratch: fx.dir, maxTime: 10)
            #expect(r.exitCode == 0 && r.status == 403, "\(url): curl \(r.exitCode), status \(r.status)")
            let hasReason = !r.body.isEmpty
            #expect(hasReason, "\(url): a reason")
        }
        for path in ["/download", "/download?url=not-a-url", "/download?url=" + percentEncode("http://")] {
            let r = try await curlResult(fx.seed.base + path, scratch: fx.dir, maxTime: 10)
            #expect(r.status == 400, "\(path): \(r.status)")
        }
        let dir = makeServerTestDirectory("allow")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--origin-allow", "10.0.0.0/8,example.com"])
        let viaDownload = try await curlResult(seed.download(fx.origin.url(file: f.name)), scratch: fx.dir, maxTime: 10)
        let viaProxy = try await curlResult(fx.origin.url(file: f.name), ["-x", seed.base], scratch: fx.dir, maxTime: 10)
        // The registry mirror too: containerd's ?ns= names the upstream, and it comes from the client.
        let viaMirror = try await curlResult(seed.base + "/v2/x/blobs/sha256:" + String(repeating: "a", count: 64)
                                             + "?ns=127.0.0.1:\(fx.origin.port)", scratch: fx.dir, maxTime: 10)
        _ = await seed.stop()
        let metadataViaMirror = try await curlResult(fx.seed.base + "/v2/x/manifests/latest?ns=169.254.169.254", scratch: fx.dir, maxTime: 10)
        #expect(metadataViaMirror.status == 403, "mirror ?ns=169.254.169.254: \(metadataViaMirror.status) \(printable(metadataViaMirror.body))")
        #expect(viaMirror.status == 403, "mirror ?ns= outside the allowlist: \(viaMirror.status) \(printable(viaMirror.body))")
        let hasReason = !viaDownload.body.isEmpty
        #expect(viaDownload.status == 403 && hasReason, "/download: \(viaDownload.status) \(printable(viaDownload.body))")
        #expect(viaProxy.status == 403, "proxy: \(viaProxy.status)")
        #expect(try await fx.settledStats().requests(path: f.path) == 0, "a refused origin is never contacted")
    }

    // MARK: preheat

    @Test("a redirect to cloud metadata (169.254.169.254) from an allowed origin is 403, checked at connect time")
    func redirectToMetadataRefused() async throws {
        let fx = try ShieldFixture.get()
        let target = "http://169.254.169.254/latest/meta-data/"
        let url = fx.seed.download(fx.origin.url(file: "redirect.bin", "redirect=\(target)"))
        let started = now()
        let r = try await curl(url, scratch: fx.dir)
        #expect(r.status == 403 && r.text.contains("169.254.169.254") && r.text.contains("not allowed"), "\(r.status) \(r.text)")
        // Refused before connecting: no connect timeout, no retries with backoff.
        #expect(now() - started < 3, "took \(now() - started)s")
    }

    @Test("POST /preheat → 202; GET /preheat/{id} reaches succeeded; a following /download is a HIT")
    func preheat() async throws {
        let fx = try ShieldFixture.get()
        let f = fx.file("preheat.bin")
        let body = "{\"url\": \"\(fx.origin.url(file: f.name))\", \"headers\": {\"X-Darter-Test\": \"preheat\"}}"
        let r = try await curl(fx.seed.base + "/preheat", ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body],
                               scratch: fx.dir)
        #expect(r.status == 202, "\(r.status) \(printable(r.body))")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any], "JSON: \(printable(r.body))")
        let id = try #require(json["id"] as? String, "id in \(printable(r.body))")
        #expect(json["task"] is String, "task in \(printable(r.body))")
        var state = "", last = ""
        let deadline = now() + 30
        while now() < deadline {
            let s = try await curl(fx.seed.base + "/preheat/" + id, scratch: fx.dir)
            #expect(s.status == 200)
            last = printable(s.body)
            let status = (try? JSONSerialization.jsonObject(with: Data(s.body))) as? [String: Any]
            state = status?["state"] as? String ?? ""
            if state == "succeeded" {
                #expect((status?["bytes"] as? NSNumber)?.intValue == f.bytes.count, "\(last)")
                #expect(status?["id"] as? String == id && status?["task"] as? String == json["task"] as? String, "\(last)")
            }
            if state == "succeeded" || state == "failed" { break }
            #expect(["pending", "running"].contains(state), "\(last)")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(state == "succeeded", "last status: \(last)")
        let before = try await fx.settledStats().requests(path: f.path)
        let d = try await curl(fx.seed.download(fx.origin.url(file: f.name)), scratch: fx.dir)
        let diff = bodyDiff(d.body, f.bytes)
        #expect(d.status == 200 && diff == nil, "download after preheat: \(d.status), \(diff ?? "exact")")
        #expect(d.headers["x-darter-cache"] == "HIT", "after preheat: \(d.headers["x-darter-cache"] ?? "no X-Darter-Cache")")
        #expect(try await fx.settledStats().requests(path: f.path) == before)
        let unknown = try await curlResult(fx.seed.base + "/preheat/no-such-id", scratch: fx.dir, maxTime: 10)
        #expect(unknown.status == 404, "unknown preheat id: \(unknown.status)")
    }

    @Test("bad preheat jobs are 400 with a reason naming the field", arguments: [
        (#"{"url": "http://127.0.0.1:1/a", "image": "alpine"}"#, "not both"),
        (#"{}"#, "needs \"url\""),
        (#"{"image": "Alpine"}"#, "\"image\""),
        (#"{"image": "alpine@sha256:00"}"#, "sha256:<64 lowercase hex>"),
        (#"{"image": "alpine", "digest": "sha256:00"}"#, "\"digest\" is for \"url\""),
        (#"{"image": "alpine", "headers": {"A": "b"}}"#, "\"headers\" are for \"url\""),
        (#"{"image": "alpine", "platform": "linux"}"#, "\"platform\" must be"),
        (#"{"url": "http://127.0.0.1:1/a", "platform": "linux/amd64"}"#, "\"platform\" is for \"image\""),
        (#"{"url": 1}"#, "must be JSON"),
    ])
    func badPreheatJobs(body: String, reason: String) async throws {
        let fx = try ShieldFixture.get()
        let r = try await curl(fx.seed.base + "/preheat", ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body], scratch: fx.dir)
        #expect(r.status == 400 && r.text.contains(reason), "\(body): \(r.status) \(r.text)")
    }
}

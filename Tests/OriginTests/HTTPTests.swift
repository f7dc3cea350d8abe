#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
import DarterIO
import Origin
import HTTPCore

@Suite("Origin backends over HTTP (origin.py): libcurl and the event loops' client")
struct HTTPTests {

    @Test(arguments: HTTPBackendKind.allCases) func fullGETStreamsEveryByteInOrder(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: sink)
        #expect(head.status == 200)
        #expect(sink.heads.count == 1)
        #expect(!sink.bodyBeforeHead)
        #expect(head.contentLength == Int64(OriginServer.sharedSmall.count))
        #expect(head.totalLength == Int64(OriginServer.sharedSmall.count))
        #expect(head.contentRange == nil)
        #expect(head.etag?.hasPrefix("\"") == true)
        #expect(head.lastModified?.hasSuffix("GMT") == true)
        #expect(head.contentType == "application/octet-stream")
        #expect(head.acceptsRanges)
        #expect(head.header("Content-Length") == String(OriginServer.sharedSmall.count))
        #expect(head.headers.allSatisfy { $0.name == $0.name.lowercased() })
        #expect(head.effectiveURL == origin.url("/files/small.bin"))
        #expect(sink.body.count == OriginServer.sharedSmall.count)
        #expect(sha256Hex(sink.body) == sha256Hex(OriginServer.sharedSmall))
    }

    @Test(arguments: HTTPBackendKind.allCases) func headHasNoBody(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin"), method: "HEAD"), into: sink)
        #expect(head.status == 200)
        #expect(sink.heads.count == 1)
        #expect(head.contentLength == Int64(OriginServer.sharedSmall.count))
        #expect(head.totalLength == Int64(OriginServer.sharedSmall.count))
        #expect(sink.body.isEmpty)
    }

    @Test(arguments: HTTPBackendKind.allCases) func emptyBody(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/empty.bin")), into: sink)
        #expect(head.status == 200)
        #expect(sink.heads.count == 1)
        #expect(head.contentLength == 0)
        #expect(head.totalLength == 0)
        #expect(sink.body.isEmpty)
    }

    @Test(arguments: HTTPBackendKind.allCases) func rangeGives206WithContentRange(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let total = Int64(OriginServer.sharedSmall.count)
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin"), range: 100..<1100), into: sink)
        #expect(head.status == 206)
        #expect(head.contentRange == HTTPContentRange(first: 100, last: 1099, completeLength: total))
        #expect(head.totalLength == total)
        #expect(head.contentLength == 1000)
        #expect(head.acceptsRanges)
        expectSameBytes(sink.body, Array(OriginServer.sharedSmall[100..<1100]))

        let tail = CollectingSink()
        let tailHead = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin"), range: 1_000_000..<Int64.max), into: tail)
        #expect(tailHead.status == 206)
        #expect(tailHead.contentRange == HTTPContentRange(first: 1_000_000, last: total - 1, completeLength: total))
        expectSameBytes(tail.body, Array(OriginServer.sharedSmall[1_000_000...]))
    }

    @Test(arguments: HTTPBackendKind.allCases) func rangeIgnoredByOriginGives200(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin?norange=1"), range: 0..<1), into: sink)
        #expect(head.status == 200)
        #expect(head.contentRange == nil)
        #expect(head.totalLength == Int64(OriginServer.sharedSmall.count))
        #expect(!head.acceptsRanges)
        expectSameBytes(sink.body, OriginServer.sharedSmall)
    }

    @Test(arguments: HTTPBackendKind.allCases) func redirectsAreFollowed(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/elsewhere?redirect=/files/small.bin")), into: sink)
        #expect(head.status == 200)
        #expect(head.effectiveURL == origin.url("/files/small.bin"))
        #expect(sink.heads.count == 1)
        #expect(sink.heads[0].status == 200)
        expectSameBytes(sink.body, OriginServer.sharedSmall)
    }

    @Test(arguments: HTTPBackendKind.allCases) func redirectLoopThrowsTooManyRedirects(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        var config = OriginConfiguration()
        config.maxRedirects = 3
        let error = await expectOriginError { () async throws(OriginError) in
            try await kind.make(config).fetch(OriginRequest(url: origin.url("/files/loop?redirect=self")), into: CollectingSink())
        }
        guard case .tooManyRedirects(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("/files/loop"))
    }

    @Test(arguments: HTTPBackendKind.allCases) func authorizationIsNotSentToAnotherHostOnRedirect(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let other = "http://localhost:\(origin.port)/__echo"
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/r?redirect=\(other)"),
                                                        headers: [("Authorization", "Bearer secret"), ("X-Custom", "kept")]), into: sink)
        #expect(head.status == 200)
        #expect(head.effectiveURL == other)
        let echo = try jsonObject(sink.text)
        let names = ((echo["headers"] as? [[String]]) ?? []).map { $0[0].lowercased() }
        #expect(!names.contains("authorization"))
        #expect(!names.contains("accept-encoding"))
        #expect(names.contains("x-custom"))
    }

    /// The allowlist is asked on every connection, with the host of the URL the transfer is at
    /// (as libcurl parses it) and the address: a redirect's target is refused before anything
    /// is sent there.
    @Test(arguments: HTTPBackendKind.allCases) func allowlistChecksEveryConnectionIncludingRedirects(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        var config = OriginConfiguration()
        config.allowlist = try OriginAllowlist.parse("127.0.0.1").get()
        let client = kind.make(config)
        let ok = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: CollectingSink())
        #expect(ok.status == 200)
        // 127.0.0.2 is loopback too, but not in the list: refused at connect, never contacted.
        let other = "http://127.0.0.2:\(origin.port)/__echo"
        let error = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/r?redirect=\(other)")), into: CollectingSink())
        }
        guard case .refused(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("127.0.0.2") && message.contains("is not allowed"), "\(message)")

        // A host-name entry is matched against the URL's host, not the address it resolves to.
        config.allowlist = try OriginAllowlist.parse("localhost").get()
        let byName = kind.make(config)
        let named = try await byName.fetch(OriginRequest(url: "http://localhost:\(origin.port)/files/small.bin"), into: CollectingSink())
        #expect(named.status == 200)
        let byAddress = await expectOriginError { () async throws(OriginError) in
            try await byName.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: CollectingSink())
        }
        guard case .refused = byAddress else { Issue.record("127.0.0.1 passed a list naming only localhost: \(String(describing: byAddress))"); return }
    }

    @Test(arguments: HTTPBackendKind.allCases) func metadataAddressesAreRefusedByDefault(_ kind: HTTPBackendKind) async throws {
        let error = await expectOriginError { () async throws(OriginError) in
            try await kind.make().fetch(OriginRequest(url: "http://169.254.169.254/latest/meta-data/"), into: CollectingSink())
        }
        guard case .refused(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("169.254.169.254"))
    }

    @Test(arguments: HTTPBackendKind.allCases) func requestHeadersAreSentWithoutAcceptEncoding(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        _ = try await client.fetch(OriginRequest(url: origin.url("/__echo"), headers: [("X-Test", "yes")]), into: sink)
        let echo = try jsonObject(sink.text)
        let headers = (echo["headers"] as? [[String]]) ?? []
        #expect(headers.contains(["X-Test", "yes"]))
        #expect(headers.contains(["User-Agent", "darter"]))
        #expect(!headers.contains { $0[0].lowercased() == "accept-encoding" })
    }

    @Test(arguments: HTTPBackendKind.allCases) func droppedConnectionThrowsTransferFailed(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let error = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/small.bin?drop=5000")), into: CollectingSink())
        }
        guard case .transferFailed(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("small.bin"))
    }

    @Test(arguments: HTTPBackendKind.allCases) func shortBodyThrowsTransferFailed(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let error = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/small.bin?short=70000")), into: sink)
        }
        guard case .transferFailed(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(kind == .loop || message.contains("curl error 18"), "\(message)")
        expectSameBytes(sink.body, Array(OriginServer.sharedSmall[0..<70000]))
    }

    @Test(arguments: HTTPBackendKind.allCases) func chunkedBodyHasNoLength(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin?chunked=1")), into: sink)
        #expect(head.status == 200)
        #expect(head.contentLength == nil)
        #expect(head.totalLength == nil)
        expectSameBytes(sink.body, OriginServer.sharedSmall)
    }

    @Test(arguments: HTTPBackendKind.allCases) func errorStatusIsReturnedNotThrown(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let sink = CollectingSink()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin?status=404")), into: sink)
        #expect(head.status == 404)
        #expect(head.totalLength == nil)
        #expect(sink.text == "status 404\n")
        let missing = try await client.fetch(OriginRequest(url: origin.url("/files/nope.bin")), into: CollectingSink())
        #expect(missing.status == 404)
    }

    @Test(arguments: HTTPBackendKind.allCases) func failThenSucceed(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let url = origin.url("/files/small.bin?fail=1&tag=\(UInt32.random(in: 0...UInt32.max))")
        let first = try await client.fetch(OriginRequest(url: url), into: CollectingSink())
        #expect(first.status == 503)
        let sink = CollectingSink()
        let second = try await client.fetch(OriginRequest(url: url), into: sink)
        #expect(second.status == 200)
        expectSameBytes(sink.body, OriginServer.sharedSmall)
    }

    @Test(arguments: HTTPBackendKind.allCases) func closedPortThrowsConnectFailed(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let port = closedPort()
        let error = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: "http://127.0.0.1:\(port)/x"), into: CollectingSink())
        }
        guard case .connectFailed(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("127.0.0.1:\(port)"))
    }

    @Test(arguments: HTTPBackendKind.allCases) func slowBodyThrowsTimedOut(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        var config = OriginConfiguration()
        config.lowSpeedLimitBytesPerSecond = 1000
        config.lowSpeedTimeSeconds = 2
        let started = ContinuousClock.now
        let error = await expectOriginError { () async throws(OriginError) in
            try await kind.make(config).fetch(OriginRequest(url: origin.url("/files/small.bin?drip=100")), into: CollectingSink())
        }
        guard case .timedOut = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test(arguments: HTTPBackendKind.allCases) func sinkAbortsAtHeadOrBody(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let atHead = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: AbortingSink(atHead: true))
        }
        #expect(atHead == .aborted)
        let sink = AbortingSink(atHead: false, afterBytes: 1)
        let inBody = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: sink)
        }
        #expect(inBody == .aborted)
        #expect(sink.bytes > 0 && sink.bytes < OriginServer.sharedSmall.count)
        // A HEAD (no body) aborted at the head.
        let headOnly = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: origin.url("/files/small.bin"), method: "HEAD"), into: AbortingSink(atHead: true))
        }
        #expect(headOnly == .aborted)
    }

    @Test(arguments: HTTPBackendKind.allCases) func cancellingTheTaskAborts(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let url = origin.url("/files/small.bin?drip=1000")
        let task = Task { () async throws(OriginError) -> OriginResponseHead in
            try await client.fetch(OriginRequest(url: url), into: CollectingSink())
        }
        try await Task.sleep(for: .milliseconds(300))
        let started = ContinuousClock.now
        task.cancel()
        let result = await task.result
        #expect(ContinuousClock.now - started < .seconds(3))
        guard case .failure(let error) = result else { Issue.record("transfer was not cancelled"); return }
        #expect((error as? OriginError) == .aborted)
    }

    @Test(arguments: HTTPBackendKind.allCases) func badRequestsThrowBeforeConnecting(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let ftp = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: "ftp://127.0.0.1/x"), into: CollectingSink())
        }
        guard case .unsupportedScheme = ftp else { Issue.record("got \(String(describing: ftp))"); return }
        let junk = await expectOriginError { () async throws(OriginError) in
            try await client.fetch(OriginRequest(url: "not a url"), into: CollectingSink())
        }
        guard case .invalidURL = junk else { Issue.record("got \(String(describing: junk))"); return }
        var config = OriginConfiguration()
        config.s3 = S3Configuration(environment: [:])
        let s3 = await expectOriginError { () async throws(OriginError) in
            try await kind.make(config).fetch(OriginRequest(url: "s3://bucket/key"), into: CollectingSink())
        }
        guard case .missingCredentials = s3 else { Issue.record("got \(String(describing: s3))"); return }
    }

    @Test(arguments: HTTPBackendKind.allCases) func concurrentTransfers(_ kind: HTTPBackendKind) async throws {
        let client = kind.make()
        let origin = try await OriginServer.shared()
        let url = origin.url("/files/small.bin")
        let digests = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<8 {
                group.addTask {
                    let sink = CollectingSink()
                    _ = try await client.fetch(OriginRequest(url: url, range: Int64(i * 1000)..<Int64.max), into: sink)
                    return "\(i):\(sha256Hex(sink.body))"
                }
            }
            var out: [String] = []
            for try await d in group { out.append(d) }
            return out.sorted()
        }
        #expect(digests == (0..<8).map { "\($0):\(sha256Hex(Array(OriginServer.sharedSmall[($0 * 1000)...])))" })
    }
}

@Suite("OriginClient memory", .serialized)
struct MemoryTests {
    @Test(arguments: HTTPBackendKind.allCases) func sinkIsReleasedAfterTheFetch(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        let client = kind.make()
        weak var released: CollectingSink?
        do {
            let sink = CollectingSink()
            released = sink
            let head = try await client.fetch(OriginRequest(url: origin.url("/files/small.bin")), into: sink)
            #expect(head.status == 200)
        }
        // The loop may drop its last reference a moment after the fetch returned.
        for _ in 0..<100 where released != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(released == nil, "the sink (and all it holds) outlives its fetch")
    }

    @Test(arguments: HTTPBackendKind.allCases) func largeDownloadKeepsMemoryBounded(_ kind: HTTPBackendKind) async throws {
        let origin = try await OriginServer.shared()
        let client = kind.make()
        let sink = DiscardingSink()
        let before = SystemCalls.residentBytes()
        let head = try await client.fetch(OriginRequest(url: origin.url("/files/big.bin")), into: sink)
        let after = SystemCalls.residentBytes()
        #expect(head.status == 200)
        #expect(sink.bytes == OriginServer.sharedBigSize)
        let growth = max(sink.maxResident, after) - before
        // RSS is the whole test process's: suites running alongside allocate (with the swarm
        // suites, up to 138 MiB was seen with a bounded client). Buffering the body would grow
        // it by the body's 512 MiB; half of that still tells the two apart.
        #expect(growth < 256 << 20, "RSS grew by \(growth >> 20) MiB")
    }
}

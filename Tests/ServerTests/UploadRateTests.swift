#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO
import HTTPCore
@testable import HTTPServer
import DarterTestSupport

/// A body of bytes in memory, sent as `.memory` extents (as a fresh piece of a fetch is).
final class MemoryBody: FileBodySource {
    let buffer: SharedIOBuffer
    let length: Int64
    init(_ bytes: [UInt8]) {
        let b = IOBuffer(capacity: bytes.count)
        b.copyBytes(from: bytes)
        buffer = SharedIOBuffer(b)
        length = Int64(bytes.count)
    }
    func extent(at position: Int64, maxLength: Int) -> BodyExtent? {
        .memory(buffer, offset: Int(position), length: min(maxLength, Int(length - position)))
    }
    func waitForData(at position: Int64, _ ready: @escaping @Sendable ((any Error)?) -> Void) { ready(nil) }
}

/// Answers every request with the same bytes as a file body.
final class FixedBodyHandler: HTTPHandler {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        var head = HTTPResponseHead(status: 200)
        head.setContentLength(bytes.count)
        respond(Response(head: head, body: .file(MemoryBody(bytes))))
    }
}

/// The server's side of `--upload-rate` in process: what the end-to-end tests cannot time.
@Suite("HTTPServer under an upload limit")
struct UploadRateTests {
    func server(_ bytes: [UInt8], limit: RateLimiter, sendTimeout: Int64 = 60, coversLoopback: Bool = true) throws -> HTTPServer {
        var config = ServerConfiguration()
        config.port = 0
        config.loops = 1
        config.sendTimeout = sendTimeout
        config.uploadLimit = limit
        config.uploadLimitCoversLoopback = coversLoopback
        let server = try HTTPServer(configuration: config, handler: FixedBodyHandler(bytes))
        server.start()
        return server
    }

    /// One GET over a raw connection, off the cooperative pool.
    func get(_ server: HTTPServer) async throws -> RawResponse {
        let port = server.port
        return try await offPool { () throws -> RawResponse in
            let c = try RawConnection(port: port, timeout: 20)
            try c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            return try c.readResponse()
        }
    }

    @Test("a response held back by the limit longer than --send-timeout is paced, not dropped as stalled")
    func waitsAreNotStalls() async throws {
        // 10 KiB/s: 16 KiB takes (and burst), so each take after the first waits 1.6 s.
        let limit = RateLimiter(bytesPerSecond: 10 << 10)
        #expect(limit.chunk == 16 << 10 && limit.burst == 16 << 10)
        let bytes = SplitMix64.bytes(48 << 10, seed: 11)
        let server = try server(bytes, limit: limit, sendTimeout: 1)
        let start = SystemCalls.monotonicNanoseconds()
        let r = try await get(server)
        let seconds = Double(SystemCalls.monotonicNanoseconds() - start) / 1e9
        #expect(r.status == 200 && r.body == bytes, "\(r.status), \(r.body.count) bytes")
        // The burst at once, then two waits of 1.6 s.
        #expect(seconds >= 3.1, "\(seconds) s")
        #expect(limit.bytesTaken == bytes.count)
        await server.shutdown(grace: .milliseconds(100))
    }

    @Test("a client on loopback is not paced unless the configuration says so (this host's own readers)")
    func loopbackIsExempt() async throws {
        let limit = RateLimiter(bytesPerSecond: 5 << 10)
        let bytes = SplitMix64.bytes(256 << 10, seed: 13)
        let server = try server(bytes, limit: limit, coversLoopback: false)
        let start = SystemCalls.monotonicNanoseconds()
        let r = try await get(server)
        #expect(r.status == 200 && r.body == bytes)
        #expect(Double(SystemCalls.monotonicNanoseconds() - start) / 1e9 < 20, "256 KiB at 5 KiB/s would take 51 s")
        #expect(limit.bytesTaken == 0)
        await server.shutdown(grace: .milliseconds(100))
    }

    @Test("shutdown closes a connection that waits for the limit at once (its timer does not hold it)")
    func shutdownEndsTheWait() async throws {
        // 1 KiB/s: after the first 16 KiB, the next take waits 16 s.
        let limit = RateLimiter(bytesPerSecond: 1 << 10)
        let bytes = SplitMix64.bytes(64 << 10, seed: 12)
        let server = try server(bytes, limit: limit)
        let port = server.port
        let c = try await offPool { () throws -> SendableBox<RawConnection> in
            let c = try RawConnection(port: port, timeout: 20)
            try c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            while c.buffer.count < 16 << 10 { try c.receiveSome() }
            return SendableBox(c)
        }
        #expect(server.metrics.activeConnections == 1)
        let start = SystemCalls.monotonicNanoseconds()
        await server.shutdown(grace: .milliseconds(100))
        let closed = try await offPool { c.value.readUntilClosed(timeout: 10) }
        #expect(closed, "the client saw its connection end")
        #expect(server.metrics.activeConnections == 0, "the connection let go of its descriptor")
        // Well before the 16 s the next take waits (a loaded machine took 5 s once).
        #expect(Double(SystemCalls.monotonicNanoseconds() - start) / 1e9 < 10)
    }
}

/// A body read from a file (the extents a store body gives).
final class FileBody: FileBodySource {
    let fd: FileDescriptor
    let length: Int64
    init(_ path: String) throws {
        fd = try SystemCalls.open(path, .readOnly)
        length = try SystemCalls.fileSize(fd)
    }
    deinit { try? SystemCalls.close(fd) }
    func extent(at position: Int64, maxLength: Int) -> BodyExtent? {
        .file(FileExtent(fd: fd, offset: position, length: min(maxLength, Int(length - position)), owner: self))
    }
    func waitForData(at position: Int64, _ ready: @escaping @Sendable ((any Error)?) -> Void) { ready(nil) }
}

/// Answers every request with the file at `path` as its body.
final class FileBodyHandler: HTTPHandler {
    let path: String, size: Int
    init(_ path: String, size: Int) { self.path = path; self.size = size }
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        var head = HTTPResponseHead(status: 200)
        head.setContentLength(size)
        respond(Response(head: head, body: .file(try! FileBody(path))))
    }
}

@Suite("HTTPServer send buffers")
struct SendBufferTests {
    @Test("a head before a body sent from memory (or by sendfile) takes a small buffer, not a chunk; a body copied from a file takes chunks")
    func smallResponsesTakeNoChunk() async throws {
        let dir = try TempDirectory("sendbuffers")
        let large = SplitMix64.bytes(600 << 10, seed: 4)
        try writeFile(dir.file("large"), large)
        // Bodies from memory, small and large (`mixed` would copy a large file body), and a file body copied.
        let cases: [(String, [UInt8], ServeMode, any HTTPHandler)] = [
            ("64 KiB from memory", SplitMix64.bytes(64 << 10, seed: 3), .mixed, FixedBodyHandler(SplitMix64.bytes(64 << 10, seed: 3))),
            ("600 KiB from memory", large, .mixed, FixedBodyHandler(large)),
            ("600 KiB copied from a file", large, .copy, FileBodyHandler(dir.file("large"), size: large.count)),
        ]
        for (name, bytes, mode, handler) in cases {
            var config = ServerConfiguration()
            config.port = 0
            config.loops = 1
            config.serveMode = mode
            let server = try HTTPServer(configuration: config, handler: handler)
            server.start()
            let port = server.port
            let bodies = try await offPool { () throws -> [[UInt8]] in
                // 40 connections with a request each in flight at once, then every response read.
                let cs = try (0..<40).map { _ in try RawConnection(port: port) }
                for c in cs { try c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n") }
                return try cs.map { try $0.readResponse().body }
            }
            #expect(bodies.allSatisfy { $0 == bytes }, "\(name)")
            let allocated = await server.chunkBuffersAllocated()
            #expect(mode == .copy ? allocated >= 1 : allocated == 0, "\(name): \(allocated) chunk buffers")
            await server.shutdown(grace: .milliseconds(100))
        }
    }
}

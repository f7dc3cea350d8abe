import Testing
import DarterCore
import DarterIO
import DarterTestSupport
@testable import DarterGet

/// `darter get`'s output: pieces handed over in any order are written in order.
@Suite("darter get output")
struct OutputTests {
    let pieceLength = 64 << 10

    func piece(_ index: Int, _ content: [UInt8], length: Int) -> SharedIOBuffer {
        let b = SharedIOBuffer(IOBuffer(capacity: pieceLength))
        b.buffer.copyBytes(from: content[(index * pieceLength)..<(index * pieceLength + length)])
        return b
    }

    @Test("pieces in any order become the file in order, its SHA-256 checked, renamed into place")
    func ordered() async throws {
        let dir = try TempDirectory("output")
        let content = SplitMix64.bytes(3 * pieceLength + 100, seed: 1)
        let out = Output(path: dir.file("f"), io: ThreadPoolBackend(), pieceLength: pieceLength, hashing: true)
        try await out.open(keepingPieces: 0)
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in [3, 1, 0, 2] {
                let length = i == 3 ? 100 : pieceLength
                g.addTask { try await out.accept(i, self.piece(i, content, length: length), length: length) }
            }
            try await g.waitForAll()
        }
        try await out.finish(length: Int64(content.count), digest: SHA256Digest(bytes: SHA256Hasher.hash(content)))
        #expect(try readFile(dir.file("f")) == content)
        #expect(!SystemCalls.exists(dir.file("f.darter-part")))
    }

    @Test("a piece that will not come: fail() releases the pieces waiting their turn behind it")
    func failReleasesWaiters() async throws {
        let dir = try TempDirectory("output-fail")
        let content = SplitMix64.bytes(3 * pieceLength, seed: 2)
        let out = Output(path: dir.file("g"), io: ThreadPoolBackend(), pieceLength: pieceLength, hashing: false)
        try await out.open(keepingPieces: 0)
        let waiting = Task { () -> GetError? in
            do throws(GetError) { try await out.accept(1, self.piece(1, content, length: self.pieceLength), length: self.pieceLength); return nil } catch { return error }
        }
        try await Task.sleep(for: .milliseconds(50))  // piece 1 waits for piece 0, which fails
        out.fail(GetError(.network, "piece 0 is lost"))
        let error = await waiting.value
        #expect(error?.exit == .network, "the waiter was released with the failure")
        await out.abandon(keep: false)
        #expect(!SystemCalls.exists(dir.file("g.darter-part")))
    }
}

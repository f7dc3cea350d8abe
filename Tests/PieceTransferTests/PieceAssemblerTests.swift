#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import DarterCore
import DarterIO
import DarterTestSupport
@testable import PieceStore
@testable import PieceTransfer

/// The assembler cuts a stream into checked pieces: into the store, memory and the feed.
@Suite("PieceAssembler")
struct PieceAssemblerTests {
    let pieceLength = 64 << 10

    func openStore(_ io: any IOBackend) async throws -> (PieceStore, String) {
        let dir = makeTestDirectory("assembler", area: "transfer-tests")
        var config = StoreConfiguration(directory: dir)
        config.eviction = EvictionPolicy(highWatermark: 1.0, lowWatermark: 1.0)
        return (try await PieceStore.open(config, io: io), dir)
    }

    /// Feeds `content` through space/received in steps of `step` bytes.
    func feedDirect(_ a: PieceAssembler, _ content: [UInt8], step: Int) async {
        var at = 0
        while at < content.count {
            let space: BufferSpace? = await withCheckedContinuation { c in
                let once = Mutex(false)
                let resume: @Sendable (BufferSpace?) -> Void = { s in if !once.withLock({ let was = $0; $0 = true; return was }) { c.resume(returning: s) } }
                if let s = a.space(orWake: { resume(nil) }) { resume(s) }
            }
            guard let space else { continue }  // woken: ask again
            let n = min(step, space.range.count, content.count - at)
            space.buffer.buffer.copyBytes(from: content[at..<(at + n)], at: space.range.lowerBound)
            a.received(n)
            at += n
        }
    }

    @Test("pieces land in the store with their CRC32C and SHA-256, in memory and on the feed; the digest is the content's", arguments: [1000, 65536, 100_000])
    func directPath(step: Int) async throws {
        let (store, dir) = try await openStore(try UringBackend(fixedBuffers: 2, fixedBufferSize: 64 << 10))
        defer { removeTree(dir) }
        let content = SplitMix64.bytes(5 * pieceLength + 1234, seed: UInt64(step))
        let id = TaskID(kind: .digest, hash: SHA256Digest(bytes: SHA256Hasher.hash(content))!)
        _ = try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(content.count), expectedDigest: id.hash)
        let resident = ResidentPieces(capacity: 64 << 20)
        resident.beginFetch(id, pieceLength: pieceLength)
        let arrivals = PieceArrivals()
        let heard = Mutex<[Int]>([])
        let heardDigests = Mutex<[Int: SHA256Digest]>([:])
        let listener = arrivals.listen(id) { e in
            if case .piece(let i, let d) = e { heard.withLock { $0.append(i) }; heardDigests.withLock { $0[i] = d } }
        }
        let a = PieceAssembler(store: store, id: id, pieceLength: pieceLength, contentLength: Int64(content.count), hashing: true,
                               pieceDigests: true, resident: resident, arrivals: arrivals, piecesInFlight: 2)
        await feedDirect(a, content, step: step)
        try await a.finish(streamEnded: true)
        #expect(a.takeDigest() == id.hash)
        #expect(heard.withLock { $0 } == Array(0..<6))
        for i in 0..<6 {
            let length = PieceMath.length(ofPiece: i, contentLength: Int64(content.count), pieceLength: pieceLength)
            let bytes = Array(content[(i * pieceLength)..<(i * pieceLength + length)])
            let sha = SHA256Digest(bytes: SHA256Hasher.hash(bytes))
            #expect(store.committedPiece(id, index: i)?.crc32c == CRC32C.checksum(bytes))
            #expect(store.committedPiece(id, index: i)?.sha256 == sha)
            #expect(heardDigests.withLock { $0[i] } == sha)
            let held = resident.piece(id, index: i)
            #expect(held?.crc == CRC32C.checksum(bytes) && held?.length == length && held?.sha256 == sha)
        }
        try await store.completeTask(id, sha256: id.hash)
        #expect(try await store.readBytes(id, range: 0..<Int64(content.count)) == content)
        listener.cancel()
        #expect(arrivals.listenerCount == 0)
        await store.close()
    }

    @Test("with every write busy there is no room; the waiter is woken when a write ends")
    func backpressure() async throws {
        let slow = FaultInjectingBackend(wrapping: ThreadPoolBackend())
        slow.inject(.slowCompletion(milliseconds: 300), on: .write, times: 1)
        let (store, dir) = try await openStore(slow)
        defer { removeTree(dir) }
        let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([9]))!)
        _ = try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(3 * pieceLength))
        let a = PieceAssembler(store: store, id: id, pieceLength: pieceLength, contentLength: Int64(3 * pieceLength),
                               resident: ResidentPieces(capacity: 0), arrivals: nil, piecesInFlight: 1)
        let first = a.space { }!
        a.received(first.range.count)  // piece 0 goes to the (slow) store
        let woken = Atomic<Bool>(false)
        #expect(a.space { woken.store(true, ordering: .relaxed) } == nil, "one write in flight of one allowed: no room")
        for _ in 0..<100 where !woken.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(holds(woken.load(ordering: .relaxed)))
        #expect(a.space { } != nil)
        try await a.finish(streamEnded: false)
        await store.close()
    }

    @Test("the copying path (a blocking producer thread) gives the same pieces; unknown length ends with a short piece")
    func copyingPath() async throws {
        let (store, dir) = try await openStore(ThreadPoolBackend())
        defer { removeTree(dir) }
        let content = SplitMix64.bytes(2 * pieceLength + 77, seed: 3)
        let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([3]))!)
        _ = try await store.createTask(id, pieceLength: pieceLength, contentLength: nil)
        let a = PieceAssembler(store: store, id: id, pieceLength: pieceLength, contentLength: nil,
                               resident: ResidentPieces(capacity: 0), arrivals: nil, piecesInFlight: 1)
        let ok: Bool = await withCheckedContinuation { c in
            detachThread {
                var all = true
                for start in stride(from: 0, to: content.count, by: 10_000) {
                    let chunk = Array(content[start..<min(content.count, start + 10_000)])
                    all = all && a.append(count: chunk.count) { buffer, at, from, n in buffer.copyBytes(from: chunk[from..<(from + n)], at: at) }
                }
                c.resume(returning: all)
            }
        }
        #expect(ok)
        try await a.finish(streamEnded: true)
        try await store.completeTask(id, contentLength: Int64(content.count))
        #expect(store.committedPiece(id, index: 2)?.range.count == 77)
        #expect(try await store.readBytes(id, range: 0..<Int64(content.count)) == content)
        await store.close()
    }

    @Test("a failed write stops the stream: no room, the waiter is woken, finish throws")
    func writeFailure() async throws {
        let failing = FaultInjectingBackend(wrapping: ThreadPoolBackend())
        let (store, dir) = try await openStore(failing)
        defer { removeTree(dir) }
        let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([4]))!)
        _ = try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(2 * pieceLength))
        failing.inject(.fail(.ioError), on: .write, times: 10)
        let a = PieceAssembler(store: store, id: id, pieceLength: pieceLength, contentLength: Int64(2 * pieceLength),
                               resident: ResidentPieces(capacity: 0), arrivals: nil, piecesInFlight: 4)
        let s = a.space { }!
        a.received(s.range.count)
        for _ in 0..<100 where a.failure == nil { try await Task.sleep(for: .milliseconds(20)) }
        #expect(a.failure != nil)
        let woken = Atomic<Bool>(false)
        #expect(a.space { woken.store(true, ordering: .relaxed) } == nil)
        #expect(holds(woken.load(ordering: .relaxed)))
        await #expect(throws: AssemblyError.self) { try await a.finish(streamEnded: false) }
        await store.close()
    }
}

@inline(__always) func holds(_ v: Bool) -> Bool { v }

import Testing
import DarterIO
@testable import PieceStore

@Suite("Piece store: eviction and ENOSPC")
struct StoreEvictionTests {
    @Test("the quota evicts least recently used tasks first; reads count as use; pins and active readers protect")
    func quotaLRU() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make()) {
            $0.eviction = EvictionPolicy(quotaBytes: 3 * 65536, highWatermark: 1.0, lowWatermark: 1.0)
        }
        let a = taskID("a"), b = taskID("b"), c = taskID("c"), d = taskID("d"), e = taskID("e")
        for id in [a, b, c] { try await fillTask(store, id, contentLength: 65536, pieceLength: 65536) }
        #expect(store.usage.bytesUsed == 3 * 65536)
        // Make `a` the most recently used by serving it (times have 1 s resolution: set them).
        let t0 = PieceStore.now() - 1000
        store.state.withLock { s in
            s.index.tasks[a]!.lastAccess = t0 + 100; s.index.tasks[b]!.lastAccess = t0 + 10; s.index.tasks[c]!.lastAccess = t0 + 20
        }
        _ = try await store.readBytes(a, range: 0..<10)
        try await fillTask(store, d, contentLength: 65536, pieceLength: 65536)
        #expect(store.info(b) == nil, "b was least recently used")
        #expect(store.info(a) != nil && store.info(c) != nil && store.info(d) != nil)
        #expect(store.usage.evictions == 1)
        #expect(store.usage.bytesUsed == 3 * 65536)

        // Pin c and hold a reader on the oldest remaining; the next task evicts the other one.
        try await store.setPinned(c, true)
        store.state.withLock { s in s.index.tasks[c]!.lastAccess = t0 + 1; s.index.tasks[a]!.lastAccess = t0 + 2; s.index.tasks[d]!.lastAccess = t0 + 3 }
        let lease = try #require(try await store.servableExtent(a, range: 0..<65536))
        try await fillTask(store, e, contentLength: 65536, pieceLength: 65536)
        #expect(store.info(c) != nil, "pinned")
        #expect(store.info(a) != nil, "in use")
        #expect(store.info(d) == nil)
        _ = lease
        // Nothing evictable left: a new task does not fit.
        await #expect(throws: StoreError.self) {
            try await store.createTask(taskID("f"), pieceLength: 65536, contentLength: 2 * 65536)
        }
        await store.close()
        // Evictions are durable.
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(Set(again.taskIDs) == [a, c, e])
        #expect(again.info(c)?.pinned == true)
        await again.close()
    }

    @Test("idle tasks past their TTL go at maintenance; pinned ones stay")
    func ttl() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make()) {
            $0.eviction = EvictionPolicy(highWatermark: 1.0, lowWatermark: 1.0, timeToLive: 3600)
        }
        let old = taskID("old"), pinned = taskID("pinned"), fresh = taskID("fresh")
        for id in [old, pinned, fresh] { try await fillTask(store, id, contentLength: 4096, pieceLength: 4096) }
        try await store.setPinned(pinned, true)
        let now = PieceStore.now()
        store.state.withLock { s in s.index.tasks[old]!.lastAccess = now - 7200; s.index.tasks[pinned]!.lastAccess = now - 7200 }
        let evicted = await store.maintain(now: now)
        #expect(evicted == [old])
        #expect(Set(store.taskIDs) == [pinned, fresh])
        await store.close()
    }

    @Test("a filesystem fuller than the high watermark makes maintenance evict idle unpinned tasks")
    func watermarks() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        // Any real disk is fuller than 0 %: the high watermark is crossed, the low one unreachable.
        let store = try await openTestStore(dir, io: BackendKind.uring.make()) {
            $0.eviction = EvictionPolicy(highWatermark: 0.0, lowWatermark: 0.0)
        }
        let keep = taskID("keep"), busy = taskID("busy"), go1 = taskID("go1"), go2 = taskID("go2")
        // createTask itself makes room under the watermark: pin `keep` straight away.
        try await store.createTask(keep, pieceLength: 4096, contentLength: 4096, pinned: true)
        try await fillTask(store, keep, contentLength: 4096, pieceLength: 4096)
        try await fillTask(store, busy, contentLength: 4096, pieceLength: 4096)
        let lease = try #require(try await store.servableExtent(busy, range: 0..<4096))
        try await fillTask(store, go1, contentLength: 4096, pieceLength: 4096)
        try await fillTask(store, go2, contentLength: 4096, pieceLength: 4096)
        // Creating go2 already evicted go1 (making room); maintenance takes go2.
        #expect(store.info(go1) == nil)
        let evicted = await store.maintain()
        #expect(evicted == [go2])
        #expect(Set(store.taskIDs) == [keep, busy])
        withExtendedLifetime(lease) {}
        await store.close()
    }

    @Test("ENOSPC during a write: evict and retry; a second ENOSPC fails only that task")
    func enospc() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let faults = FaultInjectingBackend(wrapping: BackendKind.uring.make())
        let store = try await openTestStore(dir, io: faults)
        let victim = taskID("victim"), grower = taskID("grower"), doomed = taskID("doomed"), bystander = taskID("bystander")
        try await fillTask(store, victim, contentLength: 65536, pieceLength: 65536)
        try await fillTask(store, bystander, contentLength: 65536, pieceLength: 65536)
        try await store.setPinned(bystander, true)
        // One ENOSPC: the store evicts the LRU idle task and the write goes through.
        try await store.createTask(grower, pieceLength: 65536, contentLength: nil)
        faults.inject(.fail(.noSpace), on: .allocate)
        let buffer = store.io.makeBuffer(capacity: 65536)
        buffer.fillPattern(seed: grower.hash.w0, streamOffset: 0, range: 0..<65536)
        try await store.writePiece(grower, index: 0, from: buffer, length: 65536)
        #expect(store.info(victim) == nil)
        #expect(store.info(grower)?.committedPieceCount == 1)

        // ENOSPC that eviction cannot cure (everything else is pinned): that task fails with a
        // clear error, others go on.
        try await store.setPinned(grower, true)
        try await store.createTask(doomed, pieceLength: 65536, contentLength: nil)
        faults.inject(.fail(.noSpace), on: .write, times: 2)
        await #expect(throws: StoreError.noSpace(doomed, "no space left on device after eviction")) {
            try await store.writePiece(doomed, index: 0, from: buffer, length: 65536)
        }
        #expect(store.info(doomed) == nil)
        buffer.fillPattern(seed: grower.hash.w0, streamOffset: 65536, range: 0..<65536)
        try await store.writePiece(grower, index: 1, from: buffer, length: 65536)
        #expect(try await contentMatches(store, grower, range: 0..<131072))
        #expect(try await contentMatches(store, bystander, range: 0..<65536))
        await store.close()
    }

    @Test("EIO on a data write fails the write, the piece stays missing and can be written again")
    func eio() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let faults = FaultInjectingBackend(wrapping: BackendKind.uring.make())
        let store = try await openTestStore(dir, io: faults)
        let id = taskID("eio")
        try await store.createTask(id, pieceLength: 65536, contentLength: 65536)
        let buffer = store.io.makeBuffer(capacity: 65536)
        buffer.fillPattern(seed: id.hash.w0, streamOffset: 0, range: 0..<65536)
        faults.inject(.tornWrite(bytes: 4096), on: .write)
        await #expect(throws: StoreError.self) { try await store.writePiece(id, index: 0, from: buffer, length: 65536) }
        #expect(store.info(id, pieces: true)?.committed == [false])
        faults.inject(.fail(.ioError), on: .dataSync)
        await #expect(throws: StoreError.self) { try await store.writePiece(id, index: 0, from: buffer, length: 65536) }
        #expect(store.info(id, pieces: true)?.committed == [false])
        try await store.writePiece(id, index: 0, from: buffer, length: 65536)
        #expect(try await contentMatches(store, id, range: 0..<65536))
        await store.close()
    }
}

import Testing
import DarterIO
@testable import PieceStore

@Suite("Piece store: read-while-write")
struct StoreConcurrencyTests {
    @Test("many readers follow one writer and each sees every piece as it commits", arguments: BackendKind.allCases)
    func readersFollowWriter(_ backend: BackendKind) async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: backend.make())
        let id = taskID("rww")
        let pieces = 24, pieceLength = 65536
        let length = Int64(pieces * pieceLength - 4000)
        try await store.createTask(id, pieceLength: pieceLength, contentLength: length)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    for i in 0..<pieces {
                        guard try await store.waitForPiece(id, index: i, timeout: .seconds(30)) == .committed else { return false }
                        let start = Int64(i * pieceLength)
                        guard try await contentMatches(store, id, range: start..<min(length, start + Int64(pieceLength))) else { return false }
                    }
                    return try await store.waitForPiece(id, index: pieces, timeout: .seconds(5)) == .beyondEnd
                }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(20))
                try await fillTask(store, id, contentLength: length, pieceLength: pieceLength)
                return true
            }
            for try await ok in group { #expect(ok) }
        }
        await store.close()
    }

    @Test("streaming writes: startPieceWrite returns once the data is written (the buffer is reused at once); its task ends when the piece is committed", arguments: BackendKind.allCases)
    func streamingWrites(_ backend: BackendKind) async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: backend.make())
        let id = taskID("stream")
        let pieces = 16, pieceLength = 65536
        try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(pieces * pieceLength))
        let buffer = store.io.makeBuffer(capacity: pieceLength)
        var commits: [Task<Void, any Error>] = []
        for i in 0..<pieces {
            buffer.fillPattern(seed: 3, streamOffset: Int64(i * pieceLength), range: 0..<pieceLength)
            // The buffer is reused at once: the data write is done when the call returns.
            commits.append(try await store.startPieceWrite(id, index: i, from: buffer, length: pieceLength))
        }
        for c in commits { try await c.value }
        #expect(store.info(id)?.committedPieceCount == pieces)
        for i in 0..<pieces {
            let bytes = try await store.readBytes(id, range: Int64(i * pieceLength)..<Int64((i + 1) * pieceLength))
            let expected = store.io.makeBuffer(capacity: pieceLength)
            expected.fillPattern(seed: 3, streamOffset: Int64(i * pieceLength), range: 0..<pieceLength)
            #expect(bytes == expected.bytes(0..<pieceLength), "piece \(i)")
        }
        // Committed pieces survive a restart: the journal and the extended file agree.
        await store.close()
        let reopened = try await openTestStore(dir, io: backend.make())
        #expect(reopened.info(id)?.committedPieceCount == pieces)
        #expect(try await reopened.readBytes(id, range: 0..<16).count == 16)
        await reopened.close()
    }

    @Test("a write still completing when its task is force-deleted and created again never commits into the new task")
    func writeAcrossRecreation() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let faults = FaultInjectingBackend(wrapping: BackendKind.uring.make())
        let store = try await openTestStore(dir, io: faults)
        let id = taskID("recreate")
        let pieceLength = 65536
        try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(2 * pieceLength))
        faults.inject(.slowCompletion(milliseconds: 300), on: .write)
        let old = store.io.makeBuffer(capacity: pieceLength)
        old.fill(0xAA, range: 0..<pieceLength)
        let pending = Task { () -> (any Error)? in
            do { try await store.writePiece(id, index: 0, from: old, length: pieceLength); return nil } catch { return error }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await store.deleteTask(id, force: true))
        try await store.createTask(id, pieceLength: pieceLength, contentLength: Int64(2 * pieceLength))
        let error = await pending.value
        #expect(error != nil, "the old write must not commit")
        let info = try #require(store.info(id))
        #expect(info.committedPieceCount == 0)
        // The new incarnation's piece 0 is free to write and reads back its own bytes.
        let fresh = store.io.makeBuffer(capacity: pieceLength)
        fresh.fill(0x55, range: 0..<pieceLength)
        try await store.writePiece(id, index: 0, from: fresh, length: pieceLength)
        #expect(try await store.readBytes(id, range: 0..<Int64(pieceLength)) == [UInt8](repeating: 0x55, count: pieceLength))
        // And nothing of the old write counts as a writer on the new one: it can be deleted.
        #expect(try await store.deleteTask(id, force: false))
        await store.close()
    }

    @Test("one writer per piece: a second concurrent writer is refused")
    func oneWriterPerPiece() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        // The first write's completion is held 300 ms, so the second writer surely finds it busy.
        let faults = FaultInjectingBackend(wrapping: BackendKind.uring.make())
        let store = try await openTestStore(dir, io: faults)
        let id = taskID("w1")
        try await store.createTask(id, pieceLength: 4 << 20, contentLength: 4 << 20)
        faults.inject(.slowCompletion(milliseconds: 300), on: .write)
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    let b = store.io.makeBuffer(capacity: 4 << 20)
                    do { try await store.writePiece(id, index: 0, from: b, length: 4 << 20); return "ok" }
                    catch let e as StoreError { if case .pieceBeingWritten = e { return "busy" }; throw e }
                }
            }
            var out: [String] = []
            for try await r in group { out.append(r) }
            return out.sorted()
        }
        #expect(results == ["busy", "ok"])
        #expect(store.info(id)?.committedPieceCount == 1)
        await store.close()
    }

    @Test("waits time out, can be cancelled, and fail when the writer fails the task")
    func waitEndings() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let id = taskID("waits")
        try await store.createTask(id, pieceLength: 4096, contentLength: 8192)
        await #expect(throws: StoreError.timedOut) { try await store.waitForPiece(id, index: 0, timeout: .milliseconds(50)) }
        let waiter = Task { try await store.waitForPiece(id, index: 1) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        let failing = Task { try await store.waitForPiece(id, index: 1, timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(20))
        await store.failTask(id, reason: "origin said 500")
        await #expect(throws: StoreError.taskFailed(id, "origin said 500")) { try await failing.value }
        await store.close()
    }
}

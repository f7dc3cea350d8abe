import Testing
import DarterIO
import DarterCore
@testable import PieceStore

@Suite("Piece store: write, read, restart")
struct StoreBasicsTests {
    @Test("pieces written are read back byte-exact, whole and by range", arguments: BackendKind.allCases)
    func roundTrip(_ backend: BackendKind) async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: backend.make())
        let id = taskID("roundtrip")
        let length: Int64 = 5 * 65536 - 1000  // unaligned tail
        try await fillTask(store, id, contentLength: length, pieceLength: 65536)
        #expect(store.info(id, pieces: true)?.committedPieceCount == 5)
        #expect(try await contentMatches(store, id, range: 0..<length))
        #expect(try await contentMatches(store, id, range: 65530..<131080))   // across a piece boundary
        #expect(try await contentMatches(store, id, range: (length - 7)..<length))  // the tail
        await #expect(throws: StoreError.rangeOutOfBounds(id)) { try await store.readBytes(id, range: 0..<(length + 1)) }
        let buffer = store.io.makeBuffer(capacity: 65536)
        #expect(try await store.readPiece(id, index: 4, into: buffer) == Int(length) - 4 * 65536)
        await store.close()
    }

    @Test("a restart keeps committed pieces, their metadata and the digest alias", arguments: BackendKind.allCases)
    func restart(_ backend: BackendKind) async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let id = taskID("restart")
        let length: Int64 = 3 * 65536 + 8
        var digest: SHA256Digest?
        do {
            let store = try await openTestStore(dir, io: backend.make())
            try await store.createTask(id, pieceLength: 65536, contentLength: length,
                                       origin: OriginMetadata(contentType: "application/x-test", etag: "\"v1\""))
            try await fillTask(store, id, contentLength: length, pieceLength: 65536)
            try await store.completeTask(id)
            digest = store.info(id)?.sha256
            await store.close()
        }
        let store = try await openTestStore(dir, io: backend.make())
        let info = try #require(store.info(id))
        #expect(info.complete && info.committedPieceCount == 4 && info.contentLength == length)
        #expect(info.origin.contentType == "application/x-test" && info.origin.etag == "\"v1\"")
        let d = try #require(digest)
        #expect(store.lookup(digest: d) == id)
        let all = try await store.readBytes(id, range: 0..<length)
        #expect(SHA256Digest(bytes: SHA256Hasher.hash(all)) == d)
        await store.close()
    }

    @Test("a piece's own SHA-256, given with its write, is kept with it: in info, with the committed piece, across a restart and in what compaction writes")
    func pieceDigests() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let id = taskID("piece-digests")
        let d1 = SHA256Digest(bytes: SHA256Hasher.hash([1]))!
        do {
            let store = try await openTestStore(dir, io: BackendKind.uring.make())
            try await store.createTask(id, pieceLength: 65536, contentLength: 2 * 65536)
            let buffer = store.io.makeBuffer(capacity: 65536)
            try await store.startPieceWrite(id, index: 0, from: buffer, length: 65536).value
            try await store.startPieceWrite(id, index: 1, from: buffer, length: 65536, sha256: d1).value
            #expect(store.info(id, pieces: true)?.pieceSHA256 == [1: d1], "only the piece written with one has one")
            #expect(store.committedPiece(id, index: 1)?.sha256 == d1)
            #expect(store.committedPiece(id, index: 0)?.sha256 == nil)
            await store.close()
        }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(store.info(id, pieces: true)?.pieceSHA256 == [1: d1])
        await store.close()
        // What compaction writes (the index's records) keeps it.
        var index = StoreIndex()
        for r in [JournalRecord.taskCreated(TaskDescriptor(id: id, pieceLength: 65536, contentLength: 2 * 65536, createdAt: 0)),
                  .pieceCommitted(id, index: 1, length: 65536, crc32c: 7, sha256: d1)] { index.apply(r) }
        #expect(index.snapshot().contains(.pieceCommitted(id, index: 1, length: 65536, crc32c: 7, sha256: d1)))
    }

    @Test("completeTask(digestInBackground:) marks the task complete at once; its SHA-256 follows from the idle thread and finds it by digest")
    func backgroundDigest() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let id = taskID("background-digest")
        let length: Int64 = 5 * 65536 + 100
        try await store.createTask(id, pieceLength: 65536, contentLength: length)
        try await fillTask(store, id, contentLength: length, pieceLength: 65536)
        try await store.completeTask(id, digestInBackground: true)
        #expect(store.info(id)?.complete == true)
        let expected = SHA256Digest(bytes: SHA256Hasher.hash(try await store.readBytes(id, range: 0..<length)))!
        var found: SHA256Digest?
        for _ in 0..<200 where found == nil {
            found = store.info(id)?.sha256
            if found == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(found == expected)
        #expect(store.lookup(digest: expected) == id)
        await store.close()
        // Durable: the digest record was journaled.
        let reopened = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(reopened.info(id)?.sha256 == expected)
        await reopened.close()
    }

    @Test("the background SHA-256 waits while clients are being served, then runs")
    func backgroundDigestYieldsToClients() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        // A client takes an extent every 20 ms for a second: the hash must not start. The store
        // waits for 250 ms without a client; if this test itself stalls that long (a loaded
        // machine), the round proves nothing and runs again with a new task.
        var proven = false
        for round in 0..<12 where !proven {
            let id = taskID("background-digest-yields-\(round)")
            let length: Int64 = 3 * 65536
            try await store.createTask(id, pieceLength: 65536, contentLength: length)
            try await fillTask(store, id, contentLength: length, pieceLength: 65536)
            _ = try await store.servableExtent(id, range: 0..<length)  // opens the page-cache descriptor
            try await store.completeTask(id, digestInBackground: true)
            var last = now(), longestGap = 0.0
            for _ in 0..<50 {
                #expect(store.servableExtentNow(id, range: 0..<4096) != nil)
                longestGap = max(longestGap, now() - last)
                last = now()
                try await Task.sleep(for: .milliseconds(20))
            }
            longestGap = max(longestGap, now() - last)
            let hashed = store.info(id)?.sha256 != nil
            if longestGap < 0.2 {
                #expect(!hashed, "hashed while a client was being served (longest pause \(longestGap) s)")
                proven = true
            }
            var found: SHA256Digest?
            for _ in 0..<300 where found == nil {
                found = store.info(id)?.sha256
                if found == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(found != nil, "no digest 3 s after the client stopped")
        }
        #expect(proven, "every round had a pause of 200 ms or more between client reads: the machine is too loaded to tell")
        await store.close()
    }

    @Test("wrong piece lengths, unknown tasks and out-of-range pieces are refused")
    func validation() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let id = taskID("validation")
        try await store.createTask(id, pieceLength: 65536, contentLength: 100_000)
        let buffer = store.io.makeBuffer(capacity: 65536)
        await #expect(throws: StoreError.wrongPieceLength(id, index: 0, expected: 65536, got: 4096)) {
            try await store.writePiece(id, index: 0, from: buffer, length: 4096)
        }
        await #expect(throws: StoreError.pieceOutOfRange(id, index: 2)) {
            try await store.writePiece(id, index: 2, from: buffer, length: 4096)
        }
        let other = taskID("nope")
        await #expect(throws: StoreError.unknownTask(other)) { try await store.writePiece(other, index: 0, from: buffer, length: 4096) }
        await #expect(throws: StoreError.invalidPieceLength(1000)) { try await store.createTask(other, pieceLength: 1000, contentLength: 10) }
        await #expect(throws: StoreError.pieceNotCommitted(id, index: 1)) { try await store.readBytes(id, range: 70000..<70010) }
        await #expect(throws: StoreError.incomplete(id, missingPieces: 2)) { try await store.completeTask(id) }
        await store.close()
    }

    @Test("unknown-length content: pieces grow the file, completion fixes the length")
    func unknownLength() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let id = taskID("chunked")
        try await store.createTask(id, pieceLength: 65536, contentLength: nil)
        let buffer = store.io.makeBuffer(capacity: 65536)
        for (i, n) in [65536, 65536, 12344].enumerated() {
            buffer.fillPattern(seed: id.hash.w0, streamOffset: Int64(i * 65536), range: 0..<65536)
            try await store.writePiece(id, index: i, from: buffer, length: n)
        }
        // A waiter for a piece past the end learns so when the length becomes known.
        async let beyond = store.waitForPiece(id, index: 3, timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(50))
        try await store.completeTask(id, contentLength: 2 * 65536 + 12344)
        #expect(try await beyond == .beyondEnd)
        let finalLength: Int64 = 2 * 65536 + 12344
        #expect(try #require(store.info(id)).contentLength == finalLength)
        #expect(try await contentMatches(store, id, range: 0..<(2 * 65536 + 12344)))
        #expect(store.usage.bytesUsed == Int64(alignUp(2 * 65536 + 12344)))
        await store.close()
    }

    @Test("a digest task whose content hashes differently fails and is removed")
    func digestMismatch() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let wrong = TaskID(kind: .digest, hash: SHA256Digest(bytes: SHA256Hasher.hash([1, 2, 3]))!)
        try await fillTask(store, wrong, contentLength: 8192, pieceLength: 4096)
        await #expect(throws: StoreError.self) { try await store.completeTask(wrong) }
        #expect(store.info(wrong) == nil)
        await store.close()
    }

    @Test("a flipped bit on disk is detected on the first read after restart and the piece dropped")
    func bitFlip() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let id = taskID("bitflip")
        do {
            let store = try await openTestStore(dir, io: BackendKind.uring.make())
            try await fillTask(store, id, contentLength: 4 * 65536, pieceLength: 65536)
            await store.close()
        }
        // Flip one bit inside piece 2, behind the store's back.
        let store0 = try await openTestStore(dir, io: BackendKind.threads.make())
        let path = store0.dataPath(id)
        await store0.close()
        let fd = try SystemCalls.open(path, [.readWrite])
        let one = IOBuffer(capacity: 1)
        let io = ThreadPoolBackend()
        _ = try await io.read(fd, into: one, range: 0..<1, at: 2 * 65536 + 777)
        one[0] ^= 0x10
        _ = try await io.write(fd, from: one, range: 0..<1, at: 2 * 65536 + 777)
        try SystemCalls.close(fd)

        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(try await contentMatches(store, id, range: 0..<65536))
        await #expect(throws: StoreError.corruptPiece(id, index: 2)) { try await store.readBytes(id, range: 2 * 65536..<(2 * 65536 + 10)) }
        #expect(store.info(id, pieces: true)?.committed == [true, true, false, true])
        #expect(store.usage.corruptPiecesDropped == 1)
        // Zero-copy extents stop before the dropped piece.
        let extent = try #require(try await store.servableExtent(id, range: 0..<(4 * 65536)))
        #expect(extent.offset == 0 && extent.length == 2 * 65536)
        await store.close()
        // The drop is durable.
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(again.info(id, pieces: true)?.committed == [true, true, false, true])
        await again.close()
    }

    @Test("a torn journal tail is cut and the store keeps working")
    func tornJournalTail() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let id = taskID("torn")
        let size: Int64
        do {
            let store = try await openTestStore(dir, io: BackendKind.uring.make())
            try await fillTask(store, id, contentLength: 3 * 65536, pieceLength: 65536)
            size = store.usage.journalBytes  // ends with piece 2's commit record
            await store.close()
        }
        // Cut the last commit record in half, and append garbage.
        let journal = dir + "/journal"
        let fd = try SystemCalls.open(journal, [.readWrite])
        let io = ThreadPoolBackend()
        try await io.truncate(fd, length: size - 10)
        let junk = IOBuffer(capacity: 64)
        junk.fill(0xAB, range: 0..<64)
        _ = try await io.write(fd, from: junk, range: 0..<64, at: size - 10)
        try SystemCalls.close(fd)
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        let info = try #require(store.info(id))
        #expect(info.committedPieceCount == 2)  // the last commit record was torn
        #expect(try await contentMatches(store, id, range: 0..<(2 * 65536)))
        try await fillTask(store, id, contentLength: 3 * 65536, pieceLength: 65536, pieces: 2..<3)
        await store.close()
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(again.info(id, pieces: true)?.committedPieceCount == 3)
        await again.close()
    }

    @Test("compaction shrinks the journal and loses nothing")
    func compaction() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        for n in 0..<20 {
            let id = taskID("c\(n)")
            try await fillTask(store, id, contentLength: 8192, pieceLength: 4096)
            if n % 4 != 0 { try await store.deleteTask(id) }
        }
        let before = store.usage.journalBytes
        await store.compact()
        #expect(store.usage.journalBytes * 2 < before)
        await store.close()
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(again.taskIDs.count == 5)
        for n in stride(from: 0, to: 20, by: 4) { #expect(try await contentMatches(again, taskID("c\(n)"), range: 0..<8192)) }
        await again.close()
    }

    @Test("a data directory is used by one store at a time")
    func exclusiveDirectory() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let first = try await openTestStore(dir, io: BackendKind.uring.make())
        await #expect(throws: StoreError.directoryInUse(dir)) { try await openTestStore(dir, io: BackendKind.uring.make()) }
        await first.close()
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        await again.close()
    }

    @Test("orphan data files are removed at startup; a journal that is not ours is refused")
    func orphansAndForeignJournal() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        let store = try await openTestStore(dir, io: BackendKind.uring.make())
        await store.close()
        let orphan = dir + "/tasks/ab/u-" + String(repeating: "ab", count: 32)
        try SystemCalls.makeDirectories(dir + "/tasks/ab")
        try SystemCalls.close(try SystemCalls.open(orphan, [.create, .readWrite]))
        let again = try await openTestStore(dir, io: BackendKind.uring.make())
        #expect(!SystemCalls.exists(orphan))
        await again.close()

        let foreign = makeTestDirectory("foreign"); defer { removeTree(foreign) }
        let fd = try SystemCalls.open(foreign + "/journal", [.create, .readWrite])
        let b = IOBuffer(capacity: 16); b.fill(0x41, range: 0..<16)
        _ = try await ThreadPoolBackend().write(fd, from: b, range: 0..<16, at: 0)
        try SystemCalls.close(fd)
        await #expect(throws: StoreError.self) { try await openTestStore(foreign, io: BackendKind.uring.make()) }
    }
}

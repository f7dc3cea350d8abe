import Synchronization
import Testing
import DarterIO
import PieceStore
import DarterCore
@testable import PieceTransfer

/// Fresh pieces in memory: which stay, which leave (and in what order), and what a reader gets.
@Suite("ResidentPieces")
struct ResidentPiecesTests {
    let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([1, 2, 3]))!)
    let other = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([4, 5, 6]))!)
    let pieceLength = 4096

    /// A piece whose bytes are all `value`.
    func piece(_ value: UInt8) -> SharedIOBuffer {
        let b = IOBuffer(capacity: pieceLength)
        b.copyBytes(from: [UInt8](repeating: value, count: pieceLength))
        return SharedIOBuffer(b)
    }

    final class Reader {}

    @Test("pieces of a fetch stay (readers or not) until the object is settled; nothing is kept for an unknown fetch")
    func keptUntilSettled() {
        let r = ResidentPieces(capacity: 1 << 20)
        #expect(r.publish(id, index: 0, piece(0), length: 4096, crc: 0).isEmpty && r.residentBytes == 0, "no fetch begun")
        #expect(!r.addReader(id, ObjectIdentifier(Reader()), at: 0))
        r.beginFetch(id, pieceLength: pieceLength)
        #expect(r.publish(id, index: 0, piece(0), length: 4096, crc: 0).isEmpty && r.publish(id, index: 1, piece(1), length: 4096, crc: 0).isEmpty)
        r.endFetch(id)
        #expect(r.residentBytes == 2 * pieceLength, "kept after the fetch, for hits")
        let hit = Reader(), me = ObjectIdentifier(hit)
        #expect(r.addReader(id, me, at: 0))
        #expect(r.bytes(id, reader: me, at: 4096 + 10, maxLength: 100)?.buffer.buffer[10] == 1)
        r.settled(id)
        #expect(r.residentBytes == 0 && r.bytes(id, reader: me, at: 0, maxLength: 1) == nil, "settled: read the page cache")
        r.removeReader(id, me)
        #expect(!r.addReader(id, me, at: 0), "the record went with the last reader")
    }

    @Test("a reader gets the bytes at its offset up to the piece's end; one made before the fetch began registers on its first read; nothing without a fetch")
    func readerBytes() {
        let r = ResidentPieces(capacity: 1 << 20)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        #expect(r.addReader(id, me, at: 0))
        _ = r.publish(id, index: 0, piece(10), length: 4096, crc: 0)
        _ = r.publish(id, index: 1, piece(11), length: 4096, crc: 0)
        let a = r.bytes(id, reader: me, at: 100, maxLength: 1 << 20)
        #expect(a?.offset == 100 && a?.length == pieceLength - 100 && a?.buffer.buffer[100] == 10)
        let b = r.bytes(id, reader: me, at: Int64(pieceLength) + 8, maxLength: 16)
        #expect(b?.offset == 8 && b?.length == 16 && b?.buffer.buffer[8] == 11)
        #expect(r.bytesSent == (pieceLength - 100) + 16)
        // A body made before this fetch began (its addReader found nothing) is not left out:
        // were it, a piece held for it would wake it forever without being handed over.
        let late = Reader(), lateID = ObjectIdentifier(late)
        let c = r.bytes(id, reader: lateID, at: 0, maxLength: 10)
        #expect(c?.length == 10 && c?.buffer.buffer[0] == 10)
        r.removeReader(id, lateID)
        #expect(r.bytes(other, reader: lateID, at: 0, maxLength: 10) == nil, "no fetch of that task: nothing")
    }

    @Test("over capacity: finished fetches' pieces leave first, then pieces no reader needs, then the oldest needed")
    func departureOrder() {
        let r = ResidentPieces(capacity: 3 * 4096)
        r.beginFetch(other, pieceLength: pieceLength)
        _ = r.publish(other, index: 0, piece(9), length: 4096, crc: 0)
        r.endFetch(other)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        #expect(r.publish(id, index: 0, piece(0), length: 4096, crc: 0).isEmpty)
        #expect(r.publish(id, index: 1, piece(1), length: 4096, crc: 0).isEmpty)
        #expect(r.publish(id, index: 2, piece(2), length: 4096, crc: 0) == [.init(id: other, index: 0, needed: false)], "the finished fetch first")
        _ = r.bytes(id, reader: me, at: Int64(pieceLength), maxLength: 1)  // the reader passed piece 0
        #expect(r.publish(id, index: 3, piece(3), length: 4096, crc: 0) == [.init(id: id, index: 0, needed: false)])
        #expect(r.publish(id, index: 4, piece(4), length: 4096, crc: 0) == [.init(id: id, index: 1, needed: true)], "only needed pieces left: the oldest")
        #expect(r.leftEarly(id, index: 1, orOnlyNeeded: true), "needed by the reader")
        #expect(!r.leftEarly(id, index: 0, orOnlyNeeded: true) && r.leftEarly(id, index: 0, orOnlyNeeded: false), "passed, not yet in the page cache")
        #expect(!r.leftEarly(id, index: 2, orOnlyNeeded: false) && !r.leftEarly(id, index: 9, orOnlyNeeded: false), "held; never published")
        #expect(r.residentBytes == 3 * pieceLength)
    }

    @Test("a spare buffer is handed out only once nobody else holds it, and only at its size; spares and pieces share the capacity, pieces first")
    func spares() {
        let r = ResidentPieces(capacity: 4 * 4096)
        r.beginFetch(id, pieceLength: pieceLength)
        var sending: SharedIOBuffer? = piece(1)  // a client still sending from it
        _ = r.publish(id, index: 0, sending!, length: 4096, crc: 0)
        r.settled(id)
        #expect(r.spareCount == 1 && r.takeSpare(capacity: pieceLength) == nil)
        sending = nil
        #expect(r.takeSpare(capacity: 2 * pieceLength) == nil, "wrong size")
        #expect(r.takeSpare(capacity: pieceLength)?.buffer[0] == 1 && r.spareCount == 0)
        for i in 0..<3 { _ = r.publish(id, index: i + 1, piece(0), length: 4096, crc: 0) }
        r.settled(id)
        #expect(r.spareCount == 3 && r.spareBytes == 3 * pieceLength)
        r.beginFetch(other, pieceLength: pieceLength)
        for i in 0..<3 { _ = r.publish(other, index: i, piece(2), length: 4096, crc: 0) }
        #expect(r.residentBytes == 3 * pieceLength && r.spareCount == 1, "spares gave way to pieces")
    }

    @Test("spare buffers are let go once no fetch has used memory for a while")
    func sparesTrimmed() async throws {
        let r = ResidentPieces(capacity: 1 << 20, spareIdleSeconds: 1)
        r.beginFetch(id, pieceLength: pieceLength)
        _ = r.publish(id, index: 0, piece(0), length: 4096, crc: 0)
        r.endFetch(id)
        r.settled(id)
        #expect(r.spareCount == 1)
        for _ in 0..<40 where r.spareCount > 0 { try await Task.sleep(for: .milliseconds(100)) }
        #expect(r.spareCount == 0 && r.spareBytes == 0)
    }

    @Test("a reader waiting for a piece is woken when it arrives, or when the fetch ends; a piece that came and left is read from the store")
    func waitingForPieces() {
        let r = ResidentPieces(capacity: 4096)
        let woken = Mutex<[String]>([])
        #expect(!r.whenHeld(id, offset: Int64(0 * pieceLength)) { woken.withLock { $0.append("none") } }, "no fetch: wait on the store")
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        #expect(r.whenHeld(id, offset: Int64(1 * pieceLength)) { woken.withLock { $0.append("1") } })
        #expect(r.whenHeld(id, offset: Int64(3 * pieceLength)) { woken.withLock { $0.append("3") } })
        _ = r.publish(id, index: 0, piece(0), length: 4096, crc: 0)
        #expect(woken.withLock { $0 }.isEmpty)
        _ = r.publish(id, index: 1, piece(1), length: 4096, crc: 0)  // over capacity: piece 0 leaves (the reader still needs it)
        #expect(woken.withLock { $0 } == ["1"])
        #expect(r.whenHeld(id, offset: Int64(1 * pieceLength)) { woken.withLock { $0.append("1 again") } }, "held: at once")
        #expect(woken.withLock { $0 } == ["1", "1 again"])
        #expect(!r.whenHeld(id, offset: Int64(0 * pieceLength)) { woken.withLock { $0.append("0") } }, "came and left: the store has it")
        r.endFetch(id)
        #expect(woken.withLock { $0 } == ["1", "1 again", "3"], "the end of the fetch wakes the rest")
        #expect(!r.whenHeld(id, offset: Int64(3 * pieceLength)) { woken.withLock { $0.append("late") } })
    }

    @Test("a new fetch of the same object starts empty")
    func refetch() {
        let r = ResidentPieces(capacity: 1 << 20)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        _ = r.publish(id, index: 0, piece(7), length: 4096, crc: 0)
        r.beginFetch(id, pieceLength: pieceLength)  // the task was fetched anew
        #expect(r.residentBytes == 0 && r.bytes(id, reader: me, at: 0, maxLength: 1) == nil)
    }
}

import Synchronization
import Testing
import DarterIO
import PieceStore
@testable import SeedService

/// The memory window of a fetch in flight: which pieces stay, which leave, and what a reader gets.
@Suite("ResidentPieces")
struct ResidentPiecesTests {
    let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([1, 2, 3]))!)
    let pieceLength = 4096

    /// A piece whose bytes are all `value`.
    func piece(_ value: UInt8) -> SharedIOBuffer {
        let b = IOBuffer(capacity: pieceLength)
        b.copyBytes(from: [UInt8](repeating: value, count: pieceLength))
        return SharedIOBuffer(b)
    }

    final class Reader {}

    @Test("with no reader a published piece leaves at once (a spare buffer); no fetch known: nothing is kept")
    func noReader() {
        let r = ResidentPieces(capacity: 1 << 20)
        #expect(r.publish(id, index: 0, piece(0)).isEmpty && r.spareCount == 0, "no fetch begun")
        r.beginFetch(id, pieceLength: pieceLength)
        let needed = r.publish(id, index: 0, piece(0))
        #expect(needed.isEmpty && r.residentBytes == 0 && r.spareCount == 1)
        #expect(!r.addReader(TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([9]))!), ObjectIdentifier(Reader()), at: 0))
    }

    @Test("a reader gets the bytes at its offset up to the piece's end; pieces it passed are released")
    func followingReader() {
        let r = ResidentPieces(capacity: 1 << 20)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        #expect(r.addReader(id, me, at: 0))
        #expect(r.publish(id, index: 0, piece(10)).isEmpty)
        #expect(r.publish(id, index: 1, piece(11)).isEmpty)
        #expect(r.spareCount == 0)
        #expect(r.residentBytes == 2 * pieceLength)

        let a = r.bytes(id, reader: me, at: 100, maxLength: 1 << 20)
        #expect(a?.offset == 100 && a?.length == pieceLength - 100 && a?.buffer.buffer[100] == 10)
        let b = r.bytes(id, reader: me, at: Int64(pieceLength) + 8, maxLength: 16)
        #expect(b?.offset == 8 && b?.length == 16 && b?.buffer.buffer[8] == 11)
        #expect(r.residentBytes == pieceLength && r.spareCount == 1, "piece 0 was passed by the only reader")
        #expect(r.bytes(id, reader: me, at: 0, maxLength: 10) == nil, "piece 0 is gone: read the store")
        #expect(r.bytesSent == (pieceLength - 100) + 16)
        #expect(r.bytes(id, reader: ObjectIdentifier(Reader()), at: 0, maxLength: 10) == nil, "unregistered readers get nothing")
    }

    @Test("over capacity the oldest pieces leave; those a reader still needs are reported for prefetching")
    func overCapacity() {
        let r = ResidentPieces(capacity: 2 * 4096)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        #expect(r.publish(id, index: 0, piece(0)).isEmpty)
        #expect(r.publish(id, index: 1, piece(1)).isEmpty)
        #expect(r.publish(id, index: 2, piece(2)) == [0])
        #expect(r.spareCount == 1)
        #expect(r.residentBytes == 2 * pieceLength)
        #expect(r.readerNeedsFromStore(id, index: 0))
        #expect(!r.readerNeedsFromStore(id, index: 1), "piece 1 is in memory")
        // The reader moves on to piece 1: piece 0 is no longer needed by anyone.
        _ = r.bytes(id, reader: me, at: Int64(pieceLength), maxLength: 1)
        #expect(!r.readerNeedsFromStore(id, index: 0))
    }

    @Test("a spare buffer is handed out only once nobody else holds it, and only at its size")
    func spares() {
        let r = ResidentPieces(capacity: 1 << 20)
        r.beginFetch(id, pieceLength: pieceLength)
        var sending: SharedIOBuffer? = piece(1)  // a client still sending from it
        _ = r.publish(id, index: 0, sending!)
        #expect(r.spareCount == 1 && r.takeSpare(capacity: pieceLength) == nil)
        sending = nil
        #expect(r.takeSpare(capacity: 2 * pieceLength) == nil, "wrong size")
        #expect(r.takeSpare(capacity: pieceLength)?.buffer[0] == 1 && r.spareCount == 0)
        for i in 0..<20 { _ = r.publish(id, index: i + 1, piece(0)) }
        #expect(r.spareCount == ResidentPieces.maximumSpares)
        r.endFetch(id)
        #expect(r.spareCount == 0, "spares go with the last fetch")
    }

    @Test("a reader waiting for a piece is woken when it arrives, or when the fetch ends; a piece that came and left is read from the store")
    func waitingForPieces() {
        let r = ResidentPieces(capacity: 4096)
        let woken = Mutex<[String]>([])
        #expect(!r.whenHeld(id, index: 0) { woken.withLock { $0.append("none") } }, "no fetch: wait on the store")
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        #expect(r.whenHeld(id, index: 1) { woken.withLock { $0.append("1") } })
        #expect(r.whenHeld(id, index: 3) { woken.withLock { $0.append("3") } })
        _ = r.publish(id, index: 0, piece(0))
        #expect(woken.withLock { $0 }.isEmpty)
        _ = r.publish(id, index: 1, piece(1))  // over capacity: piece 0 leaves (the reader still needs it)
        #expect(woken.withLock { $0 } == ["1"])
        #expect(r.whenHeld(id, index: 1) { woken.withLock { $0.append("1 again") } }, "held: at once")
        #expect(woken.withLock { $0 } == ["1", "1 again"])
        #expect(!r.whenHeld(id, index: 0) { woken.withLock { $0.append("0") } }, "came and left: the store has it")
        r.endFetch(id)
        #expect(woken.withLock { $0 } == ["1", "1 again", "3"], "the end of the fetch wakes the rest")
        #expect(!r.whenHeld(id, index: 3) { woken.withLock { $0.append("late") } })
    }

    @Test("a fetch's record goes when it ended and its last reader left; a new fetch starts empty")
    func lifecycle() {
        let r = ResidentPieces(capacity: 1 << 20)
        r.beginFetch(id, pieceLength: pieceLength)
        let reader = Reader(), me = ObjectIdentifier(reader)
        r.addReader(id, me, at: 0)
        _ = r.publish(id, index: 0, piece(5))
        r.endFetch(id)
        #expect(r.publish(id, index: 1, piece(6)).isEmpty && r.residentBytes == pieceLength, "an ended fetch publishes nothing")
        #expect(r.bytes(id, reader: me, at: 0, maxLength: 1)?.buffer.buffer[0] == 5, "its reader still gets what is held")
        r.removeReader(id, me)
        #expect(r.residentBytes == 0 && !r.addReader(id, me, at: 0))

        r.beginFetch(id, pieceLength: pieceLength)
        r.addReader(id, me, at: 0)
        _ = r.publish(id, index: 0, piece(7))
        r.beginFetch(id, pieceLength: pieceLength)  // the task was fetched anew
        #expect(r.residentBytes == 0 && r.bytes(id, reader: me, at: 0, maxLength: 1) == nil)
    }
}

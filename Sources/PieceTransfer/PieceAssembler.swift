import Dispatch
import DarterCore
import DarterIO
import PieceStore
import Synchronization

/// Cuts one byte stream of a task (from an origin, or later from parents) into pieces: each
/// full piece gets its CRC32C, goes to the store (O_DIRECT, `piecesInFlight` writes at a time)
/// and, at once, into ``ResidentPieces`` and the ``PieceArrivals`` feed, so readers and
/// children have it before the store's group commit.
///
/// Bytes come in two ways. A receiver that can put them straight into the piece buffer (the
/// HTTP client) asks ``space(orWake:)`` for room and reports ``received(_:)``: never blocking,
/// it gets nil while the writes are all busy and is woken once one is done (it pauses its
/// socket meanwhile: backpressure reaches the sender). A copying producer (libcurl's callback
/// thread) calls ``append(count:copy:)``, which blocks that thread instead. One producer at a
/// time; the stream's position carries over between its attempts (retries resume there).
public final class PieceAssembler: @unchecked Sendable {
    public let store: PieceStore
    public let id: TaskID
    public let pieceLength: Int
    public let contentLength: Int64?
    let resident: ResidentPieces
    let arrivals: PieceArrivals?
    let piecesInFlight: Int
    let pageCacheOnIngest: Bool
    /// Each piece of the stream gets its own SHA-256, kept and published with it (a seed reading
    /// the origin for a swarm: children check other peers' copies against these).
    let pieceDigests: Bool

    // Producer state (one producer at a time, so unlocked).
    /// The task offset of the next byte.
    public private(set) var position: Int64
    private var current: SharedIOBuffer?
    private var fill = 0
    private var pieceSize = 0
    private var nextPiece: Int
    /// When the current streamed piece's buffer was taken (`darter_piece_download_duration_seconds{source="origin"}`).
    private var pieceStarted = ContinuousClock.now
    /// SHA-256 of the bytes from offset 0, while they arrive in order on one stream.
    private var hasher: SHA256Hasher?
    private var hashed: Int64 = 0

    private struct Shared {
        var writing = 0
        var wakers: [@Sendable () -> Void] = []
        var error: String?
        var writes: [Task<Void, Never>] = []
    }
    private let shared = Mutex(Shared())

    /// - Parameters:
    ///   - start: where the stream begins (a piece boundary: a segment, or a resumed fetch).
    ///   - hashing: hash the content as it streams (only meaningful from offset 0).
    ///   - pieceDigests: give each streamed piece its own SHA-256 (about 2 ms per 4 MiB piece
    ///     with SHA-NI, so only where children need them).
    public init(store: PieceStore, id: TaskID, pieceLength: Int, contentLength: Int64?, start: Int64 = 0, hashing: Bool = false,
                pieceDigests: Bool = false, resident: ResidentPieces, arrivals: PieceArrivals?, piecesInFlight: Int = 4,
                pageCacheOnIngest: Bool = true) {
        precondition(start % Int64(pieceLength) == 0, "a stream starts on a piece boundary")
        self.store = store
        self.id = id
        self.pieceLength = pieceLength
        self.contentLength = contentLength
        self.resident = resident
        self.arrivals = arrivals
        self.piecesInFlight = max(1, piecesInFlight)
        self.pageCacheOnIngest = pageCacheOnIngest
        self.pieceDigests = pieceDigests
        position = start
        nextPiece = Int(start / Int64(pieceLength))
        if hashing && start == 0 { hasher = SHA256Hasher() }
    }

    /// Stops hashing (the stream turned out to be one of several segments).
    public func stopHashing() { _ = hasher.take() }

    /// The first write or commit failure, if any (the stream should stop).
    public var failure: String? { shared.withLock { $0.error } }

    /// Room for the next bytes: the unfilled part of the current piece. Nil while
    /// `piecesInFlight` pieces are being written; `wake` runs (once, on a write's completion
    /// thread) when one is done. Also nil after a failure (see ``failure``), with `wake` run at once.
    public func space(orWake wake: @escaping @Sendable () -> Void) -> BufferSpace? {
        if current == nil {
            let ready = shared.withLock { s -> Bool? in
                if s.error != nil { return nil }
                if s.writing >= piecesInFlight { s.wakers.append(wake); return false }
                return true
            }
            guard let ready else { wake(); return nil }
            guard ready else { return nil }
            current = takeBuffer()
            fill = 0
            pieceStarted = ContinuousClock.now
        }
        return BufferSpace(buffer: current!, range: fill..<pieceSize)
    }

    /// `count` bytes landed at the start of the space last returned.
    public func received(_ count: Int) {
        precondition(count > 0 && fill + count <= pieceSize, "received \(count) bytes into \(pieceSize - fill) of room")
        if hasher != nil && hashed == position {
            hasher!.update(current!.buffer, range: fill..<(fill + count))
            hashed += Int64(count)
        }
        fill += count
        position += Int64(count)
        if fill == pieceSize { submitPiece() }
    }

    /// Copies `count` bytes in through `copy(buffer, at, from, n)` (copy source bytes
    /// `from..<from+n` to `buffer[at..<at+n]`), blocking the calling thread while the writes are
    /// all busy. Never call it on an event loop. False after a failure.
    public func append(count: Int, copy: (borrowing IOBuffer, _ at: Int, _ from: Int, _ n: Int) -> Void) -> Bool {
        var from = 0
        while from < count {
            let signal = DispatchSemaphore(value: 0)
            guard let s = space(orWake: { signal.signal() }) else {
                if failure != nil { return false }
                signal.wait()
                continue
            }
            let n = min(s.range.count, count - from)
            copy(s.buffer.buffer, s.range.lowerBound, from, n)
            received(n)
            from += n
        }
        return failure == nil
    }

    /// A buffer for the next piece: a spare one nobody holds any more, else a new one. It holds
    /// ``pieceSize`` bytes: an object's last piece (or its only one) gets only what it needs, so a
    /// 10 KiB object takes 12 KiB of memory and not a whole piece (nor one of the I/O backend's
    /// few registered buffers, a whole piece each).
    private func takeBuffer() -> SharedIOBuffer {
        pieceSize = pieceLength
        if let total = contentLength, total - position < Int64(pieceLength) { pieceSize = max(1, Int(total - position)) }
        if let spare = resident.takeSpare(capacity: alignUp(pieceSize)) { return spare }
        return SharedIOBuffer(pieceSize < pieceLength ? IOBuffer(capacity: pieceSize) : store.io.makeBuffer(capacity: pieceSize))
    }

    /// A buffer for a whole piece `index` (a parent's piece is received into it): a spare one,
    /// else a new aligned one; `length` bytes of it are used.
    public func makePieceBuffer(index: Int) -> SharedIOBuffer {
        let length = contentLength.map { PieceMath.length(ofPiece: index, contentLength: $0, pieceLength: pieceLength) } ?? pieceLength
        if let spare = resident.takeSpare(capacity: alignUp(length)) { return spare }
        return SharedIOBuffer(length < pieceLength ? IOBuffer(capacity: length) : store.io.makeBuffer(capacity: length))
    }

    /// A whole piece that arrived out of order (from a parent), already checked against `crc`
    /// (and `sha256`, the seed's digest for it, when known): into memory and the feed at once,
    /// then the store, as a streamed piece goes. Waits while `piecesInFlight` writes are busy
    /// (backpressure on the download). The buffer then belongs to ``ResidentPieces``: take a new
    /// one for the next piece. False after a failure.
    public func acceptWholePiece(_ index: Int, _ piece: SharedIOBuffer, length: Int, crc: UInt32, sha256: SHA256Digest? = nil) async -> Bool {
        while true {
            let ready: Bool? = await withCheckedContinuation { c in
                let r = shared.withLock { s -> Bool? in
                    if s.error != nil { return nil }
                    if s.writing >= piecesInFlight { s.wakers.append { c.resume(returning: false) }; return false }
                    s.writing += 1  // the slot is ours: concurrent callers never overrun piecesInFlight
                    return true
                }
                if r != false { c.resume(returning: r) }
            }
            guard let ready else { return false }
            if ready { break }
        }
        publishAndWrite(piece, index: index, length: length, crc: crc, sha256: sha256, slotTaken: true)
        return true
    }

    /// The full (or final) piece of the stream.
    private func submitPiece() {
        guard let piece = current, fill > 0 else { return }
        current = nil
        let (index, length) = (nextPiece, fill)
        nextPiece += 1
        DarterMetrics.pieceReceived(from: .origin, bytes: length, elapsed: ContinuousClock.now - pieceStarted)
        fill = 0
        var sha256: SHA256Digest?
        if pieceDigests {
            var h = SHA256Hasher()
            h.update(piece.buffer, range: 0..<length)
            sha256 = SHA256Digest(bytes: h.finalize())
        }
        publishAndWrite(piece, index: index, length: length, crc: piece.buffer.crc32c(0..<length), sha256: sha256)
    }

    /// A piece and its CRC32C: memory and the feed first, then the store. A piece that a client
    /// must read from the store (it is no longer in memory) is read ahead.
    private func publishAndWrite(_ piece: SharedIOBuffer, index: Int, length: Int, crc: UInt32, sha256: SHA256Digest?, slotTaken: Bool = false) {
        let (store, id, pageCacheOnIngest, resident) = (self.store, self.id, self.pageCacheOnIngest, self.resident)
        let departed = resident.publish(id, index: index, piece, length: length, crc: crc, sha256: sha256).filter { $0.needed || pageCacheOnIngest }
        arrivals?.announce(id, .piece(index, sha256: sha256))
        if !departed.isEmpty {
            Task { [store] in for d in departed { await store.prefetchPiece(d.id, index: d.index) } }
        }
        if !slotTaken { shared.withLock { $0.writing += 1 } }
        let write = Task { [self] in
            let commit: Task<Void, any Error>
            do {
                commit = try await store.startPieceWrite(id, index: index, from: piece.buffer, length: length, crc32c: crc, sha256: sha256)
            } catch {
                finishWrite(error: "storing piece \(index): \(error)")
                return
            }
            finishWrite(error: nil)
            do {
                try await commit.value
                // A piece that left memory before it was committed could not be read ahead then.
                if resident.leftEarly(id, index: index, orOnlyNeeded: !pageCacheOnIngest) { await store.prefetchPiece(id, index: index) }
            } catch {
                shared.withLock { $0.error = $0.error ?? "committing piece \(index): \(error)" }
            }
        }
        shared.withLock { $0.writes.append(write) }
    }

    /// A data write ended: its slot is free (the buffer may be reused); wake who waits for room.
    private func finishWrite(error: String?) {
        let wakers = shared.withLock { s -> [@Sendable () -> Void] in
            s.writing -= 1
            if let error, s.error == nil { s.error = error }
            defer { s.wakers = [] }
            return s.wakers
        }
        for w in wakers { w() }
    }

    /// After the stream: for content of unknown length (`streamEnded`), the partial last piece
    /// is written; every write is awaited; the first failure is thrown.
    public func finish(streamEnded: Bool) async throws(AssemblyError) {
        if streamEnded, current != nil, fill > 0 {
            pieceSize = fill
            submitPiece()
        }
        let writes = shared.withLock { $0.writes }
        for w in writes { await w.value }
        if let e = failure { throw AssemblyError(description: e) }
    }

    /// The content's SHA-256 when this one stream saw every byte from offset 0 in order.
    public func takeDigest() -> SHA256Digest? {
        guard hashed == position, let h = hasher.take() else { return nil }
        return SHA256Digest(bytes: h.finalize())
    }
}

public struct AssemblyError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

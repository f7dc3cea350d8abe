import DarterIO
import PieceStore
import Synchronization

/// Pieces of fetches in flight, kept in the memory they arrived in, so that clients following a
/// fetch are sent those bytes instead of reading them back. Writes bypass the page cache
/// (O_DIRECT), so a read-back is a disk read (or a prefetch) that competes with the writes: on
/// this class of disk a cold miss that wrote and read back ran at about 1 GB/s.
///
/// A piece stays while a registered reader has not passed it, up to `capacity` bytes over all
/// fetches; past that the oldest pieces leave, and readers behind them read the store (which the
/// fetch then prefetches into the page cache). A piece is here once it has arrived whole, before
/// the store has committed it: followers get the origin's bytes without waiting for a disk
/// flush, and since nobody waits on the store for them, its group commit can gather pieces
/// (one fdatasync per group instead of one per piece). The digest hold-back still applies
/// (the reader's limit), and a fetch that fails closes its followers' connections as before.
final class ResidentPieces: Sendable {
    private struct Fetch {
        let pieceLength: Int64
        var pieces: [Int: SharedIOBuffer] = [:]
        /// Readers waiting for a piece to arrive, woken when it does or when the fetch ends.
        var waiters: [(index: Int, wake: @Sendable () -> Void)] = []
        /// Pieces published so far (a piece not held but published has left: read the store).
        var published = Set<Int>()
        /// Each registered reader's next task offset.
        var readers: [ObjectIdentifier: Int64] = [:]
        var fetching = true

        /// The lowest offset a reader still needs (none: no piece is needed).
        var lowestReader: Int64 { readers.values.min() ?? .max }
        func end(of index: Int) -> Int64 { Int64(index + 1) * pieceLength }
    }
    private struct State {
        var fetches: [TaskID: Fetch] = [:]
        var bytes = 0
        /// Buffers of pieces that left, for the next pieces of any fetch (allocating and
        /// zero-filling a fresh 4 MiB buffer per piece, and unmapping it later, took a third of
        /// a cold miss's CPU). Dropped when no fetch is left.
        var spares: [SharedIOBuffer] = []
    }
    /// Spare buffers kept at most.
    static let maximumSpares = 8
    private let state = Mutex(State())
    /// Bytes of pieces held at most, over all fetches.
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    private let sent = Atomic<Int>(0)

    /// Bytes held now (`/metrics`).
    var residentBytes: Int { state.withLock { $0.bytes } }
    /// Bytes handed to clients from memory so far (`/metrics`).
    var bytesSent: Int { sent.load(ordering: .relaxed) }

    /// A fetch of `id` starts (again): pieces it publishes may be kept.
    func beginFetch(_ id: TaskID, pieceLength: Int) {
        let woken = state.withLock { s -> [(index: Int, wake: @Sendable () -> Void)] in
            var f = Fetch(pieceLength: Int64(pieceLength))
            let old = s.fetches[id]
            if let old {
                for b in old.pieces.values { s.bytes -= b.buffer.capacity }
                f.readers = old.readers
            }
            s.fetches[id] = f
            return old?.waiters ?? []
        }
        for w in woken { w.wake() }
    }

    /// The fetch of `id` publishes no more pieces; its record goes once no reader is left.
    func endFetch(_ id: TaskID) {
        let woken = state.withLock { s -> [(index: Int, wake: @Sendable () -> Void)] in
            guard s.fetches[id] != nil else { return [] }
            s.fetches[id]!.fetching = false
            let waiters = s.fetches[id]!.waiters
            s.fetches[id]!.waiters = []
            if s.fetches[id]!.readers.isEmpty { remove(id, &s) }
            return waiters
        }
        for w in woken { w.wake() }
    }

    /// Calls `wake` (from any thread) once piece `index` of `id` is held here, at once if it is,
    /// or when the fetch ends without it. False (and no call) when no fetch of `id` is under way:
    /// the reader then waits on the store.
    func whenHeld(_ id: TaskID, index: Int, _ wake: @escaping @Sendable () -> Void) -> Bool {
        let (known, now) = state.withLock { s -> (Bool, Bool) in
            guard s.fetches[id]?.fetching == true else { return (false, false) }
            if s.fetches[id]!.pieces[index] != nil { return (true, true) }
            if s.fetches[id]!.published.contains(index) { return (false, false) }
            s.fetches[id]!.waiters.append((index, wake))
            return (true, false)
        }
        if now { wake() }
        return known
    }

    /// Keeps piece `index` of `id` (filled: it is not written to again). Returns the indexes of
    /// pieces that left while a reader still needs them: they must be read from the store, so
    /// they are worth prefetching. Pieces that leave become spare buffers.
    func publish(_ id: TaskID, index: Int, _ piece: SharedIOBuffer) -> [Int] {
        let (needed, woken) = state.withLock { s -> ([Int], [@Sendable () -> Void]) in
            guard var f = s.fetches[id], f.fetching else {
                keepSpares([piece], &s)
                return ([], [])
            }
            f.pieces[index] = piece
            f.published.insert(index)
            let woken = f.waiters.filter { $0.index == index }.map(\.wake)
            f.waiters.removeAll { $0.index == index }
            s.bytes += piece.buffer.capacity
            var left: [SharedIOBuffer] = []
            var needed: [Int] = []
            release(&f, &s.bytes, into: &left)
            // Over capacity: the oldest pieces of this fetch go first.
            while s.bytes > capacity, let oldest = f.pieces.keys.min() {
                let b = f.pieces.removeValue(forKey: oldest)!
                s.bytes -= b.buffer.capacity
                left.append(b)
                needed.append(oldest)
            }
            s.fetches[id] = f
            keepSpares(left, &s)
            return (needed, woken)
        }
        for w in woken { w() }
        return needed
    }

    /// A spare buffer of `capacity` bytes that nobody else holds any more (a client may still be
    /// sending from a piece that left), or nil.
    func takeSpare(capacity: Int) -> SharedIOBuffer? {
        state.withLock { s in
            for i in s.spares.indices where s.spares[i].buffer.capacity == capacity {
                if isKnownUniquelyReferenced(&s.spares[i]) { return s.spares.remove(at: i) }
            }
            return nil
        }
    }

    /// Spare buffers held now (tests).
    var spareCount: Int { state.withLock { $0.spares.count } }

    private func keepSpares(_ buffers: [SharedIOBuffer], _ s: inout State) {
        guard !s.fetches.isEmpty else { return }
        for b in buffers where s.spares.count < Self.maximumSpares { s.spares.append(b) }
    }

    /// Whether piece `index` of `id` must be read from the store by a registered reader (it is
    /// not held here and a reader has not passed it yet).
    func readerNeedsFromStore(_ id: TaskID, index: Int) -> Bool {
        state.withLock { s in
            guard let f = s.fetches[id] else { return false }
            return f.pieces[index] == nil && f.lowestReader < f.end(of: index)
        }
    }

    /// Registers a reader that will read `id` from `offset` on; false when no fetch of `id` is
    /// known here (the reader then reads the store only).
    @discardableResult
    func addReader(_ id: TaskID, _ reader: ObjectIdentifier, at offset: Int64) -> Bool {
        state.withLock { s in
            guard s.fetches[id] != nil else { return false }
            s.fetches[id]!.readers[reader] = offset
            return true
        }
    }

    func removeReader(_ id: TaskID, _ reader: ObjectIdentifier) {
        state.withLock { s in
            guard var f = s.fetches[id], f.readers.removeValue(forKey: reader) != nil else { return }
            if !f.fetching && f.readers.isEmpty { return remove(id, &s) }
            var left: [SharedIOBuffer] = []
            release(&f, &s.bytes, into: &left)
            s.fetches[id] = f
            keepSpares(left, &s)
        }
    }

    /// The bytes at `offset` of `id` held here (a buffer, the offset in it, and at most
    /// `maxLength` bytes up to the piece's end), and records that `reader` is at `offset`.
    func bytes(_ id: TaskID, reader: ObjectIdentifier, at offset: Int64, maxLength: Int) -> (buffer: SharedIOBuffer, offset: Int, length: Int)? {
        state.withLock { s in
            guard var f = s.fetches[id], f.readers[reader] != nil else { return nil }
            f.readers[reader] = offset
            let index = Int(offset / f.pieceLength)
            var left: [SharedIOBuffer] = []
            if let lowest = f.pieces.keys.min(), f.end(of: lowest) <= f.lowestReader {
                release(&f, &s.bytes, into: &left)
            }
            s.fetches[id] = f
            keepSpares(left, &s)
            guard let piece = f.pieces[index] else { return nil }
            let within = Int(offset - Int64(index) * f.pieceLength)
            let length = min(maxLength, Int(f.pieceLength) - within)
            sent.add(length, ordering: .relaxed)
            return (piece, within, length)
        }
    }

    /// Drops the pieces every reader has passed (all of them when there is no reader).
    private func release(_ f: inout Fetch, _ bytes: inout Int, into left: inout [SharedIOBuffer]) {
        let lowest = f.lowestReader
        for (index, b) in f.pieces where f.end(of: index) <= lowest {
            f.pieces[index] = nil
            bytes -= b.buffer.capacity
            left.append(b)
        }
    }

    private func remove(_ id: TaskID, _ s: inout State) {
        if let f = s.fetches.removeValue(forKey: id) {
            for b in f.pieces.values { s.bytes -= b.buffer.capacity }
        }
        if s.fetches.isEmpty { s.spares.removeAll() }
    }
}

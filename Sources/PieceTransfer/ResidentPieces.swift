import DarterIO
import PieceStore
import Synchronization
import DarterCore

/// Pieces of fresh objects, kept in the memory they arrived in: clients following a fetch, and
/// hits soon after it, are sent those bytes instead of reading them back. Writes bypass the
/// page cache (O_DIRECT), so a read-back is a disk read that competes with the writes: on this
/// class of disk a cold miss that read its pieces back ran at about 1.1 GB/s, against 1.9
/// without.
///
/// A piece is here once it has arrived whole, before the store has committed it: followers get
/// the origin's bytes without waiting for a disk flush, and since nobody waits on the store for
/// them, its group commit can gather pieces (one fdatasync per group instead of one per piece).
/// The digest hold-back still applies (the reader's limit), and a fetch that fails closes its
/// followers' connections as before.
///
/// Pieces stay until their object has been read through the page cache once (``settled(_:)``:
/// the background pass after a fetch), within `capacity` bytes over all objects. Over it, pieces
/// leave in this order: those of finished fetches (the oldest fetch first), then pieces no reader
/// of a running fetch still needs, then the oldest a reader needs (it reads them from the store).
/// ``publish(_:index:_:)`` says which left before their object was settled, so they can be read
/// into the page cache.
public final class ResidentPieces: Sendable {
    private struct Fetch {
        let pieceLength: Int64
        var pieces: [Int: SharedIOBuffer] = [:]
        /// Each held piece's CRC32C, length and (when known) SHA-256: the piece protocol sends them
        /// before the bytes.
        var checks: [Int: (crc: UInt32, length: Int, sha256: SHA256Digest?)] = [:]
        /// Readers waiting for a piece to arrive, woken when it does or when the fetch ends.
        var waiters: [(index: Int, wake: @Sendable () -> Void)] = []
        /// Pieces published so far (a piece not held but published has left: read the store).
        var published = Set<Int>()
        /// Each registered reader's next task offset.
        var readers: [ObjectIdentifier: Int64] = [:]
        var fetching = true
        /// When the fetch ended (a counter: older fetches' pieces leave first).
        var endedAt = 0

        /// The lowest offset a reader still needs (none: no piece is needed).
        var lowestReader: Int64 { readers.values.min() ?? .max }
        func end(of index: Int) -> Int64 { Int64(index + 1) * pieceLength }
        var removable: Bool { !fetching && readers.isEmpty && pieces.isEmpty }
    }
    private struct State {
        var fetches: [TaskID: Fetch] = [:]
        var bytes = 0
        var ended = 0
        /// Buffers of pieces that left, for the next pieces of any fetch (allocating and
        /// zero-filling a fresh 4 MiB buffer per piece, and unmapping it later, took a third of
        /// a cold miss's CPU). Pieces and spares together stay within `capacity`; spares are
        /// let go once no fetch has needed one for `spareIdleSeconds`.
        var spares: [SharedIOBuffer] = []
        var spareBytes = 0
        /// When a piece was last published or a spare taken (monotonic milliseconds).
        var lastUse: Int64 = 0
        var trimScheduled = false
    }
    /// A piece that left memory before its object was read through the page cache.
    public struct Departure: Equatable, Sendable {
        public var id: TaskID
        public var index: Int
        /// A reader of the running fetch has not passed it yet.
        public var needed: Bool
        public init(id: TaskID, index: Int, needed: Bool) { self.id = id; self.index = index; self.needed = needed }
    }
    private let state = Mutex(State())
    /// Bytes of pieces (and spare buffers) held at most, over all objects.
    public let capacity: Int
    /// Seconds without a fetch after which spare buffers are let go.
    public let spareIdleSeconds: Int

    public init(capacity: Int, spareIdleSeconds: Int = 30) {
        self.capacity = capacity
        self.spareIdleSeconds = spareIdleSeconds
    }

    private let sent = Atomic<Int>(0)

    /// Bytes held now (`/metrics`).
    public var residentBytes: Int { state.withLock { $0.bytes } }
    /// Bytes handed to clients from memory so far (`/metrics`).
    public var bytesSent: Int { sent.load(ordering: .relaxed) }
    /// Spare buffers held now (tests).
    public var spareCount: Int { state.withLock { $0.spares.count } }
    /// Bytes of spare buffers held now (`/metrics`).
    public var spareBytes: Int { state.withLock { $0.spareBytes } }

    /// A fetch of `id` starts (again): pieces it publishes are kept. What an earlier fetch of
    /// `id` left here goes.
    public func beginFetch(_ id: TaskID, pieceLength: Int) {
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

    /// The fetch of `id` publishes no more pieces; what it holds stays until ``settled(_:)``.
    public func endFetch(_ id: TaskID) {
        let woken = state.withLock { s -> [(index: Int, wake: @Sendable () -> Void)] in
            guard var f = s.fetches[id] else { return [] }
            f.fetching = false
            s.ended += 1
            f.endedAt = s.ended
            let waiters = f.waiters
            f.waiters = []
            s.fetches[id] = f
            removeIfDone(id, &s)
            return waiters
        }
        for w in woken { w.wake() }
    }

    /// The object `id` has been read through the page cache: its pieces are no longer needed
    /// here (hits read the page cache as fast).
    public func settled(_ id: TaskID) {
        state.withLock { s in
            guard var f = s.fetches[id] else { return }
            let left = Array(f.pieces.values)
            for b in left { s.bytes -= b.buffer.capacity }
            f.pieces = [:]
            f.checks = [:]
            s.fetches[id] = f
            keepSpares(left, &s)
            removeIfDone(id, &s)
        }
    }

    /// Calls `wake` (from any thread) once the piece holding byte `offset` of `id` is held here,
    /// at once if it is, or when the fetch ends without it. False (and no call) when the piece is
    /// not coming here: no fetch of `id` is under way, or the piece came and left. The reader
    /// then waits on the store.
    public func whenHeld(_ id: TaskID, offset: Int64, _ wake: @escaping @Sendable () -> Void) -> Bool {
        let (known, now) = state.withLock { s -> (Bool, Bool) in
            guard let f = s.fetches[id] else { return (false, false) }
            let index = Int(offset / f.pieceLength)
            if f.pieces[index] != nil { return (true, true) }
            guard f.fetching, !f.published.contains(index) else { return (false, false) }
            s.fetches[id]!.waiters.append((index, wake))
            return (true, false)
        }
        if now { wake() }
        return known
    }

    /// Keeps piece `index` of `id` (its first `length` bytes filled, with CRC32C `crc` and, when
    /// known, SHA-256 `sha256`: it is not written to again), making room if needed. Returns the
    /// pieces that left before their object was settled.
    public func publish(_ id: TaskID, index: Int, _ piece: SharedIOBuffer, length: Int, crc: UInt32, sha256: SHA256Digest? = nil) -> [Departure] {
        let (departures, woken) = state.withLock { s -> ([Departure], [@Sendable () -> Void]) in
            guard var f = s.fetches[id], f.fetching else {
                keepSpares([piece], &s)
                return ([], [])
            }
            f.pieces[index] = piece
            f.checks[index] = (crc, length, sha256)
            f.published.insert(index)
            let woken = f.waiters.filter { $0.index == index }.map(\.wake)
            f.waiters.removeAll { $0.index == index }
            s.fetches[id] = f
            s.bytes += piece.buffer.capacity
            s.lastUse = SystemCalls.monotonicMilliseconds()
            return (makeRoom(&s), woken)
        }
        for w in woken { w() }
        return departures
    }

    /// Over capacity, drops pieces in the documented order until it fits.
    private func makeRoom(_ s: inout State) -> [Departure] {
        var departures: [Departure] = []
        var left: [SharedIOBuffer] = []
        // Spare buffers give way to pieces first.
        while s.bytes + s.spareBytes > capacity, let spare = s.spares.popLast() { s.spareBytes -= spare.buffer.capacity }
        while s.bytes > capacity {
            // (class, age, index): finished fetches first, oldest first; then pieces no reader
            // needs; then the oldest needed ones.
            var best: (rank: (Int, Int, Int), id: TaskID, index: Int, needed: Bool)?
            for (id, f) in s.fetches {
                let lowest = f.lowestReader
                for index in f.pieces.keys {
                    let needed = f.fetching && f.end(of: index) > lowest
                    let rank = (!f.fetching ? 0 : needed ? 2 : 1, f.fetching ? 0 : f.endedAt, index)
                    if best == nil || rank < best!.rank { best = (rank, id, index, needed) }
                }
            }
            guard let victim = best else { break }
            let b = s.fetches[victim.id]!.pieces.removeValue(forKey: victim.index)!
            s.fetches[victim.id]!.checks[victim.index] = nil
            s.bytes -= b.buffer.capacity
            left.append(b)
            departures.append(Departure(id: victim.id, index: victim.index, needed: victim.needed))
            removeIfDone(victim.id, &s)
        }
        keepSpares(left, &s)
        return departures
    }

    /// Piece `index` of `id` if it is held here: its buffer, length, CRC32C and SHA-256 if known
    /// (a piece that has arrived whole, committed or not).
    public func piece(_ id: TaskID, index: Int) -> (buffer: SharedIOBuffer, length: Int, crc: UInt32, sha256: SHA256Digest?)? {
        state.withLock { s in
            guard let f = s.fetches[id], let b = f.pieces[index], let c = f.checks[index] else { return nil }
            return (b, c.length, c.crc, c.sha256)
        }
    }

    /// The SHA-256 of each piece of `id` held here whose digest is known.
    public func heldDigests(_ id: TaskID) -> [Int: SHA256Digest] {
        state.withLock { s in
            var out: [Int: SHA256Digest] = [:]
            for (i, c) in s.fetches[id]?.checks ?? [:] { if let d = c.sha256 { out[i] = d } }
            return out
        }
    }

    /// The pieces of `id` held here now.
    public func heldPieces(_ id: TaskID) -> [Int] {
        state.withLock { s in s.fetches[id].map { Array($0.pieces.keys) } ?? [] }
    }

    /// Whether a fetch of `id` is publishing pieces here now.
    public func isFetching(_ id: TaskID) -> Bool {
        state.withLock { $0.fetches[id]?.fetching ?? false }
    }

    /// A spare buffer of `capacity` bytes that nobody else holds any more (a client may still be
    /// sending from a piece that left), or nil.
    public func takeSpare(capacity: Int) -> SharedIOBuffer? {
        state.withLock { s in
            for i in s.spares.indices.reversed() where s.spares[i].buffer.capacity == capacity {
                if isKnownUniquelyReferenced(&s.spares[i]) {
                    s.spareBytes -= capacity
                    s.lastUse = SystemCalls.monotonicMilliseconds()
                    return s.spares.remove(at: i)
                }
            }
            return nil
        }
    }

    /// Whether piece `index` of `id` was published and has left again while its object is still
    /// unsettled (so it is worth reading into the page cache); with `orOnlyNeeded`, only when a
    /// registered reader has not passed it yet (it will read it from the store).
    public func leftEarly(_ id: TaskID, index: Int, orOnlyNeeded onlyNeeded: Bool) -> Bool {
        state.withLock { s in
            guard let f = s.fetches[id], f.published.contains(index), f.pieces[index] == nil else { return false }
            return !onlyNeeded || f.lowestReader < f.end(of: index)
        }
    }

    /// Registers a reader that will read `id` from `offset` on; false when nothing of `id` is
    /// here (the reader then reads the store only).
    @discardableResult
    public func addReader(_ id: TaskID, _ reader: ObjectIdentifier, at offset: Int64) -> Bool {
        state.withLock { s in
            guard s.fetches[id] != nil else { return false }
            s.fetches[id]!.readers[reader] = offset
            return true
        }
    }

    public func removeReader(_ id: TaskID, _ reader: ObjectIdentifier) {
        state.withLock { s in
            guard s.fetches[id]?.readers.removeValue(forKey: reader) != nil else { return }
            removeIfDone(id, &s)
        }
    }

    /// The bytes at `offset` of `id` held here (a buffer, the offset in it, and at most
    /// `maxLength` bytes up to the piece's end), and records that `reader` is at `offset`.
    public func bytes(_ id: TaskID, reader: ObjectIdentifier, at offset: Int64, maxLength: Int) -> (buffer: SharedIOBuffer, offset: Int, length: Int)? {
        state.withLock { s in
            // A reader made before this fetch began registers here (else a piece held for it
            // would never be handed over).
            guard s.fetches[id] != nil else { return nil }
            s.fetches[id]!.readers[reader] = offset
            let f = s.fetches[id]!
            let index = Int(offset / f.pieceLength)
            guard let piece = f.pieces[index] else { return nil }
            let within = Int(offset - Int64(index) * f.pieceLength)
            let length = min(maxLength, Int(f.pieceLength) - within)
            sent.add(length, ordering: .relaxed)
            return (piece, within, length)
        }
    }

    private func keepSpares(_ buffers: [SharedIOBuffer], _ s: inout State) {
        for b in buffers where s.bytes + s.spareBytes + b.buffer.capacity <= capacity {
            s.spares.append(b)
            s.spareBytes += b.buffer.capacity
        }
        scheduleTrim(&s)
    }

    private func removeIfDone(_ id: TaskID, _ s: inout State) {
        guard s.fetches[id]?.removable == true else { return }
        s.fetches[id] = nil
    }

    /// Lets the spare buffers go once no fetch has used memory for `spareIdleSeconds`.
    private func scheduleTrim(_ s: inout State) {
        guard !s.spares.isEmpty, !s.trimScheduled else { return }
        s.trimScheduled = true
        Task { [self] in
            while true {
                try? await Task.sleep(for: .seconds(spareIdleSeconds))
                let done = state.withLock { s -> Bool in
                    let idle = SystemCalls.monotonicMilliseconds() - s.lastUse >= Int64(spareIdleSeconds) * 1000
                    guard idle && s.fetches.values.allSatisfy({ !$0.fetching }) else { return false }
                    s.spares.removeAll()
                    s.spareBytes = 0
                    s.trimScheduled = false
                    return true
                }
                if done { return }
            }
        }
    }
}

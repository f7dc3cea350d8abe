#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import DarterCore

extension PieceStore {
    // MARK: Reading

    /// Marks a read in progress (protects from eviction) and returns the pieces `range` covers.
    private func beginRead(_ id: TaskID, range: Range<Int64>) throws(StoreError) -> Range<Int> {
        try state.withLock { s throws(StoreError) in
            guard var t = s.index.tasks[id], !t.deleting else { throw .unknownTask(id) }
            let end = t.contentLength ?? PieceMath.offset(ofPiece: t.pieces.count, pieceLength: t.pieceLength)
            guard range.lowerBound >= 0, range.upperBound <= end else { throw .rangeOutOfBounds(id) }
            let pieces = PieceMath.pieces(covering: range, pieceLength: t.pieceLength)
            for i in pieces where i >= t.pieces.count || t.pieces[i].state != .committed {
                throw .pieceNotCommitted(id, index: i)
            }
            t.addReader(now: Self.now())
            s.index.tasks[id] = t
            return pieces
        }
    }

    private func endRead(_ id: TaskID) {
        state.withLock { $0.index.tasks[id]?.readers -= 1 }
    }

    /// Reads bytes `range` of a task into `buffer` with direct I/O and returns where in the
    /// buffer they are (the read starts at the aligned offset below `range.lowerBound`).
    /// Every piece touched must be committed; pieces not checked since a restart are verified
    /// against their CRC32C first, and a corrupt one is dropped and reported.
    /// `buffer` must hold `alignUp(range.count) + 4096` bytes.
    public func read(_ id: TaskID, range: Range<Int64>, into buffer: borrowing IOBuffer) async throws -> Range<Int> {
        let pieces = try beginRead(id, range: range)
        defer { endRead(id) }
        for i in pieces { try await verifyIfNeeded(id, index: i) }
        let fd = try await directDescriptor(id)
        let start = Int64(alignDown(Int(range.lowerBound)))
        let end = Int64(alignUp(Int(range.upperBound)))
        precondition(Int(end - start) <= buffer.capacity, "buffer too small for the aligned range")
        let n: Int
        let started = ContinuousClock.now
        do { n = try await io.readFully(fd, into: buffer, range: 0..<Int(end - start), at: start) }
        catch { throw StoreError.io("reading \(id)", error) }
        DarterMetrics.storeOperationSeconds.observe(ContinuousClock.now - started, "read")
        let lead = Int(range.lowerBound - start)
        guard n >= lead + range.count else { throw StoreError.io("short read of \(id)", .ioError) }
        return lead..<(lead + range.count)
    }

    /// Reads one whole piece into `buffer[0..<length]` and returns its length.
    public func readPiece(_ id: TaskID, index: Int, into buffer: borrowing IOBuffer) async throws -> Int {
        let (offset, length, _, _) = try pieceExtent(id, index: index)
        let r = try await read(id, range: offset..<(offset + Int64(length)), into: buffer)
        precondition(r.lowerBound == 0)  // pieces start aligned
        return length
    }

    /// A copy of bytes `range` (for small reads and tests).
    public func readBytes(_ id: TaskID, range: Range<Int64>) async throws -> [UInt8] {
        let buffer = io.makeBuffer(capacity: alignUp(range.count) + directIOAlignment)
        let r = try await read(id, range: range, into: buffer)
        return buffer.bytes(r)
    }

    func pieceExtent(_ id: TaskID, index: Int) throws(StoreError) -> (offset: Int64, length: Int, crc32c: UInt32, sha256: SHA256Digest?) {
        try state.withLock { s throws(StoreError) in
            guard let t = s.index.tasks[id], !t.deleting else { throw .unknownTask(id) }
            guard index >= 0, index < t.pieces.count, t.pieces[index].state == .committed else { throw .pieceNotCommitted(id, index: index) }
            let p = t.pieces[index]
            return (PieceMath.offset(ofPiece: index, pieceLength: t.pieceLength), Int(p.length), p.crc32c, p.sha256)
        }
    }

    /// The byte range, recorded CRC32C and SHA-256 (if its writer computed one) of piece
    /// `index`, if it is committed.
    public func committedPiece(_ id: TaskID, index: Int) -> (range: Range<Int64>, crc32c: UInt32, sha256: SHA256Digest?)? {
        guard let (offset, length, crc, sha256) = try? pieceExtent(id, index: index) else { return nil }
        return (offset..<(offset + Int64(length)), crc, sha256)
    }

    /// Checks a piece against its CRC32C once per process lifetime (pieces written by this
    /// process are trusted). A mismatch drops the piece durably and throws ``StoreError/corruptPiece(_:index:)``.
    func verifyIfNeeded(_ id: TaskID, index: Int) async throws {
        guard configuration.verifyAfterRestart else { return }
        let todo = state.withLock { s -> (Int64, Int, UInt32)? in
            guard let t = s.index.tasks[id], index < t.pieces.count else { return nil }
            let p = t.pieces[index]
            guard p.state == .committed, !p.verified else { return nil }
            return (PieceMath.offset(ofPiece: index, pieceLength: t.pieceLength), Int(p.length), p.crc32c)
        }
        guard let (offset, length, crc) = todo else { return }
        let fd = try await directDescriptor(id)
        let buffer = io.makeBuffer(capacity: alignUp(length))
        let n: Int
        do { n = try await io.readFully(fd, into: buffer, range: 0..<alignUp(length), at: offset) }
        catch { throw StoreError.io("reading piece \(index) of \(id)", error) }
        if n >= length && buffer.crc32c(0..<length) == crc {
            state.withLock { s in
                if s.index.tasks[id]?.pieces[index].crc32c == crc { s.index.tasks[id]!.pieces[index].verified = true }
            }
            return
        }
        state.withLock { $0.corruptDropped += 1 }
        try await appendDurably([.pieceDropped(id, index: index)])
        throw StoreError.corruptPiece(id, index: index)
    }

    /// The committed, verified bytes from `range.lowerBound` (up to `range.upperBound`) as an
    /// extent of the data file for sendfile/splice. Nil when the first byte is not committed
    /// yet (wait with ``waitForOffset(_:offset:timeout:)``). The lease keeps the task alive.
    public func servableExtent(_ id: TaskID, range: Range<Int64>) async throws -> ServableExtent? {
        lastClientRead.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed)
        let run = try state.withLock { s throws(StoreError) -> (Int64, Range<Int>)? in
            guard var t = s.index.tasks[id], !t.deleting else { throw .unknownTask(id) }
            let length = min(t.committedRun(from: range.lowerBound), range.upperBound - range.lowerBound)
            guard length > 0 else { return nil }
            t.addReader(now: Self.now())
            s.index.tasks[id] = t
            return (length, PieceMath.pieces(covering: range.lowerBound..<(range.lowerBound + length), pieceLength: t.pieceLength))
        }
        guard let (length, pieces) = run else { return nil }
        let lease = ReadLease { [self] in endRead(id) }
        for i in pieces { try await verifyIfNeeded(id, index: i) }
        let fd = try await bufferedDescriptor(id)
        return ServableExtent(fd: fd, offset: range.lowerBound, length: Int(length), lease: lease)
    }

    /// ``servableExtent(_:range:)`` without suspending, for event loops: nil unless the first
    /// byte is committed, its piece already verified and the page-cache descriptor open
    /// (otherwise the async variant does that work).
    public func servableExtentNow(_ id: TaskID, range: Range<Int64>) -> ServableExtent? {
        servableExtentNow(id, range: range, byClient: true)
    }

    func servableExtentNow(_ id: TaskID, range: Range<Int64>, byClient: Bool) -> ServableExtent? {
        if byClient { lastClientRead.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed) }
        let verify = configuration.verifyAfterRestart
        let found = state.withLock { s -> (FileDescriptor, Int64)? in
            guard var t = s.index.tasks[id], !t.deleting, let fd = t.bufferedFD else { return nil }
            var length = min(t.committedRun(from: range.lowerBound), range.upperBound - range.lowerBound)
            if verify, length > 0 {
                for i in PieceMath.pieces(covering: range.lowerBound..<(range.lowerBound + length), pieceLength: t.pieceLength)
                where !t.pieces[i].verified {
                    length = max(0, PieceMath.offset(ofPiece: i, pieceLength: t.pieceLength) - range.lowerBound)
                    break
                }
            }
            guard length > 0 else { return nil }
            t.addReader(now: Self.now())
            s.index.tasks[id] = t
            return (fd, length)
        }
        guard let (fd, length) = found else { return nil }
        return ServableExtent(fd: fd, offset: range.lowerBound, length: Int(length), lease: ReadLease { [self] in endRead(id) })
    }

    /// Asks the kernel to bring a committed piece into the page cache (POSIX_FADV_WILLNEED),
    /// so readers streaming behind a writer read memory, not the disk (writes are O_DIRECT).
    public func prefetchPiece(_ id: TaskID, index: Int) async {
        guard let range = committedPiece(id, index: index)?.range, let fd = try? await bufferedDescriptor(id) else { return }
        SystemCalls.prefetch(fd, offset: range.lowerBound, length: Int64(range.count))
    }

    // MARK: Read-while-write

    /// Waits until piece `index` is committed, or the task turns out to end before it.
    /// Throws ``StoreError/timedOut`` after `timeout`, `CancellationError` when the calling task
    /// is cancelled, and ``StoreError/taskFailed(_:_:)`` when the writer gives up.
    public func waitForPiece(_ id: TaskID, index: Int, timeout: Duration? = nil) async throws -> PieceAvailability {
        let waiterID = state.withLock { s in s.nextWaiterID += 1; return s.nextWaiterID }
        let timer = timeout.map { t in
            Task { [self] in
                try await Task.sleep(for: t)
                resumeWaiter(id, waiterID, with: .failure(StoreError.timedOut))
            }
        }
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<PieceAvailability, any Error>) in
                let immediate = state.withLock { s -> Result<PieceAvailability, any Error>? in
                    guard let t = s.index.tasks[id], !t.deleting else { return .failure(StoreError.unknownTask(id)) }
                    if let f = t.failure { return .failure(StoreError.taskFailed(id, f)) }
                    if index < t.pieces.count, t.pieces[index].state == .committed { return .success(.committed) }
                    if let count = t.pieceCount, index >= count { return .success(.beyondEnd) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    s.waiters[id, default: []].append(Waiter(id: waiterID, index: index, continuation: c))
                    return nil
                }
                if let immediate { c.resume(with: immediate) }
            }
        } onCancel: {
            resumeWaiter(id, waiterID, with: .failure(CancellationError()))
        }
    }

    /// Waits until the byte at `offset` is committed (see ``waitForPiece(_:index:timeout:)``).
    public func waitForOffset(_ id: TaskID, offset: Int64, timeout: Duration? = nil) async throws -> PieceAvailability {
        guard let pieceLength = info(id)?.pieceLength else { throw StoreError.unknownTask(id) }
        return try await waitForPiece(id, index: Int(offset / Int64(pieceLength)), timeout: timeout)
    }

    private func resumeWaiter(_ id: TaskID, _ waiterID: Int, with result: Result<PieceAvailability, any Error>) {
        let c = state.withLock { s -> CheckedContinuation<PieceAvailability, any Error>? in
            guard var list = s.waiters[id], let i = list.firstIndex(where: { $0.id == waiterID }) else { return nil }
            let w = list.remove(at: i)
            s.waiters[id] = list.isEmpty ? nil : list
            return w.continuation
        }
        c?.resume(with: result)
    }
}

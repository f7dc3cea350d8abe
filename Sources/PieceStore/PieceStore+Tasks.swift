#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import DarterCore

extension PieceStore {
    // MARK: Creating and writing

    /// Creates a task (or returns the existing one's info). The data file is created and, when
    /// the length is known, preallocated; room is made by eviction first if needed.
    @discardableResult
    public func createTask(_ id: TaskID, pieceLength: Int? = nil, contentLength: Int64?, expectedDigest: SHA256Digest? = nil,
                           origin: OriginMetadata = OriginMetadata(), pinned: Bool = false) async throws -> TaskInfo {
        if let existing = info(id) { return existing }
        let pieceLength = pieceLength ?? PieceMath.defaultPieceLength(contentLength: contentLength)
        guard PieceMath.isValidPieceLength(pieceLength) else { throw StoreError.invalidPieceLength(pieceLength) }
        let reserve = Int64(alignUp(Int(contentLength ?? 0)))
        try await makeRoom(for: reserve, excluding: id)

        let path = dataPath(id)
        let fd: FileDescriptor
        do {
            try SystemCalls.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
            fd = try await io.open(path, [.readWrite, .create, .direct], mode: 0o644)
        } catch { throw StoreError.io("creating \(path)", error) }
        do {
            if reserve > 0 { try await allocateWithEviction(fd, offset: 0, length: reserve, task: id) }
            try await syncDirectory(String(path[..<path.lastIndex(of: "/")!]))
        } catch {
            try? await io.close(fd)
            try? await io.unlink(path)
            throw error
        }
        let descriptor = TaskDescriptor(id: id, pieceLength: pieceLength, contentLength: contentLength, createdAt: Self.now(),
                                        pinned: pinned, expectedDigest: expectedDigest, origin: origin)
        try await appendDurably([.taskCreated(descriptor)])
        let duplicate = state.withLock { s -> Bool in
            guard s.index.tasks[id] != nil else { return true }
            if s.index.tasks[id]!.directFD == nil { s.index.tasks[id]!.directFD = fd; return false }
            return true
        }
        if duplicate { try? await io.close(fd) }
        guard let created = info(id) else { throw StoreError.taskFailed(id, "removed while being created") }
        return created
    }

    /// Writes piece `index` from `buffer[0..<length]` and returns once it is committed
    /// (data and metadata durable). The buffer must hold `alignUp(length)` bytes; the padding
    /// is zeroed. One writer per piece; a committed piece is left as it is.
    public func writePiece(_ id: TaskID, index: Int, from buffer: borrowing IOBuffer, length: Int) async throws {
        try await startPieceWrite(id, index: index, from: buffer, length: length).value
    }

    /// Like ``writePiece(_:index:from:length:)`` but returns as soon as the data write is done
    /// (`buffer` may be reused) with the commit queued: await the returned task for
    /// durability. A writer that streams many pieces keeps the disk busy while earlier pieces
    /// are synced, instead of waiting one group commit per piece. Until the commit the piece
    /// reads as being written (readers wait for it), and a failed commit leaves it missing.
    /// `crc32c`: the piece's CRC32C when the caller computed it already (from these bytes), so
    /// it is not computed twice. `sha256`: the piece's own digest, kept with it (a seed that read
    /// the origin publishes it; children check other peers' copies against it).
    public func startPieceWrite(_ id: TaskID, index: Int, from buffer: borrowing IOBuffer, length: Int, crc32c given: UInt32? = nil,
                                sha256: SHA256Digest? = nil) async throws -> Task<Void, any Error> {
        let padded = alignUp(length)
        precondition(buffer.capacity >= padded, "buffer of \(buffer.capacity) bytes cannot hold piece of \(length)")
        enum Start { case write(FileDescriptor?, Int64, Bool, UInt64), alreadyCommitted }
        let start = try state.withLock { s throws(StoreError) -> Start in
            guard var t = s.index.tasks[id], !t.deleting else { throw .unknownTask(id) }
            if let failure = t.failure { throw .taskFailed(id, failure) }
            if let count = t.pieceCount, index >= count { throw .pieceOutOfRange(id, index: index) }
            if let expected = t.expectedLength(ofPiece: index), expected != length {
                throw .wrongPieceLength(id, index: index, expected: expected, got: length)
            }
            if t.contentLength == nil, length > t.pieceLength || length <= 0 {
                throw .wrongPieceLength(id, index: index, expected: t.pieceLength, got: length)
            }
            if index >= t.pieces.count { t.pieces += Array(repeating: PieceSlot(), count: index + 1 - t.pieces.count) }
            switch t.pieces[index].state {
            case .committed: return .alreadyCommitted
            case .writing: throw .pieceBeingWritten(id, index: index)
            case .missing: break
            }
            t.pieces[index].state = .writing
            t.writers += 1
            t.lastAccess = Self.now()
            let growing = t.contentLength == nil
            s.index.tasks[id] = t
            s.dataWritesInFlight += 1
            return .write(t.directFD, PieceMath.offset(ofPiece: index, pieceLength: t.pieceLength), growing, t.generation)
        }
        guard case .write(let knownFD, let offset, let growing, let generation) = start else { return Task {} }
        let fd: FileDescriptor, crc: UInt32
        do {
            fd = try await writeBytes(id, index: index, knownFD: knownFD, offset: offset, growing: growing, buffer: buffer, length: length)
            crc = given ?? buffer.crc32c(0..<length)
        } catch {
            state.withLock { $0.dataWritesInFlight -= 1 }
            abandonPieceWrite(id, index: index, generation: generation)
            throw error
        }
        // Queued in the same step that ends the data write, so a waiting group commit sees it.
        let commit = queueDurableAppend([.pieceCommitted(id, index: index, length: length, crc32c: crc, sha256: sha256)], syncing: [fd],
                                        endingDataWrite: true, onlyIf: (id, generation))
        return Task { [self] in
            do { try await commit() } catch {
                abandonPieceWrite(id, index: index, generation: generation)
                throw error
            }
            state.withLock { s in
                guard var t = s.index.tasks[id], t.generation == generation else { return }
                t.writers -= 1
                if index < t.pieces.count { t.pieces[index].verified = true }
                s.index.tasks[id] = t
            }
        }
    }

    /// A write that will not commit: the piece is missing again and its writer gone (only on
    /// the incarnation of the task it began on).
    private func abandonPieceWrite(_ id: TaskID, index: Int, generation: UInt64) {
        state.withLock { s in
            guard var t = s.index.tasks[id], t.generation == generation else { return }
            if index < t.pieces.count, t.pieces[index].state == .writing { t.pieces[index].state = .missing }
            t.writers -= 1
            s.index.tasks[id] = t
        }
    }

    /// The data write of ``writePiece(_:index:from:length:)``, with one eviction-and-retry on ENOSPC.
    private func writeBytes(_ id: TaskID, index: Int, knownFD: FileDescriptor?, offset: Int64, growing: Bool,
                            buffer: borrowing IOBuffer, length: Int) async throws -> FileDescriptor {
        let padded = alignUp(length)
        let fd: FileDescriptor
        if let knownFD { fd = knownFD } else { fd = try await directDescriptor(id) }
        if padded > length { buffer.fill(0, range: length..<padded) }
        if growing { try await allocateWithEviction(fd, offset: offset, length: Int64(padded), task: id) }
        let started = ContinuousClock.now
        try await retryingOnceAfterEviction(bytes: Int64(padded), task: id, doing: "writing piece \(index) of \(id)") { () async throws(Errno) in
            _ = try await io.writeAll(fd, from: buffer, range: 0..<padded, at: offset)
        }
        DarterMetrics.storeOperationSeconds.observe(ContinuousClock.now - started, "write")
        return fd
    }

    /// Runs `operation`; on ENOSPC evicts idle tasks for `bytes` and runs it once more. A second
    /// ENOSPC fails the task (other tasks go on); other errors are reported as `what` failing.
    private func retryingOnceAfterEviction(bytes: Int64, task id: TaskID, doing what: String,
                                           _ operation: () async throws(Errno) -> Void) async throws {
        do {
            return try await operation()
        } catch where error == .noSpace {
        } catch {
            throw StoreError.io(what, error)
        }
        try await evictForSpace(bytes: bytes, excluding: id)
        do {
            try await operation()
        } catch {
            await failTask(id, reason: "no space left on device")
            throw error == .noSpace ? StoreError.noSpace(id, "no space left on device after eviction") : StoreError.io(what, error)
        }
    }

    /// fallocate with one eviction-and-retry on ENOSPC; a second ENOSPC fails the task. The
    /// blocks are reserved but the file keeps its size: pieces written in order then extend
    /// it, the faster direct-write path on ext4 (see ``IOBackend/allocate(_:offset:length:keepingSize:)``).
    func allocateWithEviction(_ fd: FileDescriptor, offset: Int64, length: Int64, task id: TaskID) async throws {
        try await retryingOnceAfterEviction(bytes: length, task: id, doing: "fallocate for \(id)") { () async throws(Errno) in
            try await io.allocate(fd, offset: offset, length: length, keepingSize: true)
        }
    }

    /// Marks the task complete. `contentLength` fixes the length of an unknown-length task.
    /// `sha256` is the digest if the caller hashed the stream; otherwise the store reads the
    /// content back to compute it. A digest that differs from the expected one fails the task.
    /// With `digestInBackground`, a task that must match no digest is marked complete at once
    /// and its SHA-256 (for later lookups by digest) is computed afterwards on a `SCHED_IDLE`
    /// thread: hashing 1 GiB costs ~0.5 s of a core, which must not slow the clients being
    /// served (a warm 1 GiB download right after a cold one measured 2.2 vs 3.9 GB/s).
    /// `whenReadThrough` runs on that thread once the content has been read through the page
    /// cache there (by the background digest, or, when the digest is known, by a read pass for
    /// that alone), at a moment when no client is being served.
    public func completeTask(_ id: TaskID, contentLength: Int64? = nil, sha256 given: SHA256Digest? = nil,
                             digestInBackground: Bool = false, whenReadThrough: (@Sendable () -> Void)? = nil) async throws {
        let (length, missing, expected) = try state.withLock { s throws(StoreError) -> (Int64, Int, SHA256Digest?) in
            guard let t = s.index.tasks[id], !t.deleting else { throw .unknownTask(id) }
            if let failure = t.failure { throw .taskFailed(id, failure) }
            let length: Int64
            if let n = t.contentLength { length = n }
            else if let n = contentLength { length = n }
            else {
                length = t.pieces.enumerated().reduce(Int64(0)) { acc, p in
                    p.element.state == .committed ? max(acc, PieceMath.offset(ofPiece: p.offset, pieceLength: t.pieceLength) + Int64(p.element.length)) : acc
                }
            }
            let count = PieceMath.pieceCount(contentLength: length, pieceLength: t.pieceLength)
            var missing = 0
            for i in 0..<count {
                let want = PieceMath.length(ofPiece: i, contentLength: length, pieceLength: t.pieceLength)
                if i >= t.pieces.count || t.pieces[i].state != .committed || Int(t.pieces[i].length) != want { missing += 1 }
            }
            if t.pieces.count > count, t.pieces[count...].contains(where: { $0.state == .committed }) {
                throw .taskFailed(id, "pieces past the declared length \(length)")
            }
            return (length, missing, t.descriptor.expectedDigest)
        }
        guard missing == 0 else { throw StoreError.incomplete(id, missingPieces: missing) }
        let digest: SHA256Digest
        if given == nil && digestInBackground && expected == nil && id.kind == .url {
            try await appendDurably([.taskCompleted(id, contentLength: length, sha256: nil)])
            _ = try? await bufferedDescriptor(id)  // the worker reads through it and cannot await
            digestWorker.submit { [self] in
                defer { whenReadThrough?() }
                guard let d = readThroughOnThisThread(id, length: length, hashing: true), info(id)?.complete == true else { return }
                Task { try? await appendDurably([.taskCompleted(id, contentLength: length, sha256: d)]) }
            }
            return
        }
        if let given { digest = given } else { digest = try await computeDigest(id, length: length) }
        if let expected, expected != digest {
            await failTask(id, reason: "digest mismatch")
            throw StoreError.digestMismatch(id, expected: expected.hex, actual: digest.hex)
        }
        if id.kind == .digest, id.hash != digest {
            await failTask(id, reason: "digest mismatch")
            throw StoreError.digestMismatch(id, expected: id.hash.hex, actual: digest.hex)
        }
        try await appendDurably([.taskCompleted(id, contentLength: length, sha256: digest)])
        if let whenReadThrough {
            _ = try? await bufferedDescriptor(id)
            digestWorker.submit { [self] in
                _ = readThroughOnThisThread(id, length: length, hashing: false)
                whenReadThrough()
            }
        }
    }

    /// SHA-256 of a task's content, read back piece by piece.
    /// Reads through the page-cache descriptor: content just written or served is usually
    /// still cached there, so hashing it costs no disk reads.
    func computeDigest(_ id: TaskID, length: Int64) async throws -> SHA256Digest {
        var hasher = SHA256Hasher()
        guard length > 0 else { return SHA256Digest(bytes: hasher.finalize())! }
        guard let extent = try await servableExtent(id, range: 0..<length), extent.length == Int(length) else {
            throw StoreError.incomplete(id, missingPieces: 1)
        }
        let chunk = 4 << 20
        let buffer = io.makeBuffer(capacity: chunk)
        var offset: Int64 = 0
        while offset < length {
            let n = Int(min(Int64(chunk), length - offset))
            let got: Int
            do { got = try await io.readFully(extent.fd, into: buffer, range: 0..<n, at: offset) }
            catch { throw StoreError.io("reading \(id) for its digest", error) }
            guard got == n else { throw StoreError.io("short read of \(id)", .ioError) }
            hasher.update(buffer, range: 0..<n)
            offset += Int64(n)
        }
        withExtendedLifetime(extent.lease) {}
        return SHA256Digest(bytes: hasher.finalize())!
    }

    /// Reads a task's content through the page cache with blocking reads on the calling
    /// (background) thread, once no client is being served, and returns its SHA-256 when
    /// `hashing` (nil on failure or when not hashing). Each chunk is read under its own lease,
    /// so a task waiting to be read can still be evicted (nil then).
    func readThroughOnThisThread(_ id: TaskID, length: Int64, hashing: Bool) -> SHA256Digest? {
        var hasher = SHA256Hasher()
        let chunk = 4 << 20
        let buffer = IOBuffer(capacity: chunk)
        var offset: Int64 = 0
        // A descriptor of its own: clients reading the task through the shared page-cache
        // descriptor keep their sequential readahead state (a file's readahead window is kept
        // per open file, and this pass reads at another offset).
        guard let fd = try? SystemCalls.open(dataPath(id), [.readOnly]) else { return nil }
        defer { try? SystemCalls.close(fd) }
        var patience = 30_000  // milliseconds it yields to clients in all; then it goes on regardless
        while offset < length {
            waitWhileClientsAreServed(patience: &patience)
            guard let extent = servableExtentNow(id, range: offset..<min(length, offset + Int64(chunk)), byClient: false) else { return nil }
            guard let n = try? SystemCalls.readFully(fd, into: buffer, range: 0..<extent.length, at: offset),
                  n == extent.length else { return nil }
            if hashing { hasher.update(buffer, range: 0..<n) }
            offset += Int64(n)
        }
        return hashing ? SHA256Digest(bytes: hasher.finalize()) : nil
    }

    /// Blocks (a background thread) while the store served a client in the last 250 ms or piece
    /// data is being written, up to `patience` milliseconds in all. Idle CPU priority alone was
    /// not enough: with the pass starting at once, the hit right after a cold miss in
    /// `tools/bench shield` measured 2.05 GB/s (median of 5 rounds); waiting like this, 3.0.
    private func waitWhileClientsAreServed(patience: inout Int) {
        while patience > 0 {
            let quietFor = SystemCalls.monotonicMilliseconds() - lastClientRead.load(ordering: .relaxed)
            if quietFor >= 250 && state.withLock({ $0.dataWritesInFlight == 0 }) { return }
            usleep(50_000)
            patience -= 50
        }
    }

    /// Fails a task: waiting readers get the reason, its data is deleted.
    public func failTask(_ id: TaskID, reason: String) async {
        let waiters = state.withLock { s -> [Waiter] in
            s.index.tasks[id]?.failure = reason
            return s.waiters.removeValue(forKey: id) ?? []
        }
        for w in waiters { w.continuation.resume(throwing: StoreError.taskFailed(id, reason)) }
        _ = try? await deleteTask(id, force: true)
    }

    /// Deletes a task and its data. Refuses (returns false) while it is in use, unless forced.
    @discardableResult
    public func deleteTask(_ id: TaskID, force: Bool = false) async throws -> Bool {
        let files = state.withLock { s -> [FileDescriptor]? in
            guard let t = s.index.tasks[id], !t.deleting, force || !t.inUse else { return nil }
            s.index.tasks[id]!.deleting = true
            return [t.directFD, t.bufferedFD].compactMap { $0 }
        }
        guard let files else { return false }
        try await appendDurably([.taskDeleted(id)])
        for fd in files { try? await io.close(fd) }
        try? await io.unlink(dataPath(id))
        return true
    }

    /// Pins or unpins a task (pinned tasks are never evicted).
    public func setPinned(_ id: TaskID, _ pinned: Bool) async throws {
        guard info(id) != nil else { throw StoreError.unknownTask(id) }
        try await appendDurably([.taskPinned(id, pinned)])
    }

    /// fsync(2) on a directory through the backend (a new entry in it becomes durable).
    func syncDirectory(_ path: String) async throws {
        do {
            let fd = try await io.open(path, [.readOnly, .directory])
            defer { Task { [io] in try? await io.close(fd) } }
            try await io.sync(fd)
        } catch {
            throw StoreError.io("syncing directory \(path)", error)
        }
    }

    // MARK: Looking up

    /// - Parameter pieces: whether to fill `committed` (one entry per piece). Off by default:
    ///   building it is per-piece work that serving, completion checks and the shield's
    ///   lookups (all per request) never read.
    public func info(_ id: TaskID, pieces: Bool = false) -> TaskInfo? {
        state.withLock { s in
            guard let t = s.index.tasks[id], !t.deleting else { return nil }
            var digests: [Int: SHA256Digest] = [:]
            if pieces {
                for (i, p) in t.pieces.enumerated() where p.state == .committed { if let d = p.sha256 { digests[i] = d } }
            }
            return TaskInfo(id: id, pieceLength: t.pieceLength, contentLength: t.contentLength, complete: t.complete,
                            committed: pieces ? t.pieces.map { $0.state == .committed } : [], committedPieceCount: t.committedCount,
                            pieceSHA256: digests, sha256: t.sha256, expectedDigest: t.descriptor.expectedDigest, origin: t.descriptor.origin,
                            pinned: t.descriptor.pinned, createdAt: t.descriptor.createdAt, lastAccess: t.lastAccess,
                            bytesOnDisk: t.allocatedBytes, failure: t.failure)
        }
    }

    /// The task holding content with this digest: the digest task itself, or a completed URL
    /// task whose bytes hash to it.
    public func lookup(digest: SHA256Digest) -> TaskID? {
        state.withLock { s in
            let direct = TaskID(kind: .digest, hash: digest)
            if let t = s.index.tasks[direct], !t.deleting { return direct }
            return s.index.aliases[digest]
        }
    }

    public var taskIDs: [TaskID] { state.withLock { s in s.index.tasks.filter { !$0.value.deleting }.map(\.key).sorted() } }

    public var usage: StoreUsage {
        state.withLock { s in
            StoreUsage(bytesUsed: s.index.bytesUsed, quotaBytes: configuration.eviction.quotaBytes, taskCount: s.index.tasks.count,
                       committedPieces: s.index.tasks.values.reduce(0) { $0 + $1.committedCount }, evictions: s.evictions,
                       corruptPiecesDropped: s.corruptDropped, journalBytes: s.journalLength)
        }
    }

    /// The task's O_DIRECT descriptor, opened on first use after a restart.
    func directDescriptor(_ id: TaskID) async throws -> FileDescriptor {
        try await descriptor(id, \.directFD, options: [.readWrite, .direct])
    }

    /// A page-cache descriptor for zero-copy sends, opened on first use.
    func bufferedDescriptor(_ id: TaskID) async throws -> FileDescriptor {
        try await descriptor(id, \.bufferedFD, options: [.readOnly])
    }

    /// Opens a task's data file once per kind; concurrent openers keep the first descriptor.
    private func descriptor(_ id: TaskID, _ slot: WritableKeyPath<TaskEntry, FileDescriptor?>, options: OpenOptions) async throws -> FileDescriptor {
        if let fd = state.withLock({ $0.index.tasks[id]?[keyPath: slot] }) { return fd }
        let fd: FileDescriptor
        do { fd = try await io.open(dataPath(id), options) } catch { throw StoreError.io("opening data of \(id)", error) }
        let winner = state.withLock { s -> FileDescriptor? in
            guard s.index.tasks[id] != nil else { return nil }
            if let existing = s.index.tasks[id]![keyPath: slot] { return existing }
            s.index.tasks[id]![keyPath: slot] = fd
            return fd
        }
        if winner != fd { try? await io.close(fd) }
        guard let winner else { throw StoreError.unknownTask(id) }
        return winner
    }
}

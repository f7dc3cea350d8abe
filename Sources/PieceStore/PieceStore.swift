#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import Synchronization
import DarterCore

/// The content-addressed piece cache.
///
/// Layout: `<dir>/journal` (append-only, checksummed metadata records) and one preallocated
/// data file per task, `<dir>/tasks/<2 hex>/<u|d>-<64 hex>`, piece N at N × piece length,
/// written with O_DIRECT from aligned buffers. A piece is committed once its data and its
/// journal record are durable (group commit: one data fdatasync batch, one journal append,
/// one journal fdatasync for every piece that arrived meanwhile). Readers may wait for a
/// piece and stream while a writer fills the task.
public final class PieceStore: Sendable {
    public let configuration: StoreConfiguration
    public let io: any IOBackend
    /// Hashes completed downloads (their SHA-256, for lookups by digest) when CPUs are idle.
    let digestWorker = IdleWorker()
    /// When a client last took an extent to read (monotonic milliseconds): background hashing
    /// waits for a quiet moment, since idle CPU alone still let it halve a hit's throughput.
    let lastClientRead = Atomic<Int64>(0)
    let state: Mutex<StoreState>
    let journalPath: String
    let tasksPath: String
    /// The flock on `<dir>/lock`, held until close.
    let lock: FileDescriptor

    struct PendingAppend {
        var records: [JournalRecord]
        var dataFDs: [FileDescriptor]
        var completion: AppendCompletion?
    }

    struct Waiter {
        var id: Int
        var index: Int
        var continuation: CheckedContinuation<PieceAvailability, any Error>
    }

    struct StoreState {
        var index = StoreIndex()
        var pending: [PendingAppend] = []
        /// Piece data writes under way: their commits will follow shortly.
        var dataWritesInFlight = 0
        var committerWakeup: CheckedContinuation<Void, Never>?
        var closing = false
        var committerDone: CheckedContinuation<Void, Never>?
        var committerFinished = false
        var waiters: [TaskID: [Waiter]] = [:]
        var nextWaiterID = 0
        var journalFD: FileDescriptor
        var journalLength: Int64
        var nextCompactionCheck: Int64
        var evictions = 0
        var corruptDropped = 0
    }

    private init(configuration: StoreConfiguration, io: any IOBackend, index: StoreIndex, journalFD: FileDescriptor,
                 journalLength: Int64, lock: FileDescriptor) {
        self.configuration = configuration
        self.lock = lock
        self.io = io
        journalPath = configuration.directory + "/journal"
        tasksPath = configuration.directory + "/tasks"
        state = Mutex(StoreState(index: index, journalFD: journalFD, journalLength: journalLength,
                                 nextCompactionCheck: max(configuration.compactionThresholdBytes, journalLength * 2)))
    }

    // MARK: Opening and recovery

    /// Opens (or creates) the store in `configuration.directory`, replaying the journal.
    /// A torn journal tail from a crash is cut off; data files no record names are removed.
    public static func open(_ configuration: StoreConfiguration, io: any IOBackend) async throws -> PieceStore {
        let dir = configuration.directory
        do {
            try SystemCalls.makeDirectories(dir + "/tasks")
        } catch { throw StoreError.io("creating \(dir)/tasks", error) }
        // One process per data directory: a second one would interleave journal appends.
        // Retried for a second: a forked child can hold a copy of a just-released lock until
        // it execs, and a previous process may still be exiting.
        var lock: FileDescriptor?
        for attempt in 0..<100 {
            do { lock = try SystemCalls.lockFile(dir + "/lock"); break } catch {
                if error != .again { throw StoreError.io("locking \(dir)/lock", error) }
                if attempt == 99 { throw StoreError.directoryInUse(dir) }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        guard let lock else { throw StoreError.directoryInUse(dir) }
        do {
            return try await open(configuration, io: io, holding: lock)
        } catch {
            try? SystemCalls.close(lock)
            throw error
        }
    }

    private static func open(_ configuration: StoreConfiguration, io: any IOBackend, holding lock: FileDescriptor) async throws -> PieceStore {
        let dir = configuration.directory
        let journalPath = dir + "/journal"
        if SystemCalls.exists(journalPath + ".new") { try? SystemCalls.unlink(journalPath + ".new") }  // interrupted compaction

        let fresh = !SystemCalls.exists(journalPath)
        let fd: FileDescriptor
        do { fd = try await io.open(journalPath, [.readWrite, .create], mode: 0o644) }
        catch { throw StoreError.io("opening \(journalPath)", error) }
        var size: Int64 = 0
        do { size = try SystemCalls.fileSize(fd) } catch { throw StoreError.io("fstat journal", error) }

        var index = StoreIndex()
        var length = Int64(JournalCodec.magic.count)
        if fresh || size == 0 {
            let buf = IOBuffer(capacity: JournalCodec.magic.count)
            buf.copyBytes(from: JournalCodec.magic)
            do {
                try await io.writeAll(fd, from: buf, range: 0..<JournalCodec.magic.count, at: 0)
                try await io.dataSync([fd])
                try SystemCalls.syncDirectory(dir)
            } catch { throw StoreError.io("initializing journal", error) }
        } else {
            let buf = IOBuffer(capacity: Int(size))
            let n: Int
            do { n = try await io.readFully(fd, into: buf, range: 0..<Int(size), at: 0) }
            catch { throw StoreError.io("reading journal", error) }
            let bytes = buf.bytes(0..<n)
            guard bytes.count >= JournalCodec.magic.count, Array(bytes[0..<JournalCodec.magic.count]) == JournalCodec.magic else {
                throw StoreError.journalUnreadable("\(journalPath) does not start with the Darter journal magic; refusing to touch it")
            }
            let (records, valid) = JournalCodec.decode(bytes)
            for r in records { index.apply(r) }
            length = Int64(valid)
            if valid < n {  // torn tail: cut it so new records follow the last good one
                do {
                    try await io.truncate(fd, length: length)
                    try await io.dataSync([fd])
                } catch { throw StoreError.io("truncating torn journal tail", error) }
            }
        }
        let store = PieceStore(configuration: configuration, io: io, index: index, journalFD: fd, journalLength: length, lock: lock)
        try await store.removeOrphansAndLostTasks()
        store.startCommitter()
        return store
    }

    /// Deletes data files without a task and tasks without a data file.
    private func removeOrphansAndLostTasks() async throws {
        let live = state.withLock { s in Dictionary(uniqueKeysWithValues: s.index.tasks.keys.map { ($0.fileName, $0) }) }
        var found = Set<String>()
        let shards = (try? SystemCalls.listDirectory(tasksPath)) ?? []
        for shard in shards {
            let shardPath = tasksPath + "/" + shard
            for name in (try? SystemCalls.listDirectory(shardPath)) ?? [] {
                if live[name] != nil { found.insert(name) } else { try? await io.unlink(shardPath + "/" + name) }
            }
        }
        let lost = live.filter { !found.contains($0.key) }.map(\.value)
        if !lost.isEmpty { try await appendDurably(lost.map { .taskDeleted($0) }) }
    }

    func dataPath(_ id: TaskID) -> String {
        let name = id.fileName
        return tasksPath + "/" + name.dropFirst(2).prefix(2) + "/" + name
    }

    // MARK: Group commit

    /// Appends `records` to the journal after `dataFDs` are synced, and returns once both are
    /// durable and applied to the index. Concurrent callers share one commit.
    func appendDurably(_ records: [JournalRecord], syncing dataFDs: [FileDescriptor] = []) async throws {
        try await queueDurableAppend(records, syncing: dataFDs)()
    }

    /// Queues `records` for the next group commit now and returns how to await it.
    /// With `onlyIf`, the records are queued only while that task is still the same
    /// incarnation and not being deleted (else the append fails at once).
    func queueDurableAppend(_ records: [JournalRecord], syncing dataFDs: [FileDescriptor],
                            endingDataWrite: Bool = false, onlyIf task: (id: TaskID, generation: UInt64)? = nil) -> @Sendable () async throws -> Void {
        let completion = AppendCompletion()
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if endingDataWrite { s.dataWritesInFlight -= 1 }
            if s.closing && s.committerFinished {
                completion.resume(.failure(StoreError.closed))
                return nil
            }
            if let task, s.index.tasks[task.id]?.generation != task.generation || s.index.tasks[task.id]?.deleting == true {
                completion.resume(.failure(StoreError.taskFailed(task.id, "the task was removed during the write")))
                return nil
            }
            s.pending.append(PendingAppend(records: records, dataFDs: dataFDs, completion: completion))
            defer { s.committerWakeup = nil }
            return s.committerWakeup
        }
        wake?.resume()
        return { try await completion.wait() }
    }

    /// Queues records that need no waiting (access times).
    func appendLater(_ records: [JournalRecord]) {
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.committerFinished else { return nil }
            s.pending.append(PendingAppend(records: records, dataFDs: [], completion: nil))
            defer { s.committerWakeup = nil }
            return s.committerWakeup
        }
        wake?.resume()
    }

    private func startCommitter() {
        Task.detached(priority: .high) { [self] in await self.runCommitter() }
    }

    /// Whether every record is a piece commit: anything else (task creation, deletion by
    /// eviction, completion, a close barrier) is never held back by the window.
    private static func onlyPieceCommits(_ batch: [PendingAppend]) -> Bool {
        batch.allSatisfy { p in
            !p.records.isEmpty && p.records.allSatisfy { if case .pieceCommitted = $0 { return true }; return false }
        }
    }

    /// Whether a reader waits on a task this batch commits pieces of.
    private static func hasWaiters(for batch: [PendingAppend], in s: StoreState) -> Bool {
        guard !s.waiters.isEmpty else { return false }
        for p in batch {
            for r in p.records {
                if case .pieceCommitted(let id, _, _, _, _) = r, s.waiters[id]?.isEmpty == false { return true }
            }
        }
        return false
    }

    /// Waits until something is pending (or the store is closing) and takes it all.
    private func nextBatch() async -> [PendingAppend] {
        while true {
            let ready = state.withLock { s -> [PendingAppend]? in
                guard !s.pending.isEmpty || s.closing else { return nil }
                defer { s.pending.removeAll(keepingCapacity: true) }
                return s.pending
            }
            if let ready { return ready }
            await withCheckedContinuation { (w: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if !s.pending.isEmpty || s.closing { return true }
                    s.committerWakeup = w
                    return false
                }
                if resumeNow { w.resume() }
            }
        }
    }

    private func runCommitter() async {
        let interval = Duration.milliseconds(configuration.groupCommitWindowMilliseconds)
        while true {
            var batch = await nextBatch()
            // Group commit: while piece data writes are still under way, wait (a bounded
            // time) so their commits share this one. A lone writer is never delayed, nor is a
            // batch that a reader waits for (read-while-write latency: the first 64 KiB of a
            // cold fetch measured ~38 ms without the wait, ~120 ms with a 100 ms window).
            let deadline = ContinuousClock.now + interval
            while !batch.isEmpty, .now < deadline,
                  Self.onlyPieceCommits(batch),
                  state.withLock({ s in s.dataWritesInFlight > 0 && !s.closing && !Self.hasWaiters(for: batch, in: s) }) {
                try? await Task.sleep(for: .milliseconds(1))
                batch += state.withLock { s in
                    defer { s.pending.removeAll(keepingCapacity: true) }
                    return s.pending
                }
            }
            if batch.isEmpty {
                if state.withLock({ $0.closing }) { break }
                continue
            }
            await commit(batch)
        }
        let done = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.committerFinished = true
            for p in s.pending { p.completion?.resume(.failure(StoreError.closed)) }
            s.pending.removeAll()
            defer { s.committerDone = nil }
            return s.committerDone
        }
        done?.resume()
    }

    private func commit(_ batch: [PendingAppend]) async {
        var fds = Set<FileDescriptor>()
        var encoded = [UInt8]()
        for p in batch {
            fds.formUnion(p.dataFDs)
            for r in p.records { JournalCodec.encode(r, into: &encoded) }
        }
        let (journalFD, offset) = state.withLock { ($0.journalFD, $0.journalLength) }
        let started = ContinuousClock.now
        defer { if !encoded.isEmpty { DarterMetrics.storeOperationSeconds.observe(ContinuousClock.now - started, "commit") } }
        do {
            if !fds.isEmpty { try await io.dataSync(Array(fds)) }
            // An empty batch (a barrier from close or compact) has nothing to make durable.
            if !encoded.isEmpty {
                let buf = IOBuffer(capacity: encoded.count)
                buf.copyBytes(from: encoded)
                try await io.writeAll(journalFD, from: buf, range: 0..<encoded.count, at: offset)
                try await io.dataSync([journalFD])
            }
        } catch {
            // Nothing in this batch is believed; the journal tail (if any) is cut on restart
            // because later appends overwrite from the same offset.
            for p in batch { p.completion?.resume(.failure(StoreError.io("committing metadata", error))) }
            return
        }
        var wakeups: [(CheckedContinuation<PieceAvailability, any Error>, Result<PieceAvailability, any Error>)] = []
        let needsCompaction = state.withLock { s -> Bool in
            s.journalLength += Int64(encoded.count)
            for p in batch { for r in p.records { s.index.apply(r); collectWakeups(for: r, in: &s, into: &wakeups) } }
            return s.journalLength >= s.nextCompactionCheck
        }
        for p in batch { p.completion?.resume(.success(())) }
        for (c, r) in wakeups { c.resume(with: r) }
        if needsCompaction { await compactJournal() }
    }

    private func collectWakeups(for record: JournalRecord, in s: inout StoreState,
                                into out: inout [(CheckedContinuation<PieceAvailability, any Error>, Result<PieceAvailability, any Error>)]) {
        let id = record.taskID
        guard var list = s.waiters[id], !list.isEmpty else { return }
        let task = s.index.tasks[id]
        list.removeAll { w in
            let result: Result<PieceAvailability, any Error>?
            if let task {
                if w.index < task.pieces.count, task.pieces[w.index].state == .committed { result = .success(.committed) }
                else if let count = task.pieceCount, w.index >= count, task.complete || task.contentLength != nil { result = .success(.beyondEnd) }
                else { result = nil }
            } else {
                result = .failure(StoreError.taskFailed(id, "task was removed"))
            }
            if let result { out.append((w.continuation, result)); return true }
            return false
        }
        s.waiters[id] = list.isEmpty ? nil : list
    }

    /// Rewrites the journal from the index (to `journal.new`, synced, renamed over `journal`).
    /// Runs on the committer, so no append races it.
    private func compactJournal() async {
        let (records, oldFD, oldLength) = state.withLock { ($0.index.snapshot(), $0.journalFD, $0.journalLength) }
        var bytes = JournalCodec.magic
        for r in records { JournalCodec.encode(r, into: &bytes) }
        guard Int64(bytes.count) * 2 < oldLength else {
            state.withLock { $0.nextCompactionCheck = max(configuration.compactionThresholdBytes, $0.journalLength * 2) }
            return
        }
        let tmp = journalPath + ".new"
        do {
            let fd = try await io.open(tmp, [.readWrite, .create, .truncate], mode: 0o644)
            let buf = IOBuffer(capacity: bytes.count)
            buf.copyBytes(from: bytes)
            try await io.writeAll(fd, from: buf, range: 0..<bytes.count, at: 0)
            try await io.dataSync([fd])
            try await io.rename(tmp, to: journalPath)
            try await syncDirectory(configuration.directory)
            state.withLock { s in
                s.journalFD = fd
                s.journalLength = Int64(bytes.count)
                s.nextCompactionCheck = max(configuration.compactionThresholdBytes, Int64(bytes.count) * 2)
            }
            try? await io.close(oldFD)
        } catch {
            try? SystemCalls.unlink(tmp)
            state.withLock { $0.nextCompactionCheck = $0.journalLength * 2 }
        }
    }

    /// Forces a compaction check now (tests, maintenance).
    public func compact() async {
        _ = try? await appendDurably([])
        state.withLock { $0.nextCompactionCheck = 0 }
        await compactJournal()
    }

    /// False once `close()` has begun (readiness: a closing store serves nothing new).
    public var isOpen: Bool { state.withLock { !$0.closing } }

    /// Stops the committer after pending commits, persists access times and closes files.
    public func close() async {
        appendAccessTimes(force: true)
        _ = try? await appendDurably([])
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let wake = state.withLock { s -> (CheckedContinuation<Void, Never>?, Bool) in
                s.closing = true
                if s.committerFinished { return (nil, true) }
                s.committerDone = c
                defer { s.committerWakeup = nil }
                return (s.committerWakeup, false)
            }
            wake.0?.resume()
            if wake.1 { c.resume() }
        }
        let fds = state.withLock { s -> [FileDescriptor] in
            var out = [s.journalFD]
            for (_, t) in s.index.tasks { out += [t.directFD, t.bufferedFD].compactMap { $0 } }
            for (_, list) in s.waiters { for w in list { w.continuation.resume(throwing: StoreError.closed) } }
            s.waiters.removeAll()
            return out
        }
        for fd in fds { try? await io.close(fd) }
        try? SystemCalls.close(lock)
    }

    static func now() -> Int64 { SystemCalls.wallClockSeconds() }
}

/// The outcome of one queued journal append: set once by the committer, awaited by its writer.
final class AppendCompletion: Sendable {
    private struct State {
        var result: Result<Void, any Error>?
        var waiter: CheckedContinuation<Void, any Error>?
    }
    private let state = Mutex(State())

    func resume(_ result: Result<Void, any Error>) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            guard s.result == nil else { return nil }
            s.result = result
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(with: result)
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let done = state.withLock { s -> Result<Void, any Error>? in
                if let r = s.result { return r }
                s.waiter = c
                return nil
            }
            if let done { c.resume(with: done) }
        }
    }
}

import Dispatch
import DarterIO
import Origin
import PieceStore
import SchedulerClient
import SchedulerProtocol
import PieceProtocol
import Synchronization
import PieceTransfer
import DarterCore
import SwarmDownload

/// Settings of the origin shield.
public struct ShieldConfiguration: Sendable {
    /// Attempts after the first, each resuming from the last byte received.
    public var retries = 5
    /// Pieces handed to the store while more arrive (memory: this many pieces per fetch).
    public var piecesInFlight = 4
    /// Seconds after which a cached URL (not named by digest) is revalidated with its origin.
    public var revalidateAfterSeconds: Int64 = 300
    /// Seconds an origin 4xx is remembered (answered without asking the origin again).
    public var negativeCacheSeconds: Int64 = 10
    /// Parallel ranged connections for one large object (1: one connection).
    /// Default 1: readers stream in order, so on a fast origin splitting only delays the first
    /// segment; more helps when each connection is throttled. It never floods a slow origin.
    public var connections = 1
    /// Objects at least this large are fetched over `connections` connections.
    public var segmentThreshold: Int64 = 64 << 20
    /// Default upstream for `/v2/` requests without containerd's `ns`.
    public var registryMirror: String?
    /// Bytes of fresh pieces kept in memory (over all objects) for the clients following a fetch
    /// and the hits that come before the object has been read through the page cache. Default:
    /// a sixteenth of physical memory, from 256 MiB to 4 GiB.
    public var followMemory = min(4 << 30, max(256 << 20, SystemCalls.physicalMemory() / 16))
    /// Reads pieces that leave that memory before their object was read through the page cache
    /// into it (writes bypass it), so a hit right after a miss reads memory as it would from
    /// nginx's cache. It costs only when an object does not fit in `followMemory`; without it,
    /// hits read such pieces from disk until the background pass after the fetch.
    public var pageCacheOnIngest = true
    /// Gives each piece read from the origin its own SHA-256, kept with it and published to
    /// children (a seed in a swarm: its peers check other peers' copies against it). Costs
    /// about 0.5 CPU-seconds per GiB (SHA-NI), so off for a seed serving only HTTP clients.
    public var pieceDigests = false
    public init() {}
}

extension OriginError {
    /// For a failure no retry can change, the status to answer and a reason naming the flag
    /// that decides it: a connection `--origin-allow` refused (403), or a registry that refused
    /// the seed's credentials (its 401 or 403). Nil for anything else.
    var refusal: (status: Int, reason: String)? {
        switch self {
        case .refused(let why): (403, why + " (see --origin-allow)")
        case .registryDenied(let status, let why): (status, why + " (registry credentials: --registry-auth-file)")
        default: nil
        }
    }
}

/// Where an object comes from.
struct ObjectSource: Sendable {
    enum Kind: Sendable { case url(String), registry(base: String, path: String) }
    var kind: Kind
    var headers: [(String, String)] = []
    var expectedDigest: SHA256Digest?
    var id: TaskID
    var describe: String {
        switch kind {
        case .url(let u): return u
        case .registry(let b, let p): return b + p
        }
    }
}

/// What a client waiting on a fetch gets.
enum IngestOutcome: Sendable {
    /// Serve the task from the store (streaming while it fills). `hit`: it was there already.
    case ready(TaskInfo, hit: Bool)
    /// The origin answered this status (4xx): pass it on.
    case originStatus(Int, String)
    /// The fetch failed before any byte could be served.
    case failed(String)
}

/// Fetches each object from its origin once, however many clients ask, into the store; every
/// client streams from the store as pieces commit.
final class Ingestor: Sendable {
    let store: PieceStore
    let origins: OriginBackends
    let registry: RegistryClient
    let configuration: ShieldConfiguration
    /// Fresh pieces in memory, for the clients following a fetch and the hits soon after it.
    let resident: ResidentPieces
    /// Pieces as they land, for the piece protocol's arrivals feeds.
    let arrivals = PieceArrivals()
    /// In a swarm: tasks come through it first (on a seed, only what other hosts hold of a task;
    /// the rest, or all when nobody holds any, from the origin); nil outside a swarm.
    let swarm: SwarmSource?
    /// The swarm's schedulers, told of each object this daemon fetched whole from its origin (so
    /// children find it as a parent without another origin fetch); nil outside a swarm.
    let scheduler: SchedulerClient?
    private let jobs = Mutex<[TaskID: IngestJob]>([:])
    private let negative = Mutex<[TaskID: (status: Int, reason: String, until: Int64)]>([:])
    /// When each cached URL task was last confirmed fresh by its origin (monotonic seconds).
    private let validated = Mutex<[TaskID: Int64]>([:])

    init(store: PieceStore, origins: OriginBackends, registry: RegistryClient, configuration: ShieldConfiguration, swarm: SwarmSource? = nil,
         scheduler: SchedulerClient? = nil) {
        self.swarm = swarm
        self.scheduler = scheduler ?? swarm?.scheduler
        self.store = store
        self.origins = origins
        self.registry = registry
        self.configuration = configuration
        resident = ResidentPieces(capacity: configuration.followMemory)
    }

    /// Starts or joins the fetch of `source`; returns once clients can be answered.
    func open(_ source: ObjectSource) async -> IngestOutcome {
        let id = source.id
        let now = monotonicSeconds()
        if let n = negative.withLock({ $0[id] }), n.until > now { return .originStatus(n.status, n.reason) }
        let (job, isNew) = jobs.withLock { jobs -> (IngestJob?, Bool) in
            if let j = jobs[id] { return (j, false) }
            if let info = store.info(id), info.failure == nil, info.complete {
                return (nil, false)  // cached
            }
            // Not there, or left incomplete by an earlier run: fetch (committed pieces are kept).
            let j = IngestJob()
            jobs[id] = j
            return (j, true)
        }
        guard let job else {
            guard let info = store.info(id) else { return await open(source) }  // evicted in between
            if await isFresh(info, source) {
                store.touch(id)
                return .ready(info, hit: true)
            }
            _ = try? await store.deleteTask(id, force: false)  // changed at the origin: fetch anew
            if store.info(id) != nil { return .ready(info, hit: true) }  // in use: serve what we have
            return await open(source)
        }
        if isNew {
            Task.detached { [self] in
                let began = ContinuousClock.now
                let via = await run(job, source)
                jobs.withLock { _ = $0.removeValue(forKey: id) }
                logTask(source, job, via: via, seconds: (ContinuousClock.now - began).seconds)
            }
        }
        return await job.waitForStart()
    }

    /// Digest-named content never changes. A cached URL is revalidated (If-None-Match /
    /// If-Modified-Since) once it is older than `revalidateAfterSeconds`.
    private func isFresh(_ info: TaskInfo, _ source: ObjectSource) async -> Bool {
        guard case .url(let url) = source.kind, info.id.kind == .url, info.complete else { return true }
        let now = monotonicSeconds()
        if let at = validated.withLock({ $0[info.id] }), now - at < configuration.revalidateAfterSeconds { return true }
        var headers = source.headers
        if let tag = info.origin.etag { headers.append(("If-None-Match", tag)) }
        if let lm = info.origin.lastModified { headers.append(("If-Modified-Since", lm)) }
        guard headers.count > source.headers.count else { return true }  // nothing to revalidate with
        let probe = RevalidationSink()
        _ = try? await origins.fetch(OriginRequest(url: url, headers: headers), into: probe)
        switch probe.status {
        case 304?:
            validated.withLock { $0[info.id] = now }
            return true
        case 200?:
            return probe.etag != nil && probe.etag == info.origin.etag
        default:
            return true  // origin unreachable or erring: serve the cached copy
        }
    }

    /// Waits until the task the job for `id` fills is complete (unknown-length content).
    func waitForCompletion(_ id: TaskID) async {
        guard let job = jobs.withLock({ $0[id] }) else { return }
        await job.waitForCompletion()
    }

    /// The fetch of `source`; returns where it came from ("swarm" or "origin").
    private func run(_ job: IngestJob, _ source: ObjectSource) async -> String {
        if let swarm, await runThroughSwarm(swarm, job, source) { return "swarm" }
        let segments = Mutex<[Task<String?, Never>]>([])
        let first = IngestSink(store: store, source: source, configuration: configuration, resident: resident, arrivals: arrivals) { info in
            job.resolveStart(.ready(info, hit: false))
        }
        // A large object on an origin that takes ranges is fetched over a few connections,
        // each a piece-aligned segment; the first connection keeps the first segment.
        first.planSegments = { [self] total, pieceLength in
            let n = configuration.connections
            guard n > 1, total >= configuration.segmentThreshold, case .url = source.kind else { return nil }
            let pieces = PieceMath.pieceCount(contentLength: total, pieceLength: pieceLength)
            let per = (pieces + n - 1) / n
            var bounds: [Int64] = stride(from: 0, to: pieces, by: per).map { PieceMath.offset(ofPiece: $0, pieceLength: pieceLength) }
            bounds.append(total)
            guard bounds.count > 2 else { return nil }
            for k in 1..<(bounds.count - 1) {
                let range = bounds[k]..<bounds[k + 1]
                let sink = IngestSink(store: store, source: source, configuration: configuration, resident: resident,
                                      arrivals: arrivals, segment: range, contentLength: total, pieceLength: pieceLength)
                // Segments write into the task the first connection creates: they start once it exists.
                segments.withLock { $0.append(Task {
                    guard case .ready = await job.waitForStart() else { return nil }
                    return await self.drive(sink, source)
                }) }
            }
            return bounds[1]
        }
        var failure = await drive(first, source)
        for t in segments.withLock({ $0 }) {
            if let e = await t.value, failure == nil { failure = e }
        }
        // The fetch's end is told only once the store says how it ended (complete or failed):
        // an availability feed opened in between must not read "nothing is fetching this".
        await first.awaitCreation()
        if let status = first.passThroughStatus {
            resident.endFetch(source.id)
            negative.withLock { $0[source.id] = (status.0, status.1, monotonicSeconds() + configuration.negativeCacheSeconds) }
            job.resolveStart(.originStatus(status.0, status.1))
            job.finish()
            return "origin"
        }
        do {
            if let failure { throw IngestError.failed(failure) }
            try await store.completeTask(source.id, contentLength: first.contentLengthKnown ?? first.position, sha256: first.takeDigest(),
                                         digestInBackground: true, whenReadThrough: { [resident] in resident.settled(source.id) })
            validated.withLock { $0[source.id] = monotonicSeconds() }
            if first.noStore {
                // `Cache-Control: no-store`: the clients of this fetch got it; nobody else will.
                Task { [store, resident] in
                    for _ in 0..<600 where store.info(source.id) != nil {
                        if (try? await store.deleteTask(source.id)) == true { break }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                    resident.settled(source.id)
                }
            }
        } catch {
            let reason = "fetching \(source.describe): \(error)"
            Log.error("shield: \(reason)")
            if first.taskCreated { await store.failTask(source.id, reason: reason) }
            endFetch(source.id, job, failure: reason)
            return "origin"
        }
        endFetch(source.id, job, failure: nil)
        if let scheduler, !first.noStore, let info = store.info(source.id), info.complete, let length = info.contentLength {
            let all = PieceSet(0..<PieceMath.pieceCount(contentLength: length, pieceLength: info.pieceLength))
            await scheduler.report(ProgressReport(host: scheduler.configuration.identity.id, task: source.id, pieces: all, state: .complete))
        }
        return "origin"
    }

    /// The task's one line at info level: id, where it came from, bytes, seconds, result.
    func logTask(_ source: ObjectSource, _ job: IngestJob, via: String, seconds: Double) {
        let info = store.info(source.id)
        let result: String
        if let info, info.complete { result = "ok" }
        else if let failure = info?.failure { result = "failed: " + failure }
        else if case .originStatus(let status, _)? = job.outcome { result = "origin status \(status)" }
        else if case .failed(let why)? = job.outcome { result = "failed: " + why }
        else { result = "failed" }
        Log.info("task", fields: [("id", .string(source.id.description)), ("source", .string(via)),
                                  ("bytes", .int(info?.complete == true ? info?.contentLength ?? 0 : 0)), ("seconds", .seconds(seconds)),
                                  ("result", .string(result)), ("url", .string(source.describe))])
    }

    /// A fetch is over, for everyone following it: memory (nothing of a failed fetch is served
    /// from there again), the availability feeds, and the clients waiting on the job.
    func endFetch(_ id: TaskID, _ job: IngestJob, failure: String?) {
        if let failure {
            resident.settled(id)
            job.resolveStart(.failed(failure))
        }
        resident.endFetch(id)
        arrivals.announce(id, .ended(failure: failure))
        job.finish()
    }

    /// Runs one connection's transfer with retries (each resuming at the sink's position) and
    /// writes what it got; nil when its bytes are all in, else why not.
    private func drive(_ sink: IngestSink, _ source: ObjectSource) async -> String? {
        var attempt = 0       // consecutive attempts that brought no new byte
        var total = 0
        var lastError = ""
        var isURL = false
        if case .url = source.kind { isURL = true }
        while true {
            let startPosition = sink.position
            var request = OriginRequest(url: "", headers: source.headers)
            if !sink.taskCreated && sink.position == 0 && configuration.connections > 1 && isURL {
                // Splitting needs the size first: ask for one byte (Range: bytes=0-0), as
                // Dragonfly does. An open-ended GET cut at the first segment's end made the
                // origin send 1-2 % more than the object (what was in flight when it was cut).
                request.range = 0..<1
            } else if sink.position > 0 || sink.limitEnd != nil {
                request.range = sink.position..<(sink.limitEnd ?? Int64.max)
                if let tag = sink.etag { request.headers.append(("If-Range", tag)) }
            }
            sink.beginAttempt()
            do {
                switch source.kind {
                case .url(let url):
                    request.url = url
                    _ = try await origins.fetch(request, into: sink)
                case .registry(let base, let path):
                    _ = try await registry.fetch(registry: base, path: path, headers: request.headers, range: request.range, into: sink)
                }
                sink.transferEnded()
            } catch {
                if let refusal = error.refusal {
                    sink.refuse(refusal.status, refusal.reason)  // not transient: no retry
                } else {
                    lastError = error.description
                    sink.attemptFailed(lastError)
                }
            }
            if sink.passThroughStatus != nil { return "origin status" }
            if let fatal = sink.fatalError { return fatal }
            if sink.transferComplete { break }
            // The bounded range asked for arrived whole (the size probe): go on at once.
            if sink.attemptError == nil, let end = request.range?.upperBound, end != Int64.max,
               sink.position == end, sink.position > startPosition { continue }
            if let e = sink.attemptError { lastError = e }
            // An attempt that made progress does not use up a retry (flaky but working origins
            // finish); one that did not backs off longer.
            attempt = sink.position > startPosition ? 1 : attempt + 1
            total += 1
            if total > 300 { attempt = configuration.retries + 1 }  // a trickle never ends a fetch
            Log.warning("shield: \(source.describe) at byte \(sink.position): \(lastError); \(attempt > configuration.retries ? "giving up" : "retry \(attempt) of \(configuration.retries)")")
            if attempt > configuration.retries { return lastError.isEmpty ? "the origin transfer did not complete" : lastError }
            // Exponential backoff: 100 ms, 200 ms, ... capped at 3.2 s.
            try? await Task.sleep(for: .milliseconds(100 << min(attempt - 1, 5)))
        }
        do { try await sink.flush() } catch { return "\(error)" }
        return nil
    }
}

enum IngestError: Error, CustomStringConvertible {
    case failed(String)
    var description: String { if case .failed(let s) = self { return s }; return "" }
}

/// One fetch's waiters: clients wait for the start (the task exists) or for the end.
final class IngestJob: Sendable {
    private struct State {
        var outcome: IngestOutcome?
        var startWaiters: [CheckedContinuation<IngestOutcome, Never>] = []
        var finished = false
        var endWaiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    /// The first outcome (nil before it).
    var outcome: IngestOutcome? { state.withLock { $0.outcome } }

    func waitForStart() async -> IngestOutcome {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> IngestOutcome? in
                if let o = s.outcome { return o }
                s.startWaiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// The first outcome wins; later calls are ignored.
    func resolveStart(_ outcome: IngestOutcome) {
        let waiters = state.withLock { s -> [CheckedContinuation<IngestOutcome, Never>] in
            guard s.outcome == nil else { return [] }
            s.outcome = outcome
            defer { s.startWaiters.removeAll() }
            return s.startWaiters
        }
        for w in waiters { w.resume(returning: outcome) }
    }

    func waitForCompletion() async {
        await withCheckedContinuation { c in
            let done = state.withLock { s -> Bool in
                if s.finished { return true }
                s.endWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    func finish() {
        resolveStart(.failed("the fetch ended without a result"))
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.finished = true
            defer { s.endWaiters.removeAll() }
            return s.endWaiters
        }
        for w in waiters { w.resume() }
    }
}

/// One connection's view of a fetch: what the origin answered (status, length, ETag, Range
/// resumption, segments) and where its bytes go. Cutting them into checked pieces and
/// publishing them is its ``PieceAssembler``'s job. It serves both kinds of backend: libcurl
/// calls ``receive(body:)`` on its transfer thread, which may block; the HTTP client on an
/// event loop asks ``bodySpace(orWake:)`` for room in the piece buffer itself, never blocking.
/// One attempt at a time; the job reads its state between attempts.
final class IngestSink: OriginDirectSink, @unchecked Sendable {
    let store: PieceStore
    let source: ObjectSource
    let configuration: ShieldConfiguration
    let resident: ResidentPieces
    let arrivals: PieceArrivals
    let onStart: @Sendable (TaskInfo) -> Void

    private(set) var etag: String?
    private(set) var transferComplete = false
    private(set) var passThroughStatus: (Int, String)?
    private(set) var fatalError: String?
    private(set) var attemptError: String?
    /// The origin said `Cache-Control: no-store`.
    private(set) var noStore = false
    private var contentLength: Int64?
    private var pieceLength = PieceMath.minimumDefaultPieceLength
    /// Bytes to drop before the next useful one (an origin that ignored Range resends from 0).
    private var skip: Int64 = 0
    private var discard: SharedIOBuffer?
    private var discarding = false
    private var expectedEnd: Int64?

    /// Set once the task exists (at once for a further segment; after the first head otherwise).
    private let assemblerState = Mutex<AssemblerState>(.none)
    private enum AssemblerState {
        case none
        case creating(wakers: [@Sendable () -> Void])
        case ready(PieceAssembler)
        case failed(String)
    }
    /// The task's creation, started by the first head (awaited before completing or failing it).
    private let creation = Mutex<Task<Void, Never>?>(nil)
    private let startOffset: Int64
    /// When the current attempt asked the origin (`darter_origin_first_byte_seconds`).
    private var attemptStarted: ContinuousClock.Instant?

    /// Decides segments once the length is known; returns where this (first) connection stops.
    var planSegments: ((_ total: Int64, _ pieceLength: Int) -> Int64?)?
    /// Where this connection's bytes end (a segment), if not at the end of the object.
    private(set) var limitEnd: Int64?

    /// The first connection of a fetch: creates the task from the first response.
    init(store: PieceStore, source: ObjectSource, configuration: ShieldConfiguration, resident: ResidentPieces,
         arrivals: PieceArrivals, onStart: @escaping @Sendable (TaskInfo) -> Void) {
        self.store = store
        self.source = source
        self.configuration = configuration
        self.resident = resident
        self.arrivals = arrivals
        self.onStart = onStart
        startOffset = 0
    }

    /// A further connection for `segment` of a task that exists already.
    init(store: PieceStore, source: ObjectSource, configuration: ShieldConfiguration, resident: ResidentPieces,
         arrivals: PieceArrivals, segment: Range<Int64>, contentLength: Int64, pieceLength: Int) {
        self.store = store
        self.source = source
        self.configuration = configuration
        self.resident = resident
        self.arrivals = arrivals
        onStart = { _ in }
        self.contentLength = contentLength
        self.pieceLength = pieceLength
        startOffset = segment.lowerBound
        limitEnd = segment.upperBound
        assemblerState.withLock {
            $0 = .ready(PieceAssembler(store: store, id: source.id, pieceLength: pieceLength, contentLength: contentLength,
                                       start: segment.lowerBound, pieceDigests: configuration.pieceDigests, resident: resident, arrivals: arrivals,
                                       piecesInFlight: configuration.piecesInFlight, pageCacheOnIngest: configuration.pageCacheOnIngest))
        }
    }

    private var assembler: PieceAssembler? {
        if case .ready(let a) = assemblerState.withLock({ $0 }) { return a }
        return nil
    }

    /// The task offset of the next byte.
    var position: Int64 { assembler?.position ?? startOffset }
    var taskCreated: Bool {
        if case .none = assemblerState.withLock({ $0 }) { return false }
        return true
    }
    var contentLengthKnown: Int64? { contentLength }

    /// The content's SHA-256 when this one connection saw every byte in order.
    func takeDigest() -> SHA256Digest? { limitEnd == nil ? assembler?.takeDigest() : nil }

    /// The transfer returned without error: for content of unknown length that is its end.
    func transferEnded() {
        if contentLength == nil && taskCreated && attemptError == nil && fatalError == nil { transferComplete = true }
    }

    func beginAttempt() {
        attemptStarted = ContinuousClock.now
        attemptError = nil
        expectedEnd = nil
    }

    /// A refusal no retry would change (``OriginError/refusal``): before any response, the
    /// client gets `status`; after the task exists, the fetch fails.
    func refuse(_ status: Int, _ reason: String) {
        if taskCreated { fatalError = reason } else { passThroughStatus = (status, reason) }
    }

    /// The transfer itself failed (connection, timeout, short body): retried from `position`.
    func attemptFailed(_ reason: String) {
        if attemptError == nil { attemptError = reason }
    }

    func receive(head: OriginResponseHead) -> Bool {
        if let t = attemptStarted { DarterMetrics.originFirstByteSeconds.observe(ContinuousClock.now - t); attemptStarted = nil }
        let status = head.status
        if status >= 400 && status < 500 && !taskCreated {
            passThroughStatus = (status, "origin answered \(status) for \(source.describe)")
            return false
        }
        guard status == 200 || status == 206 else {
            attemptError = "origin answered \(status)"
            return false  // 5xx and surprises: retried
        }
        if !taskCreated {
            etag = head.etag
            noStore = (head.header("cache-control") ?? "").lowercased().contains("no-store")
            contentLength = status == 200 ? head.contentLength : head.contentRange?.completeLength
            pieceLength = PieceMath.defaultPieceLength(contentLength: contentLength)
            if let total = contentLength, head.acceptsRanges || status == 206 {
                limitEnd = planSegments?(total, pieceLength)
            }
            createTask(head)
        } else if position > 0 {
            if status == 206, let cr = head.contentRange, cr.first == position {
                skip = 0
            } else if status == 200 {
                // The origin ignored Range (or If-Range failed): the same object, read past what we have.
                if let tag = etag, let now = head.etag, tag != now {
                    fatalError = "the object changed at the origin during the fetch (ETag \(tag) → \(now))"
                    return false
                }
                skip = position
            } else {
                attemptError = "origin answered a range we did not ask for"
                return false
            }
        }
        if let n = contentLength { expectedEnd = min(n, limitEnd ?? n) }
        if let end = expectedEnd, position == end { transferComplete = true }  // empty content
        return true
    }

    /// Creates the task without blocking (the head may arrive on an event loop); bytes wait for it.
    private func createTask(_ head: OriginResponseHead) {
        assemblerState.withLock { $0 = .creating(wakers: []) }
        let meta = OriginMetadata(contentType: head.contentType, etag: head.etag, lastModified: head.lastModified, sourceURL: source.describe)
        let (store, id, length, pieceLength, digest) = (self.store, source.id, contentLength, self.pieceLength, source.expectedDigest)
        let hashing = digest != nil && limitEnd == nil
        let creating = Task { [self] in
            let next: AssemblerState
            do {
                let info = try await store.createTask(id, pieceLength: pieceLength, contentLength: length, expectedDigest: digest, origin: meta)
                resident.beginFetch(info.id, pieceLength: info.pieceLength)
                // Content that must match a digest is hashed as it streams in, so completion need
                // not read it back; other content gets its digest in the background afterwards.
                next = .ready(PieceAssembler(store: store, id: id, pieceLength: info.pieceLength, contentLength: length, hashing: hashing,
                                             pieceDigests: configuration.pieceDigests, resident: resident, arrivals: arrivals, piecesInFlight: configuration.piecesInFlight,
                                             pageCacheOnIngest: configuration.pageCacheOnIngest))
                onStart(info)
            } catch {
                next = .failed("cannot store \(source.describe): \(error)")
            }
            let wakers = assemblerState.withLock { s -> [@Sendable () -> Void] in
                defer { s = next }
                if case .creating(let w) = s { return w }
                return []
            }
            for w in wakers { w() }
        }
        creation.withLock { $0 = creating }
    }

    /// The assembler, or nil while the task is being created (then `wake` runs when it is).
    /// A failed creation sets ``fatalError``.
    private func assembler(orWake wake: @escaping @Sendable () -> Void) -> PieceAssembler?? {
        let state = assemblerState.withLock { s -> AssemblerState in
            if case .creating(var w) = s { w.append(wake); s = .creating(wakers: w) }
            return s
        }
        switch state {
        case .ready(let a): return .some(a)
        case .creating: return .some(nil)
        case .failed(let why): fatalError = why; return nil
        case .none: fatalError = "body bytes before a usable head"; return nil
        }
    }

    // MARK: The copying path (libcurl's thread: may block)

    func receive(body chunk: OriginChunk) -> Bool {
        var start = 0
        if skip > 0 {
            let d = Int(min(skip, Int64(chunk.count)))
            skip -= Int64(d)
            start = d
        }
        while start < chunk.count {
            if let end = expectedEnd, position >= end {
                if end < (contentLength ?? end) { transferComplete = true; return false }  // segment done
                attemptError = "origin sent more bytes than its Content-Length"
                return false
            }
            let created = DispatchSemaphore(value: 0)
            guard let maybe = assembler(orWake: { created.signal() }) else { return false }
            guard let a = maybe else { created.wait(); continue }
            var n = chunk.count - start
            if let end = expectedEnd { n = Int(min(Int64(n), end - position)) }
            let from = start
            guard a.append(count: n, copy: { buffer, at, offset, k in chunk.copy(into: buffer, at: at, from: from + offset, count: k) }) else {
                fatalError = a.failure
                return false
            }
            start += n
        }
        if let end = expectedEnd, position == end {
            transferComplete = true
            if end < (contentLength ?? end) { return false }  // segment done: stop this connection
        }
        return true
    }

    // MARK: The direct path (an event loop: never blocks)

    func bodySpace(orWake wake: @escaping @Sendable () -> Void) -> OriginBodySpace {
        if skip > 0 {
            if discard == nil { discard = SharedIOBuffer(IOBuffer(capacity: 256 << 10)) }
            discarding = true
            return .space(BufferSpace(buffer: discard!, range: 0..<Int(min(skip, Int64(discard!.buffer.capacity)))))
        }
        discarding = false
        if let end = expectedEnd, position >= end {
            if end < (contentLength ?? end) { transferComplete = true } else { attemptError = "origin sent more bytes than its Content-Length" }
            return .abort
        }
        guard let maybe = assembler(orWake: wake) else { return .abort }
        guard let a = maybe else { return .wait }
        guard let s = a.space(orWake: wake) else {
            if let f = a.failure { fatalError = f; return .abort }
            return .wait
        }
        guard let end = expectedEnd, end - position < Int64(s.range.count) else { return .space(s) }
        return .space(BufferSpace(buffer: s.buffer, range: s.range.lowerBound..<(s.range.lowerBound + Int(end - position))))
    }

    func bodyReceived(_ count: Int) -> Bool {
        if discarding {
            skip -= Int64(count)
            return true
        }
        guard let a = assembler else { return false }
        a.received(count)
        if let f = a.failure { fatalError = f; return false }
        if let end = expectedEnd, position == end { transferComplete = true }
        return true
    }

    /// After the transfer: an unknown-length stream ended cleanly means it is complete; the
    /// last partial piece is written and every write awaited.
    func awaitCreation() async { await creation.withLock({ $0 })?.value }

    func flush() async throws {
        await creation.withLock({ $0 })?.value
        guard let a = assembler else { return }
        do { try await a.finish(streamEnded: transferComplete && contentLength == nil) } catch { throw IngestError.failed(error.description) }
    }
}

/// Monotonic seconds (for TTLs of the negative cache and revalidation).
func monotonicSeconds() -> Int64 { SystemCalls.monotonicMilliseconds() / 1000 }

/// Reads only the status and validators of a conditional request.
final class RevalidationSink: OriginSink, @unchecked Sendable {
    private(set) var status: Int?
    private(set) var etag: String?
    func receive(head: OriginResponseHead) -> Bool {
        status = head.status
        etag = head.etag
        return false  // the body is not needed
    }
    func receive(body: OriginChunk) -> Bool { false }
}

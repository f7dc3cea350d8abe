import Synchronization
import DarterCore
import DarterIO
import HTTPClient
import HTTPCore
import PeerPolicy
import PieceProtocol
import PieceStore
import PieceTransfer
import SchedulerClient
import SchedulerProtocol

/// How a peer downloads a task through the swarm.
public struct SwarmConfiguration: Sendable {
    /// Piece requests kept open per parent, pipelined on its persistent connections.
    public var requestsPerParent = 3
    /// Requests kept open at a seed: one, so each of its children's share arrives as soon as it
    /// can and is passed on (simulated, 8 peers: 1.24x ideal with 1, 1.47x with 2; measured,
    /// tools/bench swarm 8 x 200 Mbit/s, two interleaved rounds: p99 1.26-1.28x with 1, 1.38x
    /// with 2). `--requests-per-seed`.
    public var requestsPerSeed = 1
    /// Piece requests open at once over all parents: each holds a piece buffer, so this bounds
    /// the download's memory (12 × 4 MiB; two seconds of a 200 Mbit/s link).
    public var maxRequestsInFlight = 12
    /// Requests kept open to the origin when the swarm cannot serve (back to source).
    public var originRequests = 2
    /// How often the scheduler is asked again for parents while downloading, once the swarm has
    /// formed; while it is still forming (an announce brought more parents than the last), again
    /// after `reannounceQuickly`, doubling from there (`AnnouncePacing`).
    public var reannounce: Duration = .seconds(2)
    public var reannounceQuickly: Duration = .milliseconds(250)
    /// And after every this share of the pieces gained since the last announce
    /// (`AnnouncePacing.progressStep`), checked at most every `progressCheck`
    /// (`AnnouncePacing.untilProgressCheck`). Simulated, 10 Gbit/s × 1 GiB, p99 ÷ T_min: 1,000
    /// peers 2.39 with none, 1.44 with 1/8, 1.33 with 1/16; 10,000 peers 1.65 with 1/8, 1.37 with
    /// 1/16 (1.7× the announces). Measured, 1/8 against 1/16 interleaved: netns swarm (8 × 200
    /// Mbit/s) p99 median of 4 rounds 1.26 / 1.26; cluster p99 1.50 1.41 1.45 / 1.43 1.57 1.42,
    /// CPU 36.0 33.1 31.2 / 33.3 32.2 33.6 s/GiB: no cost where the swarm is small.
    public var reannounceEveryShare = 1.0 / 16
    public var progressCheck: Duration = .milliseconds(20)
    /// How often progress goes to the scheduler (batched, never per piece).
    public var reportEvery: Duration = .seconds(1)
    /// How long a parent may hold a piece request for a piece it announced but has not got whole.
    public var pieceWaitMilliseconds = 5_000
    /// A piece request's deadline: at least this, else 4× what the piece takes at the parent's
    /// measured rate (Kraken: max(4 s, 4 s/MB)).
    public var minimumPieceDeadline: Duration = .seconds(8)
    /// Failed requests after which a parent is dropped (and reported).
    public var failuresToDrop = 2
    /// Pieces from the first one this host lacks that are fetched first, in order, so a reader
    /// streaming the task (`darter get`, `/download`, containerd) is fed as the swarm goes and
    /// does not wait at the end for old pieces rarest-first left for last (measured, 8 peers ×
    /// 200 Mbit/s × 256 MiB in 1 MiB pieces: the last reader done 1.4 s after its swarm with no
    /// window; p99 1.33× the ideal with none, 1.35× with 8, 1.23-1.28× with 32, 1.25× with 64,
    /// 1.26× with 128). At a seed only this host's own pieces count, window or not.
    public var window = 32
    /// Going to the origin is allowed when no parent can serve (`--no-back-to-source` forbids it).
    public var backToSource = true
    /// On a seed (one taking a task over from a seed that died, or asked for one peers hold
    /// parts of): the origin is open from the start but asked only for pieces no parent holds,
    /// each once, so what the swarm still holds never leaves the origin again; the SHA-256 of
    /// each piece read from the origin is published (a seed is where children's digests come from).
    public var originForUnheldPieces = false
    /// How long such a seed waits for its parents' feeds to say what they hold before it asks
    /// the origin for the rest.
    public var snapshotWaitMilliseconds = 1_000
    /// Piece bytes from parents, over all downloads of the daemon (`--download-rate`); nil: unlimited.
    public var downloadLimit: RateLimiter? = nil
    /// Logs every piece as it lands (when, from whom, how long it took): for people tuning a swarm
    /// (`DARTER_SWARM_TRACE=1`).
    public var tracePieces = false
    public init() {}

    /// Requests kept open at each of the `parents` peer parents a download asks: at most
    /// `requestsPerParent`, and no more than an even split of `maxRequestsInFlight` (rounded up),
    /// so the slots spread over the parents instead of staying with the first few named, which
    /// every child had in common (simulated, 16 × 100 Mbit/s: one parent with 43 transfers while
    /// 7 of 15 sent nothing).
    public func requestsPerPeerParent(asked parents: Int) -> Int {
        max(1, min(requestsPerParent, (maxRequestsInFlight + parents - 1) / max(1, parents)))
    }
}

/// Fetches piece `index` (`length` bytes at `offset`) from the origin into the buffer; nil on
/// success, else why not. The peer's origin backends behind one call.
extension PieceSelector {
    /// The pieces an announce's answer dealt this host at seeds and at parents in other IDCs
    /// (the peer's download and the simulator take them alike).
    public mutating func takeShares(_ reply: AnnounceReply) {
        if let share = reply.seedShare { setShare(index: share.index, count: share.count) }
        if let share = reply.remoteShare { setRemoteShare(index: share.index, count: share.count) }
    }
}

public typealias OriginPieceFetch = @Sendable (_ index: Int, _ offset: Int64, _ buffer: SharedIOBuffer, _ length: Int) async -> String?

/// What a swarm download came to.
public enum SwarmOutcome: Sendable, Equatable {
    /// Pieces by where they came from (a parent's id, or "origin").
    case complete(bySource: [String: Int])
    /// Nothing fetched from anyone: the caller goes to the origin the usual way.
    case backToSource(String)
    case failed(String)
}

/// One task's download on a peer: pieces from several parents at once (rarest first, a window
/// ahead of a streaming reader, endgame duplicates: `PieceSelector`), each checked against the
/// CRC32C its parent sends and, from a peer, against the SHA-256 the task's seed published for
/// it (a lying peer can send a CRC32C that matches its wrong bytes), landed through the
/// `PieceAssembler` (memory and this host's own feed at once, so children get it before the
/// store's commit, then the store). Parents come
/// from the scheduler, and again every `reannounce`; each one's availability feed tells what it
/// holds as pieces land there (pushed). A parent that fails `failuresToDrop` requests is dropped
/// and reported; with no parent left, the origin serves the missing pieces (if allowed).
public actor SwarmDownload {
    let id: TaskID
    let meta: TaskMetadata
    let announce: Announce
    let assembler: PieceAssembler
    let scheduler: SchedulerClient
    let pieces: HTTPClient
    let feeds: HTTPClient
    let origin: OriginPieceFetch?
    let configuration: SwarmConfiguration
    let log: @Sendable (String) -> Void

    var selector: PieceSelector
    var links: [String: ParentLink] = [:]
    /// The parents the scheduler named last: only these (and seeds) are asked for new pieces.
    /// Others stay linked (their feeds keep the rarity counts true, their open requests finish).
    /// Asking every parent ever named kept the slots on the first ones (the first peers to
    /// start, in every list): they uploaded 5.8 copies while most peers sent 0.1 (simulated,
    /// 100 × 1 Gbit/s); the scheduler's latest list spreads children by load.
    var named: Set<String> = []
    /// Requests open now, by parent.
    var openAt: [String: Int] = [:]
    var idle: [CheckedContinuation<Void, Never>] = []
    var finished: CheckedContinuation<SwarmOutcome, Never>?
    var outcome: SwarmOutcome?
    var reported = PieceSet()
    var costs: [String: PieceCost] = [:]
    var failures: [ParentFailure] = []
    var bySource: [String: Int] = [:]
    var originOpen = false
    /// Pieces received and not yet handed to the assembler (waiting for a write slot).
    var landing = 0
    /// Requests open now (each with a piece buffer).
    var active = 0
    var workers: [Task<Void, Never>] = []
    /// Piece digests from the task's seeds: the metadata a seed gave, its feed, its piece
    /// headers. Never from peers (a liar would lie about these too).
    var trusted: [Int: SHA256Digest]
    /// The seed's metadata asked for a digest not heard yet (one request at a time).
    var digestRefresh: Task<Void, Never>?
    var digestRefreshedAt: ContinuousClock.Instant?
    /// Pieces from peers accepted on their CRC32C alone: the seeds had no digest for them (no
    /// seed among the parents, or the seed's copy predates piece digests).
    var unverified = 0
    /// A parent was dropped: report and announce on the next round, not a whole interval later.
    var announceSoon = false
    /// `originForUnheldPieces`: parents whose feed has not sent its snapshot yet (the origin
    /// waits for them, at most `snapshotWaitMilliseconds`).
    var awaitingSnapshots: Set<String> = []
    let began = ContinuousClock.now

    static let originID = "origin"

    static func milliseconds(_ d: Duration) -> Int { Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000) }

    struct ParentLink {
        let candidate: ParentCandidate
        let url: HTTPClientURL
        var failures = 0
        var bytesPerSecond: Double?
        var feed: HTTPClientTask?
        var feedFailures = 0
    }

    public init(meta: TaskMetadata, announce: Announce, assembler: PieceAssembler, have: PieceSet, scheduler: SchedulerClient,
                pieces: HTTPClient, feeds: HTTPClient, origin: OriginPieceFetch?, configuration: SwarmConfiguration,
                log: @escaping @Sendable (String) -> Void) {
        id = meta.id
        self.meta = meta
        self.announce = announce
        self.assembler = assembler
        self.scheduler = scheduler
        self.pieces = pieces
        self.feeds = feeds
        self.origin = origin
        self.configuration = configuration
        self.log = log
        trusted = meta.pieceDigests
        selector = PieceSelector(pieceCount: meta.pieceCount ?? 0, have: have, window: configuration.window, me: announce.host,
                                 seed: RendezvousHash.fnv1a(announce.host + meta.id.description))
    }

    /// Downloads every missing piece from the parents an announce named (and those later
    /// announces bring), with the shares it dealt.
    public func run(_ located: AnnounceReply) async -> SwarmOutcome {
        if selector.isComplete { return .complete(bySource: [:]) }
        if configuration.tracePieces { log("swarm-trace: task \(id): began at monotonic \(SystemCalls.monotonicMilliseconds()) ms") }
        let parents = located.parents
        selector.takeShares(located)
        adopt(parents)
        if configuration.originForUnheldPieces {
            // The origin only once the parents' feeds told what they hold: the scheduler's view
            // of their pieces is up to a report (a second) old.
            awaitingSnapshots = Set(links.keys)
            Task { [self] in
                try? await Task.sleep(for: .milliseconds(configuration.snapshotWaitMilliseconds))
                self.openOriginForUnheldPieces()
            }
            if awaitingSnapshots.isEmpty { openOriginForUnheldPieces() }
        }
        if links.isEmpty { goToOrigin("the scheduler named no parent") }
        Task { [self] in await self.chores(parents: parents.count) }
        let result = await withCheckedContinuation { c in
            if let outcome { c.resume(returning: outcome) } else { finished = c }
        }
        for l in links.values { l.feed?.cancel() }
        links = [:]
        wakeAll()
        for w in workers { w.cancel() }
        return result
    }

    // MARK: Parents

    /// New parents get a feed and their request slots; known ones are kept.
    func adopt(_ candidates: [ParentCandidate]) {
        if !candidates.isEmpty { named = Set(candidates.map(\.id)) }
        // What the scheduler last heard from known parents adds to what their feeds said.
        for c in candidates where links[c.id] != nil {
            selector.parentHas(c.id, c.complete ? PieceSet(0..<(meta.pieceCount ?? 0)) : c.pieces)
        }
        for c in candidates where links[c.id] == nil && c.id != announce.host && c.id != Self.originID {
            guard let url = try? HTTPClientURL(parsing: "http://\(c.address)/") else { continue }
            links[c.id] = ParentLink(candidate: c, url: url)
            // A seed feeds the whole swarm through one link: only the pieces this host owns come from it.
            let all = c.complete ? PieceSet(0..<(meta.pieceCount ?? 0)) : c.pieces
            selector.parentHas(c.id, all, scarce: c.role == .seed, remote: c.remote)
            subscribe(c.id, url)
            for _ in 0..<(c.role == .seed ? configuration.requestsPerSeed : configuration.requestsPerParent) { startWorker(c.id) }
        }
        wakeAll()
    }

    /// The parent's availability feed, its events handed to this actor as they come.
    func subscribe(_ parent: String, _ url: HTTPClientURL) {
        let feedURL = HTTPClientURL(host: url.host, port: url.port, target: PieceProtocol.availabilityPath(id))
        let handler = FeedHandler { [weak self] events in
            guard let self else { return }
            Task { await self.feedEvents(parent, events) }
        } ended: { [weak self] why, unreachable in
            guard let self else { return }
            Task { await self.feedEnded(parent, why, unreachable: unreachable) }
        }
        links[parent]?.feed = feeds.execute(HTTPClientRequest(url: feedURL), handler: handler)
    }

    func snapshotArrived(_ parent: String) {
        guard awaitingSnapshots.remove(parent) != nil, awaitingSnapshots.isEmpty else { return }
        openOriginForUnheldPieces()
    }

    func feedEvents(_ parent: String, _ events: [AvailabilityEvent]) {
        guard links[parent] != nil else { return }
        let fromSeed = links[parent]?.candidate.role == .seed
        for e in events {
            switch e {
            case .snapshot(let m):
                selector.parentHas(parent, m.complete ? PieceSet(0..<(meta.pieceCount ?? 0)) : m.pieces)
                if fromSeed { trusted.merge(m.pieceDigests) { a, _ in a } }
                snapshotArrived(parent)
            case .have(let p, let digests):
                selector.parentHas(parent, p)
                if fromSeed { trusted.merge(digests) { a, _ in a } }
            case .complete: selector.parentHas(parent, PieceSet(0..<(meta.pieceCount ?? 0)))
            case .failed(let why): drop(parent, .missing, "its fetch failed: \(why)")
            case .heartbeat: break
            }
        }
        wakeAll()
    }

    func feedEnded(_ parent: String, _ why: String?, unreachable: Bool) {
        // A feed that ends after `complete` told everything. One that fails is asked for again
        // after a pause: a parent the scheduler named may not have opened the task yet (404), or
        // restarted. A parent whose feed cannot even connect again is gone: dropped (and
        // reported) now, whether or not this host has a piece request open there; else its seed
        // share waits for its TTL (measured: a parent killed at 30 % with only the children
        // that had requests open reporting it, the others 1.24x slower).
        if configuration.tracePieces { log("swarm-trace: task \(id): the feed from \(parent) ended: \(why ?? "complete")\(unreachable ? " (unreachable)" : "")") }
        snapshotArrived(parent)
        guard let why, let link = links[parent], outcome == nil else { return }
        if unreachable && link.feedFailures >= 1 {
            drop(parent, .unreachable, "its feed cannot reconnect: \(why)")
            return
        }
        let attempts = link.feedFailures + 1
        links[parent]?.feedFailures = attempts
        guard attempts <= 30 else {
            log("swarm: task \(id): the feed from \(parent) keeps failing (\(why)); no more news from it")
            return
        }
        Task { [self] in
            try? await Task.sleep(for: .milliseconds(min(2000, 100 * attempts)))
            self.resubscribe(parent)
        }
    }

    func resubscribe(_ parent: String) {
        guard let link = links[parent], outcome == nil else { return }
        subscribe(parent, link.url)
    }

    func drop(_ parent: String, _ kind: ParentFailure.Kind, _ why: String) {
        guard let link = links.removeValue(forKey: parent) else { return }
        link.feed?.cancel()
        selector.removeParent(parent)
        failures.append(ParentFailure(parent: parent, kind: kind))
        announceSoon = true  // the scheduler hears at once and deals the seed's share again
        log("swarm: task \(id): dropped parent \(parent) (\(why))")
        wakeAll()
        snapshotArrived(parent)
        if links.isEmpty && !originOpen { goToOrigin("every parent failed") }
    }

    func openOriginForUnheldPieces() {
        awaitingSnapshots = []
        goToOrigin("pieces no parent holds", lastResort: true)
    }

    /// `lastResort`: the origin is asked only for pieces no parent holds (else: for this host's
    /// share, as a seed would be).
    func goToOrigin(_ why: String, lastResort: Bool = false) {
        guard !originOpen, outcome == nil else { return }
        guard configuration.backToSource, origin != nil else {
            if links.isEmpty { end(.failed("no parent can serve task \(id) (\(why)) and going to the origin is not allowed")) }
            return
        }
        originOpen = true
        log("swarm: task \(id): \(why): the missing pieces come from the origin")
        selector.parentHas(Self.originID, PieceSet(0..<(meta.pieceCount ?? 0)), scarce: !lastResort, lastResort: lastResort)
        for _ in 0..<configuration.originRequests { startWorker(Self.originID) }
    }

    // MARK: Requests

    func startWorker(_ parent: String) {
        let task = Task { [self] in
            while let index = await self.nextPiece(for: parent) {
                await self.fetch(index, from: parent)
                self.requestEnded(parent)
            }
        }
        workers.append(task)
    }

    /// The next piece for a slot of `parent`: waits while the parent has nothing to give; nil
    /// once it is gone or the download is over.
    func nextPiece(for parent: String) async -> Int? {
        while true {
            guard outcome == nil, !Task.isCancelled, parent == Self.originID ? originOpen : links[parent] != nil else { return nil }
            if active < configuration.maxRequestsInFlight, isAsked(parent), hasRoom(parent), let p = selector.next(for: parent) {
                active += 1
                openAt[parent, default: 0] += 1
                return p
            }
            await withCheckedContinuation { idle.append($0) }
        }
    }

    func isAsked(_ parent: String) -> Bool {
        parent == Self.originID || named.contains(parent) || links[parent]?.candidate.role == .seed
    }

    /// A peer parent's share of the request slots (seeds and the origin: their workers' count).
    func hasRoom(_ parent: String) -> Bool {
        guard parent != Self.originID, links[parent]?.candidate.role != .seed else { return true }
        let asked = named.filter { links[$0] != nil && links[$0]?.candidate.role != .seed }.count
        return openAt[parent, default: 0] < configuration.requestsPerPeerParent(asked: asked)
    }

    func requestEnded(_ parent: String) {
        active -= 1
        openAt[parent, default: 1] -= 1
        wakeAll()
    }

    func wakeAll() {
        let waiting = idle
        idle = []
        for c in waiting { c.resume() }
    }

    func fetch(_ index: Int, from parent: String) async {
        guard let length = meta.contentLength.map({ PieceMath.length(ofPiece: index, contentLength: $0, pieceLength: meta.pieceLength) }) else { return }
        // Paid for before asking, so the parent's measured rate leaves the wait out.
        if parent != Self.originID { await configuration.downloadLimit?.take(length) }
        let buffer = assembler.makePieceBuffer(index: index)
        let started = ContinuousClock.now
        let failure: (ParentFailure.Kind, String)?
        if parent == Self.originID {
            let offset = PieceMath.offset(ofPiece: index, pieceLength: meta.pieceLength)
            failure = await origin!(index, offset, buffer, length).map { (.unreachable, $0) }
        } else if let link = links[parent] {
            failure = await fetchFromParent(link, index, buffer, length)
        } else {
            selector.failed(index, from: parent)
            return
        }
        let elapsed = ContinuousClock.now - started
        if let (kind, why) = failure {
            selector.failed(index, from: parent)
            wakeAll()
            if parent == Self.originID {
                log("swarm: task \(id): piece \(index) from the origin: \(why)")
                if outcome == nil { end(.failed("piece \(index) from the origin: \(why)")) }
                return
            }
            links[parent]?.failures += 1
            if (links[parent]?.failures ?? 0) >= configuration.failuresToDrop { drop(parent, kind, "piece \(index): \(why)") }
            return
        }
        DarterMetrics.pieceReceived(from: metricsSource(parent), bytes: length, elapsed: elapsed)
        guard !selector.have.contains(index) else { return }  // a duplicate (endgame) came second
        selector.received(index, from: parent)
        let ms = Self.milliseconds(elapsed)
        if configuration.tracePieces {
            log("swarm-trace: task \(id): piece \(index) from \(parent) at \(Self.milliseconds(ContinuousClock.now - began)) ms, took \(ms) ms")
        }
        bySource[parent, default: 0] += 1
        if parent == Self.originID && configuration.originForUnheldPieces {
            var hasher = SHA256Hasher()
            hasher.update(buffer.buffer, range: 0..<length)
            trusted[index] = SHA256Digest(bytes: hasher.finalize())
        }
        if parent != Self.originID {
            var c = costs[parent] ?? PieceCost(parent: parent, pieces: 0, bytes: 0, milliseconds: 0)
            c = PieceCost(parent: parent, pieces: c.pieces + 1, bytes: c.bytes + Int64(length), milliseconds: c.milliseconds + max(1, ms))
            costs[parent] = c
            let rate = Double(length) * 1000 / Double(max(1, ms))
            // Computed first: an optional-chained assignment holds `links` while its right side runs.
            let smoothed = links[parent]?.bytesPerSecond.map { 0.7 * $0 + 0.3 * rate } ?? rate
            links[parent]?.bytesPerSecond = smoothed
        }
        wakeAll()
        landing += 1
        let landed = await assembler.acceptWholePiece(index, buffer, length: length, crc: buffer.buffer.crc32c(0..<length), sha256: trusted[index])
        landing -= 1
        guard landed else {
            end(.failed("storing piece \(index): \(assembler.failure ?? "failed")"))
            return
        }
        // Done once every piece is here and handed to the store (others may still wait for a
        // write slot: the last to land finishes).
        if selector.isComplete && landing == 0 && outcome == nil {
            do {
                try await assembler.finish(streamEnded: false)
                if configuration.tracePieces { log("swarm-trace: task \(id): complete at monotonic \(SystemCalls.monotonicMilliseconds()) ms") }
                if unverified > 0 { log("swarm: task \(id): \(unverified) pieces from peers were checked against their CRC32C only: no seed had their SHA-256") }
                end(.complete(bySource: bySource))
            } catch {
                end(.failed("\(error)"))
            }
        }
    }

    /// One piece from a parent into `buffer`; nil when it came whole and matched its CRC32C and
    /// (from a peer) the seed's SHA-256 for it.
    func fetchFromParent(_ link: ParentLink, _ index: Int, _ buffer: SharedIOBuffer, _ length: Int) async -> (ParentFailure.Kind, String)? {
        let url = HTTPClientURL(host: link.url.host, port: link.url.port,
                                target: PieceProtocol.piecePath(id, index, waitMilliseconds: configuration.pieceWaitMilliseconds))
        var deadline = configuration.minimumPieceDeadline
        if let rate = link.bytesPerSecond, rate > 0 {
            deadline = max(deadline, .milliseconds(Int64(4000 * Double(length) / rate)))
        }
        deadline += .milliseconds(configuration.pieceWaitMilliseconds)
        let r: HTTPClientResponse
        do { r = try await pieces.send(HTTPClientRequest(url: url, deadline: deadline), into: buffer, range: 0..<length) } catch {
            if case .deadlineExceeded = error { return (.timeout, "no answer within \(deadline)") }
            return (.unreachable, "\(error)")
        }
        guard r.status == 200 else {
            return (r.status == 404 || r.status == 503 ? .missing : .unreachable, "answered \(r.status)")
        }
        guard r.bodyLength == length else { return (.badPiece, "sent \(r.bodyLength) bytes, not \(length)") }
        guard let crc = r.head.headers[PieceProtocol.crcHeader].flatMap({ PieceProtocol.parseCRC($0) }) else {
            return (.badPiece, "sent no CRC32C")
        }
        guard buffer.buffer.crc32c(0..<length) == crc else { return (.badPiece, "the bytes do not match the CRC32C it sent") }
        if link.candidate.role == .seed {
            // The seed read the origin: what it says a piece hashes to is what children check.
            if let d = r.head.headers[PieceProtocol.sha256Header].flatMap({ SHA256Digest(hex: $0) }) { trusted[index] = d }
            return nil
        }
        guard let expected = await seedDigest(index) else {
            unverified += 1
            return nil
        }
        var hasher = SHA256Hasher()
        hasher.update(buffer.buffer, range: 0..<length)
        guard SHA256Digest(bytes: hasher.finalize()) == expected else {
            return (.badPiece, "the bytes do not match the seed's SHA-256 for piece \(index) (their CRC32C did)")
        }
        return nil
    }

    /// The seed's digest of piece `index`: known already, else asked of a seed parent's
    /// metadata (one request at a time, at most once a second); nil with no seed parent or
    /// when the seed has none for it.
    func seedDigest(_ index: Int) async -> SHA256Digest? {
        if let d = trusted[index] { return d }
        if digestRefresh == nil {
            guard let seed = links.values.first(where: { $0.candidate.role == .seed }) else { return nil }
            if let at = digestRefreshedAt, ContinuousClock.now - at < .seconds(1) { return nil }
            let request = HTTPClientRequest(url: HTTPClientURL(host: seed.url.host, port: seed.url.port, target: PieceProtocol.metaPath(id)),
                                            deadline: .seconds(5))
            let client = pieces
            digestRefresh = Task { [self] in
                let body = try? await client.send(request)
                let digests = body.flatMap { $0.status == 200 ? try? TaskMetadata(parsing: $0.body) : nil }?.pieceDigests ?? [:]
                self.digestsArrived(digests)
            }
        }
        await digestRefresh?.value
        return trusted[index]
    }

    func digestsArrived(_ digests: [Int: SHA256Digest]) {
        trusted.merge(digests) { a, _ in a }
        digestRefresh = nil
        digestRefreshedAt = .now
    }

    func end(_ o: SwarmOutcome) {
        guard outcome == nil else { return }
        outcome = o
        finished?.resume(returning: o)
        finished = nil
        wakeAll()
        // The scheduler hears at once (this host is now a parent with every piece, or not).
        let state: ProgressReport.State = if case .complete = o { .complete } else { .failed }
        Task { [self] in await self.sendReport(state: state) }
    }

    // MARK: Scheduler

    /// Reports progress every `reportEvery` and asks for parents again as `AnnouncePacing` says
    /// (soon while the swarm forms: peers that start together learn of each other, and get their
    /// seed share among the owners, within a fraction of a second), or at the next wake after a
    /// parent was dropped.
    func chores(parents first: Int) async {
        var pacing = AnnouncePacing(quickest: configuration.reannounceQuickly, slowest: configuration.reannounce,
                                    progressStep: configuration.reannounceEveryShare)
        var untilAnnounce = pacing.next(parents: first, holding: selector.have.count)
        var untilReport = configuration.reportEvery
        let clock = ContinuousClock()
        var announced = clock.now
        while outcome == nil {
            let check = pacing.untilProgressCheck(holding: selector.have.count, of: selector.pieceCount,
                                                  sinceAnnounce: clock.now - announced, minimum: configuration.progressCheck)
            let step = min(untilAnnounce, untilReport, check)
            try? await Task.sleep(for: step)
            guard outcome == nil else { return }
            untilAnnounce -= step
            untilReport -= step
            if untilReport <= .zero {
                untilReport = configuration.reportEvery
                await sendReport(state: .downloading)
            }
            if announceSoon || untilAnnounce <= .zero || pacing.dueByProgress(holding: selector.have.count, of: selector.pieceCount) {
                announceSoon = false
                var a = announce
                a.pieces = selector.have
                var offered = 0
                if let reply = try? await scheduler.announce(a), outcome == nil {
                    selector.takeShares(reply)
                    adopt(reply.parents)
                    offered = reply.parents.count
                    if links.isEmpty && reply.backToSource { goToOrigin(reply.reason ?? "the scheduler says so") }
                }
                untilAnnounce = pacing.next(parents: offered, holding: a.pieces.count)
                announced = clock.now
            }
        }
    }

    func sendReport(state: ProgressReport.State) async {
        var fresh = PieceSet()
        for i in selector.have.indexes where !reported.contains(i) { fresh.insert(i) }
        reported = selector.have
        let report = ProgressReport(host: announce.host, task: id, pieces: fresh, state: state,
                                    costs: costs.values.sorted { $0.parent < $1.parent }, failures: failures)
        costs = [:]
        failures = []
        await scheduler.report(report)
    }
}

/// The availability feed's body, decoded into events as it arrives (on the event loop).
final class FeedHandler: HTTPResponseHandler, @unchecked Sendable {
    let buffer = SharedIOBuffer(IOBuffer(capacity: 64 << 10))
    var decoder = AvailabilityDecoder()
    var ok = false
    var failure: String?
    /// `complete` or `failed` came: the feed said all it will.
    var told = false
    let onEvents: @Sendable ([AvailabilityEvent]) -> Void
    /// Why the feed ended (nil: after `complete`), and whether the parent could not be reached.
    let onEnd: @Sendable (String?, Bool) -> Void

    init(_ onEvents: @escaping @Sendable ([AvailabilityEvent]) -> Void, ended: @escaping @Sendable (String?, Bool) -> Void) {
        self.onEvents = onEvents
        onEnd = ended
    }

    func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool {
        ok = head.status == 200
        if !ok { failure = "status \(head.status)" }
        return true
    }

    func bodySpace() -> BufferSpace? { BufferSpace(buffer: buffer, range: 0..<buffer.buffer.capacity) }

    func bodyReceived(_ count: Int) {
        guard ok, failure == nil else { return }
        do {
            let events = try decoder.feed(buffer.buffer.bytes(0..<count))
            if events.contains(where: { if case .complete = $0 { true } else if case .failed = $0 { true } else { false } }) { told = true }
            if !events.isEmpty { onEvents(events) }
        } catch {
            failure = error.description
        }
    }

    func responseEnded(_ result: Result<Void, HTTPClientError>) {
        switch result {
        // A feed that ends before its last word (the parent shut down) is a failure like any other.
        case .success: onEnd(failure ?? (told ? nil : "the feed ended early"), false)
        case .failure(let e):
            let unreachable = switch e { case .connectFailed, .connectTimedOut: true; default: false }
            onEnd(failure ?? "\(e)", unreachable)
        }
    }
}

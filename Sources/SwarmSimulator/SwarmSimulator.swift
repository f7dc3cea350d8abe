#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import PeerPolicy
import PieceProtocol
import Scheduler
import SchedulerProtocol
import SwarmDownload

/// A swarm in virtual time: the real `Scheduler` and the real `PieceSelector` against hosts whose
/// links are numbers. One seed (host 0, next to the origin) and `peers` peers start at once, each
/// downloading `objects` tasks; links are shared max-min fairly among the transfers on them (a
/// transfer is limited by its parent's upload, its child's download and, between data centres,
/// the shared inter-DC link). The peer's knobs (requests per parent and per seed, requests in
/// flight, the streaming window, reannounce and report periods) come from the real
/// `SwarmConfiguration`, the piece length from `PieceMath`, so a policy change flows in here.
///
/// Time advances from event to event (the next piece to finish, the next origin piece, the next
/// announce, report or departure), but never by less than `tick` (half a piece's time at the
/// link rate by default), so that at thousands of hosts, where pieces finish continuously, a
/// step moves many transfers at once. Rates are recomputed after every step by progressive
/// filling with a heap (O(T log T) for T transfers). The wire: a link carries payload at
/// `wireEfficiency` of its rate (headers and ACKs take the rest); a request's first byte comes one
/// `roundTrip` after it is sent, and a piece that lands is known to the parent's children half a
/// round trip later (the feed). Opt-in, for setting the simulator beside the netns testbed
/// (`tools/bench swarm calibrate` measures each): TCP's unequal shares of a full link
/// (`flowSpread`), a reader streaming each object in order at a finite rate (`readerBytesPerSecond`),
/// and the peers starting late (`startSeconds`). Not modelled: the rest of TCP's dynamics (slow
/// start, losses, timeouts), and the hosts' CPU and disks.
/// Pure and deterministic for a given `seed`.
public struct SwarmSimulation: Sendable {
    public struct Shape: Sendable {
        public var peers = 8
        /// Every host's upload and download, bytes per second (200 Mbit/s).
        public var linkBytesPerSecond = 25_000_000.0
        /// The seed's origin (it sits next to the seed, host 0 in the benchmark); nil: 4× the link.
        public var originBytesPerSecond: Double? = nil
        public var objectBytes: Int64 = 256 << 20
        /// nil: what the real peer uses (`PieceMath.defaultPieceLength`).
        public var pieceLength: Int? = nil
        /// Tasks every peer downloads at once (each its own download, sharing the links).
        public var objects = 1
        /// This fraction of the peers has `slowFactor` of the link, both ways.
        public var slowFraction = 0.0
        public var slowFactor = 0.1
        /// This fraction of the peers leaves, each at a random time in 10-90 % of T_min: its
        /// transfers stop, its children drop it and report it failing, the scheduler forgets it.
        public var churnFraction = 0.0
        /// 1, or 2: peers alternate between `dc0` and `dc1` (their `idc` label); the seed is in dc0.
        public var dataCentres = 1
        /// The link between the data centres, each way, as a fraction of one DC's total link
        /// capacity (hosts in the smaller DC × link).
        public var interDCFraction = 0.1
        /// Whether hosts register their `idc` (the scheduler's locality score uses it).
        public var localityLabels = true
        /// The peer's knobs, from the real peer.
        public var swarm = SwarmConfiguration()
        /// Payload bytes per byte a link carries: Ethernet with MTU 1500 and TCP timestamps puts
        /// 1,448 bytes of payload in a 1,514-byte frame, and the other direction carries a 66-byte
        /// ACK per two segments (measured on the netns testbed: 284 MB through a peer's download
        /// qdisc for 268 MB of pieces, 0.945). T_min stays the nominal link's.
        public var wireEfficiency = 1448.0 / (1514.0 + 66.0 / 2)
        /// Seconds from sending a request to its first byte (one round trip); a parent's new piece
        /// reaches its children's feeds half of it later. 1 ms: a data centre's fabric under load.
        /// The netns testbed measured 25 ms (ping between two peers during tools/bench swarm: mean
        /// 25-27 ms, 0.05-91; the tbf queues hold up to 20 ms each way).
        public var roundTrip = 0.001
        /// The smallest step of virtual time, seconds; nil: half a piece's time at the link rate.
        public var tick: Double? = nil
        public var seed: UInt64 = 1
        public var scheduler = Scheduler.Config()
        /// A reader on every peer streams each object in order at this rate, bytes per second, as
        /// `darter get -O -` does through its daemon, and a peer is done when its readers are
        /// (the benchmark times the get); nil: done when it holds every piece. On the netns
        /// testbed the reader is slow (8 gets at once re-reading a complete task from their
        /// daemons, all on 2 cores: 103-125 MB/s each; one alone: 740 MB/s), so a piece that
        /// lands last far back in the stream leaves the rest to be read after it.
        public var readerBytesPerSecond: Double? = nil
        /// TCP flows sharing a full link do not get equal shares: each transfer's weight in the
        /// fair shares is e^(flowSpread·z), z standard normal, drawn when it starts (0: max-min
        /// fair, every transfer alike). `tools/bench swarm calibrate` picks the value whose
        /// piece requests' p90 matches the netns swarm's (0.55-0.65 at 8 × 200 Mbit/s).
        public var flowSpread = 0.0
        /// When the peers' downloads begin (their first announce), seconds after the clock's 0:
        /// in the benchmark, starting `darter get` and its request reaching the daemon (measured
        /// 0.09-0.15 s there). Completion times count from 0.
        public var startSeconds = 0.0
        /// Record when each peer came to hold each count of the first object's pieces
        /// (`Result.holdingSeconds`): the timeline to set beside a real run's trace.
        public var recordTimeline = false
        public init() {}

        public var effectivePieceLength: Int { pieceLength ?? PieceMath.defaultPieceLength(contentLength: objectBytes) }
        public var effectiveOriginRate: Double { originBytesPerSecond ?? 4 * linkBytesPerSecond }
    }

    public struct Result: Sendable {
        /// Per peer, seconds from the start until it held every piece of every object (peers that
        /// left: nil; peers that never finished: the time limit).
        public var completionSeconds: [Double?]
        /// Per peer, its own lower bound: total bytes × max(1/origin, 1/its download,
        /// N/(seed upload + Σ peer uploads), 1/inter-DC link if across) — REFERENCE-P2P §1.
        public var idealSeconds: [Double]
        /// T_min of the swarm as a whole (the homogeneous formula for a fast host in dc0).
        public var swarmIdealSeconds: Double
        public var totalBytes: Int64
        public var originBytes: Int64
        /// Bytes each host uploaded (host 0 is the seed).
        public var uploadBytes: [Int64]
        /// Bytes received for pieces another parent delivered first (endgame duplicates, cancelled).
        public var wastedBytes: Int64
        /// Bytes carried from one data centre to the other.
        public var crossDCBytes: Int64
        public var slow: [Bool]
        public var departed: [Bool]
        public var unfinished: Int
        public var virtualSeconds: Double
        public var steps: Int
        public var schedulerCounters: Scheduler.Counters
        /// With `Shape.recordTimeline`: each piece request's seconds from being sent to its piece
        /// landing (the first copy; those cancelled or failed are left out), in order.
        public var requestSeconds: [Double] = []
        /// With `Shape.recordTimeline`: per peer, `holdingSeconds[p][k]` is when it came to hold
        /// k + 1 pieces of the first object (empty otherwise).
        public var holdingSeconds: [[Double]] = []

        /// Completion ÷ the host's own bound, for peers that stayed.
        public var ratios: [Double] {
            completionSeconds.indices.compactMap { i in completionSeconds[i].map { $0 / idealSeconds[i] } }
        }
        public static func percentile(_ values: [Double], _ p: Double) -> Double {
            let s = values.sorted()
            guard !s.isEmpty else { return .nan }
            return s[min(s.count - 1, max(0, Int((Double(s.count) * p).rounded(.up)) - 1))]
        }
        public var p50VsIdeal: Double { Self.percentile(ratios, 0.5) }
        public var p99VsIdeal: Double { Self.percentile(ratios, 0.99) }
        public var maxVsIdeal: Double { ratios.max() ?? .nan }
        /// Completion seconds in ascending order (the CDF), peers that stayed.
        public var sortedCompletions: [Double] { completionSeconds.compactMap { $0 }.sorted() }
        public var originVsSize: Double { Double(originBytes) / Double(totalBytes) }
        /// Peers' uploads ÷ total bytes: min, median, max.
        public var peerUploadSpread: (min: Double, p50: Double, max: Double) {
            let u = uploadBytes.dropFirst().map { Double($0) / Double(totalBytes) }
            return (u.min() ?? 0, Self.percentile(Array(u), 0.5), u.max() ?? 0)
        }
    }

    public static func run(_ shape: Shape) -> Result {
        let engine = Engine(shape)
        return engine.run()
    }

    struct Transfer {
        var child: Int32, parent: Int32, task: Int32, piece: Int32
        var remaining: Double
        var rate = 0.0
        /// Its share of a full link relative to the others' (1: max-min fair; TCP flows through
        /// one bottleneck get unequal shares: `Shape.flowSpread`).
        var weight = 1.0
        var cross: Int32 = -1
        /// When its first byte arrives (one round trip after the request).
        var startsAt = 0.0
    }

    /// Max-min fair rates by progressive filling: each host has an upload and a download link of
    /// `capacity`; the tightest link fixes the rate of its transfers, which then leave the rest.
    static func allocate(_ transfers: inout [Transfer], hosts: Int, capacity: Double) {
        let links = Array(repeating: capacity, count: hosts)
        FairShare.allocate(&transfers, up: links, down: links, cross: [])
    }
}

/// Max-min fair shares over resources (uploads, downloads, inter-DC links) by progressive
/// filling: the resource with the smallest share per unfrozen transfer fixes its transfers'
/// rates; shares of the others only grow as transfers freeze, so a lazy heap finds the next one.
enum FairShare {
    /// Transfers whose first byte is still on its way (`startsAt` after `now`) take no share.
    static func allocate(_ transfers: inout [SwarmSimulation.Transfer], up: [Double], down: [Double], cross: [Double], now: Double = .infinity) {
        let n = up.count
        let resources = 2 * n + cross.count
        var left = up + down + cross
        var count = Array(repeating: 0, count: resources)
        var weight = Array(repeating: 0.0, count: resources)
        for k in transfers.indices where transfers[k].startsAt > now { transfers[k].rate = 0 }
        for t in transfers where t.startsAt <= now {
            count[Int(t.parent)] += 1
            count[n + Int(t.child)] += 1
            weight[Int(t.parent)] += t.weight
            weight[n + Int(t.child)] += t.weight
            if t.cross >= 0 { count[2 * n + Int(t.cross)] += 1; weight[2 * n + Int(t.cross)] += t.weight }
        }
        // CSR lists of the transfers on each resource.
        var start = Array(repeating: 0, count: resources + 1)
        for r in 0..<resources { start[r + 1] = start[r] + count[r] }
        var fill = start
        var members = Array(repeating: 0, count: start[resources])
        for (k, t) in transfers.enumerated() where t.startsAt <= now {
            members[fill[Int(t.parent)]] = k; fill[Int(t.parent)] += 1
            members[fill[n + Int(t.child)]] = k; fill[n + Int(t.child)] += 1
            if t.cross >= 0 { let r = 2 * n + Int(t.cross); members[fill[r]] = k; fill[r] += 1 }
        }
        var frozen = Array(repeating: false, count: transfers.count)
        var heap = MinHeap()
        // Shares per unit of weight.
        func share(_ r: Int) -> Double { max(0, left[r]) / max(weight[r], 1e-12) }
        for r in 0..<resources where count[r] > 0 { heap.push(share(r), r) }
        while let (key, r) = heap.pop() {
            guard count[r] > 0 else { continue }
            let current = share(r)
            if current > key * (1 + 1e-12) + 1e-9 { heap.push(current, r); continue }
            for m in start[r]..<start[r + 1] {
                let k = members[m]
                guard !frozen[k] else { continue }
                frozen[k] = true
                let t = transfers[k]
                transfers[k].rate = current * t.weight
                for other in [Int(t.parent), n + Int(t.child), t.cross >= 0 ? 2 * n + Int(t.cross) : -1] where other >= 0 {
                    left[other] -= current * t.weight
                    count[other] -= 1
                    weight[other] = count[other] == 0 ? 0 : weight[other] - t.weight
                    if other != r, count[other] > 0 { heap.push(share(other), other) }
                }
            }
        }
    }
}

struct MinHeap {
    private var keys: [Double] = []
    private var values: [Int] = []
    var isEmpty: Bool { keys.isEmpty }
    var peek: (Double, Int)? { keys.first.map { ($0, values[0]) } }
    mutating func push(_ key: Double, _ value: Int) {
        keys.append(key); values.append(value)
        var i = keys.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard less(i, p) else { break }
            keys.swapAt(i, p); values.swapAt(i, p); i = p
        }
    }
    private func less(_ a: Int, _ b: Int) -> Bool { keys[a] != keys[b] ? keys[a] < keys[b] : values[a] < values[b] }
    mutating func pop() -> (Double, Int)? {
        guard let key = keys.first, let value = values.first else { return nil }
        let last = keys.count - 1
        keys.swapAt(0, last); values.swapAt(0, last)
        keys.removeLast(); values.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < keys.count, less(l, m) { m = l }
            if r < keys.count, less(r, m) { m = r }
            guard m != i else { break }
            keys.swapAt(i, m); values.swapAt(i, m); i = m
        }
        return (key, value)
    }
}

/// One run's state. Hosts are 0 (the seed) … peers; a download is (task, host).
final class Engine {
    let shape: SwarmSimulation.Shape
    let n: Int, tasksCount: Int, pieceCount: Int, pieceLength: Int
    let names: [String]
    var index: [String: Int] = [:]
    let taskIDs: [TaskID], urls: [String]
    var scheduler: Scheduler
    /// Nominal links (the bounds) and what they carry of payload (`wireEfficiency`).
    let up: [Double], down: [Double]
    let upPayload: [Double], downPayload: [Double]
    let dc: [Int]
    var cross: [Double] = []
    var crossPayload: [Double] = []
    /// Feed events on their way, oldest first: a piece that landed at a host reaches its children
    /// at `at`. One delay for all (half a round trip), so they come due in the order they went in.
    var notices: [(at: Double, t: Int, host: Int, piece: Int)] = []
    var noticesDue = 0
    let slow: [Bool]
    var departed: [Bool]
    var leaveAt: [Double]
    // Per task, per host.
    var have: [[PieceSet]]
    var selectors: [[PieceSelector]]
    var parents: [[[Int]]]
    var named: [[Set<Int>]]
    var children: [[[Int]]]
    var reported: [[PieceSet]]
    var done: [[Double]]
    /// Open requests per download (task, host), by parent.
    var open: [[[Int: Int]]]
    var active: [[Int]]
    var dirty: [[Bool]]
    var freed: [[[Int]]]
    var rotation: [[Int]]
    var dirtyList: [(Int, Int)] = []
    /// Per download, when it asks the scheduler again (the real peer's `AnnouncePacing`), and a
    /// heap of those times (stale entries skipped).
    var pacing: [[AnnouncePacing]]
    var announceAt: [[Double]]
    var announceQueue = MinHeap()
    var hostDone: [Double]
    /// Per download, the bytes its reader has read (with `readerBytesPerSecond`), what it could
    /// read in the step under way (held in order when it began: pieces land at a step's end),
    /// and when it read the last.
    var readBytes: [[Double]]
    var readable: [[Double]]
    var readDone: [[Double]]
    var uploaded: [Double]
    var wasted = 0.0, crossBytes = 0.0
    var transfers: [SwarmSimulation.Transfer] = []
    var holding: [[Double]] = []
    var requestTimes: [Double] = []
    var flowRNG: SplitMix64
    var originDone: [Double]
    var seedFetching: [Bool]
    var now = 0.0
    var steps = 0
    /// Whether the set of transfers changed since rates were last computed.
    var changed = true
    /// `DARTER_SIM_TRACE=SECONDS`: a summary line every SECONDS of virtual time (1 when not a number).
    let traceEvery: Double? = getenv("DARTER_SIM_TRACE").map { Double(String(cString: $0)) ?? 1 }
    var nextTrace = 0.0
    /// `DARTER_SIM_STUCK=SECONDS`: at that virtual time, a line per download of the first object
    /// not done (what it misses, which named parents hold its first missing pieces, what it has
    /// in flight at what rate): how the gateway and the small-object problems were found.
    var stuckAt: Double? = getenv("DARTER_SIM_STUCK").map { Double(String(cString: $0)) ?? 1 }

    func printStuck() {
        for c in 1..<n where done[0][c] < 0 && !departed[c] {
            let missing = (0..<pieceCount).filter { !have[0][c].contains($0) }
            let holders = missing.prefix(3).map { i in
                "\(i): " + named[0][c].sorted().filter { have[0][$0].contains(i) }.map { "\($0)" + (slow[$0] ? "s" : "") + "/dc\(dc[$0])" }.joined(separator: ",")
            }
            let flying = transfers.filter { Int($0.child) == c && Int($0.task) == 0 }.map { "\($0.piece)@\($0.parent) \(Int($0.rate / 1e6)) MB/s" }
            print("stuck t=\(now) host \(c)\(slow[c] ? " (slow)" : "") dc\(dc[c]): missing \(missing.count), parents \(parents[0][c].count), named \(named[0][c].count); "
                  + "named holders of the first missing \(holders); in flight \(flying); next announce at \(announceAt[0][c])")
        }
    }

    init(_ shape: SwarmSimulation.Shape) {
        self.shape = shape
        n = shape.peers + 1
        tasksCount = max(1, shape.objects)
        pieceLength = shape.effectivePieceLength
        pieceCount = PieceMath.pieceCount(contentLength: shape.objectBytes, pieceLength: pieceLength)
        let hostNames = ["seed-0"] + (1..<(shape.peers + 1)).map { "peer-\($0)" }
        names = hostNames
        for (i, name) in names.enumerated() { index[name] = i }
        urls = (0..<tasksCount).map { "http://origin.sim/object-\($0)" }
        taskIDs = urls.map { try! TaskID.forURL($0) }
        scheduler = Scheduler(config: shape.scheduler)
        var rng = SplitMix64(seed: shape.seed &* 7919 &+ 17)
        var order = Array(1..<n)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let slowCount = Int((Double(shape.peers) * shape.slowFraction).rounded())
        let churnCount = Int((Double(shape.peers) * shape.churnFraction).rounded())
        var slow = Array(repeating: false, count: n)
        for h in order.prefix(slowCount) { slow[h] = true }
        self.slow = slow
        var leave = Array(repeating: Double.infinity, count: n)
        let bound = Double(shape.objectBytes) * Double(tasksCount) / shape.linkBytesPerSecond
        for h in order.dropFirst(slowCount).prefix(churnCount) {
            leave[h] = bound * (0.1 + 0.8 * Double(rng.next() % 1_000_000) / 1_000_000)
        }
        leaveAt = leave
        departed = Array(repeating: false, count: n)
        up = (0..<n).map { slow[$0] ? shape.linkBytesPerSecond * shape.slowFactor : shape.linkBytesPerSecond }
        down = up
        upPayload = up.map { $0 * shape.wireEfficiency }
        downPayload = upPayload
        dc = (0..<n).map { shape.dataCentres >= 2 ? ($0 == 0 ? 0 : ($0 + 1) % 2) : 0 }
        if shape.dataCentres >= 2 {
            let smaller = min(dc.filter { $0 == 0 }.count, dc.filter { $0 == 1 }.count)
            let capacity = shape.interDCFraction * Double(max(1, smaller)) * shape.linkBytesPerSecond
            cross = [capacity, capacity]
            crossPayload = cross.map { $0 * shape.wireEfficiency }
        }
        let perHost = { (x: PieceSet) in Array(repeating: x, count: shape.peers + 1) }
        have = (0..<tasksCount).map { _ in perHost(PieceSet()) }
        reported = have
        selectors = (0..<tasksCount).map { t in
            (0..<(shape.peers + 1)).map {
                PieceSelector(pieceCount: PieceMath.pieceCount(contentLength: shape.objectBytes, pieceLength: shape.effectivePieceLength),
                              window: shape.swarm.window, me: hostNames[$0],
                              seed: shape.seed &* 1000 &+ UInt64($0) &+ UInt64(t) &* 1_000_003)
            }
        }
        parents = Array(repeating: Array(repeating: [], count: n), count: tasksCount)
        children = parents
        named = Array(repeating: Array(repeating: [], count: n), count: tasksCount)
        done = Array(repeating: Array(repeating: -1, count: n), count: tasksCount)
        open = Array(repeating: Array(repeating: [:], count: n), count: tasksCount)
        active = Array(repeating: Array(repeating: 0, count: n), count: tasksCount)
        dirty = Array(repeating: Array(repeating: false, count: n), count: tasksCount)
        freed = Array(repeating: Array(repeating: [], count: n), count: tasksCount)
        rotation = Array(repeating: Array(repeating: 0, count: n), count: tasksCount)
        pacing = Array(repeating: Array(repeating: AnnouncePacing(quickest: shape.swarm.reannounceQuickly, slowest: shape.swarm.reannounce,
                                                                       progressStep: shape.swarm.reannounceEveryShare),
                                        count: n), count: tasksCount)
        announceAt = Array(repeating: Array(repeating: .infinity, count: n), count: tasksCount)
        hostDone = Array(repeating: -1, count: n)
        readBytes = Array(repeating: Array(repeating: 0, count: n), count: tasksCount)
        readable = readBytes
        readDone = Array(repeating: Array(repeating: -1, count: n), count: tasksCount)
        uploaded = Array(repeating: 0, count: n)
        originDone = Array(repeating: 0, count: tasksCount)
        if shape.recordTimeline { holding = Array(repeating: [], count: n) }
        flowRNG = SplitMix64(seed: shape.seed &* 104_729 &+ 3)
        seedFetching = Array(repeating: false, count: tasksCount)
    }

    var ms: Int64 { Int64((now * 1000).rounded()) }
    func pieceBytes(_ i: Int) -> Double {
        Double(min(Int64(pieceLength), shape.objectBytes - Int64(i) * Int64(pieceLength)))
    }

    func markDirty(_ t: Int, _ c: Int) {
        if !dirty[t][c] { dirty[t][c] = true; dirtyList.append((t, c)) }
    }

    /// The real peer's `adopt`: parents an announce names are added to those it has (none is
    /// dropped for not being named again; a parent goes only when it fails), and only those the
    /// latest announce named (and the seed) are asked for pieces.
    func addParents(_ t: Int, _ child: Int, _ candidates: [ParentCandidate]) {
        let listed = candidates.compactMap { index[$0.id] }
        if !listed.isEmpty { named[t][child] = Set(listed) }
        for c in candidates {
            guard let p = index[c.id], !departed[p], p != child, !parents[t][child].contains(p) else { continue }
            selectors[t][child].parentHas(names[p], have[t][p], scarce: p == 0, remote: c.remote)
            children[t][p].append(child)
            parents[t][child].append(p)
        }
        markDirty(t, child)
    }

    func announce(_ t: Int, _ child: Int) {
        guard let out = try? scheduler.announce(Announce(host: names[child], task: taskIDs[t], url: urls[t], pieces: have[t][child]), now: ms) else { return }
        if out.trigger != nil { seedFetching[t] = true }
        selectors[t][child].takeShares(out.reply)
        addParents(t, child, out.reply.parents)
        scheduleAnnounce(t, child, at: now + pacing[t][child].next(parents: out.reply.parents.count, holding: have[t][child].count).seconds)
    }

    func scheduleAnnounce(_ t: Int, _ c: Int, at time: Double) {
        announceAt[t][c] = time
        announceQueue.push(time, t * n + c)
    }

    func landed(_ t: Int, _ host: Int, _ piece: Int, at: Double? = nil) {
        have[t][host].insert(piece)
        if t == 0, host > 0, shape.recordTimeline { holding[host].append(at ?? now) }
        let delay = shape.roundTrip / 2
        guard delay <= 0 else { notices.append((now + delay, t, host, piece)); return }
        tell(t, host, piece)
    }

    /// The feed: `host`'s children hear of its new piece.
    func tell(_ t: Int, _ host: Int, _ piece: Int) {
        for c in children[t][host] where done[t][c] < 0 {
            selectors[t][c].parentHas(names[host], piece: piece)
            markDirty(t, c)
        }
    }

    /// Removes transfers matching `match` (their bytes so far are wasted); the caller tells the selector.
    func cancelTransfers(where match: (SwarmSimulation.Transfer) -> Bool) {
        var kept: [SwarmSimulation.Transfer] = []
        kept.reserveCapacity(transfers.count)
        for x in transfers {
            if match(x) {
                wasted += pieceBytes(Int(x.piece)) - x.remaining
                let t = Int(x.task), c = Int(x.child), p = Int(x.parent)
                active[t][c] -= 1
                open[t][c][p, default: 1] -= 1
                markDirty(t, c)
            } else { kept.append(x) }
        }
        if kept.count != transfers.count { changed = true }
        transfers = kept
    }

    /// Fills the request slots of the downloads that may have something new to ask for.
    func refill() {
        let list = dirtyList
        dirtyList = []
        let maxActive = shape.swarm.maxRequestsInFlight
        for (t, c) in list {
            dirty[t][c] = false
            guard done[t][c] < 0, !departed[c] else { continue }
            // The real peer's worker whose request just ended asks its own parent again first;
            // the others wake in turn (a rotating start here).
            let ps = parents[t][c]
            let first = freed[t][c].filter { ps.contains($0) }
            freed[t][c] = []
            rotation[t][c] &+= 1
            let rotated = ps.isEmpty ? [] : (0..<ps.count).map { ps[($0 + rotation[t][c]) % ps.count] }
            let order = first + rotated.filter { !first.contains($0) }
            let perPeer = shape.swarm.requestsPerPeerParent(asked: named[t][c].filter { $0 != 0 && !departed[$0] }.count)
            var progress = true
            while progress && active[t][c] < maxActive {
                progress = false
                for p in order where active[t][c] < maxActive && (p == 0 || named[t][c].contains(p)) {
                    let limit = p == 0 ? shape.swarm.requestsPerSeed : perPeer
                    guard open[t][c][p, default: 0] < limit, let piece = selectors[t][c].next(for: names[p]) else { continue }
                    open[t][c][p, default: 0] += 1
                    active[t][c] += 1
                    transfers.append(SwarmSimulation.Transfer(child: Int32(c), parent: Int32(p), task: Int32(t), piece: Int32(piece),
                                                              remaining: pieceBytes(piece), weight: flowWeight(),
                                                              cross: dc[p] != dc[c] ? Int32(dc[p]) : -1, startsAt: now + shape.roundTrip))
                    changed = true
                    progress = true
                }
            }
        }
    }

    /// e^(flowSpread·z) by Box-Muller from the run's own generator (1 when the spread is 0).
    func flowWeight() -> Double {
        guard shape.flowSpread > 0 else { return 1 }
        let u1 = (Double(flowRNG.next() >> 11) + 0.5) / Double(1 << 53), u2 = Double(flowRNG.next() >> 11) / Double(1 << 53)
        return exp(shape.flowSpread * (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    func depart(_ h: Int) {
        departed[h] = true
        for t in 0..<tasksCount {
            // Its own downloads stop; requests it was serving fail at the children.
            cancelTransfers(where: { $0.child == h && $0.task == t })
            let failing = transfers.filter { $0.parent == h && $0.task == t }
            cancelTransfers(where: { $0.parent == h && $0.task == t })
            for x in failing { selectors[t][Int(x.child)].failed(Int(x.piece), from: names[h]) }
            for c in children[t][h] {
                selectors[t][c].removeParent(names[h])
                parents[t][c].removeAll { $0 == h }
                open[t][c][h] = nil
                try? scheduler.report(ProgressReport(host: names[c], task: taskIDs[t], failures: [ParentFailure(parent: names[h], kind: .unreachable)]), now: ms)
                markDirty(t, c)
                if nextReport < announceAt[t][c] { scheduleAnnounce(t, c, at: nextReport) }
            }
            children[t][h] = []
            for p in parents[t][h] { children[t][p].removeAll { $0 == h } }
            parents[t][h] = []
        }
        scheduler.leave(names[h])
    }

    var nextReport = 0.0
    /// The real peer checks its progress every `progressCheck` at most: half of it on average.
    var progressDelay: Double { shape.swarm.progressCheck.seconds / 2 }
    /// The earliest first byte still on its way when rates were last computed.
    var pendingStart = Double.infinity

    /// Moves each reader, at its rate, over what was held in order when the step that just ended
    /// (`dt` long) began; what landed in it is readable from the next.
    func read(_ dt: Double, rate: Double) -> [Int] {
        var hostsDone: [Int] = []
        let size = Double(shape.objectBytes)
        for c in 1..<n where hostDone[c] < 0 && !departed[c] {
            for t in 0..<tasksCount where readDone[t][c] < 0 {
                let before = readBytes[t][c]
                readBytes[t][c] = min(readable[t][c], before + rate * dt)
                if readBytes[t][c] >= size {
                    readDone[t][c] = now - dt + (size - before) / rate
                }
                readable[t][c] = min(size, Double(selectors[t][c].readerPosition) * Double(pieceLength))
            }
            if (0..<tasksCount).allSatisfy({ readDone[$0][c] >= 0 }) {
                hostDone[c] = (0..<tasksCount).map { readDone[$0][c] }.max()!
                hostsDone.append(c)
            }
        }
        return hostsDone
    }

    func run() -> SwarmSimulation.Result {
        now = shape.startSeconds
        for h in 0..<n {
            _ = scheduler.register(HostRegistration(id: names[h], address: "\(names[h]):65001", role: h == 0 ? .seed : .peer,
                                                    uploadRate: Int64(up[h]), idc: shape.dataCentres >= 2 && shape.localityLabels ? "dc\(dc[h])" : nil), now: 0)
        }
        let originRate = shape.effectiveOriginRate
        let peerUploads = up.dropFirst().reduce(0, +)
        let total = Double(shape.objectBytes) * Double(tasksCount)
        let swarmBound = max(1 / originRate, 1 / shape.linkBytesPerSecond, Double(shape.peers) / (up[0] + peerUploads))
        let ideal = (0..<n).map { h in
            total * max(swarmBound, 1 / down[h], dc[h] != 0 && !cross.isEmpty ? 1 / cross[0] : 0)
        }
        let reportEvery = shape.swarm.reportEvery.seconds
        let tick = shape.tick ?? Double(pieceLength) / shape.linkBytesPerSecond / 2
        nextReport = now + reportEvery
        nextTrace = now
        for t in 0..<tasksCount { for c in 1..<n { announce(t, c) } }
        let limit = (ideal.max() ?? 1) * 50
        var remainingHosts = n - 1
        while remainingHosts > 0 && now < limit {
            steps += 1
            // Departures due.
            for h in 1..<n where !departed[h] && hostDone[h] < 0 && leaveAt[h] <= now {
                depart(h); remainingHosts -= 1
            }
            // Feed events due.
            while noticesDue < notices.count, notices[noticesDue].at <= now + 1e-12 {
                let x = notices[noticesDue]
                noticesDue += 1
                tell(x.t, x.host, x.piece)
            }
            if noticesDue > 4096 && noticesDue * 2 > notices.count {
                notices.removeFirst(noticesDue)
                noticesDue = 0
            }
            refill()
            // Rates (only when the set of transfers changed, or a first byte arrived: every step at scale).
            var nextStart = Double.infinity
            for x in transfers where x.startsAt > now + 1e-12 { nextStart = min(nextStart, x.startsAt) }
            if changed || nextStart != pendingStart {
                FairShare.allocate(&transfers, up: upPayload, down: downPayload, cross: crossPayload, now: now + 1e-12)
                changed = false
                pendingStart = nextStart
            }
            // How far to step: the next piece to finish or the next origin piece, at least a tick,
            // at most to the next periodic event.
            var dt = Double.infinity
            for x in transfers where x.rate > 0 { dt = min(dt, x.remaining / x.rate) }
            let fetching = (0..<tasksCount).filter { seedFetching[$0] && have[$0][0].count < pieceCount }
            if !fetching.isEmpty {
                let rate = originRate / Double(fetching.count)
                for t in fetching {
                    let next = have[t][0].count
                    dt = min(dt, (Double(next) * Double(pieceLength) + pieceBytes(next) - originDone[t]) / rate)
                }
            }
            // A first byte or a feed event due: the step ends there, but not before a tick (so at
            // scale a round trip is rounded up to the tick: pass a smaller --tick to resolve it).
            dt = min(dt, nextStart - now, (noticesDue < notices.count ? notices[noticesDue].at : .infinity) - now)
            dt = max(dt, tick)
            while let (at, key) = announceQueue.peek, at != announceAt[key / n][key % n] { _ = announceQueue.pop() }
            let nextAnnounce = announceQueue.peek?.0 ?? .infinity
            dt = min(dt, max(1e-9, min(nextAnnounce, nextReport) - now), limit - now)
            if let soonest = leaveAt.enumerated().filter({ !departed[$0.offset] && $0.element > now }).map(\.element).min() {
                dt = min(dt, soonest - now)
            }
            dt = max(dt, 1e-9)
            // The seed reads the origin in order (its pieces land at the step's end, below).
            var fromOrigin: [(t: Int, piece: Int)] = []
            for t in fetching {
                originDone[t] += originRate / Double(fetching.count) * dt
                var next = have[t][0].count
                while next < pieceCount, originDone[t] + 0.5 >= Double(next) * Double(pieceLength) + pieceBytes(next) {
                    fromOrigin.append((t, next))
                    next += 1
                }
            }
            // Move bytes; finish pieces.
            var finished: [(k: Int, at: Double)] = []
            for k in transfers.indices {
                let r = transfers[k].rate
                guard r > 0 else { continue }
                let moved = min(transfers[k].remaining, r * dt)
                let at = now + transfers[k].remaining / r
                transfers[k].remaining -= moved
                uploaded[Int(transfers[k].parent)] += moved
                if transfers[k].cross >= 0 { crossBytes += moved }
                if transfers[k].remaining <= 0.5 { finished.append((k, min(at, now + dt))) }
            }
            now += dt
            for (t, piece) in fromOrigin { landed(t, 0, piece) }
            var cancel: [(task: Int, child: Int, parent: Int, piece: Int)] = []
            var completions: [(t: Int, c: Int, at: Double)] = []
            for (k, at) in finished {
                let x = transfers[k]
                let t = Int(x.task), c = Int(x.child), p = Int(x.parent), piece = Int(x.piece)
                active[t][c] -= 1
                open[t][c][p, default: 1] -= 1
                freed[t][c].append(p)
                markDirty(t, c)
                guard !have[t][c].contains(piece) else { continue }
                if shape.recordTimeline { requestTimes.append(at - (x.startsAt - shape.roundTrip)) }
                for other in selectors[t][c].received(piece, from: names[p]) {
                    if let o = index[other] { cancel.append((t, c, o, piece)) }
                }
                landed(t, c, piece, at: at)
                if have[t][c].count == pieceCount { completions.append((t, c, at)) }
                else if pacing[t][c].dueByProgress(holding: have[t][c].count, of: pieceCount) {
                    let at = now + progressDelay
                    if announceAt[t][c] > at { scheduleAnnounce(t, c, at: at) }
                }
            }
            if !finished.isEmpty {
                var gone = Set(finished.map(\.k))
                // Endgame duplicates of pieces that just landed.
                if !cancel.isEmpty {
                    // One pass over the transfers with a set of what to cancel (a scan of the
                    // cancellations per transfer was quadratic in an endgame at 10,000 hosts).
                    func key(_ t: Int, _ c: Int, _ p: Int, _ piece: Int) -> Int { ((t * n + c) * n + p) * pieceCount + piece }
                    let doomed = Set(cancel.map { key($0.task, $0.child, $0.parent, $0.piece) })
                    for (k, x) in transfers.enumerated() where !gone.contains(k) {
                        guard doomed.contains(key(Int(x.task), Int(x.child), Int(x.parent), Int(x.piece))) else { continue }
                        wasted += pieceBytes(Int(x.piece)) - x.remaining
                        active[Int(x.task)][Int(x.child)] -= 1
                        open[Int(x.task)][Int(x.child)][Int(x.parent), default: 1] -= 1
                        gone.insert(k)
                    }
                }
                transfers = transfers.enumerated().filter { !gone.contains($0.offset) }.map(\.element)
                changed = true
            }
            if !completions.isEmpty {
                // One pass for every download that completed in this step (one per download was
                // O(transfers) each: O(N × T) over a run).
                let finishedDownloads = Set(completions.map { $0.t * n + $0.c })
                cancelTransfers(where: { finishedDownloads.contains(Int($0.task) * n + Int($0.child)) })
            }
            for (t, c, at) in completions {
                done[t][c] = at
                try? scheduler.report(ProgressReport(host: names[c], task: taskIDs[t], pieces: have[t][c], state: .complete), now: ms)
                for p in parents[t][c] { children[t][p].removeAll { $0 == c } }
                parents[t][c] = []
                if shape.readerBytesPerSecond == nil, (0..<tasksCount).allSatisfy({ done[$0][c] >= 0 }) {
                    hostDone[c] = (0..<tasksCount).map { done[$0][c] }.max()!
                    remainingHosts -= 1
                }
            }
            if let rate = shape.readerBytesPerSecond { remainingHosts -= read(dt, rate: rate).count }
            if let at = stuckAt, now >= at {
                stuckAt = nil
                printStuck()
            }
            if let every = traceEvery, now + 1e-9 >= nextTrace {
                nextTrace += every
                let rate = transfers.reduce(0) { $0 + $1.rate }, seedRate = transfers.filter { $0.parent == 0 }.reduce(0) { $0 + $1.rate }
                let counts = (1..<n).map { have[0][$0].count }.sorted()
                var serving = Array(repeating: 0, count: n)
                for x in transfers { serving[Int(x.parent)] += 1 }
                let busy = serving.dropFirst().sorted()
                let idleDownloads = (1..<n).filter { done[0][$0] < 0 && active[0][$0] == 0 }.count
                print("t=\(now) transfers \(transfers.count) rate \(Int(rate / 1e6)) MB/s (\(Int(rate / Double(n - 1) / shape.linkBytesPerSecond * 100)) % of links) seed \(Int(seedRate / 1e6)) MB/s with \(serving[0]) transfers, has \(have[0][0].count); peers have min \(counts.first ?? 0) p50 \(counts[counts.count / 2]) max \(counts.last ?? 0); transfers per peer parent p50 \(busy[busy.count / 2]) max \(busy.last ?? 0), idle \(busy.filter { $0 == 0 }.count); idle downloads \(idleDownloads); parents per child p50 \((1..<n).map { parents[0][$0].count }.sorted()[(n - 1) / 2]) named \((1..<n).map { named[0][$0].count }.sorted()[(n - 1) / 2])")
            }
            if now + 1e-9 >= nextReport {
                nextReport += reportEvery
                for t in 0..<tasksCount {
                    for c in 1..<n where done[t][c] < 0 && !departed[c] {
                        var fresh = PieceSet()
                        for i in have[t][c].indexes where !reported[t][c].contains(i) { fresh.insert(i) }
                        reported[t][c] = have[t][c]
                        try? scheduler.report(ProgressReport(host: names[c], task: taskIDs[t], pieces: fresh), now: ms)
                    }
                }
            }
            while let (at, key) = announceQueue.peek, at <= now + 1e-9 {
                _ = announceQueue.pop()
                let t = key / n, c = key % n
                guard at == announceAt[t][c] else { continue }
                announceAt[t][c] = .infinity
                if done[t][c] < 0 && !departed[c] { announce(t, c) }
            }
        }
        var unfinished = 0
        let completion: [Double?] = (1..<n).map { h in
            if departed[h] { return nil }
            if hostDone[h] < 0 { unfinished += 1; return limit }
            return hostDone[h]
        }
        return SwarmSimulation.Result(
            completionSeconds: completion, idealSeconds: Array(ideal.dropFirst()), swarmIdealSeconds: total * swarmBound,
            totalBytes: Int64(total), originBytes: Int64(originDone.map { min($0, Double(shape.objectBytes)) }.reduce(0, +)),
            uploadBytes: uploaded.map { Int64($0) }, wastedBytes: Int64(wasted), crossDCBytes: Int64(crossBytes),
            slow: Array(slow.dropFirst()), departed: Array(departed.dropFirst()), unfinished: unfinished,
            virtualSeconds: now, steps: steps, schedulerCounters: scheduler.counters,
            requestSeconds: requestTimes, holdingSeconds: shape.recordTimeline ? Array(holding.dropFirst()) : [])
    }
}

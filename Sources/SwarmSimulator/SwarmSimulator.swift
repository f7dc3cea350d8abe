import DarterCore
import PeerPolicy
import PieceProtocol
import Scheduler
import SchedulerProtocol

/// A discrete-time swarm in virtual time: the real `Scheduler` and the real `PieceSelector`
/// against hosts whose links are numbers. One seed (host 0, next to the origin) and `peers`
/// peers start at once; links are shared max-min fairly among the transfers on them (each
/// transfer is limited by its parent's upload and its child's download). Availability is pushed
/// to children the moment a piece lands (the feed's latency is not modelled), announces repeat
/// every `reannounceMilliseconds`, progress is reported every second. Pure and deterministic
/// for a given `seed`: tests use it to check the policy before the network benchmark does.
public struct SwarmSimulation: Sendable {
    public struct Shape: Sendable {
        public var peers = 8
        /// Every host's upload and download, bytes per second (200 Mbit/s).
        public var linkBytesPerSecond = 25_000_000.0
        /// The seed's origin: it sits next to the seed (host 0 in the benchmark).
        public var originBytesPerSecond = 1_000_000_000.0
        public var objectBytes: Int64 = 256 << 20
        public var pieceLength = 4 << 20
        /// Requests a child keeps open per parent (pipelined on its connections).
        public var requestsPerParent = 2
        /// Requests a child keeps open at the seed.
        public var requestsPerSeed = 1
        /// No streaming reader: a window makes every peer fetch the same pieces from the seed at
        /// once, with nothing to give each other (measured here: 8.0× ideal with 4, all from the seed).
        public var window = 0
        public var reannounceMilliseconds: Int64 = 1_000
        public var tickMilliseconds: Int64 = 5
        public var seed: UInt64 = 1
        public var scheduler = Scheduler.Config()
        public init() {}
    }

    public struct Result: Sendable {
        /// Per peer, milliseconds from the start until it held every piece.
        public var completionMilliseconds: [Int64]
        /// F / min(S, D, (S + N·U)/N): the physical limit (REFERENCE-P2P §1).
        public var idealMilliseconds: Double
        public var originBytes: Int64
        /// Bytes each host uploaded (host 0 is the seed).
        public var uploadBytes: [Int64]
        /// Bytes received for pieces another parent delivered first (endgame duplicates).
        public var wastedBytes: Int64
        public func percentile(_ p: Double) -> Double {
            let s = completionMilliseconds.sorted()
            return Double(s[min(s.count - 1, Int((Double(s.count) * p).rounded(.up)) - 1)])
        }
        public var p50VsIdeal: Double { percentile(0.5) / idealMilliseconds }
        public var p99VsIdeal: Double { percentile(0.99) / idealMilliseconds }
    }

    struct Transfer {
        var child: Int, parent: Int, piece: Int
        var remaining: Double
        var rate = 0.0
    }

    public static func run(_ shape: Shape) -> Result {
        let n = shape.peers + 1
        let names = ["seed-0"] + (1...shape.peers).map { "peer-\($0)" }
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
        let task = try! TaskID.forURL("http://origin.sim/object")
        let pieceCount = PieceMath.pieceCount(contentLength: shape.objectBytes, pieceLength: shape.pieceLength)
        func pieceBytes(_ i: Int) -> Double {
            Double(min(Int64(shape.pieceLength), shape.objectBytes - Int64(i) * Int64(shape.pieceLength)))
        }
        var scheduler = Scheduler(config: shape.scheduler)
        var have = Array(repeating: PieceSet(), count: n)
        var selectors = (0..<n).map { PieceSelector(pieceCount: pieceCount, window: shape.window, me: names[$0], seed: shape.seed &* 1000 &+ UInt64($0)) }
        var parents = Array(repeating: [Int](), count: n)
        var reported = Array(repeating: PieceSet(), count: n)
        var done = Array(repeating: Int64(-1), count: n)
        var uploaded = Array(repeating: 0.0, count: n)
        var wasted = 0.0
        var transfers: [Transfer] = []
        var originDone = 0.0
        var seedFetching = false
        for (i, name) in names.enumerated() {
            _ = scheduler.register(HostRegistration(id: name, address: "\(name):65001", role: i == 0 ? .seed : .peer,
                                                    uploadRate: Int64(shape.linkBytesPerSecond)), now: 0)
        }

        func setParents(_ child: Int, _ ids: [String]) {
            let new = ids.compactMap { index[$0] }
            for old in parents[child] where !new.contains(old) {
                selectors[child].removeParent(names[old])
                transfers.removeAll { $0.child == child && $0.parent == old }
            }
            for p in new where !parents[child].contains(p) { selectors[child].parentHas(names[p], have[p], scarce: p == 0) }
            parents[child] = new
        }
        func announce(_ child: Int, now: Int64) {
            guard let out = try? scheduler.announce(Announce(host: names[child], task: task, url: "http://origin.sim/object", pieces: have[child]), now: now) else { return }
            if out.trigger != nil { seedFetching = true }
            if let share = out.reply.seedShare { selectors[child].setShare(index: share.index, count: share.count) }
            setParents(child, out.reply.parents.map(\.id))
        }
        func landed(_ host: Int, _ piece: Int) {
            have[host].insert(piece)
            for c in 1..<n where parents[c].contains(host) { selectors[c].parentHas(names[host], PieceSet([piece])) }
        }

        let ideal = Double(shape.objectBytes) / min(shape.originBytesPerSecond, shape.linkBytesPerSecond,
                                                   (shape.linkBytesPerSecond + Double(shape.peers) * shape.linkBytesPerSecond) / Double(shape.peers)) * 1000
        let dt = Double(shape.tickMilliseconds) / 1000
        var now: Int64 = 0
        for c in 1..<n { announce(c, now: 0) }
        let limit = Int64(ideal * 50)
        while now < limit && done[1...].contains(-1) {
            // The seed reads the origin in order.
            if seedFetching && have[0].count < pieceCount {
                originDone += shape.originBytesPerSecond * dt
                while have[0].count < pieceCount {
                    let next = have[0].count
                    let end = Double(Int64(next) * Int64(shape.pieceLength)) + pieceBytes(next)
                    guard originDone >= end else { break }
                    landed(0, next)
                }
            }
            // Keep every parent's request slots full.
            for c in 1..<n where done[c] < 0 {
                for p in parents[c] {
                    var open = transfers.filter { $0.child == c && $0.parent == p }.count
                    while open < (p == 0 ? shape.requestsPerSeed : shape.requestsPerParent), let piece = selectors[c].next(for: names[p]) {
                        transfers.append(Transfer(child: c, parent: p, piece: piece, remaining: pieceBytes(piece)))
                        open += 1
                    }
                }
            }
            allocate(&transfers, hosts: n, capacity: shape.linkBytesPerSecond)
            // Move bytes; finish pieces.
            var finished: [Int] = []
            for k in transfers.indices {
                let moved = min(transfers[k].remaining, transfers[k].rate * dt)
                transfers[k].remaining -= moved
                uploaded[transfers[k].parent] += moved
                if transfers[k].remaining <= 0.5 { finished.append(k) }
            }
            var cancel: [(child: Int, parent: Int, piece: Int)] = []
            for k in finished {
                let t = transfers[k]
                guard !have[t.child].contains(t.piece) else { continue }
                for other in selectors[t.child].received(t.piece, from: names[t.parent]) {
                    cancel.append((t.child, index[other]!, t.piece))
                }
                landed(t.child, t.piece)
            }
            let finishedSet = Set(finished)
            transfers = transfers.enumerated().filter { !finishedSet.contains($0.offset) }.map(\.element)
            for x in cancel {
                if let k = transfers.firstIndex(where: { $0.child == x.child && $0.parent == x.parent && $0.piece == x.piece }) {
                    wasted += pieceBytes(x.piece) - transfers[k].remaining
                    transfers.remove(at: k)
                }
            }
            now += shape.tickMilliseconds
            for c in 1..<n where done[c] < 0 && have[c].count == pieceCount {
                done[c] = now
                try? scheduler.report(ProgressReport(host: names[c], task: task, pieces: have[c], state: .complete), now: now)
                transfers.removeAll { $0.child == c }
            }
            if now % 1000 == 0 {
                for c in 1..<n where done[c] < 0 {
                    var fresh = PieceSet()
                    for i in have[c].indexes where !reported[c].contains(i) { fresh.insert(i) }
                    reported[c] = have[c]
                    try? scheduler.report(ProgressReport(host: names[c], task: task, pieces: fresh), now: now)
                }
            }
            if now % shape.reannounceMilliseconds == 0 {
                for c in 1..<n where done[c] < 0 { announce(c, now: now) }
            }
        }
        return Result(completionMilliseconds: done[1...].map { $0 < 0 ? limit : $0 }, idealMilliseconds: ideal,
                      originBytes: Int64(min(originDone, Double(shape.objectBytes))), uploadBytes: uploaded.map { Int64($0) },
                      wastedBytes: Int64(wasted))
    }

    /// Max-min fair rates by progressive filling: each host has an upload and a download link of
    /// `capacity`; the tightest link fixes the rate of its transfers, which then leave the rest.
    static func allocate(_ transfers: inout [Transfer], hosts: Int, capacity: Double) {
        var upLeft = Array(repeating: capacity, count: hosts), downLeft = upLeft
        var frozen = Array(repeating: false, count: transfers.count)
        var remaining = transfers.count
        while remaining > 0 {
            var upCount = Array(repeating: 0, count: hosts), downCount = upCount
            for (k, t) in transfers.enumerated() where !frozen[k] { upCount[t.parent] += 1; downCount[t.child] += 1 }
            var share = Double.infinity
            var tight: (up: Bool, host: Int) = (true, 0)
            for h in 0..<hosts {
                if upCount[h] > 0, upLeft[h] / Double(upCount[h]) < share { share = upLeft[h] / Double(upCount[h]); tight = (true, h) }
                if downCount[h] > 0, downLeft[h] / Double(downCount[h]) < share { share = downLeft[h] / Double(downCount[h]); tight = (false, h) }
            }
            for (k, t) in transfers.enumerated() where !frozen[k] && (tight.up ? t.parent == tight.host : t.child == tight.host) {
                transfers[k].rate = share
                frozen[k] = true
                remaining -= 1
                upLeft[t.parent] -= share
                downLeft[t.child] -= share
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import BenchReport
import DarterCore
import SwarmSimulator
import DarterIO

/// `darter simulate`: a swarm in virtual time, driving the real Scheduler and PieceSelector with
/// the real peer's knobs (SwarmConfiguration) over hosts whose links are numbers (issue 14,
/// docs/SCALE.md). Prints completion p50/p99/max ÷ T_min, origin egress ÷ size and the
/// per-host upload balance.
enum SimulateCommand {
    static func run(_ argv: [String]) async throws {
        // The defaults the what-if flags name are the real code's, read from it.
        let real = SwarmSimulation.Shape()
        let (peer, scheduler) = (real.swarm, real.scheduler)
        func ms(_ d: Duration) -> Int { Int((d.seconds * 1000).rounded()) }
        let args = try Arguments(command: "simulate", flags: [
            .init(name: "peers", defaultValue: "8", help: "peers downloading (besides the seed, host 0, next to the origin)"),
            .init(name: "link", defaultValue: "200m", help: "every host's link, bits per second each way (decimal: 200m, 1g, 10g)"),
            .init(name: "origin", defaultValue: "", help: "the origin's rate to the seed, bits per second (default: 4x --link)"),
            .init(name: "size", defaultValue: "256m", help: "object size, bytes (k/m/g: binary)"),
            .init(name: "piece-length", defaultValue: "", help: "piece length, bytes (default: the peer's, from the size)"),
            .init(name: "objects", defaultValue: "1", help: "objects every peer downloads at once"),
            .init(name: "slow", defaultValue: "0", help: "fraction of peers at --slow-factor of the link (0.1: 10 %)"),
            .init(name: "slow-factor", defaultValue: "0.1", help: "a slow peer's share of the link"),
            .init(name: "churn", defaultValue: "0", help: "fraction of peers that leave mid-download (at 10-90 % of T_min)"),
            .init(name: "dcs", defaultValue: "1", help: "1, or 2 data centres (peers alternate; the seed in dc0)"),
            .init(name: "inter-dc", defaultValue: "0.1", help: "the link between DCs, each way, as a fraction of one DC's total link capacity"),
            .init(name: "no-idc", defaultValue: "", help: "register hosts without their idc label (locality off)", kind: .toggle),
            .init(name: "rtt", defaultValue: "1ms", help: "round trip: a request's first byte comes this long after it, a new piece reaches the children's feeds half of it later (ms or s: 25ms; the netns testbed under load: 25ms)"),
            .init(name: "reader", defaultValue: "", help: "each peer's reader (darter get -O -) streams the object in order at this rate, bits per second, and the peer is done when it is (default: done when it holds every piece)"),
            .init(name: "flow-spread", defaultValue: "0", help: "unequal TCP shares: each transfer's weight in the fair shares is e^(S·z), z standard normal (0: max-min fair)"),
            .init(name: "start", defaultValue: "0", help: "seconds from the clock's start to the peers' first announce (starting darter get; completions still count from 0)"),
            .init(name: "wire-efficiency", defaultValue: "", help: "payload bytes per byte on a link (default: 0.936, Ethernet MTU 1500 with TCP timestamps and ACKs; 1: none lost)"),
            .init(name: "requests-per-parent", defaultValue: "", help: "what-if: the peer's piece requests open per peer parent (default: the peer's, \(peer.requestsPerParent))"),
            .init(name: "requests-per-seed", defaultValue: "", help: "what-if: requests open per seed (default: the peer's, \(peer.requestsPerSeed))"),
            .init(name: "in-flight", defaultValue: "", help: "what-if: piece requests open per download over all parents (default: the peer's, \(peer.maxRequestsInFlight))"),
            .init(name: "max-parents", defaultValue: "", help: "what-if: parents the scheduler names per announce (default: its own, \(scheduler.maxParents))"),
            .init(name: "seed-share-owners", defaultValue: "", help: "what-if: peers the scheduler deals the seed's pieces over (default: its own, \(scheduler.seedShareOwners))"),
            .init(name: "reannounce-ms", defaultValue: "", help: "what-if: the peer's regular announce period, ms (default: the peer's, \(ms(peer.reannounce)))"),
            .init(name: "reannounce-quickly-ms", defaultValue: "", help: "what-if: the peer's announce period while the swarm forms, ms (default: the peer's, \(ms(peer.reannounceQuickly)))"),
            .init(name: "reannounce-every-nth", defaultValue: "", help: "what-if: the peer announces again after every 1/N of the pieces (default: the peer's, \(Int((1 / peer.reannounceEveryShare).rounded())))"),
            .init(name: "window", defaultValue: "", help: "what-if: the peer's streaming window, pieces (default: the peer's, \(peer.window))"),
            .init(name: "cross-idc-gateways", defaultValue: "", help: "what-if: peers per IDC that may take parents in other IDCs (default: the scheduler's, \(scheduler.crossIDCGateways))"),
            .init(name: "remote-parents", defaultValue: "", help: "what-if: parents from other IDCs the scheduler names a gateway per announce (default: its own, \(scheduler.remoteParents))"),
            .init(name: "max-children", defaultValue: "", help: "what-if: children in one task at which the scheduler names a peer to no more, in proportion to its upload (default: its own, \(scheduler.maxChildren))"),
            .init(name: "children-per-parent", defaultValue: "", help: "what-if: children at which the scheduler counts a parent fully loaded (default: its own, \(scheduler.childrenPerParent))"),
            .init(name: "tick", defaultValue: "", help: "smallest step of virtual time, seconds (default: half a piece's time at the link rate)"),
            .init(name: "seed", defaultValue: "1", help: "random seed (the run is deterministic for a seed)"),
            .init(name: "scheduler-cost", defaultValue: "", help: "instead: time the real Scheduler's register, announce and report at this many hosts x 10 tasks, and its memory"),
            .init(name: "sweep", defaultValue: "", help: "instead of --peers: run at each of these peer counts (16,100,1000,10000), one after another"),
            .init(name: "svg", defaultValue: "", help: "write scale-vs-n.svg and scale-cdf.svg for the runs into this directory (with Kraken's published figures)"),
            .init(name: "cdf", defaultValue: "", help: "also print completion ÷ T_min at every 5th percentile", kind: .toggle),
            .init(name: "timeline", defaultValue: "", help: "also print, per peer, the seconds at which it held 1 piece, 1/16, 1/8, 1/4, 1/2, 3/4, 7/8, 15/16 and all of them (the first object), and the piece requests' seconds from sent to landed", kind: .toggle),
        ], arguments: argv)
        if args.wantsHelp { print(args.usage); return }
        if args.string("scheduler-cost") != "" {
            SchedulerCost.run(hosts: max(1, try args.int("scheduler-cost")))
            return
        }
        var shape = SwarmSimulation.Shape()
        shape.peers = try args.int("peers")
        shape.linkBytesPerSecond = try bits(args, "link") / 8
        if args.string("origin") != "" { shape.originBytesPerSecond = try bits(args, "origin") / 8 }
        guard let size = parseSize(args.string("size")), size > 0 else { throw UsageError("simulate: --size must be bytes (k/m/g), got '\(args.string("size"))'") }
        shape.objectBytes = Int64(size)
        if args.string("piece-length") != "" {
            guard let p = parseSize(args.string("piece-length")), PieceMath.isValidPieceLength(p) else { throw UsageError("simulate: --piece-length must be a multiple of 4 KiB up to 64 MiB") }
            shape.pieceLength = p
        }
        shape.objects = max(1, try args.int("objects"))
        shape.slowFraction = try fraction(args, "slow")
        shape.slowFactor = try fraction(args, "slow-factor")
        shape.churnFraction = try fraction(args, "churn")
        shape.dataCentres = try args.int("dcs")
        shape.interDCFraction = try fraction(args, "inter-dc")
        shape.localityLabels = !args.isSet("no-idc")
        shape.recordTimeline = args.isSet("timeline")
        shape.roundTrip = try seconds(args, "rtt")
        if args.string("reader") != "" { shape.readerBytesPerSecond = try bits(args, "reader") / 8 }
        shape.startSeconds = try seconds(args, "start")
        shape.flowSpread = try fraction(args, "flow-spread", max: 4)
        if args.string("wire-efficiency") != "" {
            shape.wireEfficiency = try fraction(args, "wire-efficiency")
            guard shape.wireEfficiency > 0 else { throw UsageError("simulate: --wire-efficiency must be above 0") }
        }
        func knob(_ name: String, _ set: (Int) -> Void) throws {
            guard args.string(name) != "" else { return }
            let v = try args.int(name)
            guard v >= 1 else { throw UsageError("simulate: --\(name) must be at least 1, got \(v)") }
            set(v)
        }
        try knob("requests-per-parent") { shape.swarm.requestsPerParent = $0 }
        try knob("requests-per-seed") { shape.swarm.requestsPerSeed = $0 }
        try knob("in-flight") { shape.swarm.maxRequestsInFlight = $0 }
        try knob("max-parents") { shape.scheduler.maxParents = $0 }
        try knob("seed-share-owners") { shape.scheduler.seedShareOwners = $0 }
        try knob("reannounce-ms") { shape.swarm.reannounce = .milliseconds($0) }
        try knob("reannounce-quickly-ms") { shape.swarm.reannounceQuickly = .milliseconds($0) }
        try knob("children-per-parent") { shape.scheduler.childrenPerParent = $0 }
        try knob("max-children") { shape.scheduler.maxChildren = $0 }
        try knob("cross-idc-gateways") { shape.scheduler.crossIDCGateways = $0 }
        try knob("remote-parents") { shape.scheduler.remoteParents = $0 }
        try knob("window") { shape.swarm.window = $0 }
        try knob("reannounce-every-nth") { shape.swarm.reannounceEveryShare = 1 / Double($0) }
        if args.string("tick") != "" { shape.tick = try fraction(args, "tick", max: 1e9) }
        shape.seed = UInt64(try args.int("seed"))
        guard shape.peers > 0 else { throw UsageError("simulate: --peers must be at least 1") }
        var counts = [shape.peers]
        if args.string("sweep") != "" {
            let parsed = args.string("sweep").split(separator: ",").map { Int($0.filter { $0 != " " }) }
            guard !parsed.isEmpty, parsed.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw UsageError("simulate: --sweep must be peer counts, comma-separated (16,100,1000), got '\(args.string("sweep"))'") }
            counts = parsed.map { $0! }
        }
        var runs: [(peers: Int, result: SwarmSimulation.Result)] = []
        for peers in counts {
            shape.peers = peers
            runs.append((peers, report(shape, args)))
        }
        let dir = args.string("svg")
        if dir != "" {
            let what = "\(args.string("link"))bit/s, \(args.string("size"))\(shape.objects > 1 ? " x \(shape.objects)" : "")"
            do {
                try SystemCalls.makeDirectories(dir)
                for (name, text) in ScalePlots.svgs(runs, shape: what) {
                    try SystemCalls.writeFileAtomically(dir + "/" + name, Array(text.utf8), mode: 0o644)
                }
            } catch {
                throw UsageError("simulate: cannot write to --svg \(dir): \(error)")
            }
            print("wrote \(dir)/scale-vs-n.svg, \(dir)/scale-cdf.svg")
        }
    }

    /// One run at `shape`, its lines printed.
    static func report(_ shape: SwarmSimulation.Shape, _ args: Arguments) -> SwarmSimulation.Result {
        let clock = ContinuousClock()
        let start = clock.now
        let r = SwarmSimulation.run(shape)
        let wall = clock.now - start
        let u = r.peerUploadSpread
        let f = twoDecimals
        print("peers \(shape.peers) link \(args.string("link"))bit/s (payload \(f(shape.wireEfficiency))) rtt \(f(shape.roundTrip * 1000)) ms size \(args.string("size")) x \(shape.objects) pieces \(shape.effectivePieceLength >> 10) KiB slow \(shape.slowFraction) churn \(shape.churnFraction) dcs \(shape.dataCentres)\(shape.dataCentres > 1 ? " inter-dc \(shape.interDCFraction)" : "")")
        print("T_min \(f(r.swarmIdealSeconds)) s; completion ÷ own T_min: p50 \(f(r.p50VsIdeal)) p99 \(f(r.p99VsIdeal)) max \(f(r.maxVsIdeal)); absolute p50 \(f(SwarmSimulation.Result.percentile(r.sortedCompletions, 0.5))) s p99 \(f(SwarmSimulation.Result.percentile(r.sortedCompletions, 0.99))) s")
        let fast = r.completionSeconds.indices.filter { !r.slow[$0] }.compactMap { i in r.completionSeconds[i].map { $0 / r.idealSeconds[i] } }
        let slowR = r.completionSeconds.indices.filter { r.slow[$0] }.compactMap { i in r.completionSeconds[i].map { $0 / r.idealSeconds[i] } }
        if !slowR.isEmpty {
            print("  fast peers ÷ T_min: p50 \(f(SwarmSimulation.Result.percentile(fast, 0.5))) p99 \(f(SwarmSimulation.Result.percentile(fast, 0.99))); slow peers ÷ their own bound: p50 \(f(SwarmSimulation.Result.percentile(slowR, 0.5))) max \(f(slowR.max() ?? .nan))")
        }
        print("origin egress ÷ size \(f(r.originVsSize)); seed upload ÷ size \(f(Double(r.uploadBytes[0]) / Double(r.totalBytes))); peer upload ÷ size min \(f(u.min)) p50 \(f(u.p50)) max \(f(u.max)); wasted ÷ size \(f(Double(r.wastedBytes) / Double(r.totalBytes)))\(shape.dataCentres > 1 ? "; cross-DC ÷ size \(f(Double(r.crossDCBytes) / Double(r.totalBytes)))" : "")")
        print("left \(r.departed.filter { $0 }.count), unfinished \(r.unfinished); scheduler: \(r.schedulerCounters.announces) announces, \(r.schedulerCounters.reports) reports; \(r.steps) steps, \(f(r.virtualSeconds)) s virtual in \(f(Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18)) s")
        if args.isSet("cdf") {
            let ratios = r.ratios
            print("cdf " + stride(from: 0.05, through: 1.0001, by: 0.05).map { "\(Int(($0 * 100).rounded())):\(f(SwarmSimulation.Result.percentile(ratios, $0)))" }.joined(separator: " "))
        }
        if !r.holdingSeconds.isEmpty {
            printTimeline(r.holdingSeconds)
            let took = r.requestSeconds.sorted()
            if !took.isEmpty {
                func at(_ p: Double) -> String { f(SwarmSimulation.Result.percentile(took, p)) }
                print("piece requests: \(took.count), sent to landed seconds p50 \(at(0.5)) p90 \(at(0.9)) p99 \(at(0.99)) max \(f(took.last!))")
            }
        }
        return r
    }

    /// Two decimals (BenchReport's `fixed`), "-" for a figure that is not one.
    static func twoDecimals(_ x: Double) -> String { x.isFinite ? fixed(x, 2) : "-" }

    /// The fractions of the pieces `--timeline` prints the time of, per peer.
    static let timelineShares: [Double] = [0, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 3.0 / 4, 7.0 / 8, 15.0 / 16, 1]

    static func printTimeline(_ holding: [[Double]]) {
        let f = twoDecimals
        let pieces = holding.map(\.count).max() ?? 0
        let marks = timelineShares.map { share in max(1, Int((share * Double(pieces)).rounded())) }
        for (i, times) in holding.enumerated() {
            print("timeline peer-\(i + 1) " + marks.map { "\($0):\($0 <= times.count ? f(times[$0 - 1]) : "-")" }.joined(separator: " "))
        }
    }

    static func bits(_ args: Arguments, _ name: String) throws -> Double {
        let s = args.string(name).lowercased()
        let units: [Character: Double] = ["k": 1e3, "m": 1e6, "g": 1e9]
        if let last = s.last, let unit = units[last], let v = Double(s.dropLast()), v > 0 { return v * unit }
        guard let v = Double(s), v > 0 else { throw UsageError("simulate: --\(name) must be bits per second (200m, 10g), got '\(s)'") }
        return v
    }

    /// `25ms`, `0.025s` or `0.025` (seconds).
    static func seconds(_ args: Arguments, _ name: String) throws -> Double {
        let s = args.string(name).lowercased()
        let (number, scale) = s.hasSuffix("ms") ? (s.dropLast(2), 1e-3) : s.hasSuffix("s") ? (s.dropLast(), 1.0) : (Substring(s), 1.0)
        guard let v = Double(number), v >= 0, v <= 10 / scale else { throw UsageError("simulate: --\(name) must be a duration up to 10 s (25ms, 0.025s), got '\(s)'") }
        return v * scale
    }

    static func fraction(_ args: Arguments, _ name: String, max: Double = 1) throws -> Double {
        guard let v = Double(args.string(name)), v >= 0, v <= max else { throw UsageError("simulate: --\(name) must be a number from 0 to \(max), got '\(args.string(name))'") }
        return v
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO
import PieceProtocol
import Scheduler
import SchedulerProtocol

/// `darter simulate --scheduler-cost HOSTS`: the real Scheduler's handlers timed at HOSTS hosts
/// × 10 tasks (docs/SCALE.md): registrations (each with 10 partly held tasks of 1,024 pieces),
/// one announce per host of one task (the swarm turning to downloading), one progress report per
/// host (of the task being downloaded) (8 new pieces), and the resident memory the state takes.
enum SchedulerCost {
    static func run(hosts: Int, tasks: Int = 10, pieces: Int = 1024) {
        let clock = ContinuousClock()
        func us(_ d: Duration) -> Double { (Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) * 1e-12) }
        let ids = (0..<tasks).map { try! TaskID.forURL("http://origin.sim/object-\($0)") }
        let rssBefore = SystemCalls.residentBytes()
        var s = Scheduler()
        _ = s.register(HostRegistration(id: "seed-0", address: "seed-0:65001", role: .seed, uploadRate: 1_250_000_000), now: 0)
        var rng = SplitMix64(seed: 7)
        var t0 = clock.now
        for h in 1...hosts {
            let held = ids.map { id in
                HeldTask(task: id, contentLength: Int64(pieces) << 20, pieceLength: 1 << 20,
                         pieces: PieceSet((0..<pieces).filter { _ in rng.next() % 2 == 0 }), complete: false)
            }
            _ = s.register(HostRegistration(id: "peer-\(h)", address: "peer-\(h):65001", role: .peer, uploadRate: 1_250_000_000,
                                            idc: "dc\(h % 2)", tasks: held), now: 1)
        }
        let register = us(clock.now - t0) / Double(hosts)
        let rssAfter = SystemCalls.residentBytes()
        t0 = clock.now
        var tail = clock.now
        for h in 1...hosts {
            if h == hosts - min(hosts, 1000) + 1 { tail = clock.now }
            _ = try? s.announce(Announce(host: "peer-\(h)", task: ids[0], url: "http://origin.sim/object-0", pieces: PieceSet()), now: 2)
        }
        let announceAll = us(clock.now - t0) / Double(hosts)
        let announceTail = us(clock.now - tail) / Double(min(hosts, 1000))
        t0 = clock.now
        var reports = 0
        for t in 0..<1 {
            for h in 1...hosts {
                let fresh = PieceSet((0..<8).map { _ in Int(rng.next() % UInt64(pieces)) })
                try? s.report(ProgressReport(host: "peer-\(h)", task: ids[t], pieces: fresh), now: 3)
                reports += 1
            }
        }
        let report = us(clock.now - t0) / Double(reports)
        func f(_ x: Double) -> String { String(Int(x.rounded())) }
        print("scheduler at \(hosts) hosts x \(tasks) tasks of \(pieces) pieces (half held each):")
        print("  register (with \(tasks) held tasks): \(f(register)) us each")
        print("  announce: \(f(announceAll)) us each over all \(hosts); \(f(announceTail)) us each for the last \(min(hosts, 1000)) (task fully downloading)")
        print("  report (8 new pieces): \(f(report)) us each")
        print("  resident memory for the state: \((rssAfter - rssBefore) >> 20) MiB")
        let perSecond = 1e6 / announceTail
        print("  one core: \(f(perSecond)) announces/s at this size")
    }
}

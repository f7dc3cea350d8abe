import Testing
import DarterCore
import PieceProtocol
import SchedulerProtocol
@testable import Scheduler

@Suite("Scheduler: a dead seed's tasks move on (virtual time)")
struct SeedFailoverTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")
    let url = "http://origin.test/big.bin"
    let seeds = ["seed-a", "seed-b", "seed-c"]

    func host(_ id: String, _ role: HostRole) -> HostRegistration {
        HostRegistration(id: id, address: "\(id):65001", role: role, uploadRate: 25_000_000)
    }

    /// Three seeds and peers p1...p4 in the task; the scheduler and the task's first seed.
    func swarm() throws -> (Scheduler, String) {
        var s = Scheduler()
        for id in seeds { _ = s.register(host(id, .seed), now: 0) }
        for id in ["p1", "p2", "p3", "p4"] { _ = s.register(host(id, .peer), now: 0) }
        let first = try #require(try s.announce(Announce(host: "p1", task: task, url: url), now: 1).trigger).seed
        for id in ["p2", "p3", "p4"] { #expect(try s.announce(Announce(host: id, task: task, url: url), now: 2).trigger == nil) }
        return (s, first)
    }

    @Test("a seed its children report failing is no longer the task's seed: the next announce asks the next seed on the ring, long before the TTL")
    func blockedSeed() throws {
        var (s, first) = try swarm()
        for (i, child) in ["p1", "p2", "p3"].enumerated() {
            try s.report(ProgressReport(host: child, task: task, pieces: PieceSet([i]), failures: [ParentFailure(parent: first, kind: .unreachable)]), now: 100)
        }
        let (r, t) = try s.announce(Announce(host: "p4", task: task, url: url), now: 200)
        let next = RendezvousHash.ranked(task.description, seeds).first { $0 != first }
        #expect(t?.seed == next)
        #expect(r.parents.map(\.id).contains(next!) && !r.parents.map(\.id).contains(first))
        #expect(s.counters.seedTriggers == 2)
        #expect(try s.announce(Announce(host: "p1", task: task, url: url), now: 300).trigger == nil, "the next seed is asked once")
    }

    @Test("a seed unheard for four of its keep-alive intervals is no longer the task's seed, though nobody reported it; it stays registered")
    func silentSeed() throws {
        var (s, first) = try swarm()
        let k = Int64(s.config.seedKeepAliveMilliseconds)
        for t in stride(from: k, through: 4 * k, by: Int64.Stride(k)) {
            for id in seeds where id != first { try s.keepAlive(id, now: t) }
        }
        #expect(try s.announce(Announce(host: "p4", task: task, url: url), now: 4 * k).trigger == nil, "four intervals: not silent yet")
        for id in seeds where id != first { try s.keepAlive(id, now: 4 * k + 500) }
        let t = try s.announce(Announce(host: "p4", task: task, url: url), now: 4 * k + 501).trigger
        #expect(t?.seed == RendezvousHash.ranked(task.description, seeds).first { $0 != first })
        #expect(s.hostCount == 7)
    }

    @Test("a seed taking a task over is handed only hosts that hold pieces, is told to read the origin when none does, and stays the task's fetching seed")
    func takeOver() throws {
        var (s, first) = try swarm()
        try s.report(ProgressReport(host: "p1", task: task, pieces: PieceSet(0..<5)), now: 10)
        try s.report(ProgressReport(host: "p2", task: task, pieces: PieceSet(5..<7)), now: 10)
        let other = try #require(seeds.first { $0 != first })
        let (r, t) = try s.announce(Announce(host: other, task: task, url: url), now: 20)
        #expect(t == nil && !r.backToSource && Set(r.parents.map(\.id)) == ["p1", "p2"])
        #expect(s.member(other, of: task)?.state == "fetching")
        try s.report(ProgressReport(host: other, task: task, pieces: PieceSet([9])), now: 30)
        #expect(s.member(other, of: task)?.state == "fetching")
        // Nobody holds anything: the origin, and it is not a trigger.
        var fresh = Scheduler()
        for id in seeds { _ = fresh.register(host(id, .seed), now: 0) }
        _ = fresh.register(host("p1", .peer), now: 0)
        let seed = try #require(try fresh.announce(Announce(host: "p1", task: task, url: url), now: 1).trigger).seed
        let (r2, t2) = try fresh.announce(Announce(host: seed, task: task, url: url), now: 2)
        #expect(r2.backToSource && r2.parents.isEmpty && t2 == nil && r2.reason?.contains("no other host holds pieces") == true)
        #expect(fresh.counters.seedTriggers == 1)
    }
}

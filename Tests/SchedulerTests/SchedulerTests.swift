import Testing
import DarterCore
import PieceProtocol
import SchedulerProtocol
@testable import Scheduler

@Suite("Rendezvous hashing")
struct RendezvousHashTests {
    let members = ["seed-a", "seed-b", "seed-c", "seed-d"]
    let keys = (0..<2000).map { "task-\($0)" }

    @Test("the same key picks the same member every time and in any order of members")
    func stable() {
        for k in keys.prefix(100) {
            #expect(RendezvousHash.pick(k, members) == RendezvousHash.pick(k, members.reversed()))
            #expect(RendezvousHash.ranked(k, members).first == RendezvousHash.pick(k, members))
        }
        #expect(RendezvousHash.pick("x", []) == nil)
    }

    @Test("keys spread evenly, and a member leaving moves only its own keys")
    func minimalMovement() {
        var share: [String: Int] = [:]
        for k in keys { share[RendezvousHash.pick(k, members)!, default: 0] += 1 }
        for m in members { #expect((350...650).contains(share[m] ?? 0), "\(m): \(share[m] ?? 0) of 2000") }
        let fewer = members.filter { $0 != "seed-b" }
        for k in keys {
            let before = RendezvousHash.pick(k, members)!
            let after = RendezvousHash.pick(k, fewer)!
            if before != "seed-b" { #expect(after == before) }
            // It goes to its own second choice.
            else { #expect(after == RendezvousHash.ranked(k, members)[1]) }
        }
    }
}

@Suite("Scheduler protocol messages")
struct SchedulerProtocolTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")

    @Test("every message round-trips through its JSON")
    func roundTrips() throws {
        let held = HeldTask(task: task, contentLength: 10 << 20, pieceLength: 4 << 20, pieces: PieceSet([0, 2]), complete: false)
        let reg = HostRegistration(id: "node-1", address: "10.77.0.2:65001", role: .peer, uploadRate: 25_000_000,
                                   idc: "dc1", location: "eu|a|r3", tasks: [held])
        #expect(try HostRegistration(parsing: reg.json.serializedBytes) == reg)
        let reply = RegistrationReply(keepAliveMilliseconds: 5000, ttlMilliseconds: 15000)
        #expect(try RegistrationReply(parsing: reply.json.serializedBytes) == reply)
        let a = Announce(host: "node-1", task: task, url: "http://origin.test/big.bin", headers: [.init(name: "Authorization", value: "x")],
                         digest: SHA256Digest(bytes: Array(repeating: 1, count: 32)), pieces: PieceSet([3]))
        #expect(try Announce(parsing: a.json.serializedBytes) == a)
        let blob = Announce(host: "node-1", task: task, url: "https://registry.test/v2/app/blobs/sha256:" + String(repeating: "01", count: 32),
                            digest: SHA256Digest(bytes: Array(repeating: 1, count: 32)), registry: "https://registry.test")
        #expect(try Announce(parsing: blob.json.serializedBytes) == blob)
        #expect(blob.openRequest == OpenTaskRequest(url: blob.url!, digest: blob.digest, registry: "https://registry.test"))
        var stray = blob
        stray.url = "https://elsewhere.test/v2/app/blobs/x"
        #expect(throws: ProtocolError.self) { try Announce(parsing: stray.json.serializedBytes) }
        let ar = AnnounceReply(parents: [ParentCandidate(id: "seed-1", address: "10.77.0.1:65001", role: .seed, pieces: PieceSet(0..<3), complete: true)],
                               backToSource: false, reason: nil, retryMilliseconds: 250)
        #expect(try AnnounceReply(parsing: ar.json.serializedBytes) == ar)
        let across = AnnounceReply(parents: [ParentCandidate(id: "node-9", address: "10.77.0.9:65001", role: .peer, pieces: PieceSet([1]), complete: false, remote: true)],
                                   seedShare: SeedShare(index: nil, count: 4), remoteShare: SeedShare(index: 2, count: 16))
        #expect(try AnnounceReply(parsing: across.json.serializedBytes) == across)
        let p = ProgressReport(host: "node-1", task: task, pieces: PieceSet([4, 5]), state: .complete,
                               costs: [PieceCost(parent: "seed-1", pieces: 2, bytes: 8 << 20, milliseconds: 340)],
                               failures: [ParentFailure(parent: "node-2", kind: .badPiece)])
        #expect(try ProgressReport(parsing: p.json.serializedBytes) == p)
    }

    @Test("bad messages are refused with the message and the field named")
    func errors() {
        func message(_ text: String, _ parse: ([UInt8]) throws(ProtocolError) -> Void) -> String {
            do { try parse(Array(text.utf8)); return "parsed" } catch { return error.description }
        }
        let reg: ([UInt8]) throws(ProtocolError) -> Void = { b throws(ProtocolError) in _ = try HostRegistration(parsing: b) }
        #expect(message("[]", reg) == "registration is not a JSON object")
        #expect(message(#"{"id":"a b","address":"h:1","role":"peer"}"#, reg).hasPrefix("registration: id 'a b' may hold only"))
        #expect(message(#"{"id":"a","address":"h","role":"peer"}"#, reg) == "registration: address 'h' is not host:port")
        #expect(message(#"{"id":"a","address":"h:0","role":"peer"}"#, reg) == "registration: address 'h:0' is not host:port")
        #expect(message(#"{"id":"a","address":"h:1","role":"boss"}"#, reg) == "registration: role 'boss' is neither seed nor peer")
        #expect(message(#"{"id":"a","address":"h:1","role":"peer","uploadRate":-1}"#, reg) == "registration: uploadRate is not a whole number ≥ 0")
        #expect(message(#"{"id":"a","address":"h:1"}"#, reg) == "registration: role is missing")
        let huge = #"{"id":"a","address":"h:1","role":"peer","tasks":[{"task":"\#(task)","contentLength":104867108864576,"pieceLength":4194304}]}"#
        #expect(message(huge, reg).hasPrefix("held task: contentLength 104867108864576 is more than 1048576 pieces"))
        let prog: ([UInt8]) throws(ProtocolError) -> Void = { b throws(ProtocolError) in _ = try ProgressReport(parsing: b) }
        #expect(message(#"{"host":"a","task":"\#(task)","state":"gone"}"#, prog).hasPrefix("progress: state 'gone' is not one of"))
        #expect(message(#"{"host":"a","task":"nope"}"#, prog) == "progress: task is not a task id")
        #expect(message(#"{"host":"a","task":"\#(task)","pieces":"3-1"}"#, prog).hasPrefix("progress: pieces: piece set:"))
        let reply: ([UInt8]) throws(ProtocolError) -> Void = { b throws(ProtocolError) in _ = try AnnounceReply(parsing: b) }
        #expect(message(#"{"parents":[],"remoteShare":{"index":16,"count":16}}"#, reply) == "announce reply: remoteShare: index 16 is not below count 16")
    }
}

@Suite("Scheduler policy (virtual time)")
struct SchedulerPolicyTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")
    let url = "http://origin.test/big.bin"

    func peer(_ id: String, idc: String? = nil, upload: Int64 = 25_000_000, tasks: [HeldTask] = []) -> HostRegistration {
        HostRegistration(id: id, address: "\(id):65001", role: .peer, uploadRate: upload, idc: idc, tasks: tasks)
    }
    func seed(_ id: String, tasks: [HeldTask] = []) -> HostRegistration {
        HostRegistration(id: id, address: "\(id):65001", role: .seed, uploadRate: 25_000_000, tasks: tasks)
    }
    func held(_ pieces: Range<Int>, of count: Int = 64, complete: Bool = false) -> HeldTask {
        HeldTask(task: task, contentLength: Int64(count) << 22, pieceLength: 4 << 20, pieces: PieceSet(pieces), complete: complete)
    }

    @Test("with no seed and nobody holding the task, the answer is: go to the origin")
    func backToSourceWithoutSeeds() throws {
        var s = Scheduler()
        _ = s.register(peer("p1"), now: 0)
        let (reply, trigger) = try s.announce(Announce(host: "p1", task: task, url: url), now: 1)
        #expect(reply.backToSource && reply.parents.isEmpty && trigger == nil)
        #expect(reply.reason?.contains("no seed is registered") == true)
        #expect(s.counters.backToSource == 1)
    }

    @Test("the first announce triggers the seed the task hashes to, handed out at once; later ones join it")
    func seedTrigger() throws {
        var s = Scheduler()
        for id in ["seed-a", "seed-b", "seed-c"] { _ = s.register(seed(id), now: 0) }
        for id in ["p1", "p2"] { _ = s.register(peer(id), now: 0) }
        let expected = RendezvousHash.pick(task.description, ["seed-a", "seed-b", "seed-c"])
        let (r1, t1) = try s.announce(Announce(host: "p1", task: task, url: url), now: 1)
        #expect(t1?.seed == expected && t1?.request.url == url && t1?.address == "\(expected!):65001")
        #expect(r1.parents.map(\.id) == [expected!] && !r1.backToSource)
        let (r2, t2) = try s.announce(Announce(host: "p2", task: task, url: url), now: 2)
        #expect(t2 == nil, "the seed is asked once")
        #expect(Set(r2.parents.map(\.id)) == [expected!, "p1"])
        #expect(r2.parents.first?.id == expected, "the seed, which will have every piece, ranks first")
        #expect(s.counters.seedTriggers == 1)
    }

    @Test("a registry blob's seed trigger carries the registry, so the seed fetches it with the registry's auth")
    func registryTrigger() throws {
        var s = Scheduler()
        _ = s.register(seed("seed-a"), now: 0)
        _ = s.register(peer("p1"), now: 0)
        let digest = SHA256Digest(bytes: Array(repeating: 7, count: 32))!
        let blob = "http://127.0.0.1:5000/v2/app/blobs/sha256:" + digest.hex
        let (_, trigger) = try s.announce(Announce(host: "p1", task: TaskID(kind: .digest, hash: digest), url: blob, digest: digest,
                                                   registry: "http://127.0.0.1:5000"), now: 1)
        #expect(trigger?.request == OpenTaskRequest(url: blob, digest: digest, registry: "http://127.0.0.1:5000"))
    }

    @Test("a seed that stops keeping alive expires; the task moves to the next seed on the ring")
    func seedExpiry() throws {
        var s = Scheduler()
        for id in ["seed-a", "seed-b", "seed-c"] { _ = s.register(seed(id), now: 0) }
        _ = s.register(peer("p1"), now: 0)
        let first = try s.announce(Announce(host: "p1", task: task, url: url), now: 1).trigger!.seed
        // Everyone but the first seed keeps alive.
        for t in stride(from: Int64(5_000), through: 20_000, by: 5_000) {
            for id in ["seed-a", "seed-b", "seed-c", "p1"] where id != first { try s.keepAlive(id, now: t) }
            s.expire(now: t)
        }
        #expect(throws: Scheduler.Failure.unknownHost(first)) { try s.keepAlive(first, now: 20_001) }
        #expect(s.hostCount == 3 && s.counters.expired == 1)
        let (r, t) = try s.announce(Announce(host: "p1", task: task, url: url), now: 20_002)
        let next = RendezvousHash.ranked(task.description, ["seed-a", "seed-b", "seed-c"]).first { $0 != first }
        #expect(t?.seed == next && r.parents.map(\.id) == [next!])
    }

    @Test("after a restart the daemons' registrations rebuild the swarm: holders are parents, no seed is asked")
    func restart() throws {
        var s = Scheduler()
        _ = s.register(seed("seed-a", tasks: [held(0..<64, complete: true)]), now: 0)
        _ = s.register(peer("p1", tasks: [held(0..<20)]), now: 0)
        _ = s.register(peer("p2"), now: 0)
        let (r, t) = try s.announce(Announce(host: "p2", task: task, url: url), now: 1)
        #expect(t == nil)
        #expect(r.parents.map(\.id) == ["seed-a", "p1"])
        #expect(r.parents[0].complete && r.parents[1].pieces == PieceSet(0..<20))
        // A peer that holds it all is enough too.
        var s2 = Scheduler()
        _ = s2.register(seed("seed-a"), now: 0)
        _ = s2.register(peer("p1", tasks: [held(0..<64, complete: true)]), now: 0)
        _ = s2.register(peer("p2"), now: 0)
        let (r2, t2) = try s2.announce(Announce(host: "p2", task: task, url: url), now: 1)
        #expect(t2 == nil && r2.parents.map(\.id) == ["p1"])
    }

    @Test("an unknown host is told so (it registers again), for announce, report and keep-alive")
    func unknownHost() {
        var s = Scheduler()
        #expect(throws: Scheduler.Failure.unknownHost("ghost")) { try s.announce(Announce(host: "ghost", task: task), now: 0) }
        #expect(throws: Scheduler.Failure.unknownHost("ghost")) { try s.report(ProgressReport(host: "ghost", task: task), now: 0) }
        #expect(throws: Scheduler.Failure.unknownHost("ghost")) { try s.keepAlive("ghost", now: 0) }
    }

    @Test("a parent reported failing three times is left out for blockMilliseconds; the reporting child never gets it again")
    func badParents() throws {
        var s = Scheduler()
        for id in ["p1", "p2", "p3", "p4", "p5"] { _ = s.register(peer(id, tasks: id == "p1" ? [held(0..<64, complete: true)] : []), now: 0) }
        _ = s.register(peer("p6", tasks: [held(0..<64, complete: true)]), now: 0)
        try s.report(ProgressReport(host: "p2", task: task, failures: [ParentFailure(parent: "p1", kind: .badPiece)]), now: 10)
        #expect(try !s.announce(Announce(host: "p2", task: task), now: 11).reply.parents.map(\.id).contains("p1"))
        #expect(try s.announce(Announce(host: "p3", task: task), now: 11).reply.parents.map(\.id).contains("p1"))
        for child in ["p4", "p5"] {
            try s.report(ProgressReport(host: child, task: task, failures: [ParentFailure(parent: "p1", kind: .timeout)]), now: 20)
        }
        #expect(try !s.announce(Announce(host: "p3", task: task), now: 30).reply.parents.map(\.id).contains("p1"))
        #expect(try s.announce(Announce(host: "p3", task: task), now: 30_021).reply.parents.map(\.id).contains("p1"))
    }

    @Test("the seed's share is dealt over the downloading peers; one its children report failing leaves it at once")
    func sharesWithoutTheDead() throws {
        var s = Scheduler()
        _ = s.register(seed("seed-a"), now: 0)
        for id in ["p1", "p2", "p3"] { _ = s.register(peer(id), now: 0) }
        for id in ["p1", "p2", "p3"] { _ = try s.announce(Announce(host: id, task: task, url: url), now: 1) }
        #expect(try s.announce(Announce(host: "p3", task: task), now: 2).reply.seedShare == SeedShare(index: 2, count: 3))
        for child in ["p1", "p3", "p1"] {
            try s.report(ProgressReport(host: child, task: task, failures: [ParentFailure(parent: "p2", kind: .unreachable)]), now: 3)
        }
        #expect(try s.announce(Announce(host: "p3", task: task), now: 4).reply.seedShare == SeedShare(index: 1, count: 2))
        #expect(try s.announce(Announce(host: "p1", task: task), now: 4).reply.seedShare == SeedShare(index: 0, count: 2))
    }

    @Test("a parent measured at under a twentieth of the median throughput is not handed out")
    func slowParent() throws {
        var s = Scheduler()
        for id in ["a", "b", "c", "d"] { _ = s.register(peer(id, tasks: [held(0..<64, complete: true)]), now: 0) }
        _ = s.register(peer("child"), now: 0)
        let costs = [PieceCost(parent: "a", pieces: 4, bytes: 16 << 20, milliseconds: 700),
                     PieceCost(parent: "b", pieces: 4, bytes: 16 << 20, milliseconds: 650),
                     PieceCost(parent: "c", pieces: 4, bytes: 16 << 20, milliseconds: 720),
                     PieceCost(parent: "d", pieces: 1, bytes: 4 << 20, milliseconds: 60_000)]
        try s.report(ProgressReport(host: "child", task: task, costs: costs), now: 1)
        #expect(Set(try s.announce(Announce(host: "child", task: task), now: 2).reply.parents.map(\.id)) == ["a", "b", "c"])
    }

    @Test("load spreads children over parents; a finished child frees its parents")
    func loadSpreads() throws {
        var config = Scheduler.Config()
        config.maxParents = 1
        config.childrenPerParent = 2
        var s = Scheduler(config: config)
        for id in ["a", "b"] { _ = s.register(peer(id, tasks: [held(0..<64, complete: true)]), now: 0) }
        for id in ["c1", "c2", "c3", "c4"] { _ = s.register(peer(id), now: 0) }
        var picked: [String] = []
        for c in ["c1", "c2", "c3", "c4"] { picked += try s.announce(Announce(host: c, task: task), now: 1).reply.parents.map(\.id) }
        #expect(picked.filter { $0 == "a" }.count == 2 && picked.filter { $0 == "b" }.count == 2)
        #expect(s.children(of: "a") == 2 && s.children(of: "b") == 2)
        let c1Parent = picked[0]
        try s.report(ProgressReport(host: "c1", task: task, pieces: PieceSet(0..<64), state: .complete), now: 2)
        #expect(s.children(of: c1Parent) == 1)
        #expect(s.member("c1", of: task)?.state == "complete")
        // Re-announcing replaces a child's parents instead of counting it twice (c1, now
        // complete and idle, is the best parent).
        #expect(try s.announce(Announce(host: "c2", task: task), now: 3).reply.parents.map(\.id) == ["c1"])
        #expect(s.children(of: "a")! + s.children(of: "b")! + s.children(of: "c1")! == 3)
    }

    @Test("a parent in the child's IDC ranks above an equal one elsewhere; more pieces to give ranks higher, up to a quarter of what the child lacks")
    func localityAndCoverage() throws {
        var config = Scheduler.Config()
        config.maxParents = 3
        var s = Scheduler(config: config)
        _ = s.register(peer("far", idc: "dc2", tasks: [held(0..<8)]), now: 0)
        _ = s.register(peer("near", idc: "dc1", tasks: [held(0..<8)]), now: 0)
        _ = s.register(peer("rich", idc: "dc2", tasks: [held(0..<64)]), now: 0)
        _ = s.register(peer("child", idc: "dc1"), now: 0)
        let ids = try s.announce(Announce(host: "child", task: task), now: 1).reply.parents.map(\.id)
        #expect(ids == ["rich", "near", "far"])
        // With the first eighth already here, "rich" alone has anything to give.
        let ids2 = try s.announce(Announce(host: "child", task: task, pieces: PieceSet(0..<8)), now: 2).reply.parents.map(\.id)
        #expect(ids2.first == "rich")
    }

    @Test("only an IDC's first peers (its gateways) take parents from other IDCs; the rest take from their own IDC and seeds; a gateway done makes room")
    func crossIDCGateways() throws {
        var config = Scheduler.Config()
        config.crossIDCGateways = 1
        var s = Scheduler(config: config)
        _ = s.register(peer("far", idc: "dc0", tasks: [held(0..<32)]), now: 0)
        _ = s.register(peer("near", idc: "dc1", tasks: [held(0..<8)]), now: 0)
        _ = s.register(peer("unlabelled", tasks: [held(0..<8)]), now: 0)
        _ = s.register(peer("g", idc: "dc1"), now: 0)
        _ = s.register(peer("other", idc: "dc1"), now: 0)
        let firstReply = try s.announce(Announce(host: "g", task: task), now: 1).reply
        let first = firstReply.parents.map(\.id)
        #expect(Set(first) == ["far", "near", "unlabelled"], "the IDC's first peer is its gateway")
        #expect(firstReply.parents.filter(\.remote).map(\.id) == ["far"], "only the peer of another IDC is remote (an unlabelled one is not)")
        #expect(firstReply.remoteShare == SeedShare(index: 0, count: 1), "the IDC's one gateway takes every piece across")
        let secondReply = try s.announce(Announce(host: "other", task: task), now: 2).reply
        let second = secondReply.parents.map(\.id)
        #expect(Set(second) == ["g", "near", "unlabelled"], "not a gateway: nothing from dc0")
        #expect(secondReply.remoteShare == SeedShare(index: nil, count: 1), "not a gateway: no piece across")
        try s.report(ProgressReport(host: "g", task: task, pieces: PieceSet(0..<64), state: .complete), now: 3)
        let third = try s.announce(Announce(host: "other", task: task), now: 4).reply.parents.map(\.id)
        #expect(third.contains("far"), "the gateway completed: the next peer of dc1 takes its place")
    }

    @Test("an IDC's gateways split what crosses: each its share of the pieces, a few remote parents named beside its own IDC's, always some")
    func remoteShares() throws {
        var config = Scheduler.Config()
        config.maxParents = 4
        config.remoteParents = 2
        var s = Scheduler(config: config)
        for i in 0..<4 { _ = s.register(peer("far\(i)", idc: "dc0", tasks: [held(0..<8)]), now: 0) }
        // Richer, so scored above the remote ones: still two remote parents are named.
        for i in 0..<4 { _ = s.register(peer("near\(i)", idc: "dc1", tasks: [held(8..<40)]), now: 0) }
        _ = s.register(peer("g0", idc: "dc1"), now: 0)
        _ = s.register(peer("g1", idc: "dc1"), now: 0)
        let a = try s.announce(Announce(host: "g0", task: task), now: 1).reply
        #expect(a.parents.count == 4 && a.parents.filter(\.remote).count == 2)
        #expect(a.parents.filter(\.remote).allSatisfy { $0.id.hasPrefix("far") } && a.parents.filter { !$0.remote }.allSatisfy { $0.id.hasPrefix("near") })
        #expect(a.remoteShare == SeedShare(index: 0, count: 1))
        // The holders of dc1 are no gateways: only peers downloading are.
        #expect(try s.announce(Announce(host: "g1", task: task), now: 1).reply.remoteShare == SeedShare(index: 1, count: 2))
        #expect(try s.announce(Announce(host: "g0", task: task), now: 2).reply.remoteShare == SeedShare(index: 0, count: 2))
    }

    @Test("with IDC labels, the seed's pieces are dealt only to peers of the seed's IDC; the others own none")
    func seedSharesStayInTheSeedsIDC() throws {
        var s = Scheduler()
        _ = s.register(HostRegistration(id: "seed-a", address: "seed-a:65001", role: .seed, uploadRate: 25_000_000, idc: "dc0"), now: 0)
        _ = s.register(peer("p0", idc: "dc0"), now: 0)
        _ = s.register(peer("p1", idc: "dc1"), now: 0)
        _ = s.register(peer("p2", idc: "dc0"), now: 0)
        let shares = try ["p0", "p1", "p2"].map { try s.announce(Announce(host: $0, task: task, url: url), now: 1).reply.seedShare }
        #expect(shares == [SeedShare(index: 0, count: 1), SeedShare(index: nil, count: 1), SeedShare(index: 1, count: 2)])
    }

    @Test("a peer named by maxChildren children of a task is named to no more of them (its own keep it); a seed has no such limit; other tasks count apart")
    func fullParents() throws {
        var config = Scheduler.Config()
        config.maxChildren = 2
        config.maxParents = 2
        var s = Scheduler(config: config)
        _ = s.register(seed("seed-a", tasks: [held(0..<64, complete: true)]), now: 0)
        _ = s.register(peer("rich", tasks: [held(0..<16)]), now: 0)
        for c in ["c1", "c2", "c3"] { _ = s.register(peer(c), now: 0) }
        let picked = try ["c1", "c2", "c3"].map { try s.announce(Announce(host: $0, task: task), now: 1).reply.parents.map(\.id) }
        #expect(picked[0].contains("rich") && picked[1].contains("rich"))
        #expect(!picked[2].contains("rich"), "full: two children already")
        #expect(picked.allSatisfy { $0.contains("seed-a") }, "a seed is never full")
        #expect(try s.announce(Announce(host: "c1", task: task), now: 2).reply.parents.contains { $0.id == "rich" }, "a child keeps its own parent")
        let other = try TaskID.forURL("http://origin.test/other.bin")
        _ = s.register(peer("rich", tasks: [held(0..<16), HeldTask(task: other, contentLength: 64 << 22, pieceLength: 4 << 20, pieces: PieceSet(0..<16), complete: false)]), now: 3)
        #expect(try s.announce(Announce(host: "c3", task: other), now: 3).reply.parents.contains { $0.id == "rich" }, "another task counts its own children")
    }

    @Test("the limit is in proportion to a peer's upload against the mean of the peers scored: a tenth of the mean's, a tenth of the children")
    func fullSlowParents() throws {
        var config = Scheduler.Config()
        config.maxChildren = 10
        config.maxParents = 2
        var s = Scheduler(config: config)
        _ = s.register(peer("fast", upload: 100_000_000, tasks: [held(0..<16)]), now: 0)
        _ = s.register(peer("slow", upload: 10_000_000, tasks: [held(16..<32)]), now: 0)
        // c1 scores fast and slow (mean 55 MB/s: slow may have 2); c2 and c3 also the children
        // before them, at 100 MB/s (mean 70 and 77.5: 1), so slow is full after c1.
        for c in ["c1", "c2", "c3"] { _ = s.register(peer(c, upload: 100_000_000), now: 0) }
        let picked = try ["c1", "c2", "c3"].map { try s.announce(Announce(host: $0, task: task), now: 1).reply.parents.map(\.id) }
        #expect(picked.filter { $0.contains("slow") }.count == 1 && picked.allSatisfy { $0.contains("fast") })
    }

    @Test("the children limits add up to maxChildren a peer: 10 % of the peers at a tenth of the link leave the others 18 (of 16), themselves 2; an unknown upload counts as the mean")
    func childrenLimits() {
        let mean = 0.9 * 25e6 + 0.1 * 2.5e6
        #expect(Scheduler.childrenLimit(16, upload: 25_000_000, meanUpload: 25e6) == 16)
        #expect(Scheduler.childrenLimit(16, upload: 25_000_000, meanUpload: mean) == 18)
        #expect(Scheduler.childrenLimit(16, upload: 2_500_000, meanUpload: mean) == 2)
        let places: Int = 900 * 18 + 100 * 2
        #expect(places >= 1000 * 16, "places for every child's 16")
        #expect(Scheduler.childrenLimit(16, upload: 0, meanUpload: mean) == 16)
        #expect(Scheduler.childrenLimit(16, upload: 1, meanUpload: mean) == 1, "never none")
    }

    @Test("past a quarter of what the child lacks, load decides: two rich parents, the less loaded first")
    func coverageSaturates() throws {
        var config = Scheduler.Config()
        config.maxParents = 1
        var s = Scheduler(config: config)
        _ = s.register(peer("richer", tasks: [held(0..<64)]), now: 0)
        _ = s.register(peer("rich", tasks: [held(0..<20)]), now: 0)
        for c in ["c1", "c2", "c3"] { _ = s.register(peer(c), now: 0) }
        let picked = try ["c1", "c2", "c3"].map { try s.announce(Announce(host: $0, task: task), now: 1).reply.parents.map(\.id) }
        #expect(Set(picked.flatMap { $0 }) == ["richer", "rich"])
    }

    @Test("seed shares go to a bounded set of owners, in the order they came; the rest own none; a completed owner's place is dealt again")
    func boundedOwners() throws {
        var config = Scheduler.Config()
        config.seedShareOwners = 2
        var s = Scheduler(config: config)
        _ = s.register(seed("seed-a"), now: 0)
        for id in ["p1", "p2", "p3"] { _ = s.register(peer(id), now: 0) }
        var shares: [SeedShare?] = []
        for id in ["p1", "p2", "p3"] { shares.append(try s.announce(Announce(host: id, task: task, url: url), now: 1).reply.seedShare) }
        #expect(shares == [SeedShare(index: 0, count: 1), SeedShare(index: 1, count: 2), SeedShare(index: nil, count: 2)])
        try s.report(ProgressReport(host: "p1", task: task, pieces: PieceSet(0..<64), state: .complete), now: 2)
        #expect(try s.announce(Announce(host: "p3", task: task), now: 3).reply.seedShare == SeedShare(index: 1, count: 2))
        #expect(try s.announce(Announce(host: "p2", task: task), now: 3).reply.seedShare == SeedShare(index: 0, count: 2))
        // On the wire a host that owns none has no index.
        let none = AnnounceReply(parents: [], seedShare: SeedShare(index: nil, count: 2))
        #expect(try AnnounceReply(json: none.json).seedShare == SeedShare(index: nil, count: 2))
    }

    @Test("an announce in a big task scores a bounded sample, and keeps the seed and the child's parents among the candidates")
    func sampledCandidates() throws {
        var config = Scheduler.Config()
        config.candidateSample = 8
        var s = Scheduler(config: config)
        _ = s.register(seed("seed-a"), now: 0)
        for i in 0..<200 { _ = s.register(peer("p\(i)"), now: 0) }
        for i in 0..<200 { _ = try s.announce(Announce(host: "p\(i)", task: task, url: url), now: 1) }
        let first = try s.announce(Announce(host: "p0", task: task), now: 2).reply.parents.map(\.id)
        #expect(first.contains("seed-a") && first.count <= 8 + 16 + 1)
        let again = try s.announce(Announce(host: "p0", task: task), now: 3).reply.parents.map(\.id)
        #expect(again.contains("seed-a"))
        #expect(Set(first).intersection(again).count >= min(first.count, config.maxParents) / 2)
    }

    @Test("a host leaving takes its pieces and its children's assignments with it")
    func leaving() throws {
        var s = Scheduler()
        _ = s.register(peer("a", tasks: [held(0..<64, complete: true)]), now: 0)
        _ = s.register(peer("b", tasks: [held(0..<10)]), now: 0)
        _ = s.register(peer("c"), now: 0)
        #expect(try s.announce(Announce(host: "c", task: task), now: 1).reply.parents.map(\.id) == ["a", "b"])
        s.leave("a")
        #expect(s.member("c", of: task)?.parents == ["b"])
        #expect(try s.announce(Announce(host: "c", task: task), now: 2).reply.parents.map(\.id) == ["b"])
        #expect(s.hostCount == 2 && s.taskCount == 1)
        s.leave("b"); s.leave("c")
        #expect(s.taskCount == 0)
    }
}

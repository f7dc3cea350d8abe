import Testing
import Synchronization
import DarterCore
import DarterIO
import DarterTestSupport
import HTTPClient
import HTTPCore
import HTTPServer
import PieceProtocol
import Scheduler
import SchedulerProtocol
import SchedulerService
@testable import SchedulerClient

/// A stand-in seed: records the open-task requests the scheduler sends it.
final class FakeSeed: HTTPHandler {
    let opened = Mutex<[(OpenTaskRequest, String?)]>([])
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        guard request.method == .post, request.path == "/tasks", let r = try? OpenTaskRequest(parsing: body) else {
            return respond(.text(404, "no\n"))
        }
        opened.withLock { $0.append((r, request.headers["Authorization"])) }
        respond(.text(200, "{}", contentType: "application/json"))
    }
}

/// Milliseconds the test sets.
final class VirtualClock: Sendable {
    let milliseconds = Atomic<Int64>(0)
}

/// A scheduler that is "restarting" (503 to everything) until `up`.
final class RestartingScheduler: HTTPHandler {
    let service: SchedulerService
    let up = Atomic<Bool>(false)
    /// Requests answered 503 so far.
    let refused = Atomic<Int>(0)
    init(_ service: SchedulerService) { self.service = service }
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        guard up.load(ordering: .relaxed) else {
            refused.add(1, ordering: .relaxed)
            return respond(.text(503, "restarting\n"))
        }
        service.handle(request, body: body, respond: respond)
    }
}

/// The scheduler service and a fake seed on one group, with a client to talk to them; the
/// scheduler's clock is a value the test moves.
final class SchedulerFixture: Sendable {
    let group: EventLoopGroup
    let server: HTTPServer
    let seedServer: HTTPServer
    let seed = FakeSeed()
    let client: HTTPClient
    let service: SchedulerService
    let clock = VirtualClock()

    init(token: String? = nil) throws {
        group = try EventLoopGroup(count: 1)
        var config = ServerConfiguration()
        config.port = 0
        client = HTTPClient(group: group)
        let clock = self.clock
        service = SchedulerService(metrics: ServerMetrics(), token: token, client: client, now: { clock.milliseconds.load(ordering: .relaxed) })
        server = try HTTPServer(configuration: config, handler: service, group: group)
        seedServer = try HTTPServer(configuration: config, handler: seed, group: group)
        server.start()
        seedServer.start()
    }

    func send(_ method: HTTPMethod, _ target: String, _ body: JSONValue? = nil, token: String? = nil) async throws -> HTTPClientResponse {
        var headers = HTTPHeaders()
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        return try await client.send(HTTPClientRequest(method: method, url: HTTPClientURL(host: "127.0.0.1", port: server.port, target: target),
                                                       headers: headers, body: body?.serializedBytes ?? []))
    }

    func stop() async {
        await server.shutdown(grace: .milliseconds(100))
        await seedServer.shutdown(grace: .milliseconds(100))
        group.shutdown()
    }
}

@Suite("darter scheduler's routes (in process)")
struct SchedulerServiceTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")

    @Test("register, announce (the seed is asked to fetch and handed out), progress, keep-alive, leave; debug views and metrics")
    func flow() async throws {
        let f = try SchedulerFixture()
        let seedReg = HostRegistration(id: "seed-1", address: "127.0.0.1:\(f.seedServer.port)", role: .seed)
        let reg = try await f.send(.post, "/hosts", seedReg.json)
        #expect(reg.status == 200)
        #expect(try RegistrationReply(parsing: reg.body) == RegistrationReply(keepAliveMilliseconds: 1000, ttlMilliseconds: 15000),
                "a seed keeps alive every second: after a scheduler restart it is back within one")
        let peerReg = try await f.send(.post, "/hosts", HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer).json)
        #expect(try RegistrationReply(parsing: peerReg.body) == RegistrationReply(keepAliveMilliseconds: 5000, ttlMilliseconds: 15000))
        let a = try await f.send(.post, "/tasks/\(task)/announce", Announce(host: "p1", task: task, url: "http://origin.test/big.bin").json)
        #expect(a.status == 200)
        let reply = try AnnounceReply(parsing: a.body)
        #expect(reply.parents.map(\.id) == ["seed-1"] && !reply.backToSource)
        // The seed hears of it once.
        for _ in 0..<100 where f.seed.opened.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.seed.opened.withLock { $0.map(\.0.url) } == ["http://origin.test/big.bin"])
        let report = ProgressReport(host: "p1", task: task, pieces: PieceSet([0, 1]),
                                    costs: [PieceCost(parent: "seed-1", pieces: 2, bytes: 8 << 20, milliseconds: 400)])
        #expect(try await f.send(.post, "/tasks/\(task)/progress", report.json).status == 204)
        #expect(try await f.send(.post, "/hosts/p1/keepalive").status == 204)
        let tasks = try JSONValue.parse(try await f.send(.get, "/debug/tasks").body)
        let members = tasks.array?.first?["members"]?.array ?? []
        #expect(members.compactMap { $0["host"]?.string } == ["p1", "seed-1"])
        #expect(members.first?["pieces"]?.integer == 2 && members.first?["held"]?.string == "0-1")
        let hosts = try JSONValue.parse(try await f.send(.get, "/debug/hosts").body)
        #expect(hosts.array?.compactMap { $0["id"]?.string } == ["p1", "seed-1"])
        #expect(hosts.array?.last?["throughputBytesPerSecond"]?.integer == Int64(8 << 20) * 1000 / 400)
        let metrics = String(decoding: try await f.send(.get, "/metrics").body, as: UTF8.self)
        #expect(metrics.contains("darter_scheduler_seed_triggers_total 1\n") && metrics.contains("darter_scheduler_hosts{role=\"seed\"} 1\n"))
        #expect(metrics.contains("darter_scheduler_announces_total 1\n"))
        #expect(try await f.send(.delete, "/hosts/p1").status == 200)
        #expect(try await f.send(.post, "/hosts/p1/keepalive").status == 404)
        await f.stop()
    }

    @Test("an unknown host is told to register again (404); bad bodies are 400 naming the field; wrong methods 405 with Allow")
    func errors() async throws {
        let f = try SchedulerFixture()
        let unknown = try await f.send(.post, "/tasks/\(task)/announce", Announce(host: "ghost", task: task).json)
        #expect(unknown.status == 404 && String(decoding: unknown.body, as: UTF8.self).contains("register again"))
        let bad = try await f.send(.post, "/hosts", ["id": "x", "address": "nowhere", "role": "peer"])
        #expect(bad.status == 400 && String(decoding: bad.body, as: UTF8.self) == "registration: address 'nowhere' is not host:port\n")
        let other = try TaskID.forURL("http://origin.test/other")
        let mismatch = try await f.send(.post, "/tasks/\(other)/announce", Announce(host: "p1", task: task).json)
        #expect(mismatch.status == 400)
        let get = try await f.send(.get, "/hosts")
        #expect(get.status == 405 && get.head.headers["Allow"] == "POST")
        #expect(try await f.send(.get, "/nope").status == 404)
        await f.stop()
    }

    @Test("with a cluster token, writes without it are 401 and change nothing; the seed is asked with the token")
    func clusterToken() async throws {
        let f = try SchedulerFixture(token: "s3cret")
        let reg = HostRegistration(id: "intruder", address: "10.77.0.9:65001", role: .seed)
        for token in [nil, "wrong", "s3cre", "s3crett"] {
            let r = try await f.send(.post, "/hosts", reg.json, token: token)
            #expect(r.status == 401, "token \(token ?? "none")")
        }
        #expect(try await f.send(.delete, "/hosts/x").status == 401)
        #expect(try JSONValue.parse(try await f.send(.get, "/debug/hosts").body) == .array([]))
        let seedReg = HostRegistration(id: "seed-1", address: "127.0.0.1:\(f.seedServer.port)", role: .seed)
        #expect(try await f.send(.post, "/hosts", seedReg.json, token: "s3cret").status == 200)
        #expect(try await f.send(.post, "/hosts", HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer).json, token: "s3cret").status == 200)
        #expect(try await f.send(.post, "/tasks/\(task)/announce", Announce(host: "p1", task: task, url: "http://origin.test/big.bin").json, token: "s3cret").status == 200)
        for _ in 0..<100 where f.seed.opened.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(f.seed.opened.withLock { $0.map(\.1) } == ["Bearer s3cret"])
        await f.stop()
    }

    @Test("hosts that stop keeping alive expire on the service's clock")
    func expiry() async throws {
        let f = try SchedulerFixture()
        #expect(try await f.send(.post, "/hosts", HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer).json).status == 200)
        f.clock.milliseconds.store(15_001, ordering: .relaxed)
        f.service.expire()
        #expect(try await f.send(.post, "/hosts/p1/keepalive").status == 404)
        await f.stop()
    }
}

@Suite("SchedulerClient against darter scheduler's routes (in process)")
struct SchedulerClientTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")

    func makeClient(_ f: SchedulerFixture, schedulers: [HTTPClientURL]? = nil, token: String? = nil,
                    held: @escaping @Sendable () -> [HeldTask] = { [] }) -> SchedulerClient {
        let identity = HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer, uploadRate: 25_000_000)
        let urls = schedulers ?? [HTTPClientURL(host: "127.0.0.1", port: f.server.port)]
        return SchedulerClient(configuration: .init(schedulers: urls, token: token, identity: identity), client: f.client, inventory: held)
    }

    @Test("a scheduler that forgot the host (restart, TTL) gets a registration with what the host holds, at the next keep-alive or announce")
    func registersAgain() async throws {
        let f = try SchedulerFixture()
        let held = HeldTask(task: task, contentLength: 64 << 22, pieceLength: 4 << 20, pieces: PieceSet(0..<64), complete: true)
        let c = makeClient(f, held: { [held] })
        let url = HTTPClientURL(host: "127.0.0.1", port: f.server.port)
        #expect(await c.keepAliveOrRegister(url) == 5000)
        #expect(c.isRegistered)
        #expect(await c.keepAliveOrRegister(url) == 5000)  // a keep-alive now
        // The scheduler forgets it (as a restarted one would).
        #expect(try await f.send(.delete, "/hosts/p1").status == 200)
        #expect(await c.keepAliveOrRegister(url) == 5000)
        let tasks = try JSONValue.parse(try await f.send(.get, "/debug/tasks").body)
        #expect(tasks.array?.first?["members"]?.array?.first?["state"]?.string == "complete")
        // An announce to a scheduler that does not know the host registers it first.
        #expect(try await f.send(.delete, "/hosts/p1").status == 200)
        let other = try TaskID.forURL("http://origin.test/other")
        let reply = try await c.announce(Announce(host: "p1", task: other, url: "http://origin.test/other"))
        #expect(reply.backToSource, "no seed registered")
        #expect(try JSONValue.parse(try await f.send(.get, "/debug/hosts").body).array?.count == 1)
        await c.report(ProgressReport(host: "p1", task: other, pieces: PieceSet([0]), state: .complete))
        await f.stop()
    }

    @Test("a scheduler that was down (restarting) is asked again within a fraction of a second, not a keep-alive later")
    func comesBackQuickly() async throws {
        let f = try SchedulerFixture()
        // A scheduler that answers 503 until it is "up" (its own port: no race for a closed one).
        let gate = RestartingScheduler(SchedulerService(metrics: ServerMetrics(), token: nil, client: f.client, now: { SystemCalls.monotonicMilliseconds() }))
        var config = ServerConfiguration()
        config.port = 0
        let server = try HTTPServer(configuration: config, handler: gate, group: f.group)
        server.start()
        let c = makeClient(f, schedulers: [HTTPClientURL(host: "127.0.0.1", port: server.port)])
        c.start()
        // Two refused attempts (at 0 and 250 ms); the next comes 500 ms after the second, so the
        // client registers within about half a second of the gate opening, not at the next 5 s
        // keep-alive. The gate opens on the second refusal, not after a fixed sleep: under a
        // loaded test run a sleep overshot into the client's longer retries (2.7 s once).
        let waiting = ContinuousClock.now
        while gate.refused.load(ordering: .relaxed) < 2 && ContinuousClock.now - waiting < .seconds(10) { try await Task.sleep(for: .milliseconds(5)) }
        #expect(!c.isRegistered)
        gate.up.store(true, ordering: .relaxed)
        let listening = ContinuousClock.now
        while !c.isRegistered && ContinuousClock.now - listening < .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(c.isRegistered)
        #expect(ContinuousClock.now - listening < .milliseconds(2500), "registered \(ContinuousClock.now - listening) after the scheduler came back")
        await c.stop()
        await server.shutdown(grace: .milliseconds(100))
        await f.stop()
    }

    @Test("a scheduler that does not answer passes the announce to the next one; none answering is an error naming each")
    func failover() async throws {
        let f = try SchedulerFixture()
        let dead = HTTPClientURL(host: "127.0.0.1", port: closedPort())
        let live = HTTPClientURL(host: "127.0.0.1", port: f.server.port)
        let c = makeClient(f, schedulers: [dead, live])
        _ = await c.keepAliveOrRegister(live)
        #expect(try await c.announce(Announce(host: "p1", task: task)).backToSource)
        let alone = makeClient(f, schedulers: [dead])
        await #expect(throws: SchedulerClient.Failure.self) { try await alone.announce(Announce(host: "p1", task: task)) }
        // Every daemon sends a task to the same scheduler.
        let a = makeClient(f, schedulers: [dead, live]), b = makeClient(f, schedulers: [live, dead])
        #expect(a.schedulers(for: task).map(\.hostHeader) == b.schedulers(for: task).map(\.hostHeader))
        await f.stop()
    }

    @Test("with the cluster token the client registers; without it the scheduler refuses")
    func token() async throws {
        let f = try SchedulerFixture(token: "t0k")
        let url = HTTPClientURL(host: "127.0.0.1", port: f.server.port)
        #expect(await makeClient(f).keepAliveOrRegister(url) == nil)
        #expect(await makeClient(f, token: "t0k").keepAliveOrRegister(url) == 5000)
        await f.stop()
    }
}

/// What a name resolves to, as a test changes it over time (the injected resolver; /etc/hosts is
/// the machine's and is not edited).
final class TestResolver: Sendable {
    let answers = Mutex<[String: [String]]>([:])
    let lookups = Atomic<Int>(0)
    func set(_ name: String, _ addresses: [String]?) { answers.withLock { $0[name] = addresses } }
    func resolve(_ name: String) throws -> [String] {
        lookups.add(1, ordering: .relaxed)
        guard let a = answers.withLock({ $0[name] }) else { throw TestError("\(name): no such name") }
        return a
    }
}

@Suite("SchedulerClient: a --scheduler name stands for each address it resolves to, followed over time", .serialized)
struct SchedulerNameTests {
    let task = try! TaskID.forURL("http://origin.test/big.bin")

    /// Schedulers on several loopback addresses at one port, as a headless Service's pods are
    /// (127.0.0.2, 127.0.0.3, … all reach this host).
    final class Schedulers: Sendable {
        let group: EventLoopGroup
        let client: HTTPClient
        let port: UInt16
        let servers: [HTTPServer]

        init(addresses: [String]) throws {
            group = try EventLoopGroup(count: 1)
            client = HTTPClient(group: group)
            var found: (UInt16, [HTTPServer])?
            for _ in 0..<20 where found == nil {
                let port = try freePort()
                var servers: [HTTPServer] = []
                for a in addresses {
                    var config = ServerConfiguration()
                    config.host = a
                    config.port = port
                    let service = SchedulerService(metrics: ServerMetrics(), token: nil, client: client, now: { SystemCalls.monotonicMilliseconds() })
                    guard let server = try? HTTPServer(configuration: config, handler: service, group: group) else { break }
                    servers.append(server)
                }
                if servers.count == addresses.count { found = (port, servers) }  // else another port (never started: nothing to stop)
            }
            guard let found else { throw TestError("no port free on \(addresses) at once") }
            port = found.0
            servers = found.1
            for s in servers { s.start() }
        }

        func get(_ address: String, _ target: String) async throws -> JSONValue {
            try JSONValue.parse(try await client.send(HTTPClientRequest(method: .get, url: HTTPClientURL(host: address, port: port, target: target))).body)
        }

        /// The hosts `address`'s scheduler has registered.
        func hosts(_ address: String) async throws -> [String] {
            try await get(address, "/debug/hosts").array?.compactMap { $0["id"]?.string } ?? []
        }

        /// The hosts `address`'s scheduler knows to hold some task (from their registrations).
        func holders(_ address: String) async throws -> [String] {
            try await get(address, "/debug/tasks").array?.flatMap { $0["members"]?.array?.compactMap { $0["host"]?.string } ?? [] } ?? []
        }

        func stop() async {
            for s in servers { await s.shutdown(grace: .milliseconds(100)) }
            group.shutdown()
        }
    }

    func waitFor(_ what: String, within: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
        let start = ContinuousClock.now
        while try await !condition() {
            guard ContinuousClock.now - start < within else { Issue.record("not within \(within): \(what)"); return }
            try await Task.sleep(for: .milliseconds(25))
        }
    }

    @Test("schedulers that appear under the name get the registration with the inventory; those that vanish leave the ring; a failed lookup keeps them")
    func membersComeAndGo() async throws {
        let s = try Schedulers(addresses: ["127.0.0.2", "127.0.0.3"])
        let resolver = TestResolver()
        resolver.set("schedulers.test", ["127.0.0.2"])
        let held = HeldTask(task: task, contentLength: 64 << 22, pieceLength: 4 << 20, pieces: PieceSet(0..<64), complete: true)
        var config = SchedulerClient.Configuration(schedulers: [HTTPClientURL(host: "schedulers.test", port: s.port)], token: nil,
                                                   identity: HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer))
        config.resolveInterval = .milliseconds(100)
        let c = SchedulerClient(configuration: config, client: s.client, inventory: { [held] }, resolve: { try resolver.resolve($0) })
        #expect(c.currentSchedulers.isEmpty, "a name is no member before it resolved")
        c.start()
        try await waitFor("registered with 127.0.0.2") { try await s.hosts("127.0.0.2") == ["p1"] }
        #expect(c.isRegistered)
        #expect(c.currentSchedulers.map(\.hostHeader) == ["127.0.0.2:\(s.port)"])
        #expect(c.schedulers(for: task).map(\.hostHeader) == ["127.0.0.2:\(s.port)"])
        #expect(try await s.hosts("127.0.0.3").isEmpty)

        // A second scheduler appears under the name: registered with what the host holds, and on the ring.
        resolver.set("schedulers.test", ["127.0.0.2", "127.0.0.3"])
        // Within 2 s: at once, not at the next keep-alive round (a peer's is 5 s).
        try await waitFor("registered with 127.0.0.3", within: .seconds(2)) { try await s.hosts("127.0.0.3") == ["p1"] }
        #expect(try await s.holders("127.0.0.3") == ["p1"], "the new scheduler got the inventory")
        #expect(Set(c.schedulers(for: task).map(\.hostHeader)) == ["127.0.0.2:\(s.port)", "127.0.0.3:\(s.port)"])
        #expect(c.schedulers(for: task).map(\.hostHeader) == RendezvousHash.ranked(task.description, ["127.0.0.2:\(s.port)", "127.0.0.3:\(s.port)"]))

        // DNS fails for a while: nothing leaves.
        resolver.set("schedulers.test", nil)
        let before = resolver.lookups.load(ordering: .relaxed)
        try await waitFor("looked up again") { resolver.lookups.load(ordering: .relaxed) >= before + 2 }
        #expect(c.currentSchedulers.count == 2)

        // The first one vanishes from the name: off the ring; announces go to the one left.
        resolver.set("schedulers.test", ["127.0.0.3"])
        try await waitFor("127.0.0.2 left") { c.currentSchedulers.count == 1 }
        #expect(c.schedulers(for: task).map(\.hostHeader) == ["127.0.0.3:\(s.port)"])
        #expect(c.isRegistered)
        #expect(c.registered.withLock { Array($0.keys) } == ["127.0.0.3:\(s.port)"])
        let other = try TaskID.forURL("http://origin.test/other")
        _ = try await c.announce(Announce(host: "p1", task: other, url: "http://origin.test/other"))
        #expect(try await s.get("127.0.0.3", "/debug/tasks").array?.contains { $0["id"]?.string == other.description } == true)
        await c.stop()
        #expect(try await s.hosts("127.0.0.3").isEmpty, "stop() leaves the current schedulers")
        #expect(try await s.hosts("127.0.0.2") == ["p1"], "a scheduler that left the name is no longer spoken to")
        await s.stop()
    }

    @Test("a name that resolves only later: the host registers once it does, retried within seconds, not a resolve interval later")
    func resolvesLater() async throws {
        let s = try Schedulers(addresses: ["127.0.0.2"])
        let resolver = TestResolver()
        var config = SchedulerClient.Configuration(schedulers: [HTTPClientURL(host: "later.test", port: s.port)], token: nil,
                                                   identity: HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer))
        config.resolveInterval = .seconds(600)
        let c = SchedulerClient(configuration: config, client: s.client, inventory: { [] }, resolve: { try resolver.resolve($0) })
        c.start()
        try await waitFor("first lookup") { resolver.lookups.load(ordering: .relaxed) >= 1 }
        #expect(!c.isRegistered)
        resolver.set("later.test", ["127.0.0.2"])
        try await waitFor("registered", within: .seconds(6)) { c.isRegistered }
        await c.stop()
        await s.stop()
    }

    @Test("a real name: localhost resolves (getaddrinfo, /etc/hosts) to the scheduler's address and the host registers there")
    func localhost() async throws {
        let f = try SchedulerFixture()
        let addresses = try await HTTPClient.addresses(of: "localhost")
        #expect(addresses.contains("127.0.0.1") || addresses.contains("::1"), "\(addresses)")
        #expect(try await HTTPClient.addresses(of: "127.0.0.1") == ["127.0.0.1"])
        await #expect(throws: HTTPClientError.self) { try await HTTPClient.addresses(of: "no-such-host.invalid") }
        let c = SchedulerClient(configuration: .init(schedulers: [HTTPClientURL(host: "localhost", port: f.server.port)], token: nil,
                                                     identity: HostRegistration(id: "p1", address: "10.77.0.2:65001", role: .peer)),
                                client: f.client, inventory: { [] })
        c.start()
        try await waitFor("registered through localhost") { c.isRegistered }
        #expect(c.currentSchedulers.map(\.host).contains("127.0.0.1") || c.currentSchedulers.map(\.host).contains("::1"))
        #expect(try JSONValue.parse(try await f.send(.get, "/debug/hosts").body).array?.count == 1)
        await c.stop()
        await f.stop()
    }
}

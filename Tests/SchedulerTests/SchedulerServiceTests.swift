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
    init(_ service: SchedulerService) { self.service = service }
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        guard up.load(ordering: .relaxed) else { return respond(.text(503, "restarting\n")) }
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
        #expect(members.first?["pieces"]?.integer == 2)
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
        // Two refused attempts (at 0 and 250 ms); the next comes 500 ms later, so the client
        // registers about 350 ms after the gate opens, not at the next 5 s keep-alive.
        try await Task.sleep(for: .milliseconds(400))
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

import Synchronization
import DarterCore
import HTTPClient
import HTTPCore
import HTTPServer
import PieceProtocol
import Scheduler
import SchedulerProtocol

/// `darter scheduler`'s routes over the pure `Scheduler` (docs/PROTOCOL.md, "Scheduler"):
/// `POST /hosts`, `POST /hosts/{id}/keepalive`, `DELETE /hosts/{id}`, `POST /tasks/{id}/announce`,
/// `POST /tasks/{id}/progress`, `GET /debug/hosts`, `GET /debug/tasks`, `/healthz`, `/readyz`, `/metrics`.
/// Every decision is the `Scheduler`'s; this class only decodes, locks, answers, and asks a seed
/// to fetch when the scheduler says so.
public final class SchedulerService: HTTPHandler {
    let state: Mutex<Scheduler>
    let metrics: ServerMetrics
    let token: String?
    let client: HTTPClient?
    let now: @Sendable () -> Int64
    let log: @Sendable (String) -> Void
    let seedTriggerFailures = Atomic<Int>(0)
    /// How long the policy takes to decide, by kind (register, keepalive, announce, progress, expire).
    let decisionDurations = HistogramFamily(name: "darter_scheduler_decision_duration_seconds",
                                            help: "Time the scheduler's policy takes for one call (under its lock), by kind.",
                                            label: "kind", values: ["announce", "expire", "keepalive", "progress", "register"], bounds: HistogramBuckets.fastSeconds)

    /// - Parameters:
    ///   - token: the cluster token: with one, every write (POST, DELETE) must carry
    ///     `Authorization: Bearer <token>`, so a stranger can neither join as a parent nor
    ///     change what the scheduler believes.
    ///   - client: how seeds are asked to fetch (POST /tasks on the seed); nil: never.
    ///   - now: milliseconds on a monotonic clock.
    public init(scheduler: Scheduler = Scheduler(), metrics: ServerMetrics, token: String?, client: HTTPClient?,
                now: @escaping @Sendable () -> Int64, log: @escaping @Sendable (String) -> Void = { _ in }) {
        state = Mutex(scheduler)
        self.metrics = metrics
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.client = client
        self.now = now
        self.log = log
    }

    /// Forgets hosts past their TTL; the command calls it every second.
    public func expire() {
        let dead = decide("expire") { $0.expire(now: now()) }
        if !dead.isEmpty { log("scheduler: expired \(dead.joined(separator: ", "))") }
    }

    public func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        let path = request.path
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        let isWrite = request.method == .post || request.method == .delete
        if isWrite, let token, !Self.authorized(request.headers["Authorization"], token: token) {
            var r = Response.text(401, "this scheduler needs the cluster token: Authorization: Bearer <token> (--cluster-token)\n", route: "unauthorized")
            r.head.headers.add(name: "WWW-Authenticate", value: "Bearer realm=\"darter\"")
            return respond(r)
        }
        switch (request.method, parts.count, parts.first ?? "") {
        case (.get, 1, "healthz"), (.head, 1, "healthz"):
            respond(.text(200, "ok\n", route: "healthz"))
        case (.get, 1, "readyz"), (.head, 1, "readyz"):
            // The scheduler holds no state it must load: answering is being ready.
            respond(.text(200, "ready\n", route: "readyz"))
        case (.get, 1, "metrics"):
            respond(.text(200, metricsText(), contentType: "text/plain; version=0.0.4", route: "metrics"))
        case (.get, 2, "debug") where parts[1] == "hosts":
            respond(json(200, state.withLock { $0.hostsView(now: now()) }, route: "debug"))
        case (.get, 2, "debug") where parts[1] == "tasks":
            respond(json(200, state.withLock { $0.tasksView() }, route: "debug"))
        case (.post, 1, "hosts"):
            respond(register(body))
        case (.post, 3, "hosts") where parts[2] == "keepalive":
            respond(keepAlive(parts[1]))
        case (.delete, 2, "hosts"):
            state.withLock { $0.leave(parts[1]) }
            respond(.text(200, "host \(parts[1].prefix(128)) left\n", route: "hosts"))
        case (.post, 3, "tasks") where parts[2] == "announce":
            respond(announce(parts[1], body))
        case (.post, 3, "tasks") where parts[2] == "progress":
            respond(progress(parts[1], body))
        case (_, 1, "healthz"), (_, 1, "readyz"), (_, 1, "metrics"), (_, 2, "debug"):
            respond(methodNotAllowed("use GET", allow: "GET, HEAD"))
        case (_, 1, "hosts"), (_, 3, "hosts"), (_, 3, "tasks"):
            respond(methodNotAllowed("use POST", allow: "POST"))
        case (_, 2, "hosts"):
            respond(methodNotAllowed("use DELETE to leave", allow: "DELETE"))
        default:
            respond(.text(404, "no such route: \(path.prefix(200))\n", route: "invalid"))
        }
    }

    // MARK: Routes

    func register(_ body: [UInt8]) -> Response {
        let r: HostRegistration
        do { r = try HostRegistration(parsing: body) } catch { return .text(400, error.description + "\n", route: "hosts") }
        let reply = decide("register") { $0.register(r, now: now()) }
        return json(200, reply.json, route: "hosts")
    }

    func keepAlive(_ id: String) -> Response {
        do {
            try decide("keepalive") { s throws(Scheduler.Failure) in try s.keepAlive(id, now: now()) }
            return Response(head: HTTPResponseHead(status: 204), route: "keepalive")
        } catch {
            return unknownHost(id, route: "keepalive")
        }
    }

    func announce(_ idText: String, _ body: [UInt8]) -> Response {
        guard let id = TaskID(idText) else { return .text(400, "malformed task id '\(idText.prefix(80))'\n", route: "announce") }
        let a: Announce
        do { a = try Announce(parsing: body) } catch { return .text(400, error.description + "\n", route: "announce") }
        guard a.task == id else { return .text(400, "announce: task \(a.task) in the body is not \(id) in the path\n", route: "announce") }
        let outcome: (reply: AnnounceReply, trigger: Scheduler.SeedTrigger?)
        do {
            outcome = try decide("announce") { s throws(Scheduler.Failure) in try s.announce(a, now: now()) }
        } catch {
            return unknownHost(a.host, route: "announce")
        }
        if let trigger = outcome.trigger { triggerSeed(trigger, task: id) }
        return json(200, outcome.reply.json, route: "announce")
    }

    func progress(_ idText: String, _ body: [UInt8]) -> Response {
        guard let id = TaskID(idText) else { return .text(400, "malformed task id '\(idText.prefix(80))'\n", route: "progress") }
        let p: ProgressReport
        do { p = try ProgressReport(parsing: body) } catch { return .text(400, error.description + "\n", route: "progress") }
        guard p.task == id else { return .text(400, "progress: task \(p.task) in the body is not \(id) in the path\n", route: "progress") }
        do {
            try decide("progress") { s throws(Scheduler.Failure) in try s.report(p, now: now()) }
            return Response(head: HTTPResponseHead(status: 204), route: "progress")
        } catch {
            return unknownHost(p.host, route: "progress")
        }
    }

    /// Asks the seed to fetch: `POST /tasks` there (it answers once the origin's head is in;
    /// the fetch goes on without us). A seed that cannot be asked counts as a failure against it.
    func triggerSeed(_ trigger: Scheduler.SeedTrigger, task: TaskID) {
        guard let client else { return }
        log("scheduler: task \(task): asking seed \(trigger.seed) to fetch it")
        let url: HTTPClientURL
        do { url = try HTTPClientURL(parsing: "http://\(trigger.address)\(PieceProtocol.openPath)") } catch {
            log("scheduler: seed \(trigger.seed) has an unusable address \(trigger.address): \(error)")
            return
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let request = HTTPClientRequest(method: .post, url: url, headers: headers, body: trigger.request.json.serializedBytes, deadline: .seconds(60))
        Task { [self] in
            do {
                let response = try await client.send(request)
                guard response.status == 200 else {
                    log("scheduler: seed \(trigger.seed) answered \(response.status) for task \(task): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
                    return
                }
            } catch {
                seedTriggerFailures.add(1, ordering: .relaxed)
                log("scheduler: seed \(trigger.seed) could not be asked to fetch task \(task): \(error)")
                state.withLock { $0.parentUnreachable(trigger.seed, now: now()) }
            }
        }
    }

    // MARK: Helpers

    /// A call into the policy under its lock, timed for `darter_scheduler_decision_duration_seconds{kind}`.
    func decide<R: Sendable, E: Error>(_ kind: String, _ body: (inout Scheduler) throws(E) -> R) throws(E) -> R {
        try state.withLock { s throws(E) -> R in
            let started = ContinuousClock.now
            defer { decisionDurations.observe(ContinuousClock.now - started, kind) }
            return try body(&s)
        }
    }

    func unknownHost(_ id: String, route: String) -> Response {
        .text(404, "host \(id.prefix(128)) is not registered here: register again (POST /hosts) with what it holds\n", route: route)
    }

    func json(_ status: Int, _ value: JSONValue, route: String) -> Response {
        .text(status, value.serialized + "\n", contentType: "application/json", route: route)
    }

    func methodNotAllowed(_ reason: String, allow: String) -> Response {
        var r = Response.text(405, reason + "\n", route: "invalid")
        r.head.headers.add(name: "Allow", value: allow)
        return r
    }

    /// Compares in time independent of where the token first differs.
    static func authorized(_ header: String?, token: String) -> Bool { BearerToken.matches(header, token: token) }

    func metricsText() -> String {
        let (c, hosts, tasks, seeds) = state.withLock { s in (s.counters, s.hostCount, s.taskCount, s.seedCount) }
        var out = metrics.exposition + decisionDurations.exposition + DarterMetrics.buildInfo
        func metric(_ name: String, _ type: String, _ help: String, _ value: Int) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        out += "# HELP darter_scheduler_hosts Registered hosts, by role.\n# TYPE darter_scheduler_hosts gauge\n"
        out += "darter_scheduler_hosts{role=\"seed\"} \(seeds)\ndarter_scheduler_hosts{role=\"peer\"} \(hosts - seeds)\n"
        metric("darter_scheduler_tasks", "gauge", "Tasks some host holds or downloads.", tasks)
        metric("darter_scheduler_registrations_total", "counter", "Host registrations (first, or again after a TTL or a restart).", c.registrations)
        metric("darter_scheduler_announces_total", "counter", "Announces answered.", c.announces)
        metric("darter_scheduler_back_to_source_total", "counter", "Announces answered with: go to the origin.", c.backToSource)
        metric("darter_scheduler_seed_triggers_total", "counter", "Seeds asked to fetch a task nobody held.", c.seedTriggers)
        metric("darter_scheduler_seed_trigger_failures_total", "counter", "Seeds that could not be asked.", seedTriggerFailures.load(ordering: .relaxed))
        metric("darter_scheduler_reports_total", "counter", "Progress reports received.", c.reports)
        metric("darter_scheduler_expired_hosts_total", "counter", "Hosts forgotten after their TTL.", c.expired)
        return out
    }
}

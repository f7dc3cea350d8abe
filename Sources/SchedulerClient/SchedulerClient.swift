import Synchronization
import DarterCore
import HTTPClient
import HTTPCore
import PieceProtocol
import SchedulerProtocol

/// A daemon's side of the scheduler protocol (docs/PROTOCOL.md, "Scheduler"): it registers
/// with every scheduler it is given (each must know it as a parent), keeps alive, registers
/// again with what it holds whenever a scheduler does not know it (restarted, or the TTL
/// passed), and sends a task's announces and reports to the scheduler the task id hashes to,
/// the next one on the ring when that one does not answer. A scheduler entry whose host is a
/// name stands for every address it resolves to, looked up again every `resolveInterval`
/// (``SchedulerMembers``): a scheduler that appears gets this host's registration at once, one
/// that vanished leaves the ring.
public final class SchedulerClient: Sendable {
    /// Looks a name up: its addresses as IP literals (the default: getaddrinfo off the loops).
    public typealias Resolver = @Sendable (_ host: String) async throws -> [String]

    public struct Configuration: Sendable {
        /// Scheduler base addresses (`http://host:port`; the target is ignored). A host that is a
        /// name stands for each address it resolves to.
        public var schedulers: [HTTPClientURL]
        public var token: String?
        /// This host as it registers (its `tasks` are filled from the inventory each time).
        public var identity: HostRegistration
        /// How long one request to a scheduler may take.
        public var requestTimeout: Duration = .seconds(5)
        /// How often scheduler names are looked up again (a name that has not resolved yet, or
        /// failed to, is retried sooner: from 1 s, doubling up to this).
        public var resolveInterval: Duration = .seconds(30)
        public init(schedulers: [HTTPClientURL], token: String?, identity: HostRegistration) {
            self.schedulers = schedulers
            self.token = token.flatMap { $0.isEmpty ? nil : $0 }
            self.identity = identity
        }
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// No scheduler answered (each one's error, in the order tried).
        case unreachable([String])
        /// A scheduler answered something other than the protocol's answer.
        case refused(String)
        public var description: String {
            switch self {
            case .unreachable(let why): "no scheduler answered: " + why.joined(separator: "; ")
            case .refused(let why): why
            }
        }
    }

    public let configuration: Configuration
    let client: HTTPClient
    let inventory: @Sendable () -> [HeldTask]
    let log: @Sendable (String) -> Void
    /// Per scheduler (by `hostHeader`): the keep-alive interval it asked for, once registered.
    let registered = Mutex<[String: Int]>([:])
    /// The keep-alive loop and the lookups of scheduler names.
    let loops = Mutex<[Task<Void, Never>]>([])
    /// The schedulers now (names expanded to what they resolved to last).
    let members: Mutex<SchedulerMembers>
    let resolve: Resolver
    /// Per name, the last lookup failure logged (so a name that keeps failing is logged once).
    let lookupFailures = Mutex<[String: String]>([:])

    /// - Parameters:
    ///   - inventory: what this host holds now (sent with every registration).
    ///   - resolve: how scheduler names are looked up (tests pass their own).
    public init(configuration: Configuration, client: HTTPClient, inventory: @escaping @Sendable () -> [HeldTask],
                resolve: @escaping Resolver = { try await HTTPClient.addresses(of: $0) },
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.client = client
        self.inventory = inventory
        self.resolve = resolve
        self.log = log
        members = Mutex(SchedulerMembers(entries: configuration.schedulers))
    }

    /// The schedulers this host talks to now (each name's addresses as last looked up).
    public var currentSchedulers: [HTTPClientURL] { members.withLock { $0.members } }

    /// Registers everywhere and keeps alive until `stop()`; follows scheduler names.
    public func start() {
        let task = Task { [self] in
            var retry = 250
            while !Task.isCancelled {
                var interval = 5_000
                let schedulers = currentSchedulers
                var unanswered = schedulers.isEmpty  // names not resolved yet
                // All at once: a scheduler slow to fail must not hold back the others' keep-alives
                // (measured, one of two schedulers SIGKILLed, in turn: a seed unheard 5.2 s by the
                // live one, which moved its task to another seed; at once: at most 1.4 s).
                let answers = await withTaskGroup(of: Int?.self) { group in
                    for s in schedulers { group.addTask { await self.keepAliveOrRegister(s) } }
                    var all: [Int?] = []
                    for await a in group { all.append(a) }
                    return all
                }
                for a in answers {
                    if let ms = a { interval = min(interval, ms) } else { unanswered = true }
                }
                // A scheduler that does not answer (restarting) is asked again soon, backing off
                // to the keep-alive interval: the host is back as soon as it listens again.
                if unanswered { interval = min(interval, retry); retry = min(retry * 2, 5_000) } else { retry = 250 }
                try? await Task.sleep(for: .milliseconds(max(200, interval)))
            }
        }
        var started = [task]
        if !members.withLock({ $0.names.isEmpty }) {
            started.append(Task { [self] in
                var retry: Duration = .seconds(1)
                while !Task.isCancelled {
                    let settled = await refreshMembers()
                    try? await Task.sleep(for: settled ? configuration.resolveInterval : min(retry, configuration.resolveInterval))
                    retry = settled ? .seconds(1) : retry * 2
                }
            })
        }
        loops.withLock { $0 = started }
    }

    /// Stops keeping alive and tells every scheduler this host leaves (best effort).
    public func stop() async {
        loops.withLock { for t in $0 { t.cancel() }; $0 = [] }
        for s in currentSchedulers {
            _ = try? await send(.delete, s, SchedulerProtocol.hostPath(configuration.identity.id), body: nil)
        }
    }

    /// Whether at least one scheduler has this host registered now.
    public var isRegistered: Bool { registered.withLock { !$0.isEmpty } }

    /// The schedulers for `task`, best first (rendezvous hashing on the task id, so every
    /// daemon sends a task's announces to the same scheduler).
    public func schedulers(for task: TaskID) -> [HTTPClientURL] {
        members.withLock { $0.ranked(task.description) }
    }

    /// Asks the task's scheduler for parents; one that does not know this host gets a
    /// registration first; one that does not answer passes the question to the next.
    public func announce(_ a: Announce) async throws(Failure) -> AnnounceReply {
        var errors: [String] = []
        for s in schedulers(for: a.task) {
            do {
                var r = try await send(.post, s, SchedulerProtocol.announcePath(a.task), body: a.json)
                if r.status == 404, await register(s) != nil {
                    r = try await send(.post, s, SchedulerProtocol.announcePath(a.task), body: a.json)
                }
                if r.status >= 500 {
                    errors.append("\(s.hostHeader) answered \(r.status): \(text(r))")
                    continue
                }
                guard r.status == 200 else { throw Failure.refused("scheduler \(s.hostHeader) answered \(r.status) to an announce: \(text(r))") }
                do { return try AnnounceReply(parsing: r.body) } catch {
                    throw Failure.refused("scheduler \(s.hostHeader) sent an announce reply that does not parse: \(error)")
                }
            } catch let e as Failure {
                throw e
            } catch {
                errors.append("\(s.hostHeader): \(error)")
            }
        }
        throw .unreachable(errors)
    }

    /// Sends a batch of progress to the task's scheduler (best effort: a lost report costs the
    /// scheduler some accuracy, never the download).
    public func report(_ p: ProgressReport) async {
        for s in schedulers(for: p.task) {
            guard let r = try? await send(.post, s, SchedulerProtocol.progressPath(p.task), body: p.json) else { continue }
            if r.status == 404, await register(s) != nil {
                _ = try? await send(.post, s, SchedulerProtocol.progressPath(p.task), body: p.json)
            }
            return
        }
    }

    // MARK: Members

    /// Looks every scheduler name up (at once, off the loops) and applies the answers: members
    /// that vanished are forgotten, new ones get this host's registration with what it holds
    /// (as a restarted scheduler would). Returns whether every name resolved.
    @discardableResult
    func refreshMembers() async -> Bool {
        let names = members.withLock { $0.names }
        let lookups = await withTaskGroup(of: (String, Result<[String], any Error>).self) { group in
            for name in names {
                group.addTask { [resolve] in
                    do { return (name, .success(try await resolve(name))) } catch { return (name, .failure(error)) }
                }
            }
            var out: [String: Result<[String], any Error>] = [:]
            for await (name, r) in group { out[name] = r }
            return out
        }
        for name in names {
            switch lookups[name] {
            case .failure(let e)?:
                let why = "\(e)"
                if lookupFailures.withLock({ $0.updateValue(why, forKey: name) }) != why {
                    log("scheduler name \(name) does not resolve (\(why)); keeping its last addresses")
                }
            default:
                if lookupFailures.withLock({ $0.removeValue(forKey: name) }) != nil { log("scheduler name \(name) resolves again") }
            }
        }
        let change = members.withLock { m in m.apply(lookups.mapValues { try? $0.get() }) }
        if !change.isEmpty {
            registered.withLock { r in for s in change.removed { r[s.hostHeader] = nil } }
            let names = { (l: [HTTPClientURL]) in l.map(\.hostHeader).joined(separator: ", ") }
            log("schedulers now \(names(currentSchedulers))"
                + (change.added.isEmpty ? "" : "; joined: \(names(change.added))") + (change.removed.isEmpty ? "" : "; left: \(names(change.removed))"))
            await withTaskGroup(of: Void.self) { group in
                for s in change.added { group.addTask { [self] in _ = await register(s) } }
            }
        }
        return lookups.values.allSatisfy { if case .success = $0 { true } else { false } }
    }

    // MARK: Registration

    /// A keep-alive if registered there, else (or when it says it does not know us) a
    /// registration; the interval the scheduler asked for, or nil when it did not answer.
    func keepAliveOrRegister(_ s: HTTPClientURL) async -> Int? {
        if let ms = registered.withLock({ $0[s.hostHeader] }) {
            if let r = try? await send(.post, s, SchedulerProtocol.keepAlivePath(configuration.identity.id), body: nil) {
                if r.status == 204 { return ms }
                if r.status != 404 { log("scheduler \(s.hostHeader) answered \(r.status) to a keep-alive: \(text(r))") }
            } else {
                registered.withLock { $0[s.hostHeader] = nil }
                log("scheduler \(s.hostHeader) does not answer; registering again when it does")
                return nil
            }
        }
        return await register(s)
    }

    /// Registers with what this host holds now.
    func register(_ s: HTTPClientURL) async -> Int? {
        var identity = configuration.identity
        identity.tasks = inventory()
        guard let r = try? await send(.post, s, SchedulerProtocol.hostsPath, body: identity.json) else {
            registered.withLock { $0[s.hostHeader] = nil }
            return nil
        }
        guard r.status == 200, let reply = try? RegistrationReply(parsing: r.body) else {
            log("scheduler \(s.hostHeader) refused the registration (\(r.status)): \(text(r))")
            return nil
        }
        // A scheduler that left the ring while this registration was on its way is not counted.
        guard members.withLock({ $0.members.contains { $0.hostHeader == s.hostHeader } }) else { return reply.keepAliveMilliseconds }
        let wasRegistered = registered.withLock { $0.updateValue(reply.keepAliveMilliseconds, forKey: s.hostHeader) != nil }
        if !wasRegistered { log("registered with scheduler \(s.hostHeader) as \(identity.role.rawValue) \(identity.id) (\(identity.tasks.count) tasks held)") }
        return reply.keepAliveMilliseconds
    }

    func send(_ method: HTTPMethod, _ s: HTTPClientURL, _ target: String, body: JSONValue?) async throws(HTTPClientError) -> HTTPClientResponse {
        var headers = HTTPHeaders()
        if body != nil { headers.add(name: "Content-Type", value: "application/json") }
        if let token = configuration.token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let url = HTTPClientURL(host: s.host, port: s.port, target: target)
        return try await client.send(HTTPClientRequest(method: method, url: url, headers: headers, body: body?.serializedBytes ?? [],
                                                       deadline: configuration.requestTimeout))
    }

    func text(_ r: HTTPClientResponse) -> String {
        String(decoding: r.body.prefix(300), as: UTF8.self).filter { $0 != "\n" }
    }
}

import DarterCore
import PieceProtocol

/// The messages between daemons and the scheduler (pure: JSON encode and decode, no I/O).
/// docs/PROTOCOL.md, "Scheduler", is the contract. Every message is a JSON object sent with
/// POST; unknown fields are ignored, so either side may add some.
public enum SchedulerProtocol {
    public static let version = 1
    /// `POST`: register (or re-register, with what the daemon holds) a host.
    public static let hostsPath = "/hosts"
    /// `POST` with no body: keep a registered host alive (404: unknown, register again).
    public static func keepAlivePath(_ host: String) -> String { "/hosts/\(host)/keepalive" }
    /// `DELETE`: the host leaves.
    public static func hostPath(_ host: String) -> String { "/hosts/\(host)" }
    /// `POST`: a host wants a task; the reply names parents or says to go to the origin.
    public static func announcePath(_ task: TaskID) -> String { "/tasks/\(task)/announce" }
    /// `POST`: a batch of piece progress, piece costs and parent failures.
    public static func progressPath(_ task: TaskID) -> String { "/tasks/\(task)/progress" }
    /// Host ids: what a daemon calls itself (its hostname, or a name given with --host-id).
    public static let maxHostIDLength = 128
    public static func isValidHostID(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && s.utf8.count <= maxHostIDLength && s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_")
        }
    }
}

/// A host's part in the swarm: a seed reads origins for the cluster; a peer serves what it holds.
public enum HostRole: String, Sendable, Equatable, CaseIterable {
    case seed, peer
}

/// What a daemon holds of one task (sent when it registers, so a restarted scheduler relearns
/// the swarm from the daemons instead of sending everyone back to the origin).
public struct HeldTask: Sendable, Equatable {
    public var task: TaskID
    public var contentLength: Int64?
    public var pieceLength: Int
    public var pieces: PieceSet
    public var complete: Bool

    public init(task: TaskID, contentLength: Int64?, pieceLength: Int, pieces: PieceSet, complete: Bool) {
        self.task = task
        self.contentLength = contentLength
        self.pieceLength = pieceLength
        self.pieces = pieces
        self.complete = complete
    }

    public var json: JSONValue {
        ["task": .string(task.description), "contentLength": contentLength.map { JSONValue($0) } ?? .null,
         "pieceLength": JSONValue(pieceLength), "pieces": .string(pieces.description), "complete": .bool(complete)]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "held task")
        task = try f.taskID("task")
        pieceLength = try f.pieceLength("pieceLength")
        contentLength = try f.optionalLength("contentLength")
        // Checked whether or not pieces are listed (found by tools/fuzz protocol: a task of
        // 2^47 bytes with no pieces parsed, its serialization, with "pieces": "", did not).
        if let n = contentLength, PieceMath.pieceCount(contentLength: n, pieceLength: pieceLength) > PieceProtocol.maxPieceCount {
            throw ProtocolError("held task: contentLength \(n) is more than \(PieceProtocol.maxPieceCount) pieces of \(pieceLength) bytes")
        }
        pieces = try f.pieces("pieces", contentLength: contentLength, pieceLength: pieceLength)
        complete = try f.bool("complete", default: false)
    }
}

/// `POST /hosts`.
public struct HostRegistration: Sendable, Equatable {
    public var id: String
    /// `host:port` other daemons reach this one's piece protocol at.
    public var address: String
    public var role: HostRole
    /// Bytes per second this host can upload (its link or its `--upload-rate`; 0: unknown).
    public var uploadRate: Int64
    /// Data centre and location labels (`--idc`, `--location` as `region|zone|rack`).
    public var idc: String?
    public var location: String?
    public var tasks: [HeldTask]

    public init(id: String, address: String, role: HostRole, uploadRate: Int64 = 0, idc: String? = nil,
                location: String? = nil, tasks: [HeldTask] = []) {
        self.id = id
        self.address = address
        self.role = role
        self.uploadRate = uploadRate
        self.idc = idc
        self.location = location
        self.tasks = tasks
    }

    public var json: JSONValue {
        ["protocol": JSONValue(SchedulerProtocol.version), "id": .string(id), "address": .string(address),
         "role": .string(role.rawValue), "uploadRate": JSONValue(uploadRate), "idc": JSONValue(idc),
         "location": JSONValue(location), "tasks": .array(tasks.map(\.json))]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "registration")
        id = try f.hostID("id")
        address = try f.address("address")
        role = try f.role("role")
        uploadRate = try f.integer("uploadRate", default: 0, min: 0)
        idc = try f.optionalLabel("idc")
        location = try f.optionalLabel("location")
        tasks = []
        for t in try f.array("tasks", limit: 100_000) { tasks.append(try HeldTask(json: t)) }
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) { try self.init(json: parseObject(bytes, "registration")) }
}

/// The answer to a registration: how often to keep alive, and when the scheduler forgets a host
/// it has not heard from.
public struct RegistrationReply: Sendable, Equatable {
    public var keepAliveMilliseconds: Int
    public var ttlMilliseconds: Int
    public init(keepAliveMilliseconds: Int, ttlMilliseconds: Int) {
        self.keepAliveMilliseconds = keepAliveMilliseconds
        self.ttlMilliseconds = ttlMilliseconds
    }
    public var json: JSONValue { ["keepAliveMilliseconds": JSONValue(keepAliveMilliseconds), "ttlMilliseconds": JSONValue(ttlMilliseconds)] }
    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "registration reply")
        keepAliveMilliseconds = Int(try f.integer("keepAliveMilliseconds", min: 1))
        ttlMilliseconds = Int(try f.integer("ttlMilliseconds", min: 1))
    }
    public init(parsing bytes: [UInt8]) throws(ProtocolError) { try self.init(json: parseObject(bytes, "registration reply")) }
}

/// `POST /tasks/{id}/announce`: `host` wants the task (`url` and `headers` let the scheduler
/// have a seed fetch it); it holds `pieces` already.
public struct Announce: Sendable, Equatable {
    public var host: String
    public var task: TaskID
    public var url: String?
    public var headers: [OpenTaskRequest.Header]
    public var digest: SHA256Digest?
    public var pieces: PieceSet
    /// Set when `url` is an OCI registry's blob or manifest by digest (see ``OpenTaskRequest``).
    public var registry: String?

    public init(host: String, task: TaskID, url: String? = nil, headers: [OpenTaskRequest.Header] = [],
                digest: SHA256Digest? = nil, pieces: PieceSet = PieceSet(), registry: String? = nil) {
        self.host = host
        self.task = task
        self.url = url
        self.headers = headers
        self.digest = digest
        self.pieces = pieces
        self.registry = registry
    }

    /// What a seed is asked to fetch for this task (nil without a URL).
    public var openRequest: OpenTaskRequest? {
        url.map { OpenTaskRequest(url: $0, headers: headers, digest: digest, registry: registry) }
    }

    public var json: JSONValue {
        ["host": .string(host), "task": .string(task.description), "url": JSONValue(url),
         "headers": .array(headers.map { ["name": .string($0.name), "value": .string($0.value)] }),
         "digest": digest.map { .string("sha256:" + $0.hex) } ?? .null, "pieces": .string(pieces.description),
         "registry": JSONValue(registry)]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "announce")
        host = try f.hostID("host")
        task = try f.taskID("task")
        url = try f.optionalString("url", limit: 8192)
        headers = []
        for h in try f.array("headers", limit: 64) {
            guard let name = h["name"]?.string, let value = h["value"]?.string, !name.isEmpty,
                  name.utf8.count + value.utf8.count <= 8192 else {
                throw ProtocolError("announce: each header needs a name and a value")
            }
            headers.append(.init(name: name, value: value))
        }
        digest = try f.optionalDigest("digest")
        pieces = try f.pieces("pieces", contentLength: nil, pieceLength: nil)
        registry = try f.optionalString("registry", limit: 2048)
        if let registry {
            // Checked as the seed will check the open request it becomes.
            guard let url, url.hasPrefix(registry + "/v2/"), digest != nil else {
                throw ProtocolError("announce: with registry, url must be <registry>/v2/... and digest is required")
            }
        }
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) { try self.init(json: parseObject(bytes, "announce")) }
}

/// A parent the scheduler suggests, with what it holds when asked.
public struct ParentCandidate: Sendable, Equatable {
    public var id: String
    public var address: String
    public var role: HostRole
    public var pieces: PieceSet
    public var complete: Bool
    /// A peer in another IDC than the child's (both labelled): asked only for the child's
    /// `AnnounceReply.remoteShare`.
    public var remote: Bool

    public init(id: String, address: String, role: HostRole, pieces: PieceSet, complete: Bool, remote: Bool = false) {
        self.id = id
        self.address = address
        self.role = role
        self.pieces = pieces
        self.complete = complete
        self.remote = remote
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["id": .string(id), "address": .string(address), "role": .string(role.rawValue),
                                      "pieces": .string(pieces.description), "complete": .bool(complete)]
        if remote { o["remote"] = .bool(true) }
        return .object(o)
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "parent")
        id = try f.hostID("id")
        address = try f.address("address")
        role = try f.role("role")
        pieces = try f.pieces("pieces", contentLength: nil, pieceLength: nil)
        complete = try f.bool("complete", default: false)
        remote = try f.bool("remote", default: false)
    }
}

/// Which pieces a host asks seeds for: those with `piece % count == index`; none when `index` is
/// nil (the host is not one of the task's `count` owners: its seed pieces come through them).
/// The scheduler deals the task's pieces out among a bounded set of the peers downloading it, so
/// a seed sends each piece about once and the peers pass it on.
public struct SeedShare: Sendable, Equatable {
    public var index: Int?
    public var count: Int
    public init(index: Int?, count: Int) {
        self.index = index
        self.count = count
    }
}

/// The answer to an announce: parents to download from, or go to the origin (`reason` says why).
/// With neither (`parents` empty, `backToSource` false) ask again after `retryMilliseconds`.
public struct AnnounceReply: Sendable, Equatable {
    public var parents: [ParentCandidate]
    public var backToSource: Bool
    public var reason: String?
    public var retryMilliseconds: Int?
    public var seedShare: SeedShare?
    /// Which pieces the host asks `remote` parents for (the same deal, among its IDC's gateways).
    public var remoteShare: SeedShare?

    public init(parents: [ParentCandidate] = [], backToSource: Bool = false, reason: String? = nil, retryMilliseconds: Int? = nil,
                seedShare: SeedShare? = nil, remoteShare: SeedShare? = nil) {
        self.parents = parents
        self.backToSource = backToSource
        self.reason = reason
        self.retryMilliseconds = retryMilliseconds
        self.seedShare = seedShare
        self.remoteShare = remoteShare
    }

    public var json: JSONValue {
        func share(_ s: SeedShare?) -> JSONValue { s.map { ["index": $0.index.map { JSONValue($0) } ?? .null, "count": JSONValue($0.count)] } ?? .null }
        return ["parents": .array(parents.map(\.json)), "backToSource": .bool(backToSource), "reason": JSONValue(reason),
                "retryMilliseconds": retryMilliseconds.map { JSONValue($0) } ?? .null,
                "seedShare": share(seedShare), "remoteShare": share(remoteShare)]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "announce reply")
        parents = []
        for p in try f.array("parents", limit: 1000) { parents.append(try ParentCandidate(json: p)) }
        backToSource = try f.bool("backToSource", default: false)
        reason = try f.optionalString("reason", limit: 1024)
        retryMilliseconds = try f.optionalInteger("retryMilliseconds", min: 0).map { Int($0) }
        func share(_ name: String) throws(ProtocolError) -> SeedShare? {
            guard let share = f.present(name) else { return nil }
            var g = Fields(share, "announce reply: \(name)")
            let count = Int(try g.integer("count", min: 1))
            let index = try g.optionalInteger("index", min: 0).map { Int($0) }
            if let index, index >= count { throw ProtocolError("announce reply: \(name): index \(index) is not below count \(count)") }
            return SeedShare(index: index, count: count)
        }
        seedShare = try share("seedShare")
        remoteShare = try share("remoteShare")
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) { try self.init(json: parseObject(bytes, "announce reply")) }
}

/// What pieces from one parent cost a child over a report's interval (a parent's score and
/// bad-parent detection come from these).
public struct PieceCost: Sendable, Equatable {
    public var parent: String
    public var pieces: Int
    public var bytes: Int64
    public var milliseconds: Int

    public init(parent: String, pieces: Int, bytes: Int64, milliseconds: Int) {
        self.parent = parent
        self.pieces = pieces
        self.bytes = bytes
        self.milliseconds = milliseconds
    }

    public var json: JSONValue {
        ["parent": .string(parent), "pieces": JSONValue(pieces), "bytes": JSONValue(bytes), "milliseconds": JSONValue(milliseconds)]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "piece cost")
        parent = try f.hostID("parent")
        pieces = Int(try f.integer("pieces", min: 1))
        bytes = try f.integer("bytes", min: 0)
        milliseconds = Int(try f.integer("milliseconds", min: 0))
    }
}

/// A parent that failed a child: refused, timed out, or sent a piece that did not check.
public struct ParentFailure: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case unreachable, timeout, badPiece, missing }
    public var parent: String
    public var kind: Kind

    public init(parent: String, kind: Kind) {
        self.parent = parent
        self.kind = kind
    }

    public var json: JSONValue { ["parent": .string(parent), "kind": .string(kind.rawValue)] }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "parent failure")
        parent = try f.hostID("parent")
        let k = try f.string("kind", limit: 32)
        guard let kind = Kind(rawValue: k) else {
            throw ProtocolError("parent failure: kind '\(k)' is not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
    }
}

/// `POST /tasks/{id}/progress`: sent in batches (every second or so while downloading, and at
/// the end), never per piece.
public struct ProgressReport: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable { case downloading, complete, failed }
    public var host: String
    public var task: TaskID
    /// Pieces that arrived since the last report.
    public var pieces: PieceSet
    public var state: State
    public var costs: [PieceCost]
    public var failures: [ParentFailure]

    public init(host: String, task: TaskID, pieces: PieceSet = PieceSet(), state: State = .downloading,
                costs: [PieceCost] = [], failures: [ParentFailure] = []) {
        self.host = host
        self.task = task
        self.pieces = pieces
        self.state = state
        self.costs = costs
        self.failures = failures
    }

    public var json: JSONValue {
        ["host": .string(host), "task": .string(task.description), "pieces": .string(pieces.description),
         "state": .string(state.rawValue), "costs": .array(costs.map(\.json)), "failures": .array(failures.map(\.json))]
    }

    public init(json: JSONValue) throws(ProtocolError) {
        var f = Fields(json, "progress")
        host = try f.hostID("host")
        task = try f.taskID("task")
        pieces = try f.pieces("pieces", contentLength: nil, pieceLength: nil)
        let s = try f.string("state", default: "downloading", limit: 32)
        guard let state = State(rawValue: s) else {
            throw ProtocolError("progress: state '\(s)' is not one of \(State.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.state = state
        costs = []
        for c in try f.array("costs", limit: 1000) { costs.append(try PieceCost(json: c)) }
        failures = []
        for x in try f.array("failures", limit: 1000) { failures.append(try ParentFailure(json: x)) }
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) { try self.init(json: parseObject(bytes, "progress")) }
}

// MARK: - Decoding helpers

func parseObject(_ bytes: [UInt8], _ what: String) throws(ProtocolError) -> JSONValue {
    guard let v = try? JSONValue.parse(bytes), v.object != nil else { throw ProtocolError("\(what) is not a JSON object") }
    return v
}

/// Typed reads of one message's fields; each error names the message and the field.
struct Fields {
    let json: JSONValue
    let what: String
    init(_ json: JSONValue, _ what: String) { self.json = json; self.what = what }

    func fail(_ field: String, _ why: String) -> ProtocolError { ProtocolError("\(what): \(field) \(why)") }

    func present(_ field: String) -> JSONValue? {
        guard let v = json[field], !v.isNull else { return nil }
        return v
    }

    mutating func string(_ field: String, default d: String? = nil, limit: Int) throws(ProtocolError) -> String {
        guard let v = present(field) else {
            if let d { return d }
            throw fail(field, "is missing")
        }
        guard let s = v.string else { throw fail(field, "is not a string") }
        guard s.utf8.count <= limit else { throw fail(field, "is longer than \(limit) bytes") }
        return s
    }

    mutating func optionalString(_ field: String, limit: Int) throws(ProtocolError) -> String? {
        guard present(field) != nil else { return nil }
        return try string(field, limit: limit)
    }

    mutating func optionalLabel(_ field: String) throws(ProtocolError) -> String? {
        guard let s = try optionalString(field, limit: 256) else { return nil }
        guard s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { throw fail(field, "must be printable ASCII") }
        return s.isEmpty ? nil : s
    }

    mutating func hostID(_ field: String) throws(ProtocolError) -> String {
        let s = try string(field, limit: SchedulerProtocol.maxHostIDLength)
        guard SchedulerProtocol.isValidHostID(s) else { throw fail(field, "'\(s.prefix(40))' may hold only letters, digits and -._") }
        return s
    }

    mutating func address(_ field: String) throws(ProtocolError) -> String {
        let s = try string(field, limit: 300)
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port),
              colon != s.startIndex, s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") }) else {
            throw fail(field, "'\(s.prefix(60))' is not host:port")
        }
        return s
    }

    mutating func role(_ field: String) throws(ProtocolError) -> HostRole {
        let s = try string(field, limit: 16)
        guard let r = HostRole(rawValue: s) else { throw fail(field, "'\(s.prefix(16))' is neither seed nor peer") }
        return r
    }

    mutating func taskID(_ field: String) throws(ProtocolError) -> TaskID {
        let s = try string(field, limit: 80)
        guard let id = TaskID(s) else { throw fail(field, "is not a task id") }
        return id
    }

    mutating func bool(_ field: String, default d: Bool) throws(ProtocolError) -> Bool {
        guard let v = present(field) else { return d }
        guard let b = v.bool else { throw fail(field, "is not true or false") }
        return b
    }

    mutating func integer(_ field: String, default d: Int64? = nil, min: Int64) throws(ProtocolError) -> Int64 {
        guard let v = present(field) else {
            if let d { return d }
            throw fail(field, "is missing")
        }
        guard let n = v.integer, n >= min else { throw fail(field, "is not a whole number ≥ \(min)") }
        return n
    }

    mutating func optionalInteger(_ field: String, min: Int64) throws(ProtocolError) -> Int64? {
        guard present(field) != nil else { return nil }
        return try integer(field, min: min)
    }

    mutating func optionalLength(_ field: String) throws(ProtocolError) -> Int64? { try optionalInteger(field, min: 0) }

    mutating func pieceLength(_ field: String) throws(ProtocolError) -> Int {
        let n = Int(try integer(field, min: 1))
        guard PieceMath.isValidPieceLength(n) else { throw fail(field, "\(n) is not a valid piece length") }
        return n
    }

    mutating func pieces(_ field: String, contentLength: Int64?, pieceLength: Int?) throws(ProtocolError) -> PieceSet {
        guard present(field) != nil else { return PieceSet() }
        let text = try string(field, limit: 8 << 20)
        var limit = PieceProtocol.maxPieceCount
        if let contentLength, let pieceLength {
            limit = PieceMath.pieceCount(contentLength: contentLength, pieceLength: pieceLength)
            guard limit <= PieceProtocol.maxPieceCount else { throw fail(field, "would be more than \(PieceProtocol.maxPieceCount) pieces") }
        }
        do { return try PieceSet(parsing: text, limit: limit) } catch { throw ProtocolError("\(what): \(field): \(error.description)") }
    }

    mutating func optionalDigest(_ field: String) throws(ProtocolError) -> SHA256Digest? {
        guard let s = try optionalString(field, limit: 80) else { return nil }
        guard s.hasPrefix("sha256:"), let d = SHA256Digest(hex: s.dropFirst(7)) else { throw fail(field, "must be sha256:<64 hex>") }
        return d
    }

    mutating func array(_ field: String, limit: Int) throws(ProtocolError) -> [JSONValue] {
        guard let v = present(field) else { return [] }
        guard let a = v.array else { throw fail(field, "is not an array") }
        guard a.count <= limit else { throw fail(field, "has more than \(limit) entries") }
        return a
    }
}

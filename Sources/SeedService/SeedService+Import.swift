import DarterCore
import DarterIO
import HTTPCore
import HTTPServer
import PieceProtocol
import PieceStore
import SchedulerProtocol
import Synchronization

/// Imports into a running daemon (the offline `darter import` cannot open a store a daemon
/// holds): `PUT /tasks/sha256:{hex}` with the content as the body, streamed into the store
/// piece by piece, and `POST /import` with `{"path": "/abs/file"}`, which the daemon reads
/// itself (from this host only). Both store the same digest task the offline import does.
/// `GET /tasks/{id}/stat`: what the store knows of a task. See docs/API.md.
extension SeedService {
    public func bodyDisposition(for request: HTTPRequestHead, client: RequestClient) -> RequestBodyDisposition {
        // Every request passes here: reads go on at once.
        guard request.method == .put || request.method == .post, request.targetForm == .origin else { return .buffer }
        let path = request.target.utf8.prefix { $0 != UInt8(ascii: "?") }
        if request.method == .put, path.starts(with: "/tasks/".utf8) {
            return importBody(request, id: String(decoding: path.dropFirst(7), as: UTF8.self), client: client)
        }
        if path.elementsEqual("/import".utf8) {
            guard request.method == .post else { return .buffer }
            let address = client.address
            if case .refused(let status, let reason) = writeAccess.decide(client: address, authorization: request.headers["Authorization"], localOnly: true) {
                return .refuse(refusal(status, reason, route: "import"))
            }
            return .stream(SmallBodySink(limit: 64 << 10, route: "import") { [self] body, respond in
                importPath(body, respond: respond)
            })
        }
        return .buffer
    }

    // MARK: PUT /tasks/sha256:{hex}

    private func importBody(_ request: HTTPRequestHead, id text: String, client: RequestClient) -> RequestBodyDisposition {
        func bad(_ status: Int, _ reason: String) -> RequestBodyDisposition { .refuse(.text(status, reason + "\n", route: "import")) }
        if case .refused(let status, let reason) = writeAccess.decide(client: client.address, authorization: request.headers["Authorization"], localOnly: false) {
            return .refuse(refusal(status, reason, route: "import"))
        }
        guard let id = TaskID(text), id.kind == .digest else {
            return bad(400, "PUT content to /tasks/sha256:<64 lowercase hex>, its SHA-256 (the task id); got '\(text.prefix(80))'")
        }
        let length: Int64
        switch request.bodyFraming {
        case .none: length = 0
        case .contentLength(let n): length = Int64(n)
        case .chunked: return bad(411, "PUT /tasks/\(id) needs a Content-Length (the store reserves the content's room up front)")
        }
        var pieceLength: Int?
        if let value = (try? HTTPQueryParameters(parsing: request.query ?? ""))?["piece-length"] {
            guard let n = Int(value), PieceMath.isValidPieceLength(n) else {
                return bad(400, "piece-length must be a multiple of 4096 from 4096 to \(PieceMath.maximumPieceLength), got '\(value.prefix(40))'")
            }
            pieceLength = n
        }
        guard imports.begin(id) else { return bad(409, "an import of \(id) is under way already") }
        return .stream(ImportBodySink(service: self, id: id, contentLength: length, pieceLength: pieceLength))
    }

    /// The import is stored: the answer, and the swarm's schedulers are told this host has it all.
    func imported(_ result: PieceStore.Imported) -> Response {
        if let scheduler, !result.alreadyStored {
            let all = PieceSet(0..<PieceMath.pieceCount(contentLength: result.contentLength, pieceLength: result.pieceLength))
            Task { await scheduler.report(ProgressReport(host: scheduler.configuration.identity.id, task: result.id, pieces: all, state: .complete)) }
        }
        let body: JSONValue = .object([
            "id": .string(result.id.description),
            "contentLength": JSONValue(result.contentLength),
            "pieceLength": JSONValue(result.pieceLength),
            "pieceCount": JSONValue(PieceMath.pieceCount(contentLength: result.contentLength, pieceLength: result.pieceLength)),
            "alreadyStored": .bool(result.alreadyStored),
        ])
        return .text(result.alreadyStored ? 200 : 201, body.serialized + "\n", contentType: "application/json", route: "import")
    }

    /// A store error as the client's answer.
    func importFailure(_ error: any Error, what: String) -> Response {
        let status: Int
        switch error {
        case let e as ContentImport.Failure:
            if case .digestMismatch = e { status = 422 } else { status = 400 }
        case let e as PieceStore.ImportError:
            if case .changed = e { status = 409 } else { status = 400 }
        case StoreError.invalidPieceLength: status = 400
        case StoreError.noSpace: status = 507
        case StoreError.io(_, let errno) where errno == .noEntry: status = 404
        case StoreError.io(_, let errno) where errno == .accessDenied || errno == .permissionDenied: status = 403
        case StoreError.closed: status = 503
        default: status = 500
        }
        return .text(status, "\(what): \(error)\n", route: "import")
    }

    // MARK: POST /import {"path": …}

    /// `{"path": "/abs/file", "pieceLength": N}`: the daemon reads the file through its store's
    /// I/O backend (with the daemon's permissions).
    private func importPath(_ body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        let request: ImportPathRequest
        do { request = try ImportPathRequest(parsing: body) } catch {
            return respond(.text(400, "POST /import: \(error)\n", route: "import"))
        }
        Task { [self] in
            do {
                let result = try await store.importFile(request.path, pieceLength: request.pieceLength)
                respond(imported(result))
            } catch {
                respond(importFailure(error, what: "importing \(request.path)"))
            }
        }
    }

    private func refusal(_ status: Int, _ reason: String, route: String) -> Response {
        var r = Response.text(status, reason + "\n", route: route)
        if status == 401 { r.head.headers.add(name: "WWW-Authenticate", value: "Bearer realm=\"darter\"") }
        return r
    }

    // MARK: GET /tasks/{id}/stat

    /// Everything the store knows of a task (`darter stat`).
    func stat(_ info: TaskInfo) -> Response {
        let count = info.contentLength.map { PieceMath.pieceCount(contentLength: $0, pieceLength: info.pieceLength) }
        var o: [String: JSONValue] = [
            "id": .string(info.id.description),
            "contentLength": info.contentLength.map { JSONValue($0) } ?? .null,
            "pieceLength": JSONValue(info.pieceLength),
            "pieceCount": count.map { JSONValue($0) } ?? .null,
            "committedPieces": JSONValue(info.committedPieceCount),
            "complete": .bool(info.complete),
            "digest": (info.sha256 ?? (info.id.kind == .digest && info.complete ? info.id.hash : nil)).map { .string("sha256:" + $0.hex) } ?? .null,
            "expectedDigest": info.expectedDigest.map { .string("sha256:" + $0.hex) } ?? .null,
            "source": JSONValue(info.origin.sourceURL),
            "contentType": JSONValue(info.origin.contentType),
            "pinned": .bool(info.pinned),
            "bytesOnDisk": JSONValue(info.bytesOnDisk),
            "createdAt": JSONValue(info.createdAt),
            "lastAccess": JSONValue(info.lastAccess),
            "failure": JSONValue(info.failure),
        ]
        if info.committed.isEmpty { o["committedPieces"] = JSONValue(info.committedPieceCount) }
        return .text(200, JSONValue.object(o).serialized + "\n", contentType: "application/json", route: "stat")
    }
}

/// Who may write to a daemon (imports): clients on loopback always; others only with the
/// `--admin-token` as `Authorization: Bearer <token>`, and never the path form, which reads
/// the daemon's own files. The address is the connection's peer, never a header. Pure.
public struct WriteAccess: Sendable {
    /// The admin token (nil: writes from loopback only).
    public let token: String?

    public init(token: String? = nil) {
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
    }

    public enum Decision: Sendable, Equatable {
        case allowed
        case refused(status: Int, reason: String)
    }

    /// - Parameters:
    ///   - client: the connection's peer address (nil: unknown, treated as remote).
    ///   - localOnly: the request names a path on the daemon's host (`POST /import`).
    public func decide(client: SocketAddress?, authorization: String?, localOnly: Bool) -> Decision {
        if let client, client.isLoopback { return .allowed }
        let who = client.map { "client \($0.description)" } ?? "a client of unknown address"
        if localOnly {
            return .refused(status: 403, reason: "POST /import reads a file on the daemon's host and is accepted from loopback only (\(who) is not); send the bytes instead: PUT /tasks/sha256:<hex>")
        }
        guard let token else {
            return .refused(status: 403, reason: "imports are accepted from loopback only (\(who) is not); start the daemon with --admin-token to accept them with Authorization: Bearer <token>")
        }
        if authorization == nil { return .refused(status: 401, reason: "imports from other hosts need the admin token: Authorization: Bearer <token> (--admin-token)") }
        guard BearerToken.matches(authorization, token: token) else {
            return .refused(status: 401, reason: "wrong admin token (Authorization: Bearer <token>, --admin-token)")
        }
        return .allowed
    }
}

/// `POST /import`'s body. Pure.
public struct ImportPathRequest: Sendable, Equatable {
    public var path: String
    public var pieceLength: Int?

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(parsing body: [UInt8]) throws(ParseError) {
        guard let json = try? JSONValue.parse(body), json.object != nil else {
            throw ParseError(description: "the body must be JSON like {\"path\": \"/abs/file\"}")
        }
        guard let path = json["path"]?.string else { throw ParseError(description: "\"path\" (a string) is required") }
        guard path.hasPrefix("/") else { throw ParseError(description: "\"path\" must be absolute (the daemon's working directory is not yours), got '\(path.prefix(200))'") }
        guard !path.utf8.contains(0) else { throw ParseError(description: "\"path\" contains a NUL byte") }
        self.path = path
        if let value = json["pieceLength"], !value.isNull {
            guard let n = value.integer, PieceMath.isValidPieceLength(Int(n)) else {
                throw ParseError(description: "\"pieceLength\" must be a multiple of 4096 from 4096 to \(PieceMath.maximumPieceLength)")
            }
            pieceLength = Int(n)
        }
    }
}

/// Task ids with an import (`PUT`) under way: a second one of the same content is refused
/// (one writer per piece).
final class ImportsUnderWay: Sendable {
    private let ids = Mutex(Set<TaskID>())
    func begin(_ id: TaskID) -> Bool { ids.withLock { $0.insert(id).inserted } }
    func end(_ id: TaskID) { _ = ids.withLock { $0.remove(id) } }
}

/// A `PUT /tasks/sha256:…` body into the store. Parts that complete no piece are copied on
/// the event loop; a piece's hashing and write run in a task while the connection waits.
final class ImportBodySink: RequestBodySink, @unchecked Sendable {
    // The connection calls one method at a time; `abort` may come while a task runs, hence the lock.
    private let service: SeedService
    private let id: TaskID
    private let contentLength: Int64
    private let pieceLength: Int?
    private struct State {
        var content: ContentImport?
        /// A task is at work on the import (the connection waits for it).
        var busy = false
        var aborted = false
        var finished = false
    }
    private let state = Mutex(State())

    init(service: SeedService, id: TaskID, contentLength: Int64, pieceLength: Int?) {
        self.service = service
        self.id = id
        self.contentLength = contentLength
        self.pieceLength = pieceLength
    }

    /// Runs `work` in a task; an abort that came meanwhile is carried out after it.
    private func busy(_ work: @escaping @Sendable () async -> Void) {
        state.withLock { $0.busy = true }
        Task { [self] in
            await work()
            let (aborted, c) = state.withLock { s in s.busy = false; return (s.aborted, s.content) }
            if aborted { await c?.cancel(); end() }
        }
    }

    /// The import, made on the first part (creating the task awaits the store).
    private func content() async throws -> ContentImport {
        if let c = state.withLock({ $0.content }) { return c }
        let c = try await ContentImport(store: service.store, digest: id.hash, contentLength: contentLength, pieceLength: pieceLength,
                                        source: "import")
        state.withLock { $0.content = c }
        return c
    }

    func receive(_ bytes: [UInt8], next: @escaping @Sendable (Response?) -> Void) {
        if let c = state.withLock({ $0.content }), c.appendWithoutWriting(bytes) { return next(nil) }
        busy { [self] in
            do {
                try await content().append(bytes)
                next(nil)
            } catch {
                end()
                next(service.importFailure(error, what: "importing \(id)"))
            }
        }
    }

    func end(respond: @escaping @Sendable (Response) -> Void) {
        busy { [self] in
            do {
                let result = try await content().finish()
                end()
                respond(service.imported(result))
            } catch {
                end()
                respond(service.importFailure(error, what: "importing \(id)"))
            }
        }
    }

    func abort() {
        let (busy, c) = state.withLock { s in s.aborted = true; return (s.busy, s.content) }
        guard !busy else { return }  // the task at work carries it out
        Task { [self] in
            await c?.cancel()
            end()
        }
    }

    /// The id is free for another import (once).
    private func end() {
        let first = state.withLock { s -> Bool in defer { s.finished = true }; return !s.finished }
        if first { service.imports.end(id) }
    }
}

/// Collects a small body (a JSON request) and hands it over once complete.
final class SmallBodySink: RequestBodySink, @unchecked Sendable {
    private let limit: Int
    private let route: String
    private let handle: @Sendable ([UInt8], @escaping @Sendable (Response) -> Void) -> Void
    // The connection calls one method at a time, on its loop.
    private var body: [UInt8] = []

    init(limit: Int, route: String, handle: @escaping @Sendable ([UInt8], @escaping @Sendable (Response) -> Void) -> Void) {
        self.limit = limit
        self.route = route
        self.handle = handle
    }

    func receive(_ bytes: [UInt8], next: @escaping @Sendable (Response?) -> Void) {
        body += bytes
        next(body.count > limit ? .text(413, "the request body is over \(limit) bytes\n", route: route) : nil)
    }

    func end(respond: @escaping @Sendable (Response) -> Void) { handle(body, respond) }

    func abort() {}
}

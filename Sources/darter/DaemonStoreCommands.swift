#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterGet
import DarterIO
import HTTPClient
import HTTPCore
import Origin

/// `darter import --daemon`, `darter export` and `darter stat`: the store of a running daemon
/// through its HTTP API (docs/API.md), as the offline commands cannot open a data directory a
/// daemon holds.
enum DaemonStore {
    static let defaultDaemon = "http://127.0.0.1:65001"

    static func daemonURL(_ args: Arguments, _ text: String) throws(UsageError) -> HTTPClientURL {
        do { return try HTTPClientURL(parsing: text) } catch {
            throw UsageError("\(args.command): --daemon must be http://HOST:PORT, got '\(text)' (\(error))")
        }
    }

    static func tokenHeaders(_ token: String) -> HTTPHeaders {
        var h = HTTPHeaders()
        if !token.isEmpty { h.add(name: "Authorization", value: "Bearer \(token)") }
        return h
    }

    /// A daemon's answer as one line (its reason text).
    static func reason(_ r: HTTPClientResponse) -> String {
        String(String(decoding: r.body.prefix(500), as: UTF8.self).filter { $0 != "\n" && $0 != "\r" })
    }

    /// Whether the daemon at `url` is on this host (it can then read the file itself).
    static func isLocal(_ url: HTTPClientURL) -> Bool {
        if url.host == "localhost" { return true }
        return SocketAddress(ipLiteral: url.host, port: url.port)?.isLoopback ?? false
    }

    /// The task's `/stat`; nil when the daemon does not hold it (404).
    static func stat(_ client: HTTPClient, _ daemon: HTTPClientURL, _ id: TaskID) async throws -> JSONValue? {
        let r: HTTPClientResponse
        do { r = try await client.send(HTTPClientRequest(url: HTTPClientURL(host: daemon.host, port: daemon.port, target: "/tasks/\(id)/stat"))) } catch {
            throw DaemonError("the daemon at \(daemon) did not answer: \(error)")
        }
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw DaemonError("the daemon answered \(r.status): \(reason(r))") }
        do { return try JSONValue.parse(r.body) } catch { throw DaemonError("the daemon's /stat is not JSON") }
    }
}

struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: darter import --daemon

extension ImportCommand {
    /// Each file into the daemon's store: by path when the daemon is on this host (it reads the
    /// file itself), else (or when it cannot read it) by sending the bytes.
    static func runThroughDaemon(_ args: Arguments, pieceLength: Int?) async throws {
        let daemon = try DaemonStore.daemonURL(args, args.string("daemon"))
        let send = args.string("send")
        guard ["auto", "path", "body"].contains(send) else { throw UsageError("import: --send must be auto, path or body, got '\(send)'") }
        signal(SIGPIPE, SIG_IGN)
        let group = try EventLoopGroup(count: 1)
        var c = HTTPClientConfiguration()
        c.maxConnectionsPerHost = 1
        c.pipelineDepth = 1
        let client = HTTPClient(group: group, configuration: c)
        let io = (try? makeIOBackend(.auto, fixedBuffers: 2, fixedBufferSize: FileUploadSource.chunk)) ?? ThreadPoolBackend()
        let headers = DaemonStore.tokenHeaders(args.string("token"))
        var failed = false
        for path in args.positional {
            do {
                let absolute = path.hasPrefix("/") ? path : SystemCalls.currentDirectory() + "/" + path
                var id: String?
                if send == "path" || (send == "auto" && DaemonStore.isLocal(daemon)) {
                    switch try await importByPath(client, daemon, absolute, pieceLength: pieceLength, headers: headers) {
                    case .success(let imported): id = imported
                    case .failure(let refusal):
                        guard send == "auto" && [403, 404].contains(refusal.status) else { throw refusal }
                        log("darter import: \(path): the daemon cannot read it (\(refusal.status)); sending its bytes instead")
                    }
                }
                if id == nil { id = try await importByBody(client, daemon, absolute, io: io, pieceLength: pieceLength, headers: headers) }
                print("\(id!) \(path)")
                fflush(nil)
            } catch {
                writeError("darter import: \(path): \(error)\n")
                failed = true
            }
        }
        if failed { exit(1) }
    }

    struct Refusal: Error, CustomStringConvertible {
        let status: Int
        let reason: String
        var description: String { "the daemon answered \(status): \(reason)" }
    }

    /// `POST /import {"path": …}`: the id, or the daemon's refusal.
    static func importByPath(_ client: HTTPClient, _ daemon: HTTPClientURL, _ path: String, pieceLength: Int?,
                             headers: HTTPHeaders) async throws -> Result<String, Refusal> {
        var body: [String: JSONValue] = ["path": .string(path)]
        if let pieceLength { body["pieceLength"] = JSONValue(pieceLength) }
        var h = headers
        h.add(name: "Content-Type", value: "application/json")
        let request = HTTPClientRequest(method: .post, url: HTTPClientURL(host: daemon.host, port: daemon.port, target: "/import"),
                                        headers: h, body: JSONValue.object(body).serializedBytes)
        let r: HTTPClientResponse
        do { r = try await client.send(request) } catch { throw DaemonError("the daemon at \(daemon) did not answer: \(error)") }
        guard r.status == 200 || r.status == 201 else { return .failure(Refusal(status: r.status, reason: DaemonStore.reason(r))) }
        guard let id = (try? JSONValue.parse(r.body))?["id"]?.string else { throw DaemonError("the daemon's answer names no id") }
        return .success(id)
    }

    /// `PUT /tasks/sha256:…` with the file's bytes: hashed here first (the id names the task),
    /// then streamed; content the daemon holds already is not sent.
    static func importByBody(_ client: HTTPClient, _ daemon: HTTPClientURL, _ path: String, io: any IOBackend, pieceLength: Int?,
                             headers: HTTPHeaders) async throws -> String {
        let source = try await FileUploadSource(path: path, io: io)
        let id = TaskID(kind: .digest, hash: try await source.digest())
        if let stat = try await DaemonStore.stat(client, daemon, id), stat["complete"]?.bool == true { return id.description }
        let query = pieceLength.map { "?piece-length=\($0)" } ?? ""
        var request = HTTPClientRequest(method: .put, url: HTTPClientURL(host: daemon.host, port: daemon.port, target: "/tasks/\(id)\(query)"),
                                        headers: headers)
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.bodySource = source
        let r: HTTPClientResponse
        do { r = try await client.send(request) } catch { throw DaemonError("sending to the daemon at \(daemon) failed: \(error)") }
        guard r.status == 200 || r.status == 201 else { throw Refusal(status: r.status, reason: DaemonStore.reason(r)) }
        return (try? JSONValue.parse(r.body))?["id"]?.string ?? id.description
    }
}

/// A file sent as a request body, read through an I/O backend a chunk at a time.
final class FileUploadSource: HTTPRequestBodySource, @unchecked Sendable {
    static let chunk = 1 << 20
    let length: Int64
    let path: String
    private let io: any IOBackend
    private let fd: FileDescriptor
    private let buffer: SharedIOBuffer
    // The client asks for one part at a time: these are never touched concurrently.
    private var held: [UInt8] = []
    private var heldOffset = 0
    private var fileOffset: Int64 = 0

    init(path: String, io: any IOBackend) async throws {
        self.path = path
        self.io = io
        fd = try await io.open(path, [.readOnly, .nonBlocking])
        guard try SystemCalls.isRegularFile(fd) else {
            try? SystemCalls.close(fd)
            throw DaemonError("not a regular file")
        }
        length = try SystemCalls.fileSize(fd)
        buffer = SharedIOBuffer(io.makeBuffer(capacity: Self.chunk))
    }

    deinit { try? SystemCalls.close(fd) }

    /// SHA-256 of the whole file (a pass before the upload).
    func digest() async throws -> SHA256Digest {
        var hasher = SHA256Hasher()
        var offset: Int64 = 0
        while offset < length {
            let n = try await io.readFully(fd, into: buffer.buffer, range: 0..<Int(min(Int64(Self.chunk), length - offset)), at: offset)
            guard n > 0 else { throw DaemonError("the file shrank while it was read") }
            hasher.update(buffer.buffer, range: 0..<n)
            offset += Int64(n)
        }
        return SHA256Digest(bytes: hasher.finalize())!
    }

    func next(maxLength: Int, _ deliver: @escaping @Sendable (Result<[UInt8], HTTPClientError>) -> Void) {
        if heldOffset < held.count {
            let n = min(maxLength, held.count - heldOffset)
            let part = Array(held[heldOffset..<(heldOffset + n)])
            heldOffset += n  // before delivering: the next call may come at once, on another thread
            return deliver(.success(part))
        }
        Task { [self] in
            do {
                let want = Int(min(Int64(Self.chunk), length - fileOffset))
                let n = try await io.readFully(fd, into: buffer.buffer, range: 0..<want, at: fileOffset)
                guard n > 0 else { return deliver(.failure(.aborted("\(path) shrank while it was sent"))) }
                fileOffset += Int64(n)
                held = buffer.buffer.bytes(0..<n)
                heldOffset = 0
                next(maxLength: maxLength, deliver)
            } catch {
                deliver(.failure(.aborted("reading \(path): \(error)")))
            }
        }
    }
}

// MARK: darter export, darter stat

enum ExportCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "export", flags: [
            .init(name: "output", defaultValue: "", help: "where to write: a FILE (atomically: FILE.darter-part until verified), or - for standard output", short: "O"),
            .init(name: "daemon", defaultValue: DaemonStore.defaultDaemon, help: "the daemon whose store holds the task"),
            .init(name: "quiet", defaultValue: "", help: "errors only", short: "q", kind: .toggle),
        ], arguments: argv)
        if args.wantsHelp {
            print("usage: darter export ID -O FILE [flags]\n\nWrites a task's content from a running daemon's store (its SHA-256 checked).\n"
                  + args.usage.split(separator: "\n", maxSplits: 1).dropFirst().joined() + "\n" + GetCommand.exitCodes)
            return
        }
        guard args.positional.count == 1 else { throw UsageError("export: name one task ID (sha256:HEX, or a task's 64-hex id), got \(args.positional.count)") }
        guard let id = TaskID(args.positional[0]) else {
            throw UsageError("export: '\(args.positional[0].prefix(80))' is not a task id: sha256:<64 hex> or <64 hex>")
        }
        let output = args.string("output")
        guard !output.isEmpty else { throw UsageError("export: -O/--output FILE (or - for standard output) is required") }
        let daemon = try DaemonStore.daemonURL(args, args.string("daemon"))
        signal(SIGPIPE, SIG_IGN)
        let group = try EventLoopGroup(count: 1)
        // A URL task is fetched by its content's digest (the daemon finds the task by it), so the
        // bytes written are checked against it.
        var digestID = id
        if id.kind == .url {
            let client = HTTPClient(group: group)
            let stat: JSONValue?
            do { stat = try await DaemonStore.stat(client, daemon, id) } catch {
                writeError("darter export: \(error)\n")
                exit(GetExit.network.rawValue)
            }
            guard let stat else { writeError("darter export: the daemon does not hold \(id) (404)\n"); exit(GetExit.httpError.rawValue) }
            guard stat["complete"]?.bool == true, let text = stat["digest"]?.string, let d = TaskID(text) else {
                writeError("darter export: \(id) is not complete at the daemon yet (its digest is not known)\n")
                exit(GetExit.httpError.rawValue)
            }
            digestID = d
        }
        var options = GetOptions(source: digestID.description, output: output)
        options.daemon = args.string("daemon")
        options.fallback = false
        options.quiet = args.isSet("quiet")
        let curl = OriginClient(configuration: OriginConfiguration())
        let progress = Progress(enabled: !options.quiet && SystemCalls.isTerminal(FileDescriptor(rawValue: 2)))
        let download = Download(options: options, group: group, origins: OriginBackends(curl: curl, http: nil), progress: progress) { writeError($0 + "\n") }
        progress.start()
        do {
            let summary = try await download.run()
            progress.stop(success: true)
            if !options.quiet && output != "-" { writeError("darter export: \(id): \(summary.bytes) bytes to \(output)\n") }
        } catch {
            progress.stop(success: false)
            writeError("darter export: \(error.message)\n")
            exit(error.exit.rawValue)
        }
    }
}

enum StatCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "stat", flags: [
            .init(name: "daemon", defaultValue: DaemonStore.defaultDaemon, help: "the daemon whose store holds the task"),
            .init(name: "json", defaultValue: "", help: "print the daemon's JSON as it is", kind: .toggle),
        ], arguments: argv)
        if args.wantsHelp { print("usage: darter stat ID [flags]\n\nWhat a running daemon's store holds of a task.\n" + args.usage.split(separator: "\n", maxSplits: 1).dropFirst().joined()); return }
        guard args.positional.count == 1 else { throw UsageError("stat: name one task ID (sha256:HEX, or a task's 64-hex id), got \(args.positional.count)") }
        guard let id = TaskID(args.positional[0]) else {
            throw UsageError("stat: '\(args.positional[0].prefix(80))' is not a task id: sha256:<64 hex> or <64 hex>")
        }
        let daemon = try DaemonStore.daemonURL(args, args.string("daemon"))
        signal(SIGPIPE, SIG_IGN)
        let client = HTTPClient(group: try EventLoopGroup(count: 1))
        let stat: JSONValue?
        do { stat = try await DaemonStore.stat(client, daemon, id) } catch {
            writeError("darter stat: \(error)\n")
            exit(3)
        }
        guard let stat else { writeError("darter stat: the daemon does not hold \(id)\n"); exit(4) }
        if args.isSet("json") { print(stat.serialized); return }
        func text(_ key: String) -> String {
            guard let v = stat[key], !v.isNull else { return "-" }
            if let s = v.string { return s }
            if let b = v.bool { return String(b) }
            return v.integer.map(String.init) ?? v.serialized
        }
        print("""
        id         \(text("id"))
        size       \(text("contentLength"))
        pieces     \(text("committedPieces"))/\(text("pieceCount")) of \(text("pieceLength")) bytes
        complete   \(text("complete"))
        digest     \(text("digest"))
        source     \(text("source"))
        pinned     \(text("pinned"))
        """ + (stat["failure"]?.string.map { "\nfailure    " + $0 } ?? ""))
    }
}

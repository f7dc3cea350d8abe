import DarterCore
import DarterIO
import HTTPClient
import HTTPCore
import Origin
import PieceProtocol
import Synchronization

/// `darter get`: through the local daemon over the piece protocol (several pieces in flight,
/// each received straight into an aligned buffer and checked against its CRC32C), or, when no
/// daemon answers, straight from the origin. Links no store and no service: the origin backends
/// (the event loops' HTTP client, libcurl for https and s3) only for that fallback.
public final class Download: Sendable {
    public let options: GetOptions
    let group: EventLoopGroup
    let client: HTTPClient
    let origins: OriginBackends
    let log: @Sendable (String) -> Void
    let progress: Progress

    /// - Parameter log: notices for people (standard error); not called with `quiet`.
    public init(options: GetOptions, group: EventLoopGroup, origins: OriginBackends, progress: Progress, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.group = group
        var c = HTTPClientConfiguration()
        c.maxConnectionsPerHost = max(1, min(4, options.piecesInFlight))
        c.pipelineDepth = max(1, (options.piecesInFlight + 3) / 4)
        c.connectTimeout = .seconds(5)
        client = HTTPClient(group: group, configuration: c)
        self.origins = origins
        self.progress = progress
        if options.quiet { self.log = { _ in } } else { self.log = log }
    }

    /// What was downloaded: bytes, and where they came from.
    public struct Summary: Sendable {
        public var bytes: Int64
        public var source: String
    }

    /// The download, within `--timeout` when one is given (then a network failure, exit 3).
    public func run() async throws(GetError) -> Summary {
        guard let timeout = options.timeout else { return try await download() }
        let outcome: Result<Summary, GetError>? = await withTaskGroup(of: Result<Summary, GetError>?.self) { group in
            group.addTask { [self] in
                do throws(GetError) { return .success(try await download()) } catch { return .failure(error) }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch outcome {
        case .success(let summary)?: return summary
        case .failure(let e)?: throw e
        case nil: throw GetError(.network, "timed out after \(timeout) (--timeout)")
        }
    }

    private func download() async throws(GetError) -> Summary {
        if options.toStandardOutput && options.resume { throw GetError(.usage, "-c/--continue needs -O FILE, not -O -") }
        let daemon: HTTPClientURL
        do { daemon = try HTTPClientURL(parsing: options.daemon) } catch {
            throw GetError(.usage, "--daemon \(options.daemon): \(error)")
        }
        if options.source.hasPrefix("sha256:") && options.digestSource == nil {
            throw GetError(.usage, "\(options.source.prefix(80)) is not sha256:<64 lowercase hex>")
        }
        if options.digestSource == nil {
            do { _ = try TaskID.forURL(options.source) } catch { throw GetError(.usage, "\(options.source.prefix(200)): \(error)") }
        }
        switch await openAtDaemon(daemon) {
        case .success(let (meta, hit)):
            progress.source = "daemon \(daemon.hostHeader)" + (hit ? " (cached)" : " (fetching)")
            return try await fromDaemon(daemon, meta)
        case .failure(let why):
            if case .answered(let e) = why { throw e }
            guard options.fallback else {
                throw GetError(.network, "the daemon at \(options.daemon) did not answer (\(why)); --no-fallback forbids going to the origin")
            }
            guard options.digestSource == nil else {
                throw GetError(.network, "the daemon at \(options.daemon) did not answer (\(why)), and a digest names no origin to fall back to")
            }
            log("darter get: no daemon at \(options.daemon) (\(why)); downloading straight from the origin")
            progress.source = "origin (no daemon)"
            return try await fromOrigin()
        }
    }

    // MARK: Through the daemon

    enum DaemonUnavailable: Error, CustomStringConvertible {
        /// Not reachable, or it failed (5xx): the origin may still serve.
        case unreachable(String)
        /// It answered an error that going to the origin would not change (4xx).
        case answered(GetError)
        var description: String {
            switch self {
            case .unreachable(let s): s
            case .answered(let e): e.message
            }
        }
    }

    /// Opens the task at the daemon: POST /tasks for a URL, the metadata for a digest.
    private func openAtDaemon(_ daemon: HTTPClientURL) async -> Result<(TaskMetadata, hit: Bool), DaemonUnavailable> {
        var request: HTTPClientRequest
        if let id = options.digestSource {
            request = HTTPClientRequest(url: HTTPClientURL(host: daemon.host, port: daemon.port, target: PieceProtocol.metaPath(id)))
        } else {
            let open = OpenTaskRequest(url: options.source, headers: options.headers.map { .init(name: $0.0, value: $0.1) }, digest: options.digest)
            request = HTTPClientRequest(method: .post, url: HTTPClientURL(host: daemon.host, port: daemon.port, target: PieceProtocol.openPath),
                                        body: open.json.serializedBytes)
        }
        request.deadline = options.timeout
        let response: HTTPClientResponse
        do { response = try await client.send(request) } catch {
            return .failure(.unreachable("\(error)"))
        }
        let text = String(String(decoding: response.body.prefix(300), as: UTF8.self).filter { $0 != "\n" && $0 != "\r" })
        switch response.status {
        case 200:
            do { return .success((try TaskMetadata(parsing: response.body), response.head.headers["X-Darter-Cache"] == "HIT")) } catch {
                return .failure(.unreachable("its metadata: \(error)"))
            }
        case 404 where options.digestSource != nil:
            return .failure(.answered(GetError(.httpError, "the daemon does not hold \(options.source) (404)")))
        case 400..<500:
            return .failure(.answered(GetError(.httpError, "the daemon answered \(response.status): \(text)")))
        default:
            return .failure(.unreachable("it answered \(response.status): \(text)"))
        }
    }

    private func fromDaemon(_ daemon: HTTPClientURL, _ meta: TaskMetadata) async throws(GetError) -> Summary {
        guard let length = meta.contentLength, let count = meta.pieceCount else {
            throw GetError(.network, "the daemon sent metadata without a length")
        }
        if let expected = options.expectedDigest, let known = meta.digest, known != expected {
            throw GetError(.verification, "the daemon says the content is sha256:\(known.hex), not sha256:\(expected.hex)")
        }
        progress.total = length
        let io = makeBackend(pieceLength: meta.pieceLength)
        let output = Output(path: options.output, io: io, pieceLength: meta.pieceLength, hashing: options.expectedDigest != nil)
        progress.written = output
        let kept = options.resume ? try await keptPieces(daemon, meta, io: io) : 0
        try await output.open(keepingPieces: kept)
        do {
            try await output.hashKept(kept, contentLength: length)
            if kept > 0 { log("darter get: kept \(kept) of \(count) pieces from \(output.partialPath)") }
            let next = Counter(kept)
            let daemonLost = Counter(0)  // > 0 once the daemon stopped answering: the rest from the origin
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<max(1, min(options.piecesInFlight, count - kept)) {
                    group.addTask { [self] in
                        let buffer = SharedIOBuffer(io.makeBuffer(capacity: meta.pieceLength))
                        while true {
                            let index = next.take()
                            guard index < count else { return }
                            let pieceLength = PieceMath.length(ofPiece: index, contentLength: length, pieceLength: meta.pieceLength)
                            let offset = PieceMath.offset(ofPiece: index, pieceLength: meta.pieceLength)
                            do throws(GetError) {
                                if daemonLost.value > 0 {
                                    try await fetchFromOrigin(index, offset: offset, into: buffer, length: pieceLength)
                                } else {
                                    do throws(GetError) {
                                        try await fetchPiece(daemon, meta.id, index, into: buffer, length: pieceLength)
                                    } catch {
                                        guard error.exit == .network, options.fallback, options.digestSource == nil, !Task.isCancelled else { throw error }
                                        // The daemon went away mid-download: this piece and the rest from the origin.
                                        if daemonLost.take() == 0 {
                                            log("darter get: the daemon stopped answering (\(error.message)); the remaining pieces come from the origin")
                                            progress.source = "origin (daemon lost)"
                                        }
                                        try await fetchFromOrigin(index, offset: offset, into: buffer, length: pieceLength)
                                    }
                                }
                                try await output.accept(index, buffer, length: pieceLength)
                            } catch {
                                // Workers waiting their turn behind this piece must hear it will not come.
                                output.fail(error)
                                throw error
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await output.finish(length: length, digest: options.expectedDigest)
        } catch let e as GetError {
            await output.abandon(keep: e.exit != .verification)
            throw e
        } catch {
            await output.abandon(keep: true)
            throw GetError(.failure, "\(error)")
        }
        return Summary(bytes: length, source: progress.source)
    }

    /// One piece from the daemon into `buffer`, its CRC32C checked. A piece not there yet is
    /// waited for (the daemon may still be fetching it); a failure is retried with backoff; a
    /// CRC mismatch is fetched again, three times at most.
    private func fetchPiece(_ daemon: HTTPClientURL, _ id: TaskID, _ index: Int, into buffer: SharedIOBuffer, length: Int) async throws(GetError) {
        var failures = 0, mismatches = 0, unavailable = 0
        while true {
            if Task.isCancelled { throw GetError(.network, "cancelled") }
            let url = HTTPClientURL(host: daemon.host, port: daemon.port,
                                    target: PieceProtocol.piecePath(id, index, waitMilliseconds: PieceProtocol.maxWaitMilliseconds))
            let r: HTTPClientResponse
            do {
                r = try await client.send(HTTPClientRequest(url: url, deadline: .seconds(PieceProtocol.maxWaitMilliseconds / 1000 + 30)), into: buffer, range: 0..<length)
            } catch {
                failures += 1
                if failures > 4 { throw GetError(.network, "piece \(index) from the daemon: \(error)") }
                try? await Task.sleep(for: .milliseconds(100 << failures))
                continue
            }
            switch r.status {
            case 200:
                guard r.bodyLength == length else { throw GetError(.network, "piece \(index) has \(r.bodyLength) bytes, not \(length)") }
                let crc = r.head.headers[PieceProtocol.crcHeader].flatMap { PieceProtocol.parseCRC($0) }
                if let crc, buffer.buffer.crc32c(0..<length) == crc {
                    progress.received.add(Int64(length), ordering: .relaxed)
                    return
                }
                mismatches += 1
                log("darter get: piece \(index) failed its CRC32C (\(crc == nil ? "no CRC sent" : "mismatch")); asking again")
                if mismatches >= 3 { throw GetError(.verification, "piece \(index) failed its CRC32C \(mismatches) times") }
            case 503:
                // Not there within the wait: the daemon is still fetching. Ask again, after a
                // pause that grows if it answers at once (Retry-After), for ten waits at most.
                unavailable += 1
                if unavailable > 10 { throw GetError(.network, "piece \(index) did not arrive at the daemon in \(unavailable) waits") }
                let retry = r.head.headers["Retry-After"].flatMap { Int($0) } ?? 1
                try? await Task.sleep(for: .milliseconds(min(5000, 100 * retry << min(unavailable, 5))))
            case 404:
                throw GetError(.network, "the daemon no longer holds piece \(index) (404)")
            default:
                let text = String(decoding: r.body.prefix(200), as: UTF8.self)
                if r.status >= 500 {
                    failures += 1
                    if failures > 4 { throw GetError(.network, "piece \(index): the daemon answered \(r.status): \(text)") }
                    try? await Task.sleep(for: .milliseconds(100 << failures))
                    continue
                }
                throw GetError(.httpError, "piece \(index): the daemon answered \(r.status): \(text)")
            }
        }
    }

    /// How many leading pieces of the partial file from an earlier run hold what the daemon has
    /// (each read back and compared with the CRC32C the daemon gives for it).
    private func keptPieces(_ daemon: HTTPClientURL, _ meta: TaskMetadata, io: any IOBackend) async throws(GetError) -> Int {
        let partial = Output.partialPath(options.output)
        guard let size = SystemCalls.fileSize(atPath: partial), let count = meta.pieceCount, let length = meta.contentLength else { return 0 }
        let candidates = min(count, Int(size / Int64(meta.pieceLength)) + (size == length ? 1 : 0))
        guard candidates > 0 else { return 0 }
        let fd: FileDescriptor
        do { fd = try await io.open(partial, .readOnly) } catch { return 0 }
        defer { Task { try? await io.close(fd) } }
        let buffer = io.makeBuffer(capacity: meta.pieceLength)
        for i in 0..<candidates {
            let pieceLength = PieceMath.length(ofPiece: i, contentLength: length, pieceLength: meta.pieceLength)
            // No wait: a piece the daemon does not hold yet ends what can be checked.
            let url = HTTPClientURL(host: daemon.host, port: daemon.port, target: PieceProtocol.piecePath(meta.id, i))
            guard let head = try? await client.send(HTTPClientRequest(method: .head, url: url, deadline: .seconds(30))), head.status == 200,
                  let crc = head.head.headers[PieceProtocol.crcHeader].flatMap({ PieceProtocol.parseCRC($0) }),
                  let n = try? await io.readFully(fd, into: buffer, range: 0..<pieceLength, at: PieceMath.offset(ofPiece: i, pieceLength: meta.pieceLength)),
                  n == pieceLength, buffer.crc32c(0..<pieceLength) == crc else { return i }
        }
        return candidates
    }

    private func makeBackend(pieceLength: Int) -> any IOBackend {
        // Registered buffers for every piece in flight (direct writes from them skip page pinning).
        (try? makeIOBackend(.auto, fixedBuffers: options.piecesInFlight + 2, fixedBufferSize: pieceLength)) ?? ThreadPoolBackend()
    }

    // MARK: Straight from the origin

    /// The whole object over one connection, cut into pieces as it streams; with `-c`, from the
    /// last whole piece of the partial file on (with Range).
    private func fromOrigin() async throws(GetError) -> Summary {
        // Cut for this host's own output, not for a swarm: 4 MiB writes (the default before
        // swarm pieces went to 1 MiB; tools/bench client measured with it).
        let pieceLength = 4 << 20
        let io = makeBackend(pieceLength: pieceLength)
        var keep = 0
        if options.resume, let size = SystemCalls.fileSize(atPath: Output.partialPath(options.output)) {
            // The last piece written may be torn (an interrupted write): it is fetched again.
            keep = max(0, Int(size / Int64(pieceLength)) - 1)
        }
        let output = Output(path: options.output, io: io, pieceLength: pieceLength, hashing: options.expectedDigest != nil)
        progress.written = output
        try await output.open(keepingPieces: keep)
        let sink = OriginPieceSink(pieceLength: pieceLength, io: io, start: Int64(keep) * Int64(pieceLength), output: output, progress: progress)
        do {
            try await output.hashKept(keep, contentLength: Int64(keep) * Int64(pieceLength))
            if keep > 0 { log("darter get: kept \(keep) pieces from \(output.partialPath)") }
            var attempt = 0
            while true {
                let request = OriginRequest(url: options.source, headers: options.headers, range: sink.position > 0 ? sink.position..<Int64.max : nil)
                let head: OriginResponseHead
                do {
                    head = try await origins.fetch(request, into: sink)
                } catch {
                    if sink.failure != nil { break }
                    attempt += 1
                    if attempt > 3 || sink.refused { throw GetError(.network, "\(options.source): \(error)") }
                    log("darter get: \(error); retrying from byte \(sink.position)")
                    sink.restartAtLastPiece()
                    try? await Task.sleep(for: .milliseconds(200 << attempt))
                    continue
                }
                if head.status >= 400 { throw GetError(.httpError, "the origin answered \(head.status) for \(options.source)") }
                break
            }
            if let f = sink.failure { throw f }
            try await sink.finishStream()
            try await output.finish(length: sink.position, digest: options.expectedDigest)
        } catch let e as GetError {
            await output.abandon(keep: e.exit != .verification)
            throw e
        } catch {
            await output.abandon(keep: true)
            throw GetError(.failure, "\(error)")
        }
        return Summary(bytes: sink.position, source: progress.source)
    }

    /// One piece from the origin with a ranged GET (the daemon stopped answering midway).
    private func fetchFromOrigin(_ index: Int, offset: Int64, into buffer: SharedIOBuffer, length: Int) async throws(GetError) {
        switch await origins.fetchPiece(url: options.source, headers: options.headers, offset: offset, length: length, into: buffer) {
        case .success: break
        case .failure(.status(let s)): throw GetError(.httpError, "the origin answered \(s) for piece \(index)")
        case .failure(let e): throw GetError(.network, "piece \(index) from the origin: \(e)")
        }
        progress.received.add(Int64(length), ordering: .relaxed)
    }
}

/// A shared counter: each ``take()`` returns the next value.
final class Counter: Sendable {
    private let count: Atomic<Int>
    init(_ start: Int) { count = Atomic(start) }
    func take() -> Int { count.wrappingAdd(1, ordering: .relaxed).oldValue }
    var value: Int { count.load(ordering: .relaxed) }
}

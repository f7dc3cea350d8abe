import DarterIO
import HTTPCore
import HTTPServer
import Origin
import PieceStore
import SchedulerClient
import PieceProtocol
import PieceTransfer
import DarterCore
import SwarmDownload

/// The seed peer's HTTP routes over the piece store:
/// `GET|HEAD /tasks/{id}`, `/tasks/{id}/pieces/{n}`, `/tasks/{id}/meta`, `/tasks/{id}/stat`, `/healthz`, `/readyz`, `/metrics`;
/// imports (`PUT /tasks/sha256:{hex}`, `POST /import`) in SeedService+Import.swift.
/// See docs/API.md.
public final class SeedService: HTTPHandler {
    let store: PieceStore
    let metrics: ServerMetrics
    let ingestor: Ingestor?
    let preheats = PreheatRegistry()
    let tagManifests = TagManifestCache()
    /// For `/metrics` (the server, the swarm and the origin backends enforce them).
    let rateLimits: RateLimits
    /// For `/readyz`: ready only once a scheduler has this host registered.
    let scheduler: SchedulerClient?
    /// Who may import content (SeedService+Import.swift).
    let writeAccess: WriteAccess
    let imports = ImportsUnderWay()

    /// - Parameters:
    ///   - origin: origin access for the shield front doors; nil serves the store only.
    ///   - origins: the backends by scheme (plain http on the event loops, the rest on libcurl).
    ///   - swarm: on a peer, where tasks come from first (the scheduler and parents).
    ///   - scheduler: on a seed in a swarm, the schedulers it tells of what it fetched.
    ///   - rateLimits: the daemon's limits, shown in `/metrics`.
    ///   - writeAccess: who may import content (loopback; others with its token).
    public init(store: PieceStore, metrics: ServerMetrics, origins: OriginBackends? = nil, registry: RegistryClient? = nil,
                shield: ShieldConfiguration = ShieldConfiguration(), swarm: SwarmSource? = nil, scheduler: SchedulerClient? = nil,
                rateLimits: RateLimits = RateLimits(), writeAccess: WriteAccess = WriteAccess()) {
        self.store = store
        self.writeAccess = writeAccess
        self.metrics = metrics
        self.rateLimits = rateLimits
        self.scheduler = scheduler
        ingestor = origins.map { Ingestor(store: store, origins: $0, registry: registry ?? RegistryClient(origin: $0.curl), configuration: shield,
                                          swarm: swarm, scheduler: scheduler) }
    }

    public func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        if request.method == .connect {
            return respond(methodNotAllowed("CONNECT (HTTPS tunnelling) is not supported; ask for http:// URLs through the proxy or use /download?url=", allow: "GET, HEAD", route: "proxy"))
        }
        // Forward proxy: `GET http://host/path` (curl -x, wget, pip).
        if request.targetForm == .absolute {
            guard request.method == .get || request.method == .head else {
                return respond(methodNotAllowed("the proxy caches GET and HEAD only", allow: "GET, HEAD", route: "proxy"))
            }
            return shield(request, url: request.target, digest: nil, respond: respond)
        }
        let path = request.target.utf8.prefix { $0 != UInt8(ascii: "?") }
        if path.elementsEqual("/download".utf8) {
            guard request.method == .get || request.method == .head else {
                return respond(methodNotAllowed("use GET or HEAD", allow: "GET, HEAD", route: "download"))
            }
            guard let query = try? HTTPQueryParameters(parsing: request.query ?? ""), let url = query["url"], !url.isEmpty else {
                return respond(.text(400, "/download needs ?url=<percent-encoded URL>\n", route: "download"))
            }
            return shield(request, url: url, digest: query["digest"], respond: respond)
        }
        if path.elementsEqual("/preheat".utf8) {
            guard request.method == .post else { return respond(methodNotAllowed("POST a JSON job to /preheat", allow: "POST", route: "preheat")) }
            return preheat(body, respond: respond)
        }
        if path.starts(with: "/preheat/".utf8) {
            return respond(preheatStatus(String(decoding: path.dropFirst(9), as: UTF8.self)))
        }
        if path.starts(with: "/v2".utf8) && (request.method == .get || request.method == .head) {
            return registryMirror(request, path: Array(path), query: request.query, respond: respond)
        }
        if path.elementsEqual(PieceProtocol.openPath.utf8) {
            guard request.method == .post else { return respond(methodNotAllowed("POST an open-task request (JSON) to /tasks", allow: "POST", route: "open")) }
            return openTask(body, respond: respond)
        }
        route(request, respond: respond)
    }

    /// 405 with its one-line reason and the `Allow` header RFC 9110 §15.5.6 requires.
    func methodNotAllowed(_ reason: String, allow: String, route: String) -> Response {
        var r = Response.text(405, reason + "\n", route: route)
        r.head.headers.add(name: "Allow", value: allow)
        return r
    }

    /// The store's routes: `/healthz`, `/metrics`, `/tasks/{id}` and the piece protocol's
    /// `/tasks/{id}/meta`, `/tasks/{id}/pieces` and `/tasks/{id}/pieces/{n}`.
    func route(_ request: HTTPRequestHead, respond: @escaping @Sendable (Response) -> Void) {
        guard request.method == .get || request.method == .head else {
            if request.target.hasPrefix("/tasks/sha256:") {  // PUT there is an import (SeedService+Import.swift)
                return respond(methodNotAllowed("method \(request.method) is not allowed here; use GET or HEAD, or PUT to import", allow: "GET, HEAD, PUT", route: "invalid"))
            }
            return respond(methodNotAllowed("method \(request.method) is not allowed here; use GET or HEAD", allow: "GET, HEAD", route: "invalid"))
        }
        // Routing works on bytes: this runs for every request.
        var path = request.targetForm == .origin ? Array(request.target.utf8.prefix { $0 != UInt8(ascii: "?") }) : Array(request.path.utf8)
        if path.contains(UInt8(ascii: "%")) {
            guard let decoded = try? PercentDecoding.decodeBytes(String(decoding: path, as: UTF8.self)) else {
                return respond(.text(400, "the request path has an invalid percent-escape\n", route: "invalid"))
            }
            path = decoded
        }
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()  // leading ""
        func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
        func notFound() { respond(.text(404, "no such route: \(text(path[...].prefix(200)))\n", route: "invalid")) }
        guard let first = parts.first else { return notFound() }
        if parts.count == 1 {
            if first.elementsEqual("healthz".utf8) { return respond(.text(200, "ok\n", route: "healthz")) }
            if first.elementsEqual("readyz".utf8) { return respond(readiness()) }
            if first.elementsEqual("metrics".utf8) { return respond(.text(200, metricsText(), contentType: "text/plain; version=0.0.4", route: "metrics")) }
            return notFound()
        }
        guard first.elementsEqual("tasks".utf8), parts.count <= 4 else { return notFound() }
        let rest = Array(parts.dropFirst())
        guard let id = TaskID(utf8: rest[0]) else {
            return respond(.text(400, "malformed task id '\(text(rest[0].prefix(80)))': expected 64 lowercase hex digits, optionally prefixed by sha256:\n", route: "invalid"))
        }
        // A digest id also finds a URL task with those bytes; a bare 64-hex id that names no
        // URL task is tried as a content digest (people drop the "sha256:" prefix).
        // Only /meta and /pieces need the piece bitmap.
        let needsPieces = rest.count > 1
        guard let info = store.info(id, pieces: needsPieces) ?? store.lookup(digest: id.hash).flatMap({ store.info($0, pieces: needsPieces) }) else {
            return respond(.text(404, "task \(id) is not in this seed's cache\n", route: "tasks"))
        }
        if rest.count == 1 { return respond(content(request, info, route: "tasks")) }
        if rest.count == 2, rest[1].elementsEqual("meta".utf8) { return respond(meta(info)) }
        if rest.count == 2, rest[1].elementsEqual("stat".utf8) { return respond(stat(info)) }
        if rest.count == 2, rest[1].elementsEqual("pieces".utf8) { return respond(availabilityFeed(request, info)) }
        if rest.count == 3, rest[1].elementsEqual("pieces".utf8) {
            guard let n = Int(text(rest[2])), n >= 0 else { return respond(.text(400, "piece number '\(text(rest[2].prefix(20)))' is not a whole number\n", route: "pieces")) }
            let query = try? HTTPQueryParameters(parsing: request.query ?? "")
            switch PieceProtocol.parseWait(query?["wait"]) {
            case .success(let wait): return piece(request, info, n, wait: wait, respond: respond)
            case .failure(let e): return respond(.text(400, e.description + "\n", route: "pieces"))
            }
        }
        notFound()
    }

    /// `/readyz`: 200 when the store is open and, in a swarm, a scheduler has this host
    /// registered (so children can be given it as a parent and it can ask for parents); 503
    /// with the reason otherwise. `/healthz` is liveness only.
    func readiness() -> Response {
        guard store.isOpen else { return .text(503, "not ready: the store is closed (shutting down)\n", route: "readyz") }
        if let scheduler, !scheduler.isRegistered {
            let names = scheduler.configuration.schedulers.map { "http://" + $0.hostHeader }.joined(separator: ", ")
            return .text(503, "not ready: no scheduler has this host registered yet (--scheduler \(names))\n", route: "readyz")
        }
        return .text(200, "ready\n", route: "readyz")
    }

    private func etag(_ info: TaskInfo) -> HTTPETag? {
        if let d = info.sha256 { return HTTPETag(opaqueTag: d.hex) }
        if info.id.kind == .digest { return HTTPETag(opaqueTag: info.id.hash.hex) }
        return nil
    }

    /// `GET|HEAD /tasks/{id}`: the content, with Range and conditionals; pieces still being
    /// written are waited for (read-while-write).
    func content(_ request: HTTPRequestHead, _ info: TaskInfo, route: String, following resident: ResidentPieces? = nil) -> Response {
        guard let length = info.contentLength else {
            return .text(503, "task \(info.id) is still arriving and its length is not known yet\n", route: route)
        }
        let tag = etag(info)
        var head = HTTPResponseHead(status: 200)
        head.headers.add(name: "Content-Type", value: info.origin.contentType ?? "application/octet-stream")
        head.setAcceptRanges()
        if let tag { head.setETag(tag) }
        if let lm = info.origin.lastModified { head.headers.add(name: "Last-Modified", value: lm) }
        let range: Range<Int64>
        switch HTTPResponseDecision.evaluate(request: request, etag: tag, lastModified: nil, contentLength: Int(length)) {
        case .notModified:
            var h = HTTPResponseHead(status: 304)
            if let tag { h.setETag(tag) }
            return Response(head: h, route: route)
        case .rangeNotSatisfiable:
            var r = Response.text(416, "range not satisfiable for \(length) bytes\n", route: route)
            r.head.setUnsatisfiedContentRange(completeLength: Int(length))
            return r
        case .full:
            range = 0..<length
        case .partial(let r):
            head = HTTPResponseHead(status: 206, headers: head.headers)
            head.setContentRange(r, completeLength: Int(length))
            range = Int64(r.lowerBound)..<Int64(r.upperBound + 1)
        }
        head.setContentLength(range.count)
        // Content that must match a digest keeps its last piece back until verified: a client
        // never gets a complete body that later turns out wrong.
        let holdBack = info.expectedDigest != nil && !info.complete
            ? PieceMath.offset(ofPiece: max(0, PieceMath.pieceCount(contentLength: length, pieceLength: info.pieceLength) - 1), pieceLength: info.pieceLength)
            : nil
        let body: ResponseBody = request.method == .head ? .none
            : .file(StoreBody(store: store, id: info.id, range: range, holdBackFrom: holdBack, following: resident))
        return Response(head: head, body: body, route: route)
    }

    private func metricsText() -> String {
        // The server's requests and bytes, then the process's pieces, store and origin timings.
        var out = metrics.exposition + DarterMetrics.exposition
        let u = store.usage
        out += """
        # HELP darter_store_bytes_used Bytes the piece store holds on disk.
        # TYPE darter_store_bytes_used gauge
        darter_store_bytes_used \(u.bytesUsed)
        # HELP darter_store_quota_bytes The store's byte quota (0: none).
        # TYPE darter_store_quota_bytes gauge
        darter_store_quota_bytes \(u.quotaBytes ?? 0)
        # HELP darter_store_evictions_total Tasks evicted.
        # TYPE darter_store_evictions_total counter
        darter_store_evictions_total \(u.evictions)
        # HELP darter_store_tasks Tasks in the store.
        # TYPE darter_store_tasks gauge
        darter_store_tasks \(u.taskCount)
        # HELP darter_store_corrupt_pieces_total Pieces dropped after failing their CRC32C.
        # TYPE darter_store_corrupt_pieces_total counter
        darter_store_corrupt_pieces_total \(u.corruptPiecesDropped)

        """
        out += rateLimitMetrics()
        if let resident = ingestor?.resident {
            out += """
            # HELP darter_shield_memory_bytes Bytes of fresh pieces held in memory, for clients following a fetch and hits before the object is in the page cache.
            # TYPE darter_shield_memory_bytes gauge
            darter_shield_memory_bytes \(resident.residentBytes)
            # HELP darter_shield_memory_spare_bytes Bytes of piece buffers kept for the next fetches (let go after 30 s without one).
            # TYPE darter_shield_memory_spare_bytes gauge
            darter_shield_memory_spare_bytes \(resident.spareBytes)
            # HELP darter_shield_memory_sent_bytes_total Body bytes sent to clients from those pieces (not read back from disk).
            # TYPE darter_shield_memory_sent_bytes_total counter
            darter_shield_memory_sent_bytes_total \(resident.bytesSent)
            # HELP darter_registry_stale_manifests_total Manifests by tag answered from the last good copy while the registry could not be reached.
            # TYPE darter_registry_stale_manifests_total counter
            darter_registry_stale_manifests_total \(tagManifests.staleAnswers.load(ordering: .relaxed))
            # HELP darter_preheat_jobs Preheat jobs the seed remembers, by state.
            # TYPE darter_preheat_jobs gauge

            """
            for (state, n) in preheats.countsByState.sorted(by: { $0.key < $1.key }) {
                out += "darter_preheat_jobs{state=\"\(state)\"} \(n)\n"
            }
        }
        return out
    }
}

extension SeedService {
    /// `--upload-rate`, `--download-rate`, `--origin-rate`: the limits, the bytes through them
    /// and the waits they imposed (0 for an unlimited direction).
    func rateLimitMetrics() -> String {
        func family(_ name: String, _ type: String, _ help: String, _ value: (RateLimiter) -> String) -> String {
            "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
                + rateLimits.byDirection.map { "\(name){direction=\"\($0.direction)\"} \($0.limiter.map(value) ?? "0")\n" }.joined()
        }
        return family("darter_rate_limit_bytes_per_second", "gauge", "The configured rate limit, by direction (upload, download, origin; 0: unlimited).",
                      { String($0.bytesPerSecond) })
            + family("darter_rate_limit_bytes_total", "counter", "Bytes that passed through a rate limit, by direction.",
                     { String($0.bytesTaken) })
            + family("darter_rate_limit_wait_seconds_total", "counter", "Time transfers were held back by a rate limit, summed over the transfers, by direction.",
                     { String(Double($0.waitNanoseconds) / 1e9) })
    }
}

/// A JSON string literal.
func json(_ s: String) -> String { JSONValue.quoted(s) }

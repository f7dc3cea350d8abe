import DarterCore
import DarterIO
import HTTPCore
import HTTPServer
import PieceProtocol
import PieceStore
import PieceTransfer
import Synchronization

/// The piece protocol on the seed (docs/PROTOCOL.md): what it holds, pieces as they land, each
/// piece with its CRC32C and, when known, its SHA-256 (a piece still arriving is waited for),
/// and opening a task by URL.
extension SeedService {
    /// What this seed holds of `info`'s task: committed pieces and those in memory already.
    func metadata(_ info: TaskInfo) -> TaskMetadata {
        TaskMetadata(info, held: ingestor?.resident.heldPieces(info.id) ?? [], heldDigests: ingestor?.resident.heldDigests(info.id) ?? [:])
    }

    /// `GET /tasks/{id}/meta`.
    func meta(_ info: TaskInfo) -> Response {
        .text(200, metadata(info).json.serialized + "\n", contentType: "application/json", route: "meta")
    }

    /// `GET /tasks/{id}/pieces`: the availability feed (NDJSON lines, chunked). HEAD gets the
    /// same response, whose head the server sends as GET's (Transfer-Encoding included: RFC 9110
    /// §9.3.2) and whose feed it ends at once.
    func availabilityFeed(_ request: HTTPRequestHead, _ info: TaskInfo) -> Response {
        var head = HTTPResponseHead(status: 200)
        head.headers.add(name: "Content-Type", value: "application/x-ndjson")
        head.headers.add(name: "Cache-Control", value: "no-store")
        let (store, id) = (self.store, info.id)
        let resident = ingestor?.resident
        let feed = AvailabilityFeed(id, arrivals: ingestor?.arrivals ?? PieceArrivals(), snapshot: {
            store.info(id, pieces: true).map { TaskMetadata($0, held: resident?.heldPieces(id) ?? [], heldDigests: resident?.heldDigests(id) ?? [:]) }
        }, isFetching: { resident?.isFetching(id) ?? false })
        return Response(head: head, body: .stream(feed), route: "availability")
    }

    /// `GET /tasks/{id}/pieces/{n}[?wait=MS]`: the piece with its CRC32C, from memory if it has
    /// arrived and is not committed yet, else from the store. With `wait`, a piece of a fetch
    /// under way is waited for that long: 503 with Retry-After if it has not come by then.
    func piece(_ request: HTTPRequestHead, _ info: TaskInfo, _ n: Int, wait: Int?, respond: @escaping @Sendable (Response) -> Void) {
        if let count = info.contentLength.map({ PieceMath.pieceCount(contentLength: $0, pieceLength: info.pieceLength) }), n >= count {
            return respond(.text(404, "task \(info.id) has \(count) pieces; there is no piece \(n)\n", route: "pieces"))
        }
        if let r = pieceNow(request, info, n) { return respond(r) }
        guard let wait, wait > 0, let resident = ingestor?.resident else {
            return respond(.text(404, "piece \(n) of task \(info.id) is not here\n", route: "pieces"))
        }
        // Wait for it to arrive (a fetch under way), up to the deadline; the first of the two wins.
        let answered = Mutex(false)
        let once: @Sendable (Response) -> Void = { r in
            if answered.withLock({ let was = $0; $0 = true; return !was }) { respond(r) }
        }
        let offset = PieceMath.offset(ofPiece: n, pieceLength: info.pieceLength)
        let retryLater: @Sendable () -> Response = {
            var r = Response.text(503, "piece \(n) of task \(info.id) did not arrive within \(wait) ms\n", route: "pieces")
            r.head.headers.add(name: "Retry-After", value: "1")
            return r
        }
        let coming = resident.whenHeld(info.id, offset: offset) { [self] in
            once(pieceNow(request, info, n) ?? retryLater())
        }
        guard coming else {
            // Not coming to memory. With no fetch running here it is not coming at all: 404
            // (the child asks elsewhere). Else it came and left memory: its commit follows.
            guard resident.isFetching(info.id) else {
                return once(.text(404, "piece \(n) of task \(info.id) is not here, and no fetch of it is running here\n", route: "pieces"))
            }
            Task { [self, store] in
                let state = try? await store.waitForPiece(info.id, index: n, timeout: .milliseconds(wait))
                once(state == .committed ? (pieceNow(request, info, n) ?? retryLater()) : retryLater())
            }
            return
        }
        Task {
            try? await Task.sleep(for: .milliseconds(wait))
            once(retryLater())
        }
    }

    /// The piece if this seed holds it now (memory first, then the store), else nil.
    private func pieceNow(_ request: HTTPRequestHead, _ info: TaskInfo, _ n: Int) -> Response? {
        let range: Range<Int64>, crc: UInt32, sha256: SHA256Digest?
        if let held = ingestor?.resident.piece(info.id, index: n) {
            let start = PieceMath.offset(ofPiece: n, pieceLength: info.pieceLength)
            range = start..<(start + Int64(held.length))
            (crc, sha256) = (held.crc, held.sha256)
        } else if let committed = store.committedPiece(info.id, index: n) {
            (range, crc, sha256) = committed
        } else {
            return nil
        }
        var head = HTTPResponseHead(status: 200)
        head.headers.add(name: "Content-Type", value: "application/octet-stream")
        head.headers.add(name: PieceProtocol.crcHeader, value: PieceProtocol.crcValue(crc))
        if let sha256 { head.headers.add(name: PieceProtocol.sha256Header, value: sha256.hex) }
        head.setContentLength(range.count)
        let body: ResponseBody = request.method == .head ? .none
            : .file(StoreBody(store: store, id: info.id, range: range, following: ingestor?.resident))
        return Response(head: head, body: body, route: "pieces")
    }

    /// `POST /tasks` with an ``OpenTaskRequest``: starts (or joins) the fetch of its URL and
    /// answers the task's metadata once its length is known; the origin's 4xx and fetch
    /// failures are answered as `/download` answers them.
    func openTask(_ body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        let open: OpenTaskRequest
        do { open = try OpenTaskRequest(parsing: body) } catch {
            return respond(.text(400, "POST /tasks: \(error)\n", route: "open"))
        }
        guard let ingestor else { return respond(.text(501, "this seed has no origin access configured\n", route: "open")) }
        var source: ObjectSource
        switch urlSource(open.url, digest: open.digest.map { "sha256:" + $0.hex }, headers: open.headers.map { ($0.name, $0.value) }) {
        case .success(let s): source = s
        case .failure(let reason): return respond(.text(400, reason.message, route: "open"))
        }
        if let registry = open.registry, let path = open.registryPath {
            // Registry content is named by its digest; the registry client does the token auth.
            // (The parser made the digest required and `url` = registry + "/v2/...".)
            source.kind = .registry(base: registry, path: path)
        }
        Task { [self] in
            switch await ingestor.open(source) {
            case .originStatus(let status, let reason):
                respond(.text(status, reason + "\n", route: "open"))
            case .failed(let reason):
                respond(.text(502, reason + "\n", route: "open"))
            case .ready(var info, let hit):
                if info.contentLength == nil {  // unknown length: its pieces are known once it has ended
                    await ingestor.waitForCompletion(info.id)
                    guard let done = store.info(info.id, pieces: true), done.contentLength != nil else {
                        return respond(.text(502, "fetching \(source.describe) failed\n", route: "open"))
                    }
                    info = done
                }
                var r = meta(store.info(info.id, pieces: true) ?? info)
                r.head.headers.add(name: "X-Darter-Cache", value: hit ? "HIT" : "MISS")
                respond(r)
            }
        }
    }
}

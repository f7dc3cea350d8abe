import DarterIO
import FoundationEssentials
import HTTPCore
import HTTPServer
import Origin
import PieceStore
import PieceTransfer
import Synchronization
import DarterCore

/// The origin-shield front doors: `/download?url=`, the forward proxy (absolute-form
/// requests), `/preheat`, and the OCI registry mirror under `/v2/`.
extension SeedService {
    /// `GET|HEAD /download?url=<URL>[&digest=sha256:<hex>]` and absolute-form proxy requests.
    /// `--origin-allow` is enforced where connections are opened (the origin client's connect
    /// filter): a refused origin is answered 403 by the fetch itself.
    func shield(_ request: HTTPRequestHead, url: String, digest: String?, respond: @escaping @Sendable (Response) -> Void) {
        guard ingestor != nil else { return respond(.text(501, "this seed has no origin access configured\n", route: "download")) }
        switch urlSource(url, digest: digest) {
        case .success(let source): Task { [self] in respond(await answer(request, source, route: "download")) }
        case .failure(let reason): respond(.text(400, reason.message, route: "download"))
        }
    }

    struct BadSource: Error { var message: String }

    /// A client's URL and optional `sha256:` digest as a source to fetch; else the 400 reason
    /// (one line).
    func urlSource(_ url: String, digest: String?, headers: [(String, String)] = []) -> Result<ObjectSource, BadSource> {
        var expected: SHA256Digest?
        if let digest {
            guard digest.hasPrefix("sha256:"), let d = SHA256Digest(hex: digest.dropFirst(7)) else {
                return .failure(BadSource(message: "digest must be sha256:<64 lowercase hex>, got '\(digest.prefix(80))'\n"))
            }
            expected = d
        }
        let id: TaskID
        do {
            id = try expected.map { TaskID(kind: .digest, hash: $0) } ?? TaskID.forURL(url)
        } catch {
            return .failure(BadSource(message: "url: \(error)\n"))
        }
        guard urlHost(url) != nil else { return .failure(BadSource(message: "url '\(url.prefix(200))' has no host\n")) }
        return .success(ObjectSource(kind: .url(url), headers: headers, expectedDigest: expected, id: id))
    }

    /// Waits for the fetch to start, then answers from the store.
    func answer(_ request: HTTPRequestHead, _ source: ObjectSource, route: String) async -> Response {
        guard let ingestor else { return .text(501, "no origin access\n", route: route) }
        switch await ingestor.open(source) {
        case .originStatus(let status, let reason):
            return .text(status, reason + "\n", route: route)
        case .failed(let reason):
            return .text(502, reason + "\n", route: route)
        case .ready(var info, let hit):
            if info.contentLength == nil {  // unknown length: answer once the stream has ended
                await ingestor.waitForCompletion(info.id)
                guard let done = store.info(info.id), done.contentLength != nil else {
                    return .text(502, "fetching \(source.describe) failed\n", route: route)
                }
                info = done
            }
            var r = content(request, info, route: route, following: ingestor.resident)
            r.head.headers.add(name: "X-Darter-Cache", value: hit ? "HIT" : "MISS")
            r.head.headers.add(name: "X-Darter-Task", value: info.id.description)
            return r
        }
    }

    // MARK: OCI registry mirror

    /// `/v2/...`: `GET /v2/` answers; manifests by tag are passed through (revalidated on every
    /// request); blobs and manifests by digest are cached by digest and verified.
    func registryMirror(_ request: HTTPRequestHead, path: [UInt8], query: Substring?, respond: @escaping @Sendable (Response) -> Void) {
        let p = String(decoding: path, as: UTF8.self)
        if p == "/v2/" || p == "/v2" {
            var r = Response.text(200, "{}\n", contentType: "application/json", route: "registry")
            r.head.headers.add(name: "Docker-Distribution-API-Version", value: "registry/2.0")
            return respond(r)
        }
        guard let ingestor else { return respond(.text(501, "this seed has no origin access configured\n", route: "registry")) }
        let ns = query.flatMap { try? HTTPQueryParameters(parsing: $0)["ns"] }
        guard let upstream = ns.map(registryURL(forHost:)) ?? ingestor.configuration.registryMirror else {
            return respond(.text(400, "no upstream registry: pass containerd's ?ns=<host> or start the seed with --registry-mirror\n", route: "registry"))
        }
        guard urlHost(upstream) != nil else {
            return respond(.text(400, "registry '\(upstream.prefix(200))' has no host\n", route: "registry"))
        }
        let parts = p.split(separator: "/")  // ["v2", name..., "blobs"|"manifests", ref]
        guard parts.count >= 4, parts[parts.count - 2] == "blobs" || parts[parts.count - 2] == "manifests" else {
            return respond(.text(404, "unsupported registry path \(p.prefix(200))\n", route: "registry"))
        }
        let isBlob = parts[parts.count - 2] == "blobs"
        let reference = String(parts[parts.count - 1])
        // Blobs, and manifests named by digest: immutable, so cached and verified by digest. A
        // manifest is asked for with every manifest type in Accept, so the registry sends the
        // bytes the digest names whatever the client accepts.
        if let id = TaskID.forDigest(reference) {
            let headers = isBlob ? [] : [("Accept", ImageManifest.acceptedMediaTypes.joined(separator: ", "))]
            let source = ObjectSource(kind: .registry(base: upstream, path: p), headers: headers, expectedDigest: id.hash, id: id)
            Task { [self] in
                var r = await answer(request, source, route: "registry")
                r.head.headers.add(name: "Docker-Content-Digest", value: reference)
                respond(r)
            }
            return
        }
        if isBlob {
            return respond(.text(400, "blob reference must be sha256:<64 hex>, got '\(reference.prefix(80))'\n", route: "registry"))
        }
        // Manifests by tag: small, passed through with the client's Accept headers on every
        // request. The last good answer is kept only to stand in while the registry cannot be
        // reached (stale-if-error), as a cached URL stays in use when its origin is down.
        let accept = request.headers.values(for: "Accept").map { ("Accept", $0) }
        let method = request.method == .head ? "HEAD" : "GET"
        let key = upstream + p + "\n" + accept.map(\.1).joined(separator: ",")
        Task { [tagManifests] in
            func stale() -> Bool {
                guard let kept = tagManifests.get(key) else { return false }
                var h = HTTPResponseHead(status: 200)
                for (name, value) in kept.headers { h.headers.add(name: name, value: value) }
                tagManifests.staleAnswers.add(1, ordering: .relaxed)
                h.headers.add(name: "X-Darter-Cache", value: "STALE")
                h.headers.add(name: "Warning", value: "111 darter \"Revalidation Failed\"")
                h.setContentLength(kept.body.count)
                respond(method == "HEAD" ? Response(head: h, route: "registry") : Response(head: h, body: .bytes(kept.body), route: "registry"))
                return true
            }
            let sink = BoundedCollector(limit: 4 << 20)
            do {
                let head = try await ingestor.registry.fetch(registry: upstream, path: p, method: method, headers: accept, into: sink)
                if head.status >= 500, stale() { return }
                var h = HTTPResponseHead(status: head.status)
                var kept: [(String, String)] = []
                for name in ["content-type", "docker-content-digest", "etag"] {
                    if let v = head.header(name) { h.headers.add(name: name, value: v); kept.append((name, v)) }
                }
                let body = sink.bytes
                if method == "HEAD" {
                    h.setContentLength(Int(head.contentLength ?? Int64(body.count)))
                    respond(Response(head: h, route: "registry"))
                } else {
                    if head.status == 200 { tagManifests.store(key, headers: kept, body: body) }
                    h.setContentLength(body.count)
                    respond(Response(head: h, body: .bytes(body), route: "registry"))
                }
            } catch {
                if let refusal = (error as? OriginError)?.refusal {
                    return respond(.text(refusal.status, "registry \(upstream): \(refusal.reason)\n", route: "registry"))
                }
                let why = sink.overflowed ? "the manifest is larger than \(sink.limit >> 20) MiB" : "\(error)"
                if !sink.overflowed, stale() { return }
                respond(.text(502, "registry \(upstream): \(why)\n", route: "registry"))
            }
        }
    }

    /// containerd's `ns` host → registry base URL (docker.io → registry-1.docker.io; loopback → http).
    func registryURL(forHost host: String) -> String {
        if host == "docker.io" { return "https://registry-1.docker.io" }
        if host.hasPrefix("127.") || host.hasPrefix("localhost") || host.hasPrefix("[::1]") { return "http://" + host }
        return "https://" + host
    }
}

/// The host of a URL (`scheme://[userinfo@]host[:port]/...`), without port or IPv6 brackets.
func urlHost(_ url: String) -> String? {
    guard let schemeEnd = url.firstIndex(of: ":"), url[schemeEnd...].hasPrefix("://") else { return nil }
    var rest = url[url.index(schemeEnd, offsetBy: 3)...]
    if let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
    if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
    if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { return String(rest[rest.index(after: rest.startIndex)..<close]) }
    if let colon = rest.lastIndex(of: ":") { rest = rest[..<colon] }
    return rest.isEmpty ? nil : String(rest)
}

/// The last good `GET` answer for each manifest by tag (upstream, path and Accept), kept to
/// answer while the registry cannot be reached. Bounded by bytes: the oldest go first.
final class TagManifestCache: Sendable {
    struct Entry: Sendable { var headers: [(String, String)]; var body: [UInt8] }
    private struct State { var entries: [String: Entry] = [:]; var order: [String] = []; var bytes = 0 }
    private let state = Mutex(State())
    let limit: Int
    /// Answers given from a kept manifest while the registry was unreachable.
    let staleAnswers = Atomic<Int>(0)

    init(limit: Int = 64 << 20) { self.limit = limit }

    func store(_ key: String, headers: [(String, String)], body: [UInt8]) {
        state.withLock { s in
            if let old = s.entries[key] { s.bytes -= old.body.count; s.order.removeAll { $0 == key } }
            s.entries[key] = Entry(headers: headers, body: body)
            s.order.append(key)
            s.bytes += body.count
            while s.bytes > limit, let oldest = s.order.first {
                s.order.removeFirst()
                s.bytes -= s.entries.removeValue(forKey: oldest)?.body.count ?? 0
            }
        }
    }

    func get(_ key: String) -> Entry? { state.withLock { $0.entries[key] } }
}

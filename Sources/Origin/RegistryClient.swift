import FoundationEssentials
import Synchronization

/// OCI distribution registries (`/v2/`): answers `401` challenges. `Bearer` challenges get a
/// token from the realm (anonymous, or with basic credentials when configured), cached per
/// registry and scope until it expires; `Basic` challenges get the configured credentials.
/// Redirects to blob storage are followed by the `OriginClient` (libcurl drops the
/// Authorization header when a redirect leaves the host).
public final class RegistryClient: Sendable {
    let origin: OriginClient
    let credentials: [String: Credential]
    private let tokens = Mutex<[String: (token: String, expires: ContinuousClock.Instant)]>([:])

    public struct Credential: Sendable {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    /// - Parameter credentials: registry host (`127.0.0.1:5000`, `registry-1.docker.io`) → login.
    public init(origin: OriginClient, credentials: [String: (username: String, password: String)] = [:]) {
        self.origin = origin
        self.credentials = credentials.mapValues { Credential(username: $0.username, password: $0.password) }
    }

    /// GET/HEAD `<registry><path>` with the registry's authentication dance.
    public func fetch(registry: String, path: String, method: String = "GET", headers: [(String, String)] = [],
                      range: Range<Int64>? = nil, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead {
        let url = registry + path
        let host = Self.host(of: registry)
        let scope = Self.scope(for: path)
        let key = registry + "|" + scope
        var authorization: String?
        if let cached = tokens.withLock({ $0[key] }), cached.expires > .now { authorization = "Bearer " + cached.token }
        for attempt in 0..<2 {
            let gate = ChallengeGate(sink)
            var h = headers
            if let authorization { h.append(("Authorization", authorization)) }
            let head = try await origin.fetch(OriginRequest(url: url, method: method, headers: h, range: range), into: gate)
            guard head.status == 401, attempt == 0, let challenge = gate.challenge else { return head }
            authorization = try await answer(challenge, host: host, scope: scope, key: key)
        }
        throw .registryAuthFailed("\(url): still unauthorized after answering the challenge")
    }

    /// The Authorization value answering a `WWW-Authenticate` challenge.
    private func answer(_ challenge: String, host: String, scope: String, key: String) async throws(OriginError) -> String {
        let login = credentials[host]
        let basic = login.map { "Basic " + Data(($0.username + ":" + $0.password).utf8).base64EncodedString() }
        let lower = challenge.lowercased()
        if lower.hasPrefix("basic") {
            guard let basic else { throw .registryAuthFailed("\(host) wants credentials (Basic) and none are configured") }
            return basic
        }
        guard lower.hasPrefix("bearer") else { throw .registryAuthFailed("\(host): unsupported challenge '\(challenge.prefix(80))'") }
        let params = Self.parameters(challenge)
        guard let realm = params["realm"] else { throw .registryAuthFailed("\(host): Bearer challenge without a realm") }
        var query: [String] = []
        if let service = params["service"] { query.append("service=" + Self.percentEncode(service)) }
        query.append("scope=" + Self.percentEncode(params["scope"] ?? scope))
        let tokenURL = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        let body = BodyCollector(limit: 1 << 20)
        let head = try await origin.fetch(OriginRequest(url: tokenURL, headers: basic.map { [("Authorization", $0)] } ?? []), into: body)
        guard head.status == 200 else { throw .registryAuthFailed("token service \(realm) answered \(head.status)") }
        struct TokenReply: Decodable { var token: String?; var access_token: String?; var expires_in: Int? }
        guard let reply = try? JSONDecoder().decode(TokenReply.self, from: Data(body.bytes)),
              let token = reply.token ?? reply.access_token else {
            throw .registryAuthFailed("token service \(realm) sent no token")
        }
        let lifetime = max(30, (reply.expires_in ?? 60) - 10)
        tokens.withLock { $0[key] = (token, .now + .seconds(lifetime)) }
        return "Bearer " + token
    }

    static func host(of registry: String) -> String {
        var rest = Substring(registry)
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") { rest = rest[rest.index(colon, offsetBy: 3)...] }
        return String(rest.prefix { $0 != "/" })
    }

    /// `repository:<name>:pull` for `/v2/<name>/(manifests|blobs)/<ref>`.
    static func scope(for path: String) -> String {
        var parts = path.split(separator: "/").map(String.init)
        if parts.first == "v2" { parts.removeFirst() }
        if parts.count >= 3 { parts.removeLast(2) }
        return "repository:" + parts.joined(separator: "/") + ":pull"
    }

    /// `Bearer realm="a",service="b",scope="c"` → ["realm": "a", ...].
    static func parameters(_ challenge: String) -> [String: String] {
        var out: [String: String] = [:]
        var rest = Substring(challenge.drop { $0 != " " })
        while let eq = rest.firstIndex(of: "=") {
            let name = rest[..<eq].filter { $0 != " " && $0 != "," }.lowercased()
            rest = rest[rest.index(after: eq)...]
            var value: Substring
            if rest.first == "\"" {
                rest = rest.dropFirst()
                let close = rest.firstIndex(of: "\"") ?? rest.endIndex
                value = rest[..<close]
                rest = close < rest.endIndex ? rest[rest.index(after: close)...] : ""
            } else {
                let comma = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<comma]
                rest = rest[comma...]
            }
            if rest.first == "," { rest = rest.dropFirst() }
            out[name] = String(value)
        }
        return out
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }
}

/// Passes a transfer to `inner` unless it is a 401, whose challenge it keeps and body it drops.
final class ChallengeGate: OriginSink, @unchecked Sendable {
    let inner: any OriginSink
    private(set) var challenge: String?
    private var swallowing = false
    init(_ inner: any OriginSink) { self.inner = inner }
    func receive(head: OriginResponseHead) -> Bool {
        if head.status == 401 {
            challenge = head.header("www-authenticate")
            swallowing = true
            return true
        }
        return inner.receive(head: head)
    }
    func receive(body: OriginChunk) -> Bool { swallowing ? true : inner.receive(body: body) }
}

/// Keeps a small body (token replies).
final class BodyCollector: OriginSink, @unchecked Sendable {
    let limit: Int
    private(set) var bytes: [UInt8] = []
    init(limit: Int) { self.limit = limit }
    func receive(head: OriginResponseHead) -> Bool { true }
    func receive(body: OriginChunk) -> Bool {
        guard bytes.count + body.count <= limit else { return false }
        bytes += body.bytes
        return true
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

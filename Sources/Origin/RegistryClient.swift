import Synchronization
import DarterCore

/// OCI distribution registries (`/v2/`): Bearer token flow (and Basic), over an OriginClient.
public final class RegistryClient: Sendable {
    public let origin: OriginClient
    private let credentials: [String: Credential]
    private let tokens = Mutex<[TokenKey: CachedToken]>([:])
    /// The scope a registry asked for, per repository: later requests send the token up front.
    private let scopes = Mutex<[RepositoryKey: String]>([:])
    /// A token without `expires_in` lasts this long (the distribution spec's default).
    static let defaultTokenLifetime: Duration = .seconds(60)

    struct Credential: Sendable { var username: String; var password: String }
    struct TokenKey: Hashable, Sendable { var registry: String; var scope: String }
    struct RepositoryKey: Hashable, Sendable { var registry: String; var repository: String }
    struct CachedToken: Sendable { var token: String; var expires: ContinuousClock.Instant }

    /// credentials: registry host (e.g. "127.0.0.1:5000", "registry-1.docker.io") → (username, password).
    /// "docker.io" and "index.docker.io" also apply to registry-1.docker.io.
    public init(origin: OriginClient, credentials: [String: (username: String, password: String)] = [:]) {
        self.origin = origin
        var c: [String: Credential] = [:]
        for (host, cred) in credentials { c[host.lowercased()] = Credential(username: cred.username, password: cred.password) }
        self.credentials = c
    }

    /// GET/HEAD `<registry><path>` (registry like "https://registry-1.docker.io" or "http://127.0.0.1:5000"; path like
    /// "/v2/library/alpine/manifests/latest" or "/v2/<name>/blobs/sha256:<hex>"). On 401 with
    /// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` it fetches a token from the realm (anonymous, or with
    /// basic credentials when configured), caches it per (registry, scope) until `expires_in`, and retries once with
    /// `Authorization: Bearer`. `WWW-Authenticate: Basic` → retry with basic credentials if configured. Redirects to blob
    /// storage are followed (libcurl does not send the Authorization header to another host). Returns like
    /// OriginClient.fetch; a 401 that cannot be answered reaches the sink like any other status.
    public func fetch(registry: String, path: String, method: String = "GET", headers: [(String, String)] = [],
                      range: Range<Int64>? = nil, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead {
        var base = registry
        while base.hasSuffix("/") { base.removeLast() }
        guard let host = Self.host(of: base) else { throw .invalidURL("\(registry): expected http(s)://host[:port]") }
        let url = base + (path.hasPrefix("/") ? path : "/" + path)
        let repository = Self.repository(inPath: path)
        let credential = credential(for: host)

        // A token we already hold for this repository's scope goes out with the first request.
        var authorization: String? = nil
        if let repository, let scope = scopes.withLock({ $0[RepositoryKey(registry: base, repository: repository)] }),
           let token = cachedToken(registry: base, scope: scope) {
            authorization = "Bearer \(token)"
        }

        let gate = ChallengeGate(sink: sink, canAnswerBasic: credential != nil)
        let first = try await origin.fetch(request(url, method, headers, range, authorization), into: gate)
        guard let challenge = gate.challenge else { return first }

        switch challenge.scheme {
        case "bearer":
            guard let realm = challenge.parameters["realm"] else {
                throw .registryAuthFailed("\(url): Bearer challenge without a realm")
            }
            let scope = challenge.parameters["scope"] ?? ""
            let token = try await bearerToken(registry: base, realm: realm, service: challenge.parameters["service"],
                                              scope: scope, credential: credential, rejected: authorization)
            if let repository, !scope.isEmpty {
                scopes.withLock { $0[RepositoryKey(registry: base, repository: repository)] = scope }
            }
            return try await origin.fetch(request(url, method, headers, range, "Bearer \(token)"), into: sink)
        default: // "basic", only when credentials exist (else the gate passed the 401 through)
            guard let credential else { return first }
            return try await origin.fetch(request(url, method, headers, range, "Basic \(base64("\(credential.username):\(credential.password)"))"), into: sink)
        }
    }

    private func request(_ url: String, _ method: String, _ headers: [(String, String)], _ range: Range<Int64>?, _ authorization: String?) -> OriginRequest {
        var h = headers.filter { $0.0.lowercased() != "authorization" || authorization == nil }
        if let authorization { h.append(("Authorization", authorization)) }
        return OriginRequest(url: url, method: method, headers: h, range: range)
    }

    private func credential(for host: String) -> Credential? {
        let h = host.lowercased()
        if let c = credentials[h] { return c }
        if h == "registry-1.docker.io" { return credentials["docker.io"] ?? credentials["index.docker.io"] }
        return nil
    }

    private func cachedToken(registry: String, scope: String) -> String? {
        let key = TokenKey(registry: registry, scope: scope)
        return tokens.withLock { table in
            guard let t = table[key] else { return nil }
            if t.expires <= .now { table[key] = nil; return nil }
            return t.token
        }
    }

    /// A token for (registry, scope): cached, or fetched from the realm. `rejected` is the
    /// Authorization the registry just refused (a cached token it no longer accepts).
    private func bearerToken(registry: String, realm: String, service: String?, scope: String,
                             credential: Credential?, rejected: String?) async throws(OriginError) -> String {
        if let t = cachedToken(registry: registry, scope: scope), rejected != "Bearer \(t)" { return t }
        var query: [String] = []
        if let service { query.append("service=" + percentEncode(service, keepingSlash: false)) }
        for s in scope.split(separator: " ") where !s.isEmpty { query.append("scope=" + percentEncode(String(s), keepingSlash: false)) }
        let url = realm + (query.isEmpty ? "" : (realm.contains("?") ? "&" : "?") + query.joined(separator: "&"))
        var headers: [(String, String)] = [("Accept", "application/json")]
        if let credential { headers.append(("Authorization", "Basic \(base64("\(credential.username):\(credential.password)"))")) }
        let sink = BoundedCollector(limit: 1 << 20)
        let head: OriginResponseHead
        do {
            head = try await origin.fetch(OriginRequest(url: url, headers: headers), into: sink)
        } catch .aborted where sink.overflowed {
            throw .registryAuthFailed("\(realm): token response over 1 MiB")
        }
        guard head.status == 200 else {
            let why = "\(realm): token request for scope '\(scope)' \(credential == nil ? "without" : "with") credentials got status \(head.status)"
            if head.status == 401 || head.status == 403 { throw .registryDenied(head.status, why) }
            throw .registryAuthFailed(why)
        }
        guard case .object(let fields)? = try? JSONValue.parse(sink.bytes) else {
            throw .registryAuthFailed("\(realm): token response is not a JSON object")
        }
        guard let token = fields["token"]?.string ?? fields["access_token"]?.string, !token.isEmpty else {
            throw .registryAuthFailed("\(realm): token response has no token")
        }
        var lifetime = Self.defaultTokenLifetime
        if let seconds = fields["expires_in"]?.number, seconds > 0 { lifetime = .seconds(seconds) }
        // Renew a little early so a token does not expire in flight.
        let margin: Duration = lifetime > .seconds(30) ? .seconds(10) : .zero
        let expires = ContinuousClock.now + lifetime - margin
        tokens.withLock { $0[TokenKey(registry: registry, scope: scope)] = CachedToken(token: token, expires: expires) }
        return token
    }

    /// "host[:port]" of "scheme://host[:port][/...]".
    static func host(of url: String) -> String? {
        guard let r = url.firstRange(of: "://") else { return nil }
        let scheme = url[..<r.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        let rest = url[r.upperBound...]
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return host.isEmpty ? nil : String(host)
    }

    /// The repository name in "/v2/<name>/(manifests|blobs|tags|referrers)/...", else nil.
    static func repository(inPath path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.first == "v2" else { return nil }
        for (i, p) in parts.enumerated() where i >= 2 && ["manifests", "blobs", "tags", "referrers"].contains(p) {
            return parts[1..<i].joined(separator: "/")
        }
        return nil
    }
}

/// A parsed `WWW-Authenticate` challenge: scheme (lowercased) and parameters.
struct AuthChallenge: Sendable, Equatable {
    var scheme: String
    var parameters: [String: String]

    /// The first Bearer challenge in the header values, else the first Basic one.
    static func parse(_ values: [String]) -> AuthChallenge? {
        let all = values.flatMap(parseList)
        return all.first { $0.scheme == "bearer" } ?? all.first { $0.scheme == "basic" }
    }

    /// `Scheme k=v, k="v", Scheme2 ...` → challenges.
    static func parseList(_ header: String) -> [AuthChallenge] {
        var result: [AuthChallenge] = []
        var chars = Array(header.unicodeScalars)
        chars.append(",")
        var i = 0
        func skipSpaces() { while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 } }
        func token() -> String {
            var s = ""
            while i < chars.count, !" \t,=\"".unicodeScalars.contains(chars[i]) { s.unicodeScalars.append(chars[i]); i += 1 }
            return s
        }
        while i < chars.count {
            skipSpaces()
            if chars[i] == "," { i += 1; continue }
            let word = token()
            skipSpaces()
            if i < chars.count, chars[i] == "=", !result.isEmpty {
                // A parameter of the current challenge.
                i += 1
                skipSpaces()
                var value = ""
                if i < chars.count, chars[i] == "\"" {
                    i += 1
                    while i < chars.count, chars[i] != "\"" {
                        if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                        value.unicodeScalars.append(chars[i]); i += 1
                    }
                    i += 1
                } else {
                    value = token()
                }
                result[result.count - 1].parameters[word.lowercased()] = value
            } else if !word.isEmpty {
                result.append(AuthChallenge(scheme: word.lowercased(), parameters: [:]))
                // A token68 form (e.g. "Basic abc==") has no '=' pairs; tolerate by skipping.
            } else {
                i += 1
            }
        }
        return result
    }
}

/// Passes a response through to the real sink unless it is a 401 the client can answer;
/// then it keeps the challenge and swallows the (small) body.
final class ChallengeGate: OriginSink, @unchecked Sendable {
    // Used on the transfer's thread only, read after fetch returns.
    let sink: any OriginSink
    let canAnswerBasic: Bool
    var challenge: AuthChallenge? = nil

    init(sink: any OriginSink, canAnswerBasic: Bool) {
        self.sink = sink
        self.canAnswerBasic = canAnswerBasic
    }

    func receive(head: OriginResponseHead) -> Bool {
        if head.status == 401, let c = AuthChallenge.parse(head.headerValues("www-authenticate")),
           c.scheme == "bearer" || (c.scheme == "basic" && canAnswerBasic) {
            challenge = c
            return true
        }
        return sink.receive(head: head)
    }

    func receive(body: OriginChunk) -> Bool {
        if challenge != nil { return true }
        return sink.receive(body: body)
    }
}

/// Collects a small body in memory (tokens, manifests), refusing more than `limit` bytes.
public final class BoundedCollector: OriginSink, @unchecked Sendable {
    // Used on the transfer's thread only, read after fetch returns.
    public let limit: Int
    public private(set) var bytes: [UInt8] = []
    /// The body was larger than `limit` (the transfer was stopped).
    public private(set) var overflowed = false
    public init(limit: Int) { self.limit = limit }
    public func receive(head: OriginResponseHead) -> Bool { true }
    public func receive(body: OriginChunk) -> Bool {
        guard bytes.count + body.count <= limit else { overflowed = true; return false }
        bytes += body.bytes
        return true
    }
}

func base64(_ s: String) -> String {
    let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    let bytes = Array(s.utf8)
    var out = ""
    var i = 0
    while i < bytes.count {
        let b0 = UInt32(bytes[i]), b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0, b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
        let n = b0 << 16 | b1 << 8 | b2
        out.append(table[Int(n >> 18 & 63)])
        out.append(table[Int(n >> 12 & 63)])
        out.append(i + 1 < bytes.count ? table[Int(n >> 6 & 63)] : "=")
        out.append(i + 2 < bytes.count ? table[Int(n & 63)] : "=")
        i += 3
    }
    return out
}

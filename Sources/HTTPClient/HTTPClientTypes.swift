import DarterIO
import HTTPCore

/// An `http://` URL split into what a request needs: where to connect and what to ask.
public struct HTTPClientURL: Sendable, Hashable, CustomStringConvertible {
    /// The host as written (a name, an IPv4 literal, or an IPv6 literal without brackets).
    public var host: String
    public var port: UInt16
    /// Path and query, at least `/`.
    public var target: String

    public init(host: String, port: UInt16, target: String = "/") {
        self.host = host
        self.port = port
        self.target = target.isEmpty ? "/" : target
    }

    /// Parses `http://host[:port][/path][?query]` (`#fragment` dropped). Other schemes are an
    /// error naming them: `https` goes through the origin's libcurl backend, not this client.
    public init(parsing url: String) throws(HTTPClientError) {
        guard let schemeEnd = url.firstRange(of: "://") else { throw .invalidURL("\(url.prefix(200)): no scheme (expected http://)") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" else { throw .invalidURL("\(url.prefix(200)): scheme '\(scheme.prefix(40))' is not http") }
        var rest = url[schemeEnd.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var host = Substring(authority), port: UInt16 = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL("\(url.prefix(200)): unclosed IPv6 literal") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p > 0 else { throw .invalidURL("\(url.prefix(200)): bad port") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let p = UInt16(authority[authority.index(after: colon)...]), p > 0 else { throw .invalidURL("\(url.prefix(200)): bad port") }
            port = p
            host = authority[..<colon]
        }
        guard !host.isEmpty else { throw .invalidURL("\(url.prefix(200)): no host") }
        // RFC 3986 host characters (a name, an IPv4 address, pct-encoding; `:` only in brackets), so
        // the Host header carries no control byte or space and `description` parses back the same.
        let bracketed = authority.hasPrefix("[")
        guard host.utf8.allSatisfy({ isHostByte($0) || (bracketed && $0 == UInt8(ascii: ":")) }) else {
            throw .invalidURL("\(url.prefix(200)): the host may hold only letters, digits and -._~!$&'()*+,;=%\(bracketed ? ":" : "")")
        }
        let target = String(rest[authorityEnd...])
        self.init(host: String(host), port: port, target: target.hasPrefix("?") ? "/" + target : target)
    }

    /// The `Host` header value: `host[:port]` (IPv6 in brackets; port 80 left out).
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }

    public var description: String { "http://\(hostHeader)\(target)" }
}

/// unreserved / sub-delims / `%` (RFC 3986 reg-name).
private func isHostByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
    default: "-._~!$&'()*+,;=%".utf8.contains(b)
    }
}

/// One request. `Host` is added from the URL unless given; `body` is small (JSON messages);
/// a large one comes from a `bodySource`.
public struct HTTPClientRequest: Sendable {
    public var method: HTTPMethod
    public var url: HTTPClientURL
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// A body sent as it is read (an upload larger than memory), instead of `body`. Such a
    /// request is never sent twice.
    public var bodySource: (any HTTPRequestBodySource)?
    /// From the moment the request is handed to the client until its response has ended (a
    /// connection it waits for, connecting and pipelining included). Nil: none.
    public var deadline: Duration?

    public init(method: HTTPMethod = .get, url: HTTPClientURL, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], deadline: Duration? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.deadline = deadline
    }

    /// The bytes on the wire: head (with Host, and Content-Length for a body) and body.
    func serialized(userAgent: String) -> [UInt8] {
        var h = headers
        if !h.contains("Host") { h.add(name: "Host", value: url.hostHeader) }
        if !h.contains("User-Agent") && !userAgent.isEmpty { h.add(name: "User-Agent", value: userAgent) }
        if let bodySource { h.replaceOrAdd(name: "Content-Length", value: String(bodySource.length)) }
        else if !body.isEmpty || method == .post || method == .put { h.replaceOrAdd(name: "Content-Length", value: String(body.count)) }
        var out = HTTPRequestHead(method: method, target: url.target, headers: h).serialized()
        out += body
        return out
    }

    /// GET and HEAD may be sent again on another connection if the first one closed before any
    /// byte of their response came (a keep-alive connection the server had just closed).
    var isIdempotent: Bool { method == .get || method == .head }
}

/// A request body produced as it is sent: `length` bytes in all, handed over in parts.
public protocol HTTPRequestBodySource: AnyObject, Sendable {
    var length: Int64 { get }
    /// The next part, 1 to `maxLength` bytes: called on the connection's loop once the part
    /// before it is sent; `deliver` once, from any thread. A failure ends the request with it.
    func next(maxLength: Int, _ deliver: @escaping @Sendable (Result<[UInt8], HTTPClientError>) -> Void)
}

/// Why a request failed. Retrying (and backing off) is the caller's decision.
public enum HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL(String)
    case resolveFailed(String)
    /// connect(2) to this address failed.
    case connectFailed(address: String, Errno)
    case connectTimedOut(address: String)
    /// The request's own deadline passed.
    case deadlineExceeded
    case cancelled
    /// The server closed the connection (or it failed) before the response ended.
    case connectionClosed(String)
    case invalidResponse(HTTPResponseParseError)
    /// The body was larger than the destination (a piece buffer, a collection limit).
    case bodyTooLarge(limit: Int)
    /// The response handler gave up on the response.
    case aborted(String)
    /// The client's connect filter refused every address of the host (an allowlist).
    case refused(host: String, address: String)

    public var description: String {
        switch self {
        case .invalidURL(let s): "invalid URL: \(s)"
        case .resolveFailed(let s): "cannot resolve: \(s)"
        case .connectFailed(let a, let e): "connect to \(a) failed: \(e)"
        case .connectTimedOut(let a): "connect to \(a) timed out"
        case .deadlineExceeded: "the request's deadline passed"
        case .cancelled: "cancelled"
        case .connectionClosed(let why): "connection closed before the response ended (\(why))"
        case .invalidResponse(let e): "invalid response: \(e)"
        case .bodyTooLarge(let limit): "response body larger than \(limit) bytes"
        case .aborted(let why): "response abandoned: \(why)"
        case .refused(let host, let address): "connecting to \(address) for \(host) is not allowed"
        }
    }
}

/// Where one response goes. Called on the event loop of the request's connection pool, in this
/// order: ``responseHead(_:body:)`` once, then ``bodySpace()`` / ``bodyReceived(_:)`` pairs,
/// then ``responseEnded(_:)`` exactly once (also when the request failed before any response).
/// Must not block.
public protocol HTTPResponseHandler: AnyObject {
    /// The final response head. False abandons the response (the connection is closed).
    func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool
    /// Where the next body bytes go. Nil pauses reading this connection until
    /// ``HTTPClientTask/resume()`` (backpressure: TCP then slows the server down).
    func bodySpace() -> BufferSpace?
    /// `count` bytes landed at the start of the space last returned.
    func bodyReceived(_ count: Int)
    func responseEnded(_ result: Result<Void, HTTPClientError>)
}

/// A response as the async calls return it.
public struct HTTPClientResponse: Sendable {
    public var head: HTTPResponseHead
    /// The body when collected; for a body received into a caller's buffer, the body of a
    /// response that was not 2xx (its reason text, up to 64 KiB), else empty.
    public var body: [UInt8]
    /// Body bytes received (into the caller's buffer, or collected).
    public var bodyLength: Int
    public var status: Int { head.status }
}

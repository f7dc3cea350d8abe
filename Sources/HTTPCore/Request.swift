/// An HTTP version this library speaks: 1.0 or 1.1.
public enum HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    case http1_0
    case http1_1

    /// `HTTP/1.0` or `HTTP/1.1`.
    public var description: String { self == .http1_0 ? "HTTP/1.0" : "HTTP/1.1" }
}

/// A request method: any token (RFC 9110 §9.1). Unknown methods parse; the server picks 501 or 405.
public struct HTTPMethod: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
    /// The method as sent, case-sensitive (`get` is not `GET`).
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    // The registered methods of RFC 9110 §9 and PATCH (RFC 5789).
    public static let get = HTTPMethod(rawValue: "GET")
    public static let head = HTTPMethod(rawValue: "HEAD")
    public static let post = HTTPMethod(rawValue: "POST")
    public static let put = HTTPMethod(rawValue: "PUT")
    public static let delete = HTTPMethod(rawValue: "DELETE")
    public static let connect = HTTPMethod(rawValue: "CONNECT")
    public static let options = HTTPMethod(rawValue: "OPTIONS")
    public static let trace = HTTPMethod(rawValue: "TRACE")
    public static let patch = HTTPMethod(rawValue: "PATCH")
}

/// Which of the four request-target forms of RFC 9112 §3.2 a request used.
public enum HTTPRequestTargetForm: Sendable, Hashable {
    /// `/path?query` — the usual form.
    case origin
    /// `http://host/path` — sent to a forward proxy.
    case absolute
    /// `host:port` — only with CONNECT.
    case authority
    /// `*` — only with OPTIONS.
    case asterisk
}

/// How the body of a request is delimited (RFC 9112 §6.3).
public enum HTTPBodyFraming: Sendable, Hashable {
    /// No body.
    case none
    /// Exactly this many bytes follow the head (never zero: zero is ``none``).
    case contentLength(Int)
    /// `Transfer-Encoding: chunked`.
    case chunked
}

/// A parsed request line and header block.
public struct HTTPRequestHead: Sendable, Equatable {
    /// The method token, as sent.
    public var method: HTTPMethod
    /// The request-target exactly as sent (still percent-encoded).
    public var target: String
    /// Which request-target form was used; already checked against the method.
    public var targetForm: HTTPRequestTargetForm
    /// HTTP/1.0 or HTTP/1.1 (answer with the same major version; 1.1 is fine for both).
    public var version: HTTPVersion
    /// The header fields, validated; repeated names kept apart.
    public var headers: HTTPHeaders
    /// Whether the connection may be reused after this request: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
    public var keepAlive: Bool
    /// How the body is framed; the parser has already checked it for smuggling.
    public var bodyFraming: HTTPBodyFraming

    public init(method: HTTPMethod, target: String, targetForm: HTTPRequestTargetForm = .origin,
                version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders(),
                keepAlive: Bool = true, bodyFraming: HTTPBodyFraming = .none) {
        self.method = method
        self.target = target
        self.targetForm = targetForm
        self.version = version
        self.headers = headers
        self.keepAlive = keepAlive
        self.bodyFraming = bodyFraming
    }

    /// The path of the target, still percent-encoded: for absolute-form it is the path after
    /// the authority (`/` when empty); for authority-form and asterisk-form it is empty.
    public var path: Substring { HTTPTarget.split(target, form: targetForm).path }

    /// The query of the target without the `?`, still encoded; nil when there is none.
    public var query: Substring? { HTTPTarget.split(target, form: targetForm).query }
}

extension HTTPRequestHead {
    /// Appends `METHOD target HTTP/1.1\r\n`, each header line, and the final CRLF: a client's
    /// request head. The caller adds Host and its body's framing headers (``keepAlive`` and
    /// ``bodyFraming`` describe a parsed request and are not written).
    ///
    /// Nothing the caller passes can break the request line: method bytes that are not token
    /// characters become `-`, and target bytes outside visible ASCII (CR, LF, space, controls,
    /// UTF-8) are percent-encoded, so CR and LF never reach the wire. An empty method or target
    /// has no repair and is a programmer error.
    public func serialize(into out: inout [UInt8]) {
        precondition(!method.rawValue.isEmpty && !target.isEmpty, "a request needs a method and a target")
        for b in method.rawValue.utf8 { out.append(isTokenByte(b) ? b : UInt8(ascii: "-")) }
        out.append(asciiSpace)
        for b in target.utf8 {
            if b > 0x20 && b < 0x7F {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigit(b >> 4))
                out.append(upperHexDigit(b & 0x0F))
            }
        }
        out.append(contentsOf: version == .http1_1 ? " HTTP/1.1\r\n".utf8 : " HTTP/1.0\r\n".utf8)
        headers.serialize(into: &out)
        out.append(asciiCR)
        out.append(asciiLF)
    }

    /// The serialized head as a new array.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32 + target.utf8.count + headers.bytes.count + 4 * headers.count)
        serialize(into: &out)
        return out
    }
}

@inline(__always)
private func upperHexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "A") &+ nibble &- 10
}

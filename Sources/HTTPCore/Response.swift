/// A response status line and header block, ready to serialize.
///
/// The head says nothing about the body: the handler sets `Content-Length`, and the server
/// sends no body for HEAD.
public struct HTTPResponseHead: Sendable, Equatable {
    /// The status code, 100...999.
    public var status: Int
    /// The reason phrase; defaults to ``HTTPStatus/reasonPhrase(for:)``.
    public var reason: String
    /// `HTTP/1.1` unless set to answer an HTTP/1.0 client in kind.
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(status: Int, reason: String? = nil, version: HTTPVersion = .http1_1,
                headers: HTTPHeaders = HTTPHeaders()) {
        precondition((100...999).contains(status), "status code must have three digits")
        self.status = status
        self.reason = reason ?? HTTPStatus.reasonPhrase(for: status)
        self.version = version
        self.headers = headers
    }

    /// Appends `HTTP/1.1 200 OK\r\n`, each header line, and the final CRLF.
    /// CR and LF in the reason are replaced by spaces, so the head is always well-formed.
    public func serialize(into out: inout [UInt8]) {
        out.append(contentsOf: version == .http1_1 ? "HTTP/1.1 ".utf8 : "HTTP/1.0 ".utf8)
        out.appendDecimal(status)
        out.append(asciiSpace)
        for b in reason.utf8 { out.append(isFieldValueByte(b) ? b : asciiSpace) }
        out.append(asciiCR)
        out.append(asciiLF)
        headers.serialize(into: &out)
        out.append(asciiCR)
        out.append(asciiLF)
    }

    /// The serialized head as a new array.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + headers.bytes.count + 4 * headers.count)
        serialize(into: &out)
        return out
    }

    // MARK: - Header helpers (each replaces any earlier value)

    /// `Content-Length: n`.
    public mutating func setContentLength(_ length: Int) {
        headers.replaceOrAdd(name: "Content-Length", value: String(length))
    }

    /// `Date:` in IMF-fixdate for the given time.
    public mutating func setDate(epochSeconds: Int64) {
        headers.replaceOrAdd(name: "Date", value: HTTPDate.format(epochSeconds: epochSeconds))
    }

    /// `Last-Modified:` in IMF-fixdate.
    public mutating func setLastModified(epochSeconds: Int64) {
        headers.replaceOrAdd(name: "Last-Modified", value: HTTPDate.format(epochSeconds: epochSeconds))
    }

    /// `Connection: keep-alive` or `close`, as the client expects for the version of its request:
    /// an HTTP/1.1 client keeps alive by default so only `close` is written; an HTTP/1.0 client
    /// closes by default, so `keep-alive` is spelled out (whatever version this response carries).
    public mutating func setConnection(keepAlive: Bool, requestVersion: HTTPVersion = .http1_1) {
        headers.remove(name: "Connection")
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if requestVersion == .http1_0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
    }

    /// `Content-Range: bytes first-last/completeLength` for a 206.
    public mutating func setContentRange(_ range: ClosedRange<Int>, completeLength: Int) {
        headers.replaceOrAdd(name: "Content-Range", value: HTTPContentRange.value(for: range, completeLength: completeLength))
    }

    /// `Content-Range: bytes */completeLength` for a 416.
    public mutating func setUnsatisfiedContentRange(completeLength: Int) {
        headers.replaceOrAdd(name: "Content-Range", value: HTTPContentRange.unsatisfiedValue(completeLength: completeLength))
    }

    /// `Accept-Ranges: bytes`.
    public mutating func setAcceptRanges() {
        headers.replaceOrAdd(name: "Accept-Ranges", value: "bytes")
    }

    /// `ETag:` with the tag in its quoted (and `W/` for weak) form.
    public mutating func setETag(_ tag: HTTPETag) {
        headers.replaceOrAdd(name: "ETag", value: tag.headerValue)
    }
}

/// `Content-Range` values (RFC 9110 §14.4).
public enum HTTPContentRange: Sendable {
    /// `bytes first-last/completeLength`.
    public static func value(for range: ClosedRange<Int>, completeLength: Int) -> String {
        "bytes \(range.lowerBound)-\(range.upperBound)/\(completeLength)"
    }

    /// `bytes */completeLength`.
    public static func unsatisfiedValue(completeLength: Int) -> String {
        "bytes */\(completeLength)"
    }
}

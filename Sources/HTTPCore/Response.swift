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

/// A `Content-Range: bytes first-last/completeLength` value (RFC 9110 §14.4), as an origin
/// answers a range request with 206; `completeLength` is nil for `bytes first-last/*`.
public struct HTTPContentRange: Sendable, Hashable, CustomStringConvertible {
    /// The first byte's position.
    public var first: Int64
    /// The last byte's position (inclusive).
    public var last: Int64
    /// The whole representation's length, nil when the origin sent `*`.
    public var completeLength: Int64?

    public init(first: Int64, last: Int64, completeLength: Int64?) {
        self.first = first
        self.last = last
        self.completeLength = completeLength
    }

    /// Parses `bytes first-last/length` or `bytes first-last/*`: the unit case-insensitively, space
    /// or tab around the value and after the unit, positions as digits only. nil when malformed,
    /// when `last < first`, when `length <= last`, and for `bytes */length` (a 416's, which names no range).
    public init?(parsing value: some StringProtocol) {
        let all = Array(value.utf8)
        let v = trimOWS(all[...])
        guard v.count > 6, bytesEqualCaseInsensitive(v.prefix(5), "bytes"), v[v.startIndex + 5] == asciiSpace else { return nil }
        let spec = trimOWS(v.dropFirst(6))
        guard let slash = spec.firstIndex(of: UInt8(ascii: "/")),
              let dash = spec[..<slash].firstIndex(of: UInt8(ascii: "-")),
              let first = parseDecimal(spec[..<dash]), let last = parseDecimal(spec[(dash + 1)..<slash]),
              last >= first else { return nil }
        let lengthText = spec[(slash + 1)...]
        var completeLength: Int64? = nil
        if !lengthText.elementsEqual("*".utf8) {
            guard let n = parseDecimal(lengthText), n > last else { return nil }
            completeLength = Int64(n)
        }
        self.init(first: Int64(first), last: Int64(last), completeLength: completeLength)
    }

    /// How many bytes the range covers.
    public var count: Int64 { last - first + 1 }

    /// The header value, `bytes first-last/length` (or `/*`).
    public var description: String {
        "bytes \(first)-\(last)/" + (completeLength.map(String.init) ?? "*")
    }

    /// `bytes first-last/completeLength`.
    public static func value(for range: ClosedRange<Int>, completeLength: Int) -> String {
        "bytes \(range.lowerBound)-\(range.upperBound)/\(completeLength)"
    }

    /// `bytes */completeLength`.
    public static func unsatisfiedValue(completeLength: Int) -> String {
        "bytes */\(completeLength)"
    }
}

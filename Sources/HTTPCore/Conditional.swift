/// An entity tag (RFC 9110 §8.8.3): `"xyz"` (strong) or `W/"xyz"` (weak).
public struct HTTPETag: Sendable, Hashable, CustomStringConvertible {
    /// The characters between the quotes.
    public let opaqueTag: String
    /// Whether the tag is weak (`W/` prefix).
    public let isWeak: Bool

    /// Creates a tag from its unquoted characters; nil if they contain `"`, controls, space or DEL.
    public init?(opaqueTag: String, isWeak: Bool = false) {
        guard opaqueTag.utf8.allSatisfy(Self.isETagByte) else { return nil }
        self.opaqueTag = opaqueTag
        self.isWeak = isWeak
    }

    /// Parses `"xyz"` or `W/"xyz"` (surrounding whitespace allowed).
    public init?(parsing text: some StringProtocol) {
        let bytes = trimOWS(Array(text.utf8)[...])
        var cursor = bytes.startIndex
        guard let tag = Self.parse(bytes, at: &cursor), cursor == bytes.endIndex else { return nil }
        self = tag
    }

    private init(validated opaque: String, isWeak: Bool) {
        self.opaqueTag = opaque
        self.isWeak = isWeak
    }

    /// The header form: `"xyz"` or `W/"xyz"`.
    public var headerValue: String { (isWeak ? "W/\"" : "\"") + opaqueTag + "\"" }
    public var description: String { headerValue }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and identical. Used by If-Range.
    public func strongMatches(_ other: HTTPETag) -> Bool {
        !isWeak && !other.isWeak && opaqueTag == other.opaqueTag
    }

    /// Weak comparison: identical opaque tags, weakness ignored. Used by If-None-Match.
    public func weakMatches(_ other: HTTPETag) -> Bool {
        opaqueTag == other.opaqueTag
    }

    /// etagc = %x21 / %x23-7E / obs-text
    static func isETagByte(_ b: UInt8) -> Bool { b == 0x21 || (b >= 0x23 && b != 0x7F) }

    /// Parses one entity-tag at `cursor`, advancing it past the closing quote.
    static func parse(_ bytes: ArraySlice<UInt8>, at cursor: inout Int) -> HTTPETag? {
        var i = cursor
        var weak = false
        if bytes.endIndex - i >= 2 && bytes[i] == UInt8(ascii: "W") && bytes[i + 1] == UInt8(ascii: "/") {
            weak = true
            i += 2
        }
        guard i < bytes.endIndex, bytes[i] == UInt8(ascii: "\"") else { return nil }
        i += 1
        let start = i
        while i < bytes.endIndex && bytes[i] != UInt8(ascii: "\"") {
            guard isETagByte(bytes[i]) else { return nil }
            i += 1
        }
        guard i < bytes.endIndex else { return nil }
        let tag = HTTPETag(validated: String(decoding: bytes[start..<i], as: UTF8.self), isWeak: weak)
        cursor = i + 1
        return tag
    }
}

/// The value of `If-None-Match` or `If-Match`: `*` or a list of entity tags.
public enum HTTPETagCondition: Sendable, Hashable {
    case any
    case tags([HTTPETag])

    /// Parses `*` or `#entity-tag`; nil when malformed (the caller then ignores the header).
    public init?(parsing text: some StringProtocol) {
        self.init(bytes: Array(text.utf8)[...])
    }

    init?(bytes raw: ArraySlice<UInt8>) {
        let bytes = trimOWS(raw)
        if bytes.elementsEqual("*".utf8) { self = .any; return }
        var tags: [HTTPETag] = []
        var i = bytes.startIndex
        while i < bytes.endIndex {
            // Skip empty list elements and the separators around them.
            if isOWS(bytes[i]) || bytes[i] == asciiComma { i += 1; continue }
            guard let tag = HTTPETag.parse(bytes, at: &i) else { return nil }
            tags.append(tag)
            while i < bytes.endIndex && isOWS(bytes[i]) { i += 1 }
            guard i == bytes.endIndex || bytes[i] == asciiComma else { return nil }
        }
        guard !tags.isEmpty else { return nil }
        self = .tags(tags)
    }

    /// If-None-Match semantics: weak comparison; `*` matches any current representation.
    public func weaklyMatches(_ etag: HTTPETag?) -> Bool {
        switch self {
        case .any: return true
        case .tags(let tags):
            guard let etag else { return false }
            return tags.contains { $0.weakMatches(etag) }
        }
    }
}

/// What a GET or HEAD for a static representation should be answered with, after
/// `If-None-Match`, `If-Modified-Since`, `If-Range` and `Range` (RFC 9110 §13.2.2).
///
/// `If-Match` and `If-Unmodified-Since` are not evaluated: this server has no state-changing
/// methods on representations, and a seed peer's content never changes under a tag.
public enum HTTPResponseDecision: Sendable, Hashable {
    /// 200 with the whole body.
    case full
    /// 206 with these bytes and `Content-Range: bytes first-last/length`.
    case partial(ClosedRange<Int>)
    /// 304, no body.
    case notModified
    /// 416 with `Content-Range: bytes */length`.
    case rangeNotSatisfiable

    /// The status code to send.
    public var status: Int {
        switch self {
        case .full: return 200
        case .partial: return 206
        case .notModified: return 304
        case .rangeNotSatisfiable: return 416
        }
    }

    /// Decides the response for a request to a representation with this validator and length.
    ///
    /// - Only GET and HEAD are evaluated; any other method gets ``full`` (the server decides).
    /// - `If-None-Match` (weak comparison, `*` matches) → ``notModified``; when present,
    ///   `If-Modified-Since` is ignored. Malformed `If-None-Match` is ignored.
    /// - Else `If-Modified-Since` with `lastModified ≤ date` → ``notModified``.
    /// - `Range` applies to GET only (HEAD gets ``full``); `If-Range` must match first:
    ///   an entity-tag by strong comparison with `etag`, or an HTTP-date equal to `lastModified`.
    ///   If it does not match (or is malformed) the full body is sent.
    /// - Range selection as in ``HTTPByteRanges/select(rangeHeader:contentLength:)``; several
    ///   ranges give ``full``.
    public static func evaluate(request: HTTPRequestHead, etag: HTTPETag?, lastModified: Int64?,
                                contentLength: Int) -> HTTPResponseDecision {
        evaluate(method: request.method, headers: request.headers, etag: etag,
                 lastModified: lastModified, contentLength: contentLength)
    }

    /// ``evaluate(request:etag:lastModified:contentLength:)`` from a method and headers.
    public static func evaluate(method: HTTPMethod, headers: HTTPHeaders, etag: HTTPETag?, lastModified: Int64?,
                                contentLength: Int) -> HTTPResponseDecision {
        guard method == .get || method == .head else { return .full }

        if let inm = headers.combinedValueBytes("If-None-Match") {
            if let condition = HTTPETagCondition(bytes: inm), condition.weaklyMatches(etag) {
                return .notModified
            }
        } else if let ims = headers.first("If-Modified-Since"), let since = HTTPDate.parse(ims),
                  let lastModified, lastModified <= since {
            return .notModified
        }

        guard method == .get, let range = headers.combinedValueBytes("Range") else { return .full }
        if let ifRange = headers.combinedValueBytes("If-Range"),
           !ifRangeMatches(ifRange, etag: etag, lastModified: lastModified) {
            return .full
        }
        switch HTTPByteRanges.select(rangeBytes: range, contentLength: contentLength) {
        case .full, .multiple: return .full
        case .partial(let r): return .partial(r)
        case .unsatisfiable: return .rangeNotSatisfiable
        }
    }

    /// If-Range (RFC 9110 §13.1.5): a strong entity-tag match, or a date equal to Last-Modified.
    static func ifRangeMatches(_ raw: ArraySlice<UInt8>, etag: HTTPETag?, lastModified: Int64?) -> Bool {
        let value = trimOWS(raw)
        guard let first = value.first else { return false }
        if first == UInt8(ascii: "\"") || first == UInt8(ascii: "W") && value.dropFirst().first == UInt8(ascii: "/") {
            var cursor = value.startIndex
            guard let tag = HTTPETag.parse(value, at: &cursor), cursor == value.endIndex, let etag else { return false }
            return tag.strongMatches(etag)
        }
        guard let date = HTTPDate.parse(String(decoding: value, as: UTF8.self)), let lastModified else { return false }
        return date == lastModified
    }
}

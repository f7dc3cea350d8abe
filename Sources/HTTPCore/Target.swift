/// Request-target helpers: split into path and query, percent-decode, parse query parameters.
public enum HTTPTarget: Sendable {
    /// Splits a request-target into its still-encoded path and query (without `?`; nil if absent).
    ///
    /// For absolute-form (`http://host/p?q`) the scheme and authority are dropped and an empty
    /// path becomes `/`. Authority-form and asterisk-form have an empty path and no query.
    /// A fragment (`#...`, which clients should not send) is dropped.
    public static func split(_ target: String, form: HTTPRequestTargetForm = .origin) -> (path: Substring, query: Substring?) {
        var rest = target[...]
        switch form {
        case .authority, .asterisk:
            return ("", nil)
        case .absolute:
            guard let schemeEnd = rest.firstRange(of: "://") else { return ("/", nil) }
            rest = rest[schemeEnd.upperBound...]
            if let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
                rest = rest[pathStart...]
            } else {
                return ("/", nil)
            }
        case .origin:
            break
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var path = rest
        var query: Substring? = nil
        if let mark = rest.firstIndex(of: "?") {
            path = rest[..<mark]
            query = rest[rest.index(after: mark)...]
        }
        if form == .absolute && path.isEmpty { path = "/" }
        return (path, query)
    }
}

/// Why percent-decoding failed.
public enum PercentDecodingError: Error, Sendable, Hashable {
    /// `%` not followed by two hex digits.
    case invalidEscape
    /// The decoded bytes are not valid UTF-8 (only from the `String`-returning functions).
    case invalidUTF8
}

/// Percent-decoding (RFC 3986 §2.1) and `application/x-www-form-urlencoded` query parsing.
public enum PercentDecoding: Sendable {
    /// Decodes `%XX` escapes to bytes; with `plusAsSpace`, `+` becomes a space (form encoding).
    public static func decodeBytes(_ text: some StringProtocol, plusAsSpace: Bool = false)
        throws(PercentDecodingError) -> [UInt8] {
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            let b = utf8[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < utf8.count, let hi = hexValue(utf8[i + 1]), let lo = hexValue(utf8[i + 2]) else {
                    throw .invalidEscape
                }
                out.append(UInt8(hi << 4 | lo))
                i += 3
            } else {
                out.append(plusAsSpace && b == UInt8(ascii: "+") ? asciiSpace : b)
                i += 1
            }
        }
        return out
    }

    /// Decodes `%XX` escapes and requires the result to be UTF-8.
    public static func decode(_ text: some StringProtocol, plusAsSpace: Bool = false)
        throws(PercentDecodingError) -> String {
        let bytes = try decodeBytes(text, plusAsSpace: plusAsSpace)
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8 }
        return string
    }
}

/// Query parameters parsed as `application/x-www-form-urlencoded`: `&`-separated `name=value`
/// pairs, `+` meaning space, percent-escapes decoded. Empty pairs are skipped; a pair without
/// `=` has an empty value. Order and repeats are kept.
public struct HTTPQueryParameters: Sendable, Equatable, Sequence {
    /// The decoded pairs in order.
    public var pairs: [(name: String, value: String)]

    /// Parses a query string (without the leading `?`).
    public init(parsing query: some StringProtocol) throws(PercentDecodingError) {
        pairs = []
        for piece in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring.SubSequence, value: Substring.SubSequence
            let s = Substring(piece)
            if let eq = s.firstIndex(of: "=") {
                name = s[..<eq]
                value = s[s.index(after: eq)...]
            } else {
                name = s
                value = ""
            }
            pairs.append((try PercentDecoding.decode(name, plusAsSpace: true),
                          try PercentDecoding.decode(value, plusAsSpace: true)))
        }
    }

    /// The first value for a name.
    public subscript(name: String) -> String? {
        pairs.first { $0.name == name }?.value
    }

    /// Every value for a name, in order.
    public func values(for name: String) -> [String] {
        pairs.filter { $0.name == name }.map(\.value)
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        pairs.makeIterator()
    }

    public static func == (lhs: HTTPQueryParameters, rhs: HTTPQueryParameters) -> Bool {
        lhs.pairs.count == rhs.pairs.count && zip(lhs.pairs, rhs.pairs).allSatisfy { $0 == $1 }
    }
}

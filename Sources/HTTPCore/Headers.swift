/// An ordered list of HTTP header fields, stored as bytes.
///
/// Names compare case-insensitively. Field lines are kept in order and repeated
/// names are kept apart: ``values(for:)`` returns every line's value, while the
/// subscript joins them with `", "` as RFC 9110 §5.3 allows for list-valued fields.
///
/// Storage is one byte buffer plus an index of ranges, so parsing a request head
/// creates no `String` per field; strings are built only when asked for.
public struct HTTPHeaders: Sendable {
    /// Byte ranges of one field line inside ``bytes``.
    @usableFromInline
    struct Field: Sendable {
        @usableFromInline var name: Range<Int>
        @usableFromInline var value: Range<Int>
        @usableFromInline init(name: Range<Int>, value: Range<Int>) { self.name = name; self.value = value }
    }

    @usableFromInline var bytes: [UInt8]
    @usableFromInline var fields: [Field]

    /// Creates an empty header list.
    public init() {
        bytes = []
        fields = []
    }

    /// Creates headers from name/value pairs, in order.
    public init(_ pairs: [(String, String)]) {
        self.init()
        for (name, value) in pairs { add(name: name, value: value) }
    }

    /// Wraps bytes the parser already validated.
    init(validatedBytes: [UInt8], fields: [Field]) {
        self.bytes = validatedBytes
        self.fields = fields
    }

    /// The number of field lines (repeated names count once per line).
    public var count: Int { fields.count }

    /// Whether there are no fields.
    public var isEmpty: Bool { fields.isEmpty }

    /// Appends a field line.
    ///
    /// The name should be a token and the value must not contain CR, LF or NUL; to make
    /// header injection impossible, any such byte is replaced by a space (and in the name,
    /// anything that is not a token character becomes `-`).
    public mutating func add(name: String, value: String) {
        let nameStart = bytes.count
        // Responses add fields on every request: copy whole valid strings at once, and fix
        // byte by byte only the rare invalid one.
        if name.utf8.allSatisfy(isTokenByte) { bytes.append(contentsOf: name.utf8) }
        else { for b in name.utf8 { bytes.append(isTokenByte(b) ? b : UInt8(ascii: "-")) } }
        let nameEnd = bytes.count
        if value.utf8.allSatisfy(isFieldValueByte) { bytes.append(contentsOf: value.utf8) }
        else { for b in value.utf8 { bytes.append(isFieldValueByte(b) ? b : asciiSpace) } }
        fields.append(Field(name: nameStart..<nameEnd, value: nameEnd..<bytes.count))
    }

    /// Removes every line with this name, then appends one.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes every line with this name (its bytes stay in the buffer, unreferenced).
    public mutating func remove(name: String) {
        fields.removeAll { bytesEqualCaseInsensitive(bytes[$0.name], name) }
    }

    /// Whether a field with this name is present.
    public func contains(_ name: String) -> Bool {
        fields.contains { bytesEqualCaseInsensitive(bytes[$0.name], name) }
    }

    /// The values of every line with this name, in order, each as sent.
    public func values(for name: String) -> [String] {
        fields.compactMap {
            bytesEqualCaseInsensitive(bytes[$0.name], name) ? string(bytes[$0.value]) : nil
        }
    }

    /// The first line's value for this name.
    public func first(_ name: String) -> String? {
        firstValueBytes(name).map(string)
    }

    /// All values for this name joined with `", "` (RFC 9110 §5.3), or nil when absent.
    ///
    /// Do not use this for `Set-Cookie`, which is not a list; use ``values(for:)``.
    public subscript(name: String) -> String? {
        combinedValueBytes(name).map(string)
    }

    /// The elements of a comma-separated list header across all its lines, trimmed, empty ones dropped.
    public func listElements(for name: String) -> [String] {
        var out: [String] = []
        for field in fields where bytesEqualCaseInsensitive(bytes[field.name], name) {
            for element in splitList(bytes[field.value]) where !element.isEmpty { out.append(string(element)) }
        }
        return out
    }

    /// Whether a list header (such as `Connection`) contains this token, case-insensitively.
    public func containsToken(_ token: String, in name: String) -> Bool {
        for field in fields where bytesEqualCaseInsensitive(bytes[field.name], name) {
            for element in splitList(bytes[field.value]) where bytesEqualCaseInsensitive(element, token) {
                return true
            }
        }
        return false
    }

    @usableFromInline
    func firstValueBytes(_ name: String) -> ArraySlice<UInt8>? {
        for field in fields where bytesEqualCaseInsensitive(bytes[field.name], name) {
            return bytes[field.value]
        }
        return nil
    }

    /// Every value of this name joined with ", " as bytes (nil when absent); the one-line case copies nothing.
    func combinedValueBytes(_ name: String) -> ArraySlice<UInt8>? {
        var found: ArraySlice<UInt8>? = nil
        var joined: [UInt8]? = nil
        for field in fields where bytesEqualCaseInsensitive(bytes[field.name], name) {
            if let first = found {
                if joined == nil { joined = Array(first) }
                joined!.append(contentsOf: [asciiComma, asciiSpace])
                joined!.append(contentsOf: bytes[field.value])
            } else {
                found = bytes[field.value]
            }
        }
        if let joined { return joined[...] }
        return found
    }

    /// Writes `Name: value\r\n` for every line.
    @inlinable
    public func serialize(into out: inout [UInt8]) {
        for field in fields {
            out.append(contentsOf: bytes[field.name])
            out.append(asciiColon)
            out.append(asciiSpace)
            out.append(contentsOf: bytes[field.value])
            out.append(asciiCR)
            out.append(asciiLF)
        }
    }

    private func string(_ slice: ArraySlice<UInt8>) -> String {
        String(decoding: slice, as: UTF8.self)
    }
}

extension HTTPHeaders: Sequence {
    /// A field line as strings.
    public typealias Element = (name: String, value: String)

    /// Iterates field lines in order.
    public struct Iterator: IteratorProtocol, Sendable {
        let headers: HTTPHeaders
        var index = 0
        public mutating func next() -> Element? {
            guard index < headers.fields.count else { return nil }
            let field = headers.fields[index]
            index += 1
            return (String(decoding: headers.bytes[field.name], as: UTF8.self),
                    String(decoding: headers.bytes[field.value], as: UTF8.self))
        }
    }

    public func makeIterator() -> Iterator { Iterator(headers: self) }
}

extension HTTPHeaders: ExpressibleByDictionaryLiteral {
    /// `["Content-Type": "text/plain"]`, order preserved.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }
}

extension HTTPHeaders: Equatable {
    /// Equal when the same lines appear in the same order (names compared case-insensitively).
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.fields.count == rhs.fields.count else { return false }
        for (a, b) in zip(lhs.fields, rhs.fields) {
            let an = lhs.bytes[a.name], bn = rhs.bytes[b.name]
            guard an.count == bn.count, zip(an, bn).allSatisfy({ asciiLowercased($0) == asciiLowercased($1) }),
                  lhs.bytes[a.value].elementsEqual(rhs.bytes[b.value]) else { return false }
        }
        return true
    }
}

extension HTTPHeaders: CustomStringConvertible {
    public var description: String {
        map { "\($0.name): \($0.value)" }.joined(separator: "\n")
    }
}

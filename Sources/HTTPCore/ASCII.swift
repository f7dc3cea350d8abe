// Byte classes from RFC 9110 §5.6 and RFC 3986, as switch-based predicates so the
// hot parsing loops neither allocate nor touch lazily initialised globals.

@usableFromInline let asciiCR: UInt8 = 0x0D
@usableFromInline let asciiLF: UInt8 = 0x0A
@usableFromInline let asciiSpace: UInt8 = 0x20
@usableFromInline let asciiTab: UInt8 = 0x09
@usableFromInline let asciiColon: UInt8 = 0x3A
@usableFromInline let asciiComma: UInt8 = 0x2C
@usableFromInline let asciiSemicolon: UInt8 = 0x3B

/// `tchar` of RFC 9110 §5.6.2: the characters of a token (method, header name, coding).
@inline(__always) @usableFromInline
func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
         UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
         UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
         UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// Bytes allowed inside a field value: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5).
@inline(__always) @usableFromInline
func isFieldValueByte(_ b: UInt8) -> Bool {
    b == asciiTab || (b >= 0x20 && b != 0x7F)
}

@inline(__always) @usableFromInline
func isOWS(_ b: UInt8) -> Bool { b == asciiSpace || b == asciiTab }

@inline(__always) @usableFromInline
func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

@inline(__always) @usableFromInline
func asciiLowercased(_ b: UInt8) -> UInt8 {
    (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) ? b | 0x20 : b
}

@inline(__always) @usableFromInline
func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b &- UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b &- UInt8(ascii: "a") &+ 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b &- UInt8(ascii: "A") &+ 10)
    default: return nil
    }
}

/// Case-insensitive ASCII comparison of a byte slice with a string's UTF-8.
@inlinable
func bytesEqualCaseInsensitive(_ bytes: ArraySlice<UInt8>, _ other: some StringProtocol) -> Bool {
    let utf8 = other.utf8
    guard bytes.count == utf8.count else { return false }
    var i = bytes.startIndex
    for o in utf8 {
        if asciiLowercased(bytes[i]) != asciiLowercased(o) { return false }
        i += 1
    }
    return true
}

/// Trims optional whitespace (SP / HTAB) from both ends of a byte range.
@inline(__always) @usableFromInline
func trimOWS(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    var lo = bytes.startIndex, hi = bytes.endIndex
    while lo < hi && isOWS(bytes[lo]) { lo += 1 }
    while hi > lo && isOWS(bytes[hi - 1]) { hi -= 1 }
    return bytes[lo..<hi]
}

/// Splits a comma-separated list (RFC 9110 §5.6.1) into OWS-trimmed elements, empty ones included.
@usableFromInline
func splitList(_ bytes: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
    var out: [ArraySlice<UInt8>] = []
    var start = bytes.startIndex
    var i = start
    while i < bytes.endIndex {
        if bytes[i] == asciiComma {
            out.append(trimOWS(bytes[start..<i]))
            start = i + 1
        }
        i += 1
    }
    out.append(trimOWS(bytes[start..<bytes.endIndex]))
    return out
}

/// Parses 1*DIGIT; nil on an empty string, any non-digit (sign, space) or overflow of `Int`.
@usableFromInline
func parseDecimal(_ bytes: ArraySlice<UInt8>) -> Int? {
    guard !bytes.isEmpty else { return nil }
    var value = 0
    for b in bytes {
        guard isDigit(b) else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(Int(b &- UInt8(ascii: "0")))
        if o1 || o2 { return nil }
        value = s
    }
    return value
}

extension Array where Element == UInt8 {
    @inline(__always) @usableFromInline
    mutating func appendASCII(_ s: String) {
        append(contentsOf: s.utf8)
    }

    /// Appends the decimal digits of a non-negative integer without building a String.
    @inline(__always) @usableFromInline
    mutating func appendDecimal(_ value: Int) {
        precondition(value >= 0, "appendDecimal takes non-negative values")
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            append(UInt8(truncatingIfNeeded: rest / divisor) &+ UInt8(ascii: "0"))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// Characters of `uri-host [ ":" port ]` (RFC 3986 §3.2.2): unreserved, sub-delims, `%`, `:`, `[`, `]`.
@inline(__always) @usableFromInline
func isHostByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
         UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
         UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
         UInt8(ascii: "="), UInt8(ascii: "%"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
        return true
    default:
        return false
    }
}


/// The key of a cached object: SHA-256 of its normalized URL and options, or, when the
/// content digest is known (`sha256:<hex>`, as for OCI blobs), that digest itself.
public struct TaskID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable { case url = 0, digest = 1 }

    public let kind: Kind
    /// The 32 bytes of the hash.
    public let hash: SHA256Digest

    public init(kind: Kind, hash: SHA256Digest) {
        self.kind = kind
        self.hash = hash
    }

    /// `<64 hex>` for URL tasks, `sha256:<64 hex>` for digest tasks.
    public var description: String { kind == .url ? hash.hex : "sha256:" + hash.hex }

    /// The data file's name: safe for a path by construction (a prefix and hex digits only).
    public var fileName: String { (kind == .url ? "u-" : "d-") + hash.hex }

    /// Parses and validates an id from outside (a URL path, a CLI argument): exactly 64
    /// lowercase hex digits, optionally prefixed by `sha256:`. Anything else is nil.
    public init?(_ text: some StringProtocol) {
        if text.hasPrefix("sha256:") {
            guard let h = SHA256Digest(hex: text.dropFirst(7)) else { return nil }
            self.init(kind: .digest, hash: h)
        } else {
            guard let h = SHA256Digest(hex: text) else { return nil }
            self.init(kind: .url, hash: h)
        }
    }

    /// ``init(_:)`` from UTF-8 bytes (a request path segment), without building a String.
    /// (Request paths arrive as `ArraySlice<UInt8>` and take the concrete overload below: this
    /// runs on every request, and the unspecialized generic loop cost ~8 % of a 64 KiB
    /// request's CPU.)
    public init?<C: Collection<UInt8>>(utf8 bytes: C) {
        self.init(utf8: ArraySlice(bytes))
    }

    /// ``init(utf8:)`` for a slice of bytes, without generics.
    public init?(utf8 b: ArraySlice<UInt8>) {
        if b.count == 71 {
            guard b.prefix(7).elementsEqual("sha256:".utf8), let h = SHA256Digest(hexBytes: b.dropFirst(7)) else { return nil }
            self.init(kind: .digest, hash: h)
        } else {
            guard let h = SHA256Digest(hexBytes: b) else { return nil }
            self.init(kind: .url, hash: h)
        }
    }

    /// The id of a URL's content: SHA-256 over length-prefixed fields (so no two field lists
    /// encode alike) of the normalized URL, tag, application and piece length (0 = default).
    public static func forURL(_ url: String, tag: String = "", application: String = "", pieceLength: Int = 0) throws(URLNormalizationError) -> TaskID {
        let normalized = try URLNormalizer.normalize(url)
        var encoded: [UInt8] = []
        for field in ["darter-task-v1", normalized, tag, application, String(pieceLength)] {
            let bytes = Array(field.utf8)
            let n = UInt32(bytes.count)
            encoded += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
            encoded += bytes
        }
        return TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash(encoded))!)
    }

    /// The id of content known by digest (`sha256:<64 hex>`). Nil if malformed.
    public static func forDigest(_ digest: String) -> TaskID? {
        guard digest.hasPrefix("sha256:") else { return nil }
        return TaskID(digest)
    }

    public static func < (a: TaskID, b: TaskID) -> Bool {
        a.kind.rawValue != b.kind.rawValue ? a.kind.rawValue < b.kind.rawValue : a.hash < b.hash
    }
}

/// A SHA-256 digest value.
public struct SHA256Digest: Hashable, Sendable, Comparable {
    // Four words: cheap to hash and compare.
    public let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        func word(_ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(bytes[i * 8 + $1]) } }
        w0 = word(0); w1 = word(1); w2 = word(2); w3 = word(3)
    }

    /// Exactly 64 lowercase hex digits.
    public init?(hex: some StringProtocol) {
        self.init(hexBytes: hex.utf8)
    }

    /// Exactly 64 lowercase hex digits, as UTF-8 bytes.
    public init?<C: Collection<UInt8>>(hexBytes: C) {
        self.init(hexBytes: ArraySlice(hexBytes))
    }

    /// Exactly 64 lowercase hex digits in a slice of bytes, without generics.
    public init?(hexBytes b: ArraySlice<UInt8>) {
        guard b.count == 64 else { return nil }
        func word(_ start: Int) -> UInt64? {
            var w: UInt64 = 0
            for i in (b.startIndex + start)..<(b.startIndex + start + 16) {
                guard let v = hexValue(b[i]) else { return nil }
                w = w << 4 | UInt64(v)
            }
            return w
        }
        guard let a = word(0), let b1 = word(16), let c = word(32), let d = word(48) else { return nil }
        w0 = a; w1 = b1; w2 = c; w3 = d
    }

    public var bytes: [UInt8] {
        [w0, w1, w2, w3].flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (56 - 8 * $0)) } }
    }

    public var hex: String {
        String(unsafeUninitializedCapacity: 64) { out in
            for (k, w) in [w0, w1, w2, w3].enumerated() {
                for j in 0..<16 {
                    let nibble = Int(truncatingIfNeeded: (w >> UInt64(60 - 4 * j)) & 0xf)
                    out[k * 16 + j] = nibble < 10 ? UInt8(ascii: "0") + UInt8(nibble) : UInt8(ascii: "a") + UInt8(nibble - 10)
                }
            }
            return 64
        }
    }

    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }
}


private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    default: return nil
    }
}

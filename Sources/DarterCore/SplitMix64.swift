extension SplitMix64 {
    /// SplitMix64's mixing step: a cheap, well-mixed function of (seed, index) (the pattern
    /// test content is made of).
    @inline(__always)
    public static func word(seed: UInt64, index: UInt64) -> UInt64 {
    var z = seed &+ index &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
    }
}

/// A deterministic random generator (SplitMix64), so test and benchmark runs reproduce.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var counter: UInt64
    private let seed: UInt64
    public init(seed: UInt64) { self.seed = seed; counter = 0 }
    public mutating func next() -> UInt64 {
        counter &+= 1
        return Self.word(seed: seed, index: counter)
    }

    /// `count` bytes of the stream seeded with `seed` (reproducible test and benchmark content):
    /// each word little-endian, the last one cut short.
    public static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        // Whole words stored at once: byte by byte this took 0.57 s for 32 MiB in a debug build,
        // on one of the two cooperative threads a parallel test run shares (measured).
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        let whole = count / 8
        out.withUnsafeMutableBytes { raw in
            for i in 0..<whole { raw.storeBytes(of: rng.next().littleEndian, toByteOffset: i * 8, as: UInt64.self) }
        }
        if whole * 8 < count {
            let w = rng.next()
            for k in 0..<(count - whole * 8) { out[whole * 8 + k] = UInt8(truncatingIfNeeded: w >> (8 * UInt64(k))) }
        }
        return out
    }
}


/// Lowercase hexadecimal text.
public enum Hex {
    /// Two digits per byte.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Exactly eight digits (a CRC32C as the piece protocol writes it).
    public static func word(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// The value of up to eight hex digits (either case); nil for anything else.
    public static func parseWord(_ s: some StringProtocol) -> UInt32? {
        // Digits only: UInt32(_:radix:) alone also takes a sign ("+1", "-0").
        guard (1...8).contains(s.utf8.count) else { return nil }
        var v: UInt32 = 0
        for b in s.utf8 {
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt32(digit)
        }
        return v
    }
}

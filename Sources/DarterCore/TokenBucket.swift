/// A token bucket of bytes per second, in the caller's time (`now` in nanoseconds on any
/// monotonic clock). Pure: `--upload-rate`, `--download-rate` and `--origin-rate` share it
/// through `DarterIO.RateLimiter`, and its arithmetic is tested without a clock.
///
/// It keeps the moment everything granted so far is paid for at the rate (GCRA's "theoretical
/// arrival time") rather than a count of tokens: a take is never refused and never retried. It
/// is granted at once, into debt if need be, and answers how long to wait before using the
/// bytes. So a request larger than the burst waits for its excess only, and takes queued
/// behind a debt are served in the order they came, never more than the rate in all.
public struct TokenBucket: Sendable, Equatable {
    /// 0: unlimited (every take is free).
    public let bytesPerSecond: Int64
    /// Bytes an idle bucket lets through at once.
    public let burst: Int64
    /// When every byte granted so far is paid for; nil: never used (full).
    private var paidUntil: Int64?

    public init(bytesPerSecond: Int64, burst: Int64) {
        self.bytesPerSecond = max(0, bytesPerSecond)
        self.burst = max(1, burst)
    }

    /// A bucket with ``defaultBurst(bytesPerSecond:)``.
    public init(bytesPerSecond: Int64) {
        self.init(bytesPerSecond: bytesPerSecond, burst: Self.defaultBurst(bytesPerSecond: bytesPerSecond))
    }

    public var isUnlimited: Bool { bytesPerSecond == 0 }

    /// Takes `n` bytes at `now`; returns the nanoseconds to wait before using them (0: at once).
    public mutating func take(_ n: Int64, now: Int64) -> Int64 {
        guard bytesPerSecond > 0, n > 0 else { return 0 }
        // A bucket idle since before `now` has refilled, up to the burst: it starts from now.
        let start = max(paidUntil ?? now, now)
        let end = Self.saturatingAdd(start, nanoseconds(for: n))
        paidUntil = end
        return max(0, end - now - nanoseconds(for: burst))
    }

    /// Tokens in the bucket at `now` (negative: owed by takes still waiting), at most the burst.
    public func tokens(now: Int64) -> Int64 {
        guard bytesPerSecond > 0 else { return burst }
        let owed = max(0, (paidUntil ?? now) - now)
        return burst - Self.mulDiv(owed, bytesPerSecond, 1_000_000_000, roundingUp: false)
    }

    /// The time `n` bytes take at the rate, rounded up (so takes never add up past the rate).
    func nanoseconds(for n: Int64) -> Int64 {
        Self.mulDiv(n, 1_000_000_000, bytesPerSecond, roundingUp: true)
    }

    /// a × b / c for non-negative operands, at most ``forever``: exact while a × b fits 63 bits
    /// (n × 1e9 does not for n over 9.2 GB), in floating point past that.
    static func mulDiv(_ a: Int64, _ b: Int64, _ c: Int64, roundingUp: Bool) -> Int64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        if high == 0 && low <= UInt64(Int64.max) {
            let p = Int64(low)
            return min(forever, p / c + (roundingUp && p % c > 0 ? 1 : 0))
        }
        let q = Double(a) * Double(b) / Double(c)
        return q >= Double(forever) ? forever : Int64(roundingUp ? q.rounded(.up) : q.rounded(.down))
    }

    /// A wait no caller will see the end of (about 73 years), small enough to add to a clock.
    static let forever: Int64 = Int64.max / 4

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int64.max / 2 : min(sum, Int64.max / 2)
    }

    /// An eighth of a second of the rate, and at least one ``chunk(bytesPerSecond:)``: short
    /// bursts, so a limited transfer is paced from its start (8 MiB at 4 MiB/s takes ~1.9 s).
    public static func defaultBurst(bytesPerSecond: Int64) -> Int64 {
        max(Int64(chunk(bytesPerSecond: bytesPerSecond)), bytesPerSecond / 8)
    }

    /// Bytes a paced stream (a response body, an origin body) asks for at a time: ~1/16 s of
    /// the rate, from 16 KiB to 256 KiB. Smaller is smoother; larger costs fewer takes and
    /// timers next to the I/O they pace.
    public static func chunk(bytesPerSecond: Int64) -> Int {
        Int(min(256 << 10, max(16 << 10, bytesPerSecond / 16)))
    }
}

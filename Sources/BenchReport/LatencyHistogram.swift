/// Latencies (nanoseconds) in log-linear buckets, as HdrHistogram keeps them: exact below 128,
/// then 64 buckets per power of two, so any recorded value is reported within 1/64 (1.6 %) of
/// itself, in 30 KiB whatever the count. Recording is an index computation and an increment
/// (the load generator records every request on its loop's thread); histograms of several
/// loops merge by adding counts.
public struct LatencyHistogram: Sendable, Equatable {
    /// Buckets per power of two above the exact range (2^subBucketBits).
    static let subBucketBits = 6
    static let subBucketCount = 1 << subBucketBits
    /// Int64's top bit is 62: indexes run up to (62 - 6) * 64 + 127.
    static let bucketCount = (62 - subBucketBits) * subBucketCount + 2 * subBucketCount

    private var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    /// Sum of recorded values (for the mean).
    public private(set) var total: Double = 0
    public private(set) var min: Int64 = .max
    public private(set) var max: Int64 = 0

    public init() { counts = [UInt64](repeating: 0, count: Self.bucketCount) }

    /// The bucket of `value` (negative values count as 0).
    @inline(__always)
    static func index(of value: Int64) -> Int {
        let v = UInt64(Swift.max(0, value))
        if v < UInt64(2 * subBucketCount) { return Int(v) }
        let msb = 63 - v.leadingZeroBitCount  // >= subBucketBits + 1
        let shift = msb - subBucketBits
        return shift * subBucketCount + Int(v >> UInt64(shift))
    }

    /// The smallest and largest value that fall in bucket `i`.
    static func bounds(of i: Int) -> ClosedRange<Int64> {
        if i < 2 * subBucketCount { return Int64(i)...Int64(i) }
        let shift = i / subBucketCount - 1
        let mantissa = Int64(i % subBucketCount + subBucketCount)
        return (mantissa << shift)...((mantissa << shift) + ((1 << shift) - 1))
    }

    @inline(__always)
    public mutating func record(_ nanoseconds: Int64) {
        counts[Self.index(of: nanoseconds)] &+= 1
        count &+= 1
        total += Double(nanoseconds)
        if nanoseconds < min { min = nanoseconds }
        if nanoseconds > max { max = nanoseconds }
    }

    public mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for i in 0..<counts.count where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        count &+= other.count
        total += other.total
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    public var mean: Double { count == 0 ? 0 : total / Double(count) }

    /// The value at quantile `q` (0...1): the largest value of the bucket holding the
    /// ceil(q × count)-th smallest recording, clamped to the recorded min and max (so p100 is
    /// the max exactly). 0 when empty.
    public func value(atQuantile q: Double) -> Int64 {
        guard count > 0 else { return 0 }
        if q <= 0 { return min }
        let rank = Swift.max(1, UInt64((Swift.min(1, Swift.max(0, q)) * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for i in 0..<counts.count where counts[i] != 0 {
            seen += counts[i]
            if seen >= rank { return Swift.min(Swift.max(Self.bounds(of: i).upperBound, min), max) }
        }
        return max
    }

    /// (fraction of recordings at or below, value) for each bucket that holds any: the CDF.
    public var cumulative: [(fraction: Double, value: Int64)] {
        var out: [(Double, Int64)] = []
        var seen: UInt64 = 0
        for i in 0..<counts.count where counts[i] != 0 {
            seen += counts[i]
            out.append((Double(seen) / Double(count), Swift.min(Swift.max(Self.bounds(of: i).upperBound, min), max)))
        }
        return out
    }
}

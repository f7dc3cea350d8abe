import Testing
@testable import DarterCore

private let second: Int64 = 1_000_000_000
private let MiB: Int64 = 1 << 20

@Suite("TokenBucket")
struct TokenBucketTests {
    @Test("a full bucket lets the burst through at once; the next byte waits for its refill")
    func burst() {
        var b = TokenBucket(bytesPerSecond: 1_000_000, burst: 250_000)
        #expect(b.tokens(now: 0) == 250_000)
        #expect(b.take(125_000, now: 0) == 0)
        #expect(b.take(125_000, now: 0) == 0)
        #expect(b.tokens(now: 0) == 0)
        // 1,000 bytes at 1 MB/s: a millisecond.
        #expect(b.take(1_000, now: 0) == second / 1_000)
        #expect(b.tokens(now: 0) == -1_000)
        #expect(b.tokens(now: second / 1_000) == 0)
    }

    @Test("tokens come back at the rate")
    func refill() {
        var b = TokenBucket(bytesPerSecond: MiB, burst: MiB)
        #expect(b.take(MiB, now: 0) == 0)
        #expect(b.tokens(now: second / 4) == MiB / 4)
        #expect(b.take(MiB / 4, now: second / 4) == 0)
        #expect(b.take(MiB / 4, now: second / 4) == second / 4, "a quarter more waits for a quarter second")
        #expect(b.tokens(now: second / 2) == 0)
    }

    @Test("an idle bucket fills up to its burst, never past it")
    func burstCap() {
        var b = TokenBucket(bytesPerSecond: MiB, burst: 64 << 10)
        #expect(b.take(64 << 10, now: 0) == 0)
        // An hour idle: still only the burst.
        let later = 3600 * second
        #expect(b.tokens(now: later) == 64 << 10)
        #expect(b.take(64 << 10, now: later) == 0)
        #expect(b.take(64 << 10, now: later) == second / 16)
    }

    @Test("a request larger than the burst is granted, after the time its excess takes")
    func largerThanBurst() {
        var b = TokenBucket(bytesPerSecond: 4 * MiB, burst: 512 << 10)
        // 4 MiB: the burst now, 3.5 MiB at 4 MiB/s.
        #expect(b.take(4 * MiB, now: 0) == second * 7 / 8)
        // The next one queues behind it: its whole 4 MiB after that.
        #expect(b.take(4 * MiB, now: 0) == second * 15 / 8)
        // Three seconds on, both are paid for: a byte passes at once.
        #expect(b.take(1, now: 3 * second) == 0)
    }

    @Test("takes in debt are served in order, never faster than the rate in all")
    func neverFasterThanTheRate() {
        var b = TokenBucket(bytesPerSecond: 10 * MiB, burst: MiB)
        var now: Int64 = 0
        var sent: Int64 = 0
        var rng = SplitMix64(seed: 7)
        // Random takes, each used once its wait is over; the clock moves by random steps.
        while now < 20 * second {
            let n = Int64.random(in: 1...(512 << 10), using: &rng)
            let wait = b.take(n, now: now)
            #expect(wait >= 0)
            sent += n
            now += wait
            #expect(sent <= b.burst + (now * 10 * MiB + second - 1) / second, "at \(now) ns: \(sent) bytes")
            now += Int64.random(in: 0...(second / 100), using: &rng)
        }
        // And it is not slower either: the clock moved little more than the bytes take.
        #expect(Double(sent) / Double(now) * 1e9 > 0.95 * Double(10 * MiB))
    }

    @Test("rate 0 is unlimited: nothing waits, whatever the size")
    func unlimited() {
        var b = TokenBucket(bytesPerSecond: 0)
        #expect(b.isUnlimited)
        for n in [Int64(1), 1 << 30, Int64.max / 2] { #expect(b.take(n, now: 0) == 0) }
        #expect(b.tokens(now: 0) == b.burst)
    }

    @Test("zero-byte takes are free; huge ones wait without overflowing")
    func edges() {
        var b = TokenBucket(bytesPerSecond: 1, burst: 1)
        #expect(b.take(0, now: 5) == 0)
        #expect(b.take(1, now: 5) == 0)
        #expect(b.take(1, now: 5) == second)
        // 16 EiB at 1 byte/s: "forever", not a trap.
        let forever = b.take(Int64.max, now: 5)
        #expect(forever > 50 * 365 * 86_400 * second)
        #expect(b.take(Int64.max, now: 5) >= forever)
        var fast = TokenBucket(bytesPerSecond: Int64.max / 2, burst: 1 << 20)
        #expect(fast.take(1 << 40, now: 0) >= 0)
    }

    @Test("the default burst is 1/8 s of the rate, at least one chunk; chunks are 16–256 KiB")
    func defaults() {
        #expect(TokenBucket.chunk(bytesPerSecond: 1 << 10) == 16 << 10)
        #expect(TokenBucket.chunk(bytesPerSecond: 1 * MiB) == 64 << 10)
        #expect(TokenBucket.chunk(bytesPerSecond: 4 * MiB) == 256 << 10)
        #expect(TokenBucket.chunk(bytesPerSecond: 1 << 40) == 256 << 10)
        #expect(TokenBucket.defaultBurst(bytesPerSecond: 1 << 10) == 16 << 10)
        #expect(TokenBucket.defaultBurst(bytesPerSecond: 4 * MiB) == 512 << 10)
        #expect(TokenBucket.defaultBurst(bytesPerSecond: 800 * MiB) == 100 * MiB)
        #expect(TokenBucket(bytesPerSecond: 4 * MiB).burst == 512 << 10)
    }
}

import Testing
import DarterIO
import DarterCore
@testable import PieceStore

/// Task ids that sort by `n`.
private func tid(_ n: Int) -> TaskID {
    TaskID(kind: .url, hash: SHA256Digest(bytes: [UInt8](repeating: 0, count: 24) + withUnsafeBytes(of: UInt64(n).bigEndian) { Array($0) })!)
}

private func candidate(_ n: Int, bytes: Int64, at: Int64, pinned: Bool = false, inUse: Bool = false) -> EvictionCandidate {
    EvictionCandidate(id: tid(n), bytes: bytes, lastAccess: at, pinned: pinned, inUse: inUse)
}

private func ids(_ d: EvictionPolicy.Decision) -> [TaskID] { d.evict.map(\.id) }
private func reasons(_ d: EvictionPolicy.Decision) -> [EvictionPolicy.Reason] { d.evict.map(\.reason) }

@Suite("EvictionPolicy")
struct EvictionPolicyTests {
    /// a..d, oldest first, given out of order.
    let four = [
        candidate(3, bytes: 30, at: 300),
        candidate(1, bytes: 10, at: 100),
        candidate(4, bytes: 40, at: 400),
        candidate(2, bytes: 20, at: 200),
    ]
    let now: Int64 = 1000

    @Test("nothing goes when everything fits")
    func nothingToDo() {
        let p = EvictionPolicy(quotaBytes: 100)
        let d = p.decide(candidates: four, storeBytes: 100, fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: 900), now: now)
        #expect(d.evict.isEmpty)
        #expect(d.fits)
        #expect(d == EvictionPolicy.Decision(evict: [], fits: true))
    }

    @Test("over quota: least recently used go first, and only as many as needed")
    func lruUnderQuota() {
        let p = EvictionPolicy(quotaBytes: 60)
        let d = p.decide(candidates: four, storeBytes: 100, fileSystem: nil, now: now)
        #expect(ids(d) == [tid(1), tid(2), tid(3)])
        #expect(reasons(d) == [.quota, .quota, .quota])
        #expect(d.fits)
        #expect(ids(EvictionPolicy(quotaBytes: 99).decide(candidates: four, storeBytes: 100, fileSystem: nil, now: now)) == [tid(1)])
        #expect(ids(EvictionPolicy(quotaBytes: 100).decide(candidates: four, storeBytes: 100, fileSystem: nil, now: now)).isEmpty)
    }

    @Test("equal access times are broken by id, so decisions are deterministic")
    func tieBreak() {
        let same = [candidate(9, bytes: 10, at: 5), candidate(2, bytes: 10, at: 5), candidate(5, bytes: 10, at: 5)]
        let d = EvictionPolicy(quotaBytes: 10).decide(candidates: same, storeBytes: 30, fileSystem: nil, now: 10)
        #expect(ids(d) == [tid(2), tid(5)])
        let reversed = EvictionPolicy(quotaBytes: 10).decide(candidates: same.reversed(), storeBytes: 30, fileSystem: nil, now: 10)
        #expect(d == reversed)
    }

    @Test("incoming bytes count against the quota")
    func incomingCounted() {
        let p = EvictionPolicy(quotaBytes: 100)
        #expect(ids(p.decide(candidates: four, storeBytes: 100, incomingBytes: 0, fileSystem: nil, now: now)).isEmpty)
        #expect(ids(p.decide(candidates: four, storeBytes: 100, incomingBytes: 1, fileSystem: nil, now: now)) == [tid(1)])
        #expect(ids(p.decide(candidates: four, storeBytes: 100, incomingBytes: 25, fileSystem: nil, now: now)) == [tid(1), tid(2)])
        #expect(ids(p.decide(candidates: four, storeBytes: 100, incomingBytes: 100, fileSystem: nil, now: now)) == [tid(1), tid(2), tid(3), tid(4)])
        #expect(p.decide(candidates: four, storeBytes: 100, incomingBytes: 100, fileSystem: nil, now: now).fits)
        #expect(!p.decide(candidates: four, storeBytes: 100, incomingBytes: 101, fileSystem: nil, now: now).fits)
    }

    @Test("idle longer than the TTL goes, whatever the quota; exactly the TTL stays")
    func ttl() {
        let p = EvictionPolicy(timeToLive: 500)
        // Ages: 900, 800, 700, 600 at now = 1000; at now = 900: 800, 700, 600, 500.
        let d = p.decide(candidates: four, storeBytes: 100, fileSystem: nil, now: 900)
        #expect(ids(d) == [tid(1), tid(2), tid(3)])
        #expect(reasons(d) == [.ttl, .ttl, .ttl])
        #expect(d.fits)
        #expect(ids(p.decide(candidates: four, storeBytes: 100, fileSystem: nil, now: 600)) == [])
        #expect(ids(p.decide(candidates: four, storeBytes: 100, fileSystem: nil, now: 601)) == [tid(1)])
        // Default TTL is 30 days.
        #expect(EvictionPolicy().timeToLive == 30 * 86400)
        #expect(EvictionPolicy().decide(candidates: four, storeBytes: 100, fileSystem: nil, now: 400 + 30 * 86400).evict.count == 3)
    }

    @Test("TTL evictions count toward the quota; then LRU among the rest")
    func ttlThenQuota() {
        let p = EvictionPolicy(quotaBytes: 90, timeToLive: 850)
        // Only task 1 (age 900) is past the TTL: that alone brings 100 down to 90.
        let d = p.decide(candidates: four, storeBytes: 100, fileSystem: nil, now: now)
        #expect(ids(d) == [tid(1)])
        #expect(reasons(d) == [.ttl])
        let tighter = EvictionPolicy(quotaBytes: 60, timeToLive: 850).decide(candidates: four, storeBytes: 100, fileSystem: nil, now: now)
        #expect(ids(tighter) == [tid(1), tid(2), tid(3)])
        #expect(reasons(tighter) == [.ttl, .quota, .quota])
    }

    @Test("pinned and in-use tasks are never evicted, not even past their TTL")
    func pinnedAndInUse() {
        let candidates = [
            candidate(1, bytes: 10, at: 0, pinned: true),
            candidate(2, bytes: 20, at: 1, inUse: true),
            candidate(3, bytes: 30, at: 2, pinned: true, inUse: true),
            candidate(4, bytes: 40, at: 3),
        ]
        let p = EvictionPolicy(quotaBytes: 0, timeToLive: 1)
        let d = p.decide(candidates: candidates, storeBytes: 100, fileSystem: FileSystemSpace(totalBytes: 100, availableBytes: 0), now: 1000)
        #expect(ids(d) == [tid(4)])
        #expect(reasons(d) == [.ttl])
        #expect(!d.fits)
    }

    @Test("fits is false when nothing is evictable")
    func nothingEvictable() {
        let pinned = four.map { var c = $0; c.pinned = true; return c }
        let d = EvictionPolicy(quotaBytes: 50).decide(candidates: pinned, storeBytes: 100, fileSystem: nil, now: now)
        #expect(d.evict.isEmpty)
        #expect(!d.fits)
        let empty = EvictionPolicy(quotaBytes: 50).decide(candidates: [], storeBytes: 100, fileSystem: nil, now: now)
        #expect(empty == EvictionPolicy.Decision(evict: [], fits: false))
        // Disk: the incoming bytes do not fit in the free space and nothing can go.
        let disk = EvictionPolicy().decide(candidates: pinned, storeBytes: 100, incomingBytes: 150,
                                           fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: 100), now: now)
        #expect(disk.evict.isEmpty)
        #expect(!disk.fits)
        // ...but they do once evictions free enough.
        let freed = EvictionPolicy().decide(candidates: four, storeBytes: 100, incomingBytes: 150,
                                            fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: 100), now: now)
        #expect(freed.fits)
        #expect(!freed.evict.isEmpty)
    }

    static let hundreds = (1...6).map { candidate($0, bytes: 100, at: Int64($0)) }

    @Test("above the high watermark, evict down to the low watermark", arguments: [
        // (available of 1000, incoming, expected evicted count)
        (Int64(100), Int64(0), 3),    // 90% used → 80, 70, 60
        (190, 0, 3),                  // 81% → 71, 61, 51
        (200, 0, 0),                  // exactly 80%: not above high
        (300, 0, 0),                  // 70%: between the watermarks, nothing
        (300, 150, 3),                // 70% + 15% incoming → 85% → 75, 65, 55
        (300, 100, 0),                // 70% + 10% = 80%: not above high
        (0, 0, 4),                    // 100% → 90 .. 60
    ])
    func watermarks(available: Int64, incoming: Int64, expected: Int) {
        let p = EvictionPolicy()  // 0.8 / 0.6
        let d = p.decide(candidates: Self.hundreds, storeBytes: 600, incomingBytes: incoming,
                         fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: available), now: 10)
        #expect(ids(d) == (1...6).prefix(expected).map { tid($0) })
        #expect(reasons(d).allSatisfy { $0 == .watermark })
        #expect(d.fits == (available + Int64(expected) * 100 >= incoming))
    }

    @Test("custom watermarks; no filesystem or a zero-sized one means no watermark evictions")
    func customWatermarks() {
        let p = EvictionPolicy(highWatermark: 0.5, lowWatermark: 0.2)
        let d = p.decide(candidates: Self.hundreds, storeBytes: 600, fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: 400), now: 10)
        #expect(ids(d) == (1...4).map { tid($0) })  // 60% → 20%
        #expect(p.decide(candidates: Self.hundreds, storeBytes: 600, fileSystem: nil, now: 10).evict.isEmpty)
        #expect(p.decide(candidates: Self.hundreds, storeBytes: 600, fileSystem: FileSystemSpace(totalBytes: 0, availableBytes: 0), now: 10).evict.isEmpty)
    }

    @Test("ttl, quota and watermark evictions combine in that order without repeats")
    func combined() {
        let cands = (1...6).map { candidate($0, bytes: 100, at: Int64($0 * 100)) }
        // TTL 550 at now 700: task 1 (age 600) goes. Quota 450 with 600 + 50 incoming: task 2 too.
        // Disk 1000 bytes, none free: (1000 - 200 + 50) / 1000 = 85% > 80% → 75, 65, 55%: tasks 3, 4, 5.
        let p = EvictionPolicy(quotaBytes: 450, timeToLive: 550)
        let d = p.decide(candidates: cands, storeBytes: 600, incomingBytes: 50,
                         fileSystem: FileSystemSpace(totalBytes: 1000, availableBytes: 0), now: 700)
        #expect(ids(d) == [tid(1), tid(2), tid(3), tid(4), tid(5)])
        #expect(reasons(d) == [.ttl, .quota, .watermark, .watermark, .watermark])
        #expect(d.fits)
        #expect(Set(ids(d)).count == ids(d).count)
    }
}

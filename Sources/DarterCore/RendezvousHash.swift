/// Consistent hashing by highest random weight (rendezvous hashing): a key goes to the member
/// whose hash of (key, member) is largest. When a member leaves, only its keys move (each to its
/// own next-best member, spread evenly over the rest); when one joins, it takes about 1/N of the
/// keys and nothing else moves. Used to map a task to a seed (the scheduler's seed trigger) and to
/// a scheduler (a daemon with several). Cost is O(members) per lookup, fine for the handful of
/// seeds and schedulers a cluster runs; no ring with virtual nodes to keep in sync.
public enum RendezvousHash {
    /// The members of `members` ordered best first for `key` (ties, impossible in practice, by name).
    public static func ranked(_ key: String, _ members: [String]) -> [String] {
        let k = fnv1a(key)
        return members.map { (weight(k, fnv1a($0)), $0) }
            .sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }
            .map(\.1)
    }

    /// The member `key` maps to, or nil when there are none.
    public static func pick(_ key: String, _ members: [String]) -> String? {
        let k = fnv1a(key)
        var best: (UInt64, String)?
        for m in members {
            let w = weight(k, fnv1a(m))
            if best == nil || w > best!.0 || (w == best!.0 && m < best!.1) { best = (w, m) }
        }
        return best?.1
    }

    /// A well-mixed 64-bit weight of the pair (SplitMix64's finalizer over both hashes).
    @inline(__always)
    public static func weight(_ key: UInt64, _ member: UInt64) -> UInt64 {
        SplitMix64.word(seed: key, index: member)
    }

    /// FNV-1a, 64 bits: stable across runs and platforms (Swift's `Hasher` is seeded per process,
    /// and every daemon must agree on the mapping).
    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}

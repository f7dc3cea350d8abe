import DarterIO
import DarterCore

/// What the eviction policy sees of one task.
public struct EvictionCandidate: Sendable, Equatable {
    public var id: TaskID
    public var bytes: Int64
    /// Unix seconds of the last read or write.
    public var lastAccess: Int64
    public var pinned: Bool
    /// Readers or writers are active: never evicted.
    public var inUse: Bool
    public init(id: TaskID, bytes: Int64, lastAccess: Int64, pinned: Bool = false, inUse: Bool = false) {
        self.id = id
        self.bytes = bytes
        self.lastAccess = lastAccess
        self.pinned = pinned
        self.inUse = inUse
    }
}

/// Which tasks go, and why. Pure: given sizes, times and pins, it decides; the store acts.
///
/// - TTL: a task idle for longer than `timeToLive` goes.
/// - Quota: the store's bytes (plus what a writer is about to add) must fit `quotaBytes`;
///   least recently used tasks go first until they do.
/// - Watermarks: when the filesystem is fuller than `highWatermark`, least recently used tasks
///   go until it would be no fuller than `lowWatermark`.
/// Pinned and in-use tasks never go.
public struct EvictionPolicy: Sendable, Equatable {
    public var quotaBytes: Int64?
    public var highWatermark: Double
    public var lowWatermark: Double
    public var timeToLive: Int64

    public init(quotaBytes: Int64? = nil, highWatermark: Double = 0.8, lowWatermark: Double = 0.6, timeToLive: Int64 = 30 * 86400) {
        self.quotaBytes = quotaBytes
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.timeToLive = timeToLive
    }

    public enum Reason: String, Sendable { case ttl, quota, watermark }

    public struct Decision: Sendable, Equatable {
        public var evict: [(id: TaskID, reason: Reason)]
        /// False when even evicting every evictable task cannot make room for `incomingBytes`.
        public var fits: Bool
        public static func == (a: Decision, b: Decision) -> Bool {
            a.fits == b.fits && a.evict.map(\.id) == b.evict.map(\.id) && a.evict.map(\.reason) == b.evict.map(\.reason)
        }
    }

    /// The tasks that may go (neither pinned nor in use), least recently used first.
    public static func evictionOrder(_ candidates: [EvictionCandidate]) -> [EvictionCandidate] {
        candidates.filter { !$0.pinned && !$0.inUse }.sorted { ($0.lastAccess, $0.id) < ($1.lastAccess, $1.id) }
    }

    /// - Parameters:
    ///   - storeBytes: bytes the store holds now.
    ///   - incomingBytes: bytes about to be allocated.
    ///   - fileSystem: the filesystem's size and free space, when known.
    public func decide(candidates: [EvictionCandidate], storeBytes: Int64, incomingBytes: Int64 = 0,
                       fileSystem: FileSystemSpace?, now: Int64) -> Decision {
        var evicted: [(TaskID, Reason)] = []
        var freed: Int64 = 0
        let evictable = Self.evictionOrder(candidates)
        var taken = Set<TaskID>()
        for c in evictable where now - c.lastAccess > timeToLive {
            evicted.append((c.id, .ttl)); freed += c.bytes; taken.insert(c.id)
        }
        var queue = evictable.filter { !taken.contains($0.id) }[...]
        var fits = true
        if let quota = quotaBytes {
            while storeBytes - freed + incomingBytes > quota {
                guard let c = queue.popFirst() else { fits = false; break }
                evicted.append((c.id, .quota)); freed += c.bytes
            }
        }
        if let fs = fileSystem, fs.totalBytes > 0 {
            func usedFraction() -> Double {
                Double(fs.totalBytes - fs.availableBytes - freed + incomingBytes) / Double(fs.totalBytes)
            }
            if usedFraction() > highWatermark {
                while usedFraction() > lowWatermark {
                    guard let c = queue.popFirst() else { break }
                    evicted.append((c.id, .watermark)); freed += c.bytes
                }
            }
            if fs.availableBytes + freed < incomingBytes { fits = false }
        }
        return Decision(evict: evicted.map { (id: $0.0, reason: $0.1) }, fits: fits)
    }
}

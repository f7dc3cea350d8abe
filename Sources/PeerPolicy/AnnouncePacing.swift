/// When a downloading peer asks the scheduler for parents again (pure; the peer's download and
/// the simulator drive it): soon while the swarm is still forming — after an announce that
/// brought more parents than the one before — and, once it stops growing, doubling up to the
/// regular period. Peers that start together announce one after another, so the first ones get
/// few parents (the first only the seed); at 10 Gbit/s a 1 GiB object takes 0.86 s, less than
/// one regular period, so waiting for it left them with those few for the whole download
/// (docs/SCALE.md). A swarm that is formed costs the scheduler no more announces than before.
public struct AnnouncePacing: Sendable, Equatable {
    public let quickest: Duration
    public let slowest: Duration
    public private(set) var interval: Duration
    private var parents = 0

    public init(quickest: Duration, slowest: Duration) {
        self.quickest = min(quickest, slowest)
        self.slowest = slowest
        interval = self.quickest
    }

    /// After an announce that brought `count` parents: how long until the next.
    public mutating func next(parents count: Int) -> Duration {
        interval = count > parents ? quickest : min(slowest, interval * 2)
        parents = count
        return interval
    }
}

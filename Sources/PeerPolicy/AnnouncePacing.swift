/// When a downloading peer asks the scheduler for parents again (pure; the peer's download and
/// the simulator drive it): soon while the swarm is still forming — after an announce that
/// brought more parents than the one before — and, once it stops growing, doubling up to the
/// regular period. Peers that start together announce one after another, so the first ones get
/// few parents (the first only the seed); at 10 Gbit/s a 1 GiB object takes 0.86 s, less than
/// one regular period, so waiting for it left them with those few for the whole download
/// (docs/SCALE.md). A swarm that is formed costs the scheduler no more announces than before.
///
/// Also again each time the download has gained `progressStep` of its pieces since the last
/// announce: the parents named when a batch of peers started (the early ones, named by all who
/// came after) are the wrong ones a few seconds of a slow link later, and a fraction of a
/// second of a fast one; a step of the download is the same share of it at any speed, and
/// costs at most 1/`progressStep` announces per download (simulated, 300 peers × 10 Gbit/s ×
/// 1 GiB: p99 1.90 × T_min with time alone; 1.38 with a step of 1/8; 1.46 announcing every
/// 100 ms).
public struct AnnouncePacing: Sendable, Equatable {
    public let quickest: Duration
    public let slowest: Duration
    public let progressStep: Double
    public private(set) var interval: Duration
    private var parents = 0
    private var holdingAtLast = 0

    public init(quickest: Duration, slowest: Duration, progressStep: Double = 0) {
        self.quickest = min(quickest, slowest)
        self.slowest = slowest
        self.progressStep = progressStep
        interval = self.quickest
    }

    /// After an announce that brought `count` parents, made holding `pieces`: how long until the
    /// next (unless progress makes it due sooner).
    public mutating func next(parents count: Int, holding pieces: Int = 0) -> Duration {
        interval = count > parents ? quickest : min(slowest, interval * 2)
        parents = count
        holdingAtLast = pieces
        return interval
    }

    /// How long until progress is worth checking again: half the time the rest of the step
    /// takes at the rate since the last announce, at least `minimum` (without a piece yet: as
    /// long as it has been, doubling), so a slow download is not woken 50 times a second to
    /// look (the netns cluster, 48 downloads at 50 Mbit/s: 36.4 s/GiB polling every 20 ms,
    /// 34.4 with this).
    public func untilProgressCheck(holding pieces: Int, of total: Int, sinceAnnounce elapsed: Duration, minimum: Duration) -> Duration {
        guard progressStep > 0, pieces < total else { return slowest }
        let gained = pieces - holdingAtLast
        let need = progressStep * Double(total) - Double(gained)
        guard need > 0 else { return minimum }
        guard gained > 0 else { return max(minimum, elapsed) }
        return max(minimum, elapsed * (need / Double(gained) / 2))
    }

    /// Whether the download, now holding `pieces` of `total`, has gained `progressStep` of them
    /// since the last announce (never once it holds them all: it reports that instead).
    public func dueByProgress(holding pieces: Int, of total: Int) -> Bool {
        progressStep > 0 && pieces < total && Double(pieces - holdingAtLast) >= progressStep * Double(total)
    }
}

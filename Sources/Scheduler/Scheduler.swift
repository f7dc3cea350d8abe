import DarterCore
import PieceProtocol
import SchedulerProtocol

/// The scheduler's policy and state (pure: no I/O, no clock of its own; every call takes `now`
/// in milliseconds, so tests and the simulator drive it in virtual time). `SchedulerService`
/// puts it behind HTTP; a restart loses nothing the daemons cannot tell it again, because a
/// registration carries what the host holds.
public struct Scheduler: Sendable {
    public struct Config: Sendable, Equatable {
        public var keepAliveMilliseconds: Int = 5_000
        /// Seeds keep alive more often: after a scheduler restart, peers come back on their next
        /// announce but a seed only on its next keep-alive, and until then no task can use it
        /// (measured, 8 peers: the seed back 5 s after a restart, the swarm 10 % slower). Seeds
        /// are few, so this costs the scheduler little.
        public var seedKeepAliveMilliseconds: Int = 1_000
        /// A host not heard from for this long is forgotten (with everything it held).
        public var hostTTLMilliseconds: Int = 15_000
        /// Parents handed out per announce.
        public var maxParents: Int = 16
        /// Children downloading from a parent at which it counts as fully loaded.
        public var childrenPerParent: Int = 8
        /// Children in one task at which a peer is named to no more (seeds: no limit, they deal shares).
        public var maxChildren: Int = 16
        /// Failures reported against a parent (by any child, within `blockMilliseconds`) that get
        /// it left out of every answer for `blockMilliseconds`.
        public var failuresToBlock: Int = 3
        public var blockMilliseconds: Int = 30_000
        /// A parent whose measured throughput is below this fraction of the median of the task's
        /// measured parents is treated as bad (Dragonfly: a piece cost above 20× the mean).
        public var slowParentFraction: Double = 1.0 / 20
        /// Members scored per announce (besides the task's seeds and the child's current parents):
        /// a random sample when the task has more, so an announce costs the same at 10,000 hosts
        /// as at 100 (Dragonfly samples 15, Kraken hands out 50 at random; measured, 10,000 hosts:
        /// 11.3 ms per announce scoring every member).
        public var candidateSample: Int = 48
        /// Peers among which a task's seed pieces are dealt (the first fast peers to announce): each
        /// owner keeps one request open at the seed, so a piece reaches its owner after about this
        /// many pieces' time at the seed's rate; dealing over every peer (1,000 at 10 Gbit/s) made
        /// each piece take as long as the whole object (docs/SCALE.md).
        public var seedShareOwners: Int = 16
        /// Peers per IDC (the first of it to announce a task, while they download) that may have
        /// parents in other IDCs; the IDC's other peers take only from hosts of their own IDC,
        /// hosts without a label, and seeds; the gateways split what crosses (`remoteShare`), so
        /// each piece crosses about once. Simulated, 1,000 × 10 Gbit/s × 1 GiB in two DCs (p99 ÷
        /// T_min, copies across): locality score alone 3.12, 159; gateways 8: 1.75, 1.25; 16:
        /// 1.40, 1.28; 32: 1.41, 1.38 (before the split, 16: 1.70, 10.3). docs/SCALE.md.
        public var crossIDCGateways: Int = 16
        /// Parents from other IDCs named to a gateway per announce, at most (of `maxParents`).
        public var remoteParents: Int = 4
        public init() {}
    }

    /// What the service must do besides answering: ask a seed to fetch a task (POST /tasks there).
    public struct SeedTrigger: Sendable, Equatable {
        public var seed: String
        public var address: String
        public var request: OpenTaskRequest
    }

    public enum Failure: Error, Sendable, Equatable {
        /// The host is not registered (or expired): it must register again, with what it holds.
        case unknownHost(String)
    }

    public struct Counters: Sendable, Equatable {
        public var registrations = 0, announces = 0, backToSource = 0, seedTriggers = 0, reports = 0, expired = 0
    }

    public let config: Config
    public private(set) var counters = Counters()
    private var hosts: [String: Host] = [:]
    private var tasks: [TaskID: SwarmTask] = [:]
    /// Registered seeds (an announce looks at these without visiting every host).
    private var seeds: Set<String> = []

    public init(config: Config = Config()) { self.config = config }

    public var hostCount: Int { hosts.count }
    public var taskCount: Int { tasks.count }
    public var seedCount: Int { hosts.values.filter { $0.registration.role == .seed }.count }

    // MARK: Hosts

    /// `POST /hosts`: a new host, or one coming back (after its TTL, or after this scheduler
    /// restarted) with what it holds; a registration replaces what was known of the host.
    public mutating func register(_ r: HostRegistration, now: Int64) -> RegistrationReply {
        counters.registrations += 1
        if hosts[r.id] != nil { removeFromTasks(r.id) }
        var host = hosts[r.id] ?? Host(id: r.id)
        host.registration = r
        host.lastSeen = now
        hosts[r.id] = host
        if r.role == .seed { seeds.insert(r.id) } else { seeds.remove(r.id) }
        for held in r.tasks {
            // Taken out and put back, so the table is changed in place (not copied per host).
            var task = tasks.removeValue(forKey: held.task) ?? SwarmTask(id: held.task)
            task.learn(contentLength: held.contentLength, pieceLength: held.pieceLength)
            task.members[r.id] = Member(pieces: held.pieces, state: held.complete ? .complete : .holding, lastSeen: now)
            tasks[held.task] = task
        }
        let keepAlive = r.role == .seed ? min(config.keepAliveMilliseconds, config.seedKeepAliveMilliseconds) : config.keepAliveMilliseconds
        return RegistrationReply(keepAliveMilliseconds: keepAlive, ttlMilliseconds: config.hostTTLMilliseconds)
    }

    /// `POST /hosts/{id}/keepalive`.
    public mutating func keepAlive(_ id: String, now: Int64) throws(Failure) {
        guard hosts[id] != nil else { throw .unknownHost(id) }
        hosts[id]!.lastSeen = now
    }

    /// `DELETE /hosts/{id}`: the host leaves (its children get other parents on their next announce).
    public mutating func leave(_ id: String) {
        removeFromTasks(id)
        hosts[id] = nil
        seeds.remove(id)
    }

    /// Forgets hosts whose TTL passed; returns their ids.
    @discardableResult
    public mutating func expire(now: Int64) -> [String] {
        let dead = hosts.values.filter { now - $0.lastSeen > Int64(config.hostTTLMilliseconds) }.map(\.id).sorted()
        for id in dead { leave(id) }
        counters.expired += dead.count
        return dead
    }

    // MARK: Tasks

    /// `POST /tasks/{id}/announce`: parents for the host, best first; a seed to trigger when no
    /// seed has the task yet (the seed is handed out at once: its pieces stream while they arrive);
    /// back to the origin when there is nobody to ask.
    public mutating func announce(_ a: Announce, now: Int64) throws(Failure) -> (reply: AnnounceReply, trigger: SeedTrigger?) {
        guard var child = hosts[a.host] else { throw .unknownHost(a.host) }
        counters.announces += 1
        child.lastSeen = now
        hosts[a.host] = child
        var task = tasks.removeValue(forKey: a.task) ?? SwarmTask(id: a.task)
        if task.url == nil, let url = a.url { task.url = url; task.headers = a.headers; task.digest = a.digest; task.registry = a.registry }
        let isSeed = child.registration.role == .seed
        var member = task.members[a.host] ?? Member(pieces: PieceSet(), state: .downloading, lastSeen: now)
        member.pieces.formUnion(a.pieces)
        // A seed in a task is its seed, fetching it (from the origin, or from holders first).
        if member.state != .complete { member.state = isSeed ? .fetching : .downloading }
        member.lastSeen = now
        task.members[a.host] = member

        if member.state == .complete {
            tasks[a.task] = task
            return (AnnounceReply(parents: [], backToSource: false, reason: "this host holds the whole task"), nil)
        }
        var trigger: SeedTrigger?
        // A seed is asked only when no live seed is in the task and nobody holds all of it (after
        // a restart, re-registered holders are the swarm: asking a seed would cost origin bytes).
        if !isSeed, !hasLiveSource(task, now: now) {
            trigger = triggerSeed(for: &task, now: now)
        }
        let share = seedShare(for: a.host, in: &task, now: now)
        let mayCross = mayCrossIDC(a.host, in: &task, now: now)
        let remoteShare = self.remoteShare(for: a.host, in: task)
        let parents = chooseParents(for: a.host, in: task, now: now, crossIDC: mayCross)
        assign(parents.map(\.id), to: a.host, in: &task)
        // Stored back only now: assigning into `tasks` while this copy lived copied the member
        // table on write, every announce (measured, 10,000 hosts: 724 µs an announce).
        tasks[a.task] = task
        if parents.isEmpty {
            counters.backToSource += 1
            if isSeed { return (AnnounceReply(backToSource: true, reason: "no other host holds pieces of task \(a.task)"), nil) }
            let why = hosts.values.contains(where: { $0.registration.role == .seed })
                ? "no host holds task \(a.task) and no seed can fetch it" : "no seed is registered and no host holds task \(a.task)"
            return (AnnounceReply(backToSource: true, reason: why), nil)
        }
        return (AnnounceReply(parents: parents, seedShare: share, remoteShare: remoteShare), trigger)
    }

    /// Which pieces the host asks seeds for: the task's owners are the first `seedShareOwners`
    /// peers still downloading to announce (in that order), an owner's share its place among
    /// them; any other peer owns none (its seed pieces come through the owners). An owner that
    /// completed, left, or that its children report failing (gone, most likely) is dropped at
    /// once, so its share is dealt again on the next announces instead of waiting for its TTL
    /// (measured, a parent killed at 30 %: the others 1.29x slower while its share waited); so is
    /// one with under half the upload of the fastest owner (a slow owner holds back the pieces
    /// only it fetches). Costs O(owners), not O(members). nil for a host that is not a peer
    /// downloading (it keeps its last share).
    func seedShare(for host: String, in task: inout SwarmTask, now: Int64) -> SeedShare? {
        // With IDC labels, only peers of the seeds' IDC own seed pieces: a piece dealt to a
        // peer across would cross twice, there and back (other IDCs take theirs through their gateways).
        let seedIDCs = Set(seeds.filter { task.members[$0] != nil }.compactMap { hosts[$0]?.registration.idc })
        func eligible(_ id: String) -> Bool {
            guard let h = hosts[id], h.registration.role == .peer, !h.isBlocked(now: now) else { return false }
            if let idc = h.registration.idc, !seedIDCs.isEmpty, !seedIDCs.contains(idc) { return false }
            return task.members[id]?.state == .downloading
        }
        func rate(_ id: String) -> Int64 { hosts[id]?.registration.uploadRate ?? 0 }
        task.owners.removeAll { !eligible($0) }
        guard eligible(host) else {
            // A peer of another IDC than the seeds' downloading: none of the seed's pieces.
            guard let h = hosts[host], h.registration.role == .peer, task.members[host]?.state == .downloading else { return nil }
            return SeedShare(index: nil, count: max(1, task.owners.count))
        }
        if !task.owners.contains(host), task.owners.count < config.seedShareOwners { task.owners.append(host) }
        let fastest = task.owners.map(rate).max() ?? 0
        task.owners.removeAll { rate($0) > 0 && rate($0) * 2 < fastest }
        if let index = task.owners.firstIndex(of: host) { return SeedShare(index: index, count: task.owners.count) }
        return SeedShare(index: nil, count: max(1, task.owners.count))
    }

    /// Whether `host` may have parents in other IDCs than its own (`crossIDCGateways`): a host
    /// without an IDC label or a seed always; a peer if it is one of its IDC's gateways for the
    /// task, or becomes one (fewer than `crossIDCGateways` of its IDC still downloading it).
    /// Costs O(gateways).
    func mayCrossIDC(_ host: String, in task: inout SwarmTask, now: Int64) -> Bool {
        guard let h = hosts[host], h.registration.role == .peer, let idc = h.registration.idc else { return true }
        var list = task.gateways[idc] ?? []
        list.removeAll { id in
            guard let g = hosts[id], !g.isBlocked(now: now) else { return true }
            return task.members[id]?.state != .downloading
        }
        if !list.contains(host) && list.count < config.crossIDCGateways { list.append(host) }
        task.gateways[idc] = list
        return list.contains(host)
    }

    /// Which pieces a labelled peer asks parents in other IDCs for: the task's pieces dealt
    /// round robin over its IDC's gateways (`mayCrossIDC`, which ran first), so each piece
    /// crosses about once and the IDC passes it on inside; none for a peer that is no gateway.
    /// Without the deal every gateway fetched across whatever was rarest in its view, the same
    /// pieces as the others (simulated, 1,000 peers × 10 Gbit/s in two DCs: 10.3 copies crossed;
    /// with it 1.28, p99 1.70 → 1.40 × T_min).
    func remoteShare(for host: String, in task: SwarmTask) -> SeedShare? {
        guard let h = hosts[host], h.registration.role == .peer, let idc = h.registration.idc,
              let list = task.gateways[idc], !list.isEmpty else { return nil }
        return SeedShare(index: list.firstIndex(of: host), count: list.count)
    }

    /// `POST /tasks/{id}/progress`: new pieces, the state, what pieces cost and which parents failed.
    public mutating func report(_ p: ProgressReport, now: Int64) throws(Failure) {
        guard hosts[p.host] != nil else { throw .unknownHost(p.host) }
        counters.reports += 1
        hosts[p.host]!.lastSeen = now
        var task = tasks.removeValue(forKey: p.task) ?? SwarmTask(id: p.task)
        var member = task.members[p.host] ?? Member(pieces: PieceSet(), state: .downloading, lastSeen: now)
        member.pieces.formUnion(p.pieces)
        member.lastSeen = now
        for c in p.costs where c.milliseconds > 0 || c.bytes > 0 {
            hosts[c.parent]?.recordCost(bytes: c.bytes, milliseconds: c.milliseconds)
        }
        for f in p.failures {
            member.refused.insert(f.parent)
            hosts[f.parent]?.recordFailure(now: now, config: config)
        }
        switch p.state {
        case .downloading:
            let isSeed = hosts[p.host]?.registration.role == .seed
            member.state = member.state == .complete ? .complete : isSeed ? .fetching : .downloading
        case .complete: member.state = .complete
        case .failed: member.state = .holding
        }
        task.members[p.host] = member
        tasks[p.task] = task
        if p.state != .downloading { assign([], to: p.host, in: p.task) }
        if p.state == .failed, member.pieces.isEmpty { removeMember(p.host, from: p.task) }
    }

    /// The service could not reach `host` (a seed it asked to fetch): one failure against it,
    /// as a child's report would count.
    public mutating func parentUnreachable(_ host: String, now: Int64) {
        hosts[host]?.recordFailure(now: now, config: config)
    }

    // MARK: Choosing

    /// The seed for a task: consistent hashing on the task id over the live seeds, so every
    /// scheduler picks the same one and a dead seed's tasks move to the next on the ring only.
    public func seed(for task: TaskID, now: Int64) -> String? {
        let live = seeds.compactMap { hosts[$0] }.filter { !$0.isBlocked(now: now) && !isSilentSeed($0, now: now) }.map(\.id)
        return RendezvousHash.pick(task.description, live)
    }

    /// Whether a live seed is in the task, or a live host holds all of it. A seed its children
    /// report failing (blocked: SIGKILLed, most likely) does not count, so the task moves to the
    /// next seed on the ring on the next announces, not a TTL later; that seed takes what the
    /// peers hold from them and only the rest from the origin (`SwarmConfiguration.originForUnheldPieces`).
    func hasLiveSource(_ task: SwarmTask, now: Int64) -> Bool {
        // The registered seeds first, then complete members only if there are any: O(seeds) in
        // a task still downloading, where a scan of the members made an announce O(N)
        // (measured, 10,000 hosts: 3.8 ms an announce, most of it here).
        for id in seeds where task.members[id] != nil {
            if let host = hosts[id], !host.isBlocked(now: now), !isSilentSeed(host, now: now) { return true }
        }
        guard task.members.completeCount > 0 else { return false }
        return task.members.contains { id, m in
            guard m.state == .complete, let host = hosts[id], host.registration.role != .seed else { return false }
            return !host.isBlocked(now: now)
        }
    }

    /// A seed not heard from for four of its keep-alive intervals: gone, most likely (its TTL
    /// is the peers', 15 s). It stays registered, with what it holds, until the TTL passes; but
    /// its tasks move on, so a swarm with too few children to block it does not wait that long.
    func isSilentSeed(_ host: Host, now: Int64) -> Bool {
        host.registration.role == .seed && now - host.lastSeen > 4 * Int64(min(config.keepAliveMilliseconds, config.seedKeepAliveMilliseconds))
    }

    private mutating func triggerSeed(for task: inout SwarmTask, now: Int64) -> SeedTrigger? {
        guard let url = task.url, let id = seed(for: task.id, now: now), let seed = hosts[id] else { return nil }
        counters.seedTriggers += 1
        task.members[id] = Member(pieces: PieceSet(), state: .fetching, lastSeen: now)
        return SeedTrigger(seed: id, address: seed.registration.address,
                           request: OpenTaskRequest(url: url, headers: task.headers, digest: task.digest, registry: task.registry))
    }

    /// Candidates: live members of the task other than the child, not blocked, not refused by
    /// this child, not measured as far slower than the task's other parents; scored by free upload
    /// (children already assigned against `childrenPerParent`, and upload rate), the pieces they
    /// can give this child, locality (same IDC, shared location prefix) and role (seeds first).
    /// Without `crossIDC` (not one of its IDC's gateways), peers of other IDCs are left out.
    func chooseParents(for childID: String, in task: SwarmTask, now: Int64, crossIDC: Bool = true) -> [ParentCandidate] {
        guard let child = hosts[childID], let me = task.members[childID] else { return [] }
        let candidates = candidateIDs(for: childID, current: me.parents, in: task)
        let pieceCount = task.pieceCount ?? candidates.compactMap { task.members[$0]?.pieces.count }.max() ?? 0
        let wanted = max(1, pieceCount - me.pieces.count)
        let measured = candidates.compactMap { hosts[$0]?.throughput }.sorted()
        let median = measured.isEmpty ? nil : measured[measured.count / 2]
        // The fastest upload (the score's capacity term) and the peers' mean (the children limit), in one pass.
        var fastestUpload: Int64 = 0, peerUploadSum: Int64 = 0, peersWithUpload = 0
        for id in candidates {
            guard let r = hosts[id]?.registration else { continue }
            fastestUpload = max(fastestUpload, r.uploadRate)
            if r.role != .seed && r.uploadRate > 0 { peerUploadSum += r.uploadRate; peersWithUpload += 1 }
        }
        let meanUpload = peersWithUpload == 0 ? 0 : Double(peerUploadSum) / Double(peersWithUpload)
        var scored: [(score: Double, tie: UInt64, candidate: ParentCandidate)] = []
        // A member still downloading with nothing yet is a candidate too: its pieces will come,
        // and the child hears of them on its feed (a fresh swarm is a mesh from the start).
        for id in candidates where id != childID && !me.refused.contains(id) {
            guard let m = task.members[id], m.state != .holding || !m.pieces.isEmpty else { continue }
            guard let host = hosts[id], !host.isBlocked(now: now) else { continue }
            // A seed's parents are only hosts that hold pieces: the rest it reads from the origin.
            if child.registration.role == .seed && m.state != .complete && m.pieces.isEmpty { continue }
            if let median, measured.count >= 3, let t = host.throughput, t < median * config.slowParentFraction { continue }
            let isSeed = host.registration.role == .seed
            let remote = !isSeed && Self.isOtherIDC(child.registration, host.registration)
            if remote && !crossIDC { continue }
            // Saturates at a quarter of what the child lacks: past that a parent has enough to
            // keep its slot busy, and load should decide (proportional coverage sent most children
            // to the few richest peers: simulated, 100 × 10 Gbit/s, 86 children on one parent
            // while 70 of 100 parents sent nothing).
            let coverage = m.state == .complete || m.state == .fetching ? 1.0 : min(1, Double(m.pieces.count(notIn: me.pieces)) / Double(max(1, wanted / 4)))
            // Falls with every child, never flat at zero: at scale every parent has more than
            // `childrenPerParent` (each child names `maxParents`), and a flat zero left coverage to
            // decide, so every child named the same few richest parents (simulated, 100 × 1 Gbit/s:
            // one parent with 205 transfers while 63 sent nothing).
            let free = 1 / (1 + Double(host.children) / Double(config.childrenPerParent))
            let capacity = fastestUpload > 0 ? Double(host.registration.uploadRate) / Double(fastestUpload) : 1
            // Full: named by its `childrenLimit` of this task's children already, a peer is named
            // to no more (those it has keep it). The score's load term alone let the first peers
            // holding a few pieces of a small object (a large share of it) draw most children:
            // simulated, 100 peers × 1 Gbit/s × 64 MiB, one parent named by 67 of them, 70 of 100
            // sending nothing, p99 4.13 × T_min; with the cap 2.50 (1,000 peers: 8.76 → 4.35).
            if !isSeed, task.children[id, default: 0] >= Self.childrenLimit(config.maxChildren, upload: host.registration.uploadRate, meanUpload: meanUpload),
               !me.parents.contains(id) { continue }
            let locality = Self.locality(child.registration, host.registration)
            let score = 0.35 * free + 0.15 * capacity + 0.3 * coverage + 0.1 * locality + 0.1 * (isSeed ? 1 : 0.5)
            scored.append((score, RendezvousHash.weight(RendezvousHash.fnv1a(childID), RendezvousHash.fnv1a(id)),
                           ParentCandidate(id: id, address: host.registration.address, role: host.registration.role,
                                           pieces: m.pieces, complete: m.state == .complete,
                                           remote: remote)))
        }
        // Ties (a fresh swarm: everyone equal) broken by a hash of (child, parent), so children
        // spread over parents instead of all picking the same first one.
        scored.sort { $0.score != $1.score ? $0.score > $1.score : $0.tie > $1.tie }
        // A gateway asks remote parents only for its remote share: most of what it names must be
        // of its own IDC (unbounded, early gateways were named 16 remote parents and sat idle
        // with the rest of the pieces held next door: simulated, 100 peers in two DCs, 3.85×).
        // Nor too few: its remote share comes only from them, so the best `remoteParents` of
        // them are always named (ranked by score alone, none were once the IDC had pieces of its own).
        let remoteSlots = min(scored.lazy.filter(\.candidate.remote).count, max(0, min(config.remoteParents, config.maxParents)))
        var (localNamed, remoteNamed) = (0, 0)
        return scored.filter { s in  // in score order
            if s.candidate.remote {
                guard remoteNamed < remoteSlots else { return false }
                remoteNamed += 1
                return true
            }
            guard localNamed < config.maxParents - remoteSlots else { return false }
            localNamed += 1
            return true
        }.map(\.candidate)
    }

    /// The members an announce scores: all of them in a task of up to `candidateSample` others;
    /// else the task's seeds, the child's current parents (a good parent stays) and a random
    /// sample of the rest, drawn from the member table's id list (O(sample), not O(members)).
    func candidateIDs(for childID: String, current: [String], in task: SwarmTask) -> [String] {
        let ids = task.members.ids
        guard ids.count > config.candidateSample + 1 else { return ids }
        var picked: [String] = []
        var seen: Set<String> = [childID]
        for id in seeds.sorted() + current where task.members[id] != nil && seen.insert(id).inserted { picked.append(id) }
        var rng = SplitMix64(seed: RendezvousHash.fnv1a(childID) &+ UInt64(counters.announces))
        var tries = 0
        while picked.count < config.candidateSample + current.count && tries < 4 * config.candidateSample {
            tries += 1
            let id = ids[Int(rng.next() % UInt64(ids.count))]
            if seen.insert(id).inserted { picked.append(id) }
        }
        return picked
    }

    /// Children of one task a peer with `upload` may be named by: `maxChildren` in proportion to
    /// its upload against the mean of the peers scored, so the limits add up to `maxChildren` a
    /// peer whatever the mix and every child finds parents with room. (Against the fastest peer's
    /// upload, 10 % of the peers at a tenth of the link left fewer places than children named:
    /// those that announced first, named only the seed, found every peer full when they asked
    /// again. Simulated, 1,000 × 10 Gbit/s × 1 GiB: the fast peers' p99 1.37 × T_min and one at
    /// 2.30; against the mean 1.24 and 1.28, better than with no limit at all, 1.25 and 1.29.)
    /// An unknown upload (0) counts as the mean.
    static func childrenLimit(_ maxChildren: Int, upload: Int64, meanUpload: Double) -> Int {
        guard upload > 0, meanUpload > 0 else { return maxChildren }
        return max(1, Int((Double(maxChildren) * Double(upload) / meanUpload).rounded()))
    }

    /// Both hosts carry IDC labels and they differ.
    static func isOtherIDC(_ a: HostRegistration, _ b: HostRegistration) -> Bool {
        guard let x = a.idc, let y = b.idc else { return false }
        return x != y
    }

    /// 0…1: same IDC counts 0.6, the shared prefix of `|`-separated location labels the rest.
    static func locality(_ a: HostRegistration, _ b: HostRegistration) -> Double {
        var score = 0.0
        if let x = a.idc, let y = b.idc, x == y { score += 0.6 }
        if let x = a.location?.split(separator: "|"), let y = b.location?.split(separator: "|"), !x.isEmpty {
            let shared = zip(x, y).prefix { $0 == $1 }.count
            score += 0.4 * Double(shared) / Double(max(x.count, y.count))
        }
        return score
    }

    // MARK: Bookkeeping

    private mutating func assign(_ parents: [String], to child: String, in taskID: TaskID) {
        guard var task = tasks.removeValue(forKey: taskID) else { return }
        assign(parents, to: child, in: &task)
        tasks[taskID] = task
    }

    private mutating func assign(_ parents: [String], to child: String, in task: inout SwarmTask) {
        guard let old = task.members[child]?.parents else { return }
        for p in old {
            if hosts[p] != nil { hosts[p]!.children -= 1 }
            task.children[p, default: 1] -= 1
            if task.children[p] == 0 { task.children[p] = nil }
        }
        for p in parents {
            hosts[p]!.children += 1
            task.children[p, default: 0] += 1
        }
        task.members[child]!.parents = parents
    }

    private mutating func removeMember(_ id: String, from taskID: TaskID) {
        assign([], to: id, in: taskID)
        tasks[taskID]?.members[id] = nil
        // Children of the leaving host no longer count against it; nothing else to undo.
        if tasks[taskID]?.members.isEmpty == true { tasks[taskID] = nil }
    }

    private mutating func removeFromTasks(_ id: String) {
        for taskID in tasks.keys.sorted() where tasks[taskID]?.members[id] != nil { removeMember(id, from: taskID) }
        for taskID in tasks.keys.sorted() {
            guard var task = tasks[taskID] else { continue }
            for (child, m) in task.members where m.parents.contains(id) {
                task.members[child]!.parents.removeAll { $0 == id }
            }
            task.children[id] = nil
            tasks[taskID] = task
        }
        hosts[id]?.children = 0
    }

    // MARK: Views

    /// What a person debugging a swarm wants to see: `GET /debug/hosts` and `/debug/tasks`.
    public func hostsView(now: Int64) -> JSONValue {
        .array(hosts.values.sorted { $0.id < $1.id }.map { h in
            let r = h.registration
            return ["id": .string(h.id), "address": .string(r.address), "role": .string(r.role.rawValue),
                    "uploadRate": JSONValue(r.uploadRate), "idc": JSONValue(r.idc), "location": JSONValue(r.location),
                    "lastSeenMillisecondsAgo": JSONValue(now - h.lastSeen), "children": JSONValue(h.children),
                    "throughputBytesPerSecond": h.throughput.map { JSONValue(Int64($0)) } ?? .null,
                    "blockedForMilliseconds": h.blockedUntil > now ? JSONValue(h.blockedUntil - now) : .null]
        })
    }

    public func tasksView() -> JSONValue {
        .array(tasks.values.sorted { $0.id < $1.id }.map { t in
            ["id": .string(t.id.description), "url": JSONValue(t.url), "pieceCount": t.pieceCount.map { JSONValue($0) } ?? .null,
             "members": .array(t.members.sorted { $0.key < $1.key }.map { id, m in
                 ["host": .string(id), "state": .string(m.state.rawValue), "pieces": JSONValue(m.pieces.count),
                  "held": .string(m.pieces.description),
                  "parents": .array(m.parents.map { .string($0) })]
             })]
        })
    }

    /// A member's view of one task, for tests.
    public func member(_ host: String, of task: TaskID) -> (state: String, pieces: PieceSet, parents: [String])? {
        tasks[task]?.members[host].map { ($0.state.rawValue, $0.pieces, $0.parents) }
    }

    /// Children currently assigned to a host, for tests and the view.
    public func children(of host: String) -> Int? { hosts[host]?.children }
}

// MARK: - State

struct Host: Sendable {
    let id: String
    var registration: HostRegistration
    var lastSeen: Int64 = 0
    /// Children whose current parent list includes this host.
    var children = 0
    /// Bytes per second, a moving average of what children reported.
    var throughput: Double?
    var failures: [Int64] = []
    var blockedUntil: Int64 = 0

    init(id: String) {
        self.id = id
        registration = HostRegistration(id: id, address: "unknown:1", role: .peer)
    }

    func isBlocked(now: Int64) -> Bool { blockedUntil > now }

    mutating func recordCost(bytes: Int64, milliseconds: Int) {
        let rate = Double(bytes) * 1000 / Double(max(1, milliseconds))
        throughput = throughput.map { 0.7 * $0 + 0.3 * rate } ?? rate
    }

    mutating func recordFailure(now: Int64, config: Scheduler.Config) {
        failures = failures.filter { now - $0 < Int64(config.blockMilliseconds) } + [now]
        if failures.count >= config.failuresToBlock {
            blockedUntil = now + Int64(config.blockMilliseconds)
            failures = []
        }
    }
}

struct Member: Sendable {
    enum State: String, Sendable {
        /// Downloading (has asked for parents).
        case downloading
        /// A seed asked to fetch the task from the origin.
        case fetching
        /// Holds the whole task.
        case complete
        /// Holds some pieces (registered with them, or stopped downloading).
        case holding
    }
    var pieces: PieceSet
    var state: State
    var lastSeen: Int64
    var parents: [String] = []
    /// Parents this child reported failing; never handed to it again for this task.
    var refused: Set<String> = []
}

struct SwarmTask: Sendable {
    let id: TaskID
    var url: String?
    var headers: [OpenTaskRequest.Header] = []
    var digest: SHA256Digest?
    /// Set for an OCI registry blob or manifest: the seed fetches `url` with the registry's auth.
    var registry: String?
    var pieceCount: Int?
    var members = MemberTable()
    /// The peers the seed's pieces are dealt among, in the order they came (`seedShare`).
    var owners: [String] = []
    /// Per IDC, the peers that may take parents from other IDCs (`Scheduler.mayCrossIDC`).
    var gateways: [String: [String]] = [:]
    /// Per parent, the members naming it (`Scheduler.Config.maxChildren`).
    var children: [String: Int] = [:]

    init(id: TaskID) { self.id = id }

    mutating func learn(contentLength: Int64?, pieceLength: Int) {
        if let contentLength { pieceCount = PieceMath.pieceCount(contentLength: contentLength, pieceLength: pieceLength) }
    }
}

/// A task's members by host id, with the ids also in an array (so an announce can sample a
/// bounded set of candidates without visiting every member) and a count of complete members
/// (so it can tell whether a seed must be asked without a scan). Reads like the dictionary it
/// wraps.
struct MemberTable: Sendable, Sequence {
    private(set) var byID: [String: Member] = [:]
    /// Every member's id, in no particular order.
    private(set) var ids: [String] = []
    private var position: [String: Int] = [:]
    private(set) var completeCount = 0

    subscript(id: String) -> Member? {
        get { byID[id] }
        set {
            let old = newValue.map { byID.updateValue($0, forKey: id) } ?? byID.removeValue(forKey: id)
            if old?.state == .complete { completeCount -= 1 }
            if newValue?.state == .complete { completeCount += 1 }
            if newValue != nil, old == nil {
                position[id] = ids.count
                ids.append(id)
            } else if newValue == nil, old != nil, let at = position.removeValue(forKey: id) {
                let last = ids.removeLast()
                if at < ids.count { ids[at] = last; position[last] = at }
            }
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: String) -> Member? {
        let old = byID[id]
        self[id] = nil
        return old
    }

    var keys: Dictionary<String, Member>.Keys { byID.keys }
    var values: Dictionary<String, Member>.Values { byID.values }
    var count: Int { byID.count }
    var isEmpty: Bool { byID.isEmpty }
    func makeIterator() -> Dictionary<String, Member>.Iterator { byID.makeIterator() }
}

import DarterCore
import PieceProtocol

/// Which piece to ask which parent for next (pure; the peer's download engine and the
/// simulator drive it). Order of preference for a parent with a free request slot:
/// 1. pieces in the streaming window — the `window` pieces from the reader's position, lowest
///    first — so a client reading the task in order (`/download`, `darter get -O -`) is fed;
/// 2. elsewhere, the rarest piece among the parents this host knows (fewest holders), ties broken
///    by a per-host seeded random order so peers starting together fetch different pieces and
///    have something to give each other at once;
/// 3. in the endgame (at most `endgamePieces` missing, every one of them asked for), a piece
///    another parent is already fetching, at most `maxDuplicates` requests per piece, so one slow
///    parent cannot hold back the last pieces.
///
/// A *scarce* parent (a seed: one upload link feeding the whole swarm) is asked only for the
/// pieces this host *owns*: pieces are dealt round robin over this host and its peer parents,
/// each to one owner, who fetches it from the seed and passes it on, so the seed sends
/// each piece about once. Without that, peers starting together ask the seed for the same pieces
/// and the seed's link, sending them twice or more, sets the swarm's pace (simulated, 8 peers:
/// 1.88× the ideal time with the seed sending 1.9 copies).
///
/// A *remote* parent (a peer in another IDC, across the link between data centres) is asked,
/// the same way, only for the pieces the scheduler dealt this host among its IDC's gateways
/// (`setRemoteShare`): each piece crosses about once and the IDC passes it on inside.
///
/// A *last-resort* parent (the origin, to a seed taking a task over from a dead one) is asked
/// only for pieces no other parent holds, so what the swarm still holds never leaves the origin
/// again.
public struct PieceSelector: Sendable {
    public let pieceCount: Int
    public var window: Int
    public var maxDuplicates: Int
    public var endgamePieces: Int
    /// This host's name (ownership of pieces at scarce parents).
    public let me: String
    public private(set) var have: PieceSet
    /// The next piece a streaming reader needs (0 when nobody reads in order).
    public private(set) var readerPosition = 0
    private var holders: [String: PieceSet] = [:]
    private var availability: [Int]
    private var inFlight: [Int: [String]] = [:]
    /// A random rank per piece (ties among equally rare pieces).
    private let tieRank: [UInt32]
    private var scarce: Set<String> = []
    private var lastResort: Set<String> = []
    /// Per piece: whether this host owns it (recomputed when the peer parents change, unless
    /// the scheduler dealt a share).
    private var owned: [Bool]
    private var dealt = false
    private var remote: Set<String> = []
    /// Per piece (rank space): whether this host may ask remote parents for it; all until the
    /// scheduler deals a remote share.
    private var remoteOwnedBits: [UInt64]

    // Rarest first without a scan of every piece (the simulator asks this millions of times):
    // bitsets over *rank positions* — pieces sorted by (tieRank, index) — so walking the set
    // bits of (neither held nor in flight) ∧ (the parent holds) ∧ (owned, at a scarce parent)
    // in order and keeping the first of the lowest availability is exactly the piece the linear
    // search over (availability, tieRank, index) picks; a piece only one parent holds ends the
    // walk. (Bitsets per availability level, searched level by level, cost levels × words a
    // pick: with 1,000 hosts, levels reach the hundreds and the search was a quarter of the
    // simulator's time.)
    private let rankOf: [Int]
    private let pieceAt: [Int]
    private let words: Int
    /// Pieces neither held nor in flight.
    private var openBits: [UInt64]
    private var ownedBits: [UInt64]
    private var holderBits: [String: [UInt64]] = [:]

    public init(pieceCount: Int, have: PieceSet = PieceSet(), window: Int = 4, maxDuplicates: Int = 2, endgamePieces: Int = 4,
                me: String = "", seed: UInt64) {
        precondition(pieceCount >= 0)
        self.pieceCount = pieceCount
        self.window = window
        self.maxDuplicates = maxDuplicates
        self.endgamePieces = endgamePieces
        self.me = me
        self.have = have
        owned = Array(repeating: true, count: pieceCount)
        availability = Array(repeating: 0, count: pieceCount)
        var rng = SplitMix64(seed: seed)
        let ranks = (0..<pieceCount).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        tieRank = ranks
        while readerPosition < pieceCount && have.contains(readerPosition) { readerPosition += 1 }
        let order = (0..<pieceCount).sorted { ranks[$0] != ranks[$1] ? ranks[$0] < ranks[$1] : $0 < $1 }
        pieceAt = order
        var rankOf = Array(repeating: 0, count: pieceCount)
        for (pos, i) in order.enumerated() { rankOf[i] = pos }
        self.rankOf = rankOf
        words = (pieceCount + 63) / 64
        var all = Array(repeating: UInt64(0), count: words)
        var openBits = all
        for i in 0..<pieceCount {
            let pos = rankOf[i]
            all[pos >> 6] |= 1 << UInt64(pos & 63)
            if !have.contains(i) { openBits[pos >> 6] |= 1 << UInt64(pos & 63) }
        }
        self.openBits = openBits
        ownedBits = all
        remoteOwnedBits = all
    }

    private static func set(_ bits: inout [UInt64], _ pos: Int) { bits[pos >> 6] |= 1 << UInt64(pos & 63) }
    private static func clear(_ bits: inout [UInt64], _ pos: Int) { bits[pos >> 6] &= ~(1 << UInt64(pos & 63)) }
    private static func test(_ bits: [UInt64], _ pos: Int) -> Bool { bits[pos >> 6] & (1 << UInt64(pos & 63)) != 0 }

    private mutating func changeAvailability(_ i: Int, by delta: Int) {
        availability[i] += delta
    }

    private mutating func rebuildOwnedBits() {
        ownedBits = Array(repeating: 0, count: words)
        for i in 0..<pieceCount where owned[i] { Self.set(&ownedBits, rankOf[i]) }
    }

    public var isComplete: Bool { have.count >= pieceCount }
    public var remaining: Int { pieceCount - have.count }
    public var parents: [String] { holders.keys.sorted() }
    public func pieces(of parent: String) -> PieceSet? { holders[parent] }
    public func requests(for piece: Int) -> [String] { inFlight[piece] ?? [] }
    public func holderCount(_ piece: Int) -> Int { availability[piece] }

    // MARK: What parents hold

    /// A parent's snapshot or new pieces (its availability feed): added to what it holds. A
    /// `scarce` parent (a seed, the origin) is asked only for pieces this host owns; a
    /// `lastResort` one only for pieces no other parent holds; a `remote` one (another IDC) only
    /// for this host's remote share.
    public mutating func parentHas(_ parent: String, _ pieces: PieceSet, scarce isScarce: Bool = false, lastResort isLastResort: Bool = false,
                                   remote isRemote: Bool = false) {
        let isNew = holders[parent] == nil
        var known = holders[parent] ?? PieceSet()
        var bits = holderBits[parent] ?? Array(repeating: 0, count: words)
        for i in pieces.indexes where i < pieceCount && known.insert(i) {
            changeAvailability(i, by: 1)
            Self.set(&bits, rankOf[i])
        }
        holders[parent] = known
        holderBits[parent] = bits
        if isNew {
            if isScarce { scarce.insert(parent) }
            else if isLastResort { lastResort.insert(parent) }
            else {
                if isRemote { remote.insert(parent) }
                recomputeOwnership()
            }
        }
    }

    /// One new piece at a known parent (a feed event): `parentHas(parent, PieceSet([piece]))`
    /// without building a set.
    public mutating func parentHas(_ parent: String, piece i: Int) {
        guard i >= 0, i < pieceCount, holders[parent] != nil else { return }
        if holders[parent]!.insert(i) {
            changeAvailability(i, by: 1)
            Self.set(&holderBits[parent]!, rankOf[i])
        }
    }

    /// Round robin over the sorted group from an offset every member computes alike: each of n
    /// members owns pieceCount/n pieces exactly (rendezvous hashing's uneven shares left the
    /// seed idle while the owner of the most pieces still fetched: 1.65× ideal, simulated).
    /// The scheduler's deal: this host owns the pieces with `piece % count == index` (every
    /// peer of the task gets the same deal, where parent lists differ from host to host), or none
    /// when `index` is nil (it is not one of the task's owners).
    public mutating func setShare(index: Int?, count: Int) {
        guard count > 0 else { return }
        if let index, index < 0 || index >= count { return }
        dealt = true
        for i in 0..<pieceCount { owned[i] = index.map { i % count == $0 } ?? false }
        rebuildOwnedBits()
    }

    /// The scheduler's deal among the gateways of this host's IDC: this host may ask parents in
    /// other IDCs for the pieces with `piece % count == index` only, for none when `index` is
    /// nil (it is no gateway: what crosses comes through the gateways).
    public mutating func setRemoteShare(index: Int?, count: Int) {
        guard count > 0 else { return }
        if let index, index < 0 || index >= count { return }
        remoteOwnedBits = Array(repeating: 0, count: words)
        guard let index else { return }
        for i in stride(from: index, to: pieceCount, by: count) { Self.set(&remoteOwnedBits, rankOf[i]) }
    }

    private mutating func recomputeOwnership() {
        guard !dealt else { return }
        let group = (holders.keys.filter { !scarce.contains($0) } + [me]).sorted()
        guard let mine = group.firstIndex(of: me) else { return }
        let offset = Int(RendezvousHash.fnv1a(group.joined(separator: ",")) % UInt64(group.count))
        for i in 0..<pieceCount { owned[i] = (i + offset) % group.count == mine }
        rebuildOwnedBits()
    }

    /// A parent that left or was dropped: its pieces no longer count, its requests are void
    /// (the caller cancels them).
    public mutating func removeParent(_ parent: String) {
        guard let known = holders.removeValue(forKey: parent) else { return }
        for i in known.indexes { changeAvailability(i, by: -1) }
        holderBits[parent] = nil
        for (piece, parents) in inFlight where parents.contains(parent) { drop(piece, parent) }
        remote.remove(parent)
        if scarce.remove(parent) == nil && lastResort.remove(parent) == nil { recomputeOwnership() }
    }

    public mutating func setReaderPosition(_ piece: Int) { readerPosition = max(0, min(piece, pieceCount)) }

    // MARK: Requests

    /// The piece to ask `parent` for now, or nil when it has nothing this host lacks that is
    /// worth asking it for. The request counts as in flight until `received` or `failed`.
    public mutating func next(for parent: String) -> Int? {
        guard let known = holders[parent] else { return nil }
        let onlyOwned = scarce.contains(parent)
        let onlyRemoteShare = remote.contains(parent)
        // At a last-resort parent, only pieces nobody else holds (availability 1: itself).
        let onlyUnheld = lastResort.contains(parent)
        func wanted(_ i: Int) -> Bool { !have.contains(i) && known.contains(i) && (!onlyUnheld || availability[i] == 1) }
        func mine(_ i: Int) -> Bool { (!onlyOwned || owned[i]) && (!onlyRemoteShare || Self.test(remoteOwnedBits, rankOf[i])) }
        func worthIt(_ i: Int) -> Bool { wanted(i) && inFlight[i] == nil && mine(i) }
        // 1. The streaming window, in order.
        if readerPosition < pieceCount {
            for i in readerPosition..<min(pieceCount, readerPosition + window) where worthIt(i) {
                return start(i, parent)
            }
        }
        // 2. Rarest first among pieces nobody is fetching (what `worthIt` admits, by the
        // rank-space bitsets: the lowest availability, then the lowest rank).
        var best: Int?
        if let bits = holderBits[parent] {
            var rarest = Int.max
            search: for w in 0..<words {
                var x = openBits[w] & bits[w] & (onlyOwned ? ownedBits[w] : ~0) & (onlyRemoteShare ? remoteOwnedBits[w] : ~0)
                while x != 0 {
                    let piece = pieceAt[w << 6 | x.trailingZeroBitCount]
                    x &= x - 1
                    let a = availability[piece]
                    guard a < rarest, !onlyUnheld || a == 1 else { continue }
                    rarest = a
                    best = piece
                    if a <= 1 { break search }
                }
            }
        }
        #if DEBUG
        var linear: Int?
        for i in 0..<pieceCount where worthIt(i) {
            if let b = linear, (availability[i], tieRank[i]) >= (availability[b], tieRank[b]) { continue }
            linear = i
        }
        assert(linear == best, "rank-space rarest-first \(String(describing: best)) differs from the scan's \(String(describing: linear))")
        #endif
        if let best { return start(best, parent) }
        // A remote parent, to a host with nothing at all in flight: a piece no parent in its own
        // IDC holds (its gateway may be gone, or the deal not yet heard), so nobody starves.
        if onlyRemoteShare && !onlyOwned && inFlight.isEmpty {
            for i in 0..<pieceCount where wanted(i) && holders.allSatisfy({ $0.key == parent || remote.contains($0.key) || scarce.contains($0.key) || !$0.value.contains(i) }) {
                if let b = best, tieRank[i] >= tieRank[b] { continue }
                best = i
            }
            if let best { return start(best, parent) }
        }
        // A scarce parent, to a host with nothing at all in flight: a piece no other parent holds
        // (its owner may be gone, or not among this host's parents), so nobody starves; but not
        // where the scheduler dealt the shares and a peer parent is there to pass them on: at the
        // start every host is idle, and 1,000 hosts asking the seed for its first pieces made it
        // send 4.9 copies (simulated, 1,000 × 10 Gbit/s; the scheduler deals a dead owner's
        // share again at once).
        if onlyOwned && inFlight.isEmpty && (!dealt || holders.keys.allSatisfy(scarce.contains)) {
            for i in 0..<pieceCount where wanted(i) && inFlight[i] == nil && holders.allSatisfy({ $0.key == parent || scarce.contains($0.key) || !$0.value.contains(i) }) {
                if let b = best, (tieRank[i]) >= (tieRank[b]) { continue }
                best = i
            }
            if let best { return start(best, parent) }
        }
        // 3. Endgame: duplicate the request that has waited with fewest copies (window pieces first);
        // never at a last-resort parent (a piece in flight from a holder is held by it).
        guard !onlyUnheld, remaining <= endgamePieces, (0..<pieceCount).allSatisfy({ have.contains($0) || inFlight[$0] != nil }) else { return nil }
        var dup: (key: (Int, Int, Int), piece: Int)?
        for (i, parents) in inFlight where wanted(i) && parents.count < maxDuplicates && !parents.contains(parent) && mine(i) {
            let key = (i < readerPosition + window ? 0 : 1, parents.count, i)
            if dup == nil || key < dup!.key { dup = (key, i) }
        }
        return dup.map { start($0.piece, parent) }
    }

    /// `piece` arrived whole and checked (from `parent`): other requests for it are now
    /// redundant; returns the parents to cancel them on.
    @discardableResult
    public mutating func received(_ piece: Int, from parent: String) -> [String] {
        have.insert(piece)
        if piece >= 0 && piece < pieceCount { Self.clear(&openBits, rankOf[piece]) }
        let others = (inFlight.removeValue(forKey: piece) ?? []).filter { $0 != parent }
        while readerPosition < pieceCount && have.contains(readerPosition) { readerPosition += 1 }
        return others
    }

    /// The request for `piece` from `parent` failed (error, bad piece, deadline): it may be
    /// asked again of anyone.
    public mutating func failed(_ piece: Int, from parent: String) { drop(piece, parent) }

    private mutating func start(_ piece: Int, _ parent: String) -> Int {
        inFlight[piece, default: []].append(parent)
        Self.clear(&openBits, rankOf[piece])
        return piece
    }

    private mutating func drop(_ piece: Int, _ parent: String) {
        guard var parents = inFlight[piece] else { return }
        parents.removeAll { $0 == parent }
        inFlight[piece] = parents.isEmpty ? nil : parents
        if parents.isEmpty && !have.contains(piece) { Self.set(&openBits, rankOf[piece]) }
    }
}

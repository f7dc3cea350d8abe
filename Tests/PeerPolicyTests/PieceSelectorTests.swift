import Testing
import DarterCore
import PieceProtocol
@testable import PeerPolicy

@Suite("Piece selection: streaming window, rarest first, endgame")
struct PieceSelectorTests {
    @Test("the streaming window goes first and in order, then the rarest pieces")
    func windowThenRarest() {
        var s = PieceSelector(pieceCount: 10, window: 2, seed: 1)
        s.parentHas("a", PieceSet(0..<10))
        s.parentHas("b", PieceSet(0..<6))
        #expect(s.next(for: "a") == 0)
        #expect(s.next(for: "a") == 1)
        // Outside the window, pieces only "a" holds (6-9) before the ones both hold.
        var picked: [Int] = []
        for _ in 0..<4 { picked.append(s.next(for: "a")!) }
        #expect(Set(picked) == [6, 7, 8, 9])
        // "b" holds 0-5; 0 and 1 are in flight, so it gets the others.
        #expect([2, 3, 4, 5].contains(s.next(for: "b")!))
        #expect(s.holderCount(7) == 1 && s.holderCount(3) == 2)
    }

    @Test("the window follows the reader as pieces arrive in order")
    func windowMoves() {
        var s = PieceSelector(pieceCount: 8, window: 2, seed: 1)
        s.parentHas("a", PieceSet(0..<8))
        #expect(s.next(for: "a") == 0 && s.next(for: "a") == 1)
        s.received(1, from: "a")
        #expect(s.readerPosition == 0, "piece 0 is still missing")
        s.received(0, from: "a")
        #expect(s.readerPosition == 2)
        #expect(s.next(for: "a") == 2)
    }

    @Test("peers starting together with one parent pick different first pieces (seeded tie-breaks)")
    func decorrelated() {
        var firsts: Set<Int> = []
        for seed in UInt64(1)...8 {
            var s = PieceSelector(pieceCount: 64, window: 0, seed: seed)
            s.parentHas("seed", PieceSet(0..<64))
            firsts.insert(s.next(for: "seed")!)
        }
        #expect(firsts.count >= 6, "\(firsts)")
    }

    @Test("endgame: once every missing piece is asked for, another parent duplicates a request (at most twice); arrival names the ones to cancel")
    func endgame() {
        var s = PieceSelector(pieceCount: 3, have: PieceSet([0]), window: 0, seed: 3)
        for p in ["a", "b", "c"] { s.parentHas(p, PieceSet(0..<3)) }
        let x = s.next(for: "a")!, y = s.next(for: "a")!
        #expect(Set([x, y]) == [1, 2])
        let dup = s.next(for: "b")!
        #expect([1, 2].contains(dup))
        #expect(s.requests(for: dup) == ["a", "b"])
        let other = s.next(for: "c")!
        #expect(other != dup, "the piece with fewer copies")
        #expect(s.next(for: "c") == nil, "c already asked for the one piece it could duplicate")
        #expect(s.received(dup, from: "b") == ["a"])
        #expect(s.requests(for: dup).isEmpty && s.remaining == 1)
    }

    @Test("a failed request can go to anyone; a removed parent's pieces and requests no longer count")
    func failuresAndRemoval() {
        var s = PieceSelector(pieceCount: 4, window: 0, seed: 5)
        s.parentHas("a", PieceSet([0, 1]))
        s.parentHas("b", PieceSet([1, 2, 3]))
        let p = s.next(for: "a")!
        #expect(p == 0, "rarest: only a holds 0")
        s.failed(0, from: "a")
        #expect(s.requests(for: 0).isEmpty)
        #expect(s.next(for: "a") == 0)
        s.removeParent("a")
        #expect(s.requests(for: 0).isEmpty && s.holderCount(1) == 1 && s.next(for: "a") == nil)
        #expect(s.parents == ["b"])
    }

    @Test("nothing to ask of a parent that holds only what this host has")
    func nothingToAsk() {
        var s = PieceSelector(pieceCount: 4, have: PieceSet([0, 1]), seed: 1)
        s.parentHas("a", PieceSet([0, 1]))
        #expect(s.next(for: "a") == nil && s.next(for: "unknown") == nil)
        s.received(2, from: "x")
        s.received(3, from: "x")
        #expect(s.isComplete && s.readerPosition == 4)
    }

    @Test("a seed (scarce) is asked only for this host's own pieces, in the window too: the window does not make the seed send a piece twice")
    func windowAtAScarceParent() {
        var s = PieceSelector(pieceCount: 8, window: 4, me: "b", seed: 1)
        s.parentHas("seed", PieceSet(0..<8), scarce: true)
        s.setShare(index: 1, count: 2)  // b owns the odd pieces
        var asked: [Int] = []
        while let p = s.next(for: "seed") { asked.append(p) }
        #expect(Array(asked.prefix(2)) == [1, 3], "the window's own pieces first, in order")
        #expect(asked.sorted() == [1, 3, 5, 7], "then the rest of its own, none of the others'")
    }

    @Test("a host dealt no share asks a seed for nothing while a peer parent can pass pieces on; with only seeds left it takes what nobody else holds")
    func noShare() {
        var s = PieceSelector(pieceCount: 8, window: 0, me: "b", seed: 1)
        s.parentHas("seed", PieceSet(0..<8), scarce: true)
        s.parentHas("a", PieceSet())
        s.setShare(index: nil, count: 4)
        #expect(s.next(for: "seed") == nil, "idle at the start, like everyone: the owners fetch from the seed")
        s.parentHas("a", piece: 3)
        #expect(s.next(for: "a") == 3)
        s.removeParent("a")
        s.failed(3, from: "a")
        #expect(s.next(for: "seed") != nil, "no peer parent: nobody starves")
    }

    @Test("a remote parent (another IDC) is asked only for this host's remote share; with nothing in flight, for a piece no parent of its own IDC holds")
    func remoteShare() {
        var s = PieceSelector(pieceCount: 8, window: 0, me: "g", seed: 1)
        s.parentHas("far", PieceSet(0..<8), remote: true)
        s.parentHas("near", PieceSet([2, 4]))
        s.setRemoteShare(index: 0, count: 4)  // pieces 0 and 4
        var asked: [Int] = []
        while let p = s.next(for: "far") { asked.append(p) }
        #expect(asked.sorted() == [0, 4], "its share only, even what a neighbour holds")
        #expect(s.next(for: "near") == 2)
        #expect(s.next(for: "far") == nil, "requests in flight: nothing beyond its share")
        s.received(0, from: "far")
        s.received(4, from: "far")
        s.received(2, from: "near")
        let idle = s.next(for: "far")
        #expect(idle.map { [1, 3, 5, 6, 7].contains($0) } == true, "nothing in flight: a piece its own IDC lacks, so it never starves")
    }
}

@Suite("Announce pacing")
struct AnnouncePacingTests {
    @Test("again soon while the parents grow, then doubling to the regular period; growing again is quick again")
    func pacing() {
        var p = AnnouncePacing(quickest: .milliseconds(250), slowest: .seconds(2))
        #expect(p.next(parents: 1) == .milliseconds(250))
        #expect(p.next(parents: 16) == .milliseconds(250))
        #expect(p.next(parents: 16) == .milliseconds(500))
        #expect(p.next(parents: 16) == .seconds(1))
        #expect(p.next(parents: 16) == .seconds(2))
        #expect(p.next(parents: 16) == .seconds(2))
        #expect(p.next(parents: 12) == .seconds(2))
        #expect(p.next(parents: 14) == .milliseconds(250))
    }

    @Test("again after every step of the download's progress since the last announce; never once it holds every piece, nor without a step")
    func progress() {
        var p = AnnouncePacing(quickest: .milliseconds(250), slowest: .seconds(2), progressStep: 1.0 / 8)
        _ = p.next(parents: 16, holding: 10)
        #expect(!p.dueByProgress(holding: 41, of: 256))
        #expect(p.dueByProgress(holding: 42, of: 256), "32 pieces (1/8 of 256) since the announce at 10")
        _ = p.next(parents: 16, holding: 42)
        #expect(!p.dueByProgress(holding: 73, of: 256) && p.dueByProgress(holding: 74, of: 256))
        #expect(!p.dueByProgress(holding: 256, of: 256), "complete: the report says so, no announce")
        let timeOnly = AnnouncePacing(quickest: .milliseconds(250), slowest: .seconds(2))
        #expect(!timeOnly.dueByProgress(holding: 255, of: 256))
    }

    @Test("progress is checked again after half the time the rest of the step takes at the rate so far, never sooner than the minimum")
    func progressCheckDelay() {
        var p = AnnouncePacing(quickest: .milliseconds(250), slowest: .seconds(2), progressStep: 1.0 / 8)
        _ = p.next(parents: 16, holding: 0)
        let min = Duration.milliseconds(20)
        // 8 of 32 pieces in 1 s: 24 more take 3 s; half of that.
        #expect(p.untilProgressCheck(holding: 8, of: 256, sinceAnnounce: .seconds(1), minimum: min) == .milliseconds(1500))
        #expect(p.untilProgressCheck(holding: 31, of: 256, sinceAnnounce: .seconds(1), minimum: min) == min, "almost there: the minimum")
        #expect(p.untilProgressCheck(holding: 0, of: 256, sinceAnnounce: .milliseconds(300), minimum: min) == .milliseconds(300), "no piece yet: as long again")
        #expect(p.untilProgressCheck(holding: 40, of: 256, sinceAnnounce: .seconds(1), minimum: min) == min, "due already")
        let timeOnly = AnnouncePacing(quickest: .milliseconds(250), slowest: .seconds(2))
        #expect(timeOnly.untilProgressCheck(holding: 8, of: 256, sinceAnnounce: .seconds(1), minimum: min) == .seconds(2))
    }
}

@Suite("Piece selection: a last-resort parent (the origin, to a seed taking a task over)")
struct LastResortParentTests {
    @Test("it is asked only for pieces no other parent holds, never in the endgame; a parent that leaves gives its pieces over to it")
    func onlyUnheld() {
        var s = PieceSelector(pieceCount: 10, window: 4, seed: 3)
        s.parentHas("p1", PieceSet(0..<4))
        s.parentHas("p2", PieceSet([3, 4, 5]))
        s.parentHas("origin", PieceSet(0..<10), lastResort: true)
        var fromOrigin: [Int] = []
        while let i = s.next(for: "origin") { fromOrigin.append(i) }
        #expect(Set(fromOrigin) == [6, 7, 8, 9], "the window (0-3) and the pieces peers hold stay with the peers")
        for i in fromOrigin { s.received(i, from: "origin") }
        #expect(s.next(for: "origin") == nil)
        // p2 leaves: 4 and 5 are held by nobody else now.
        s.removeParent("p2")
        var more: [Int] = []
        while let i = s.next(for: "origin") { more.append(i) }
        #expect(Set(more) == [4, 5])
        // What is left (0-3) is p1's; in the endgame the origin duplicates nothing.
        var fromP1: [Int] = []
        while let i = s.next(for: "p1") { fromP1.append(i) }
        #expect(Set(fromP1) == [0, 1, 2, 3] && s.next(for: "origin") == nil)
    }
}

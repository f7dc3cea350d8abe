import Testing
@testable import SwarmSimulator

@Suite("Swarm simulation (the real Scheduler and PieceSelector in virtual time)")
struct SwarmSimulatorTests {
    /// One peer taking a 4 MiB object in 1 MiB pieces from the seed, in fine steps: small enough
    /// to reason about each piece.
    func onePeerFourPieces() -> SwarmSimulation.Shape {
        var shape = SwarmSimulation.Shape()
        shape.peers = 1
        shape.objectBytes = 4 << 20
        shape.pieceLength = 1 << 20
        shape.tick = 0.0005
        return shape
    }

    @Test("max-min fair rates: a parent's upload is split among its transfers, a child's download caps its own")
    func fairShares() {
        // Parent 0 serves children 1 and 2; child 1 also downloads from parent 3.
        var t = [SwarmSimulation.Transfer(child: 1, parent: 0, task: 0, piece: 0, remaining: 1),
                 SwarmSimulation.Transfer(child: 2, parent: 0, task: 0, piece: 0, remaining: 1),
                 SwarmSimulation.Transfer(child: 1, parent: 3, task: 0, piece: 1, remaining: 1)]
        SwarmSimulation.allocate(&t, hosts: 4, capacity: 10)
        #expect(t.map(\.rate) == [5, 5, 5])
        var u = [SwarmSimulation.Transfer(child: 1, parent: 0, task: 0, piece: 0, remaining: 1),
                 SwarmSimulation.Transfer(child: 1, parent: 2, task: 0, piece: 1, remaining: 1),
                 SwarmSimulation.Transfer(child: 3, parent: 2, task: 0, piece: 1, remaining: 1)]
        SwarmSimulation.allocate(&u, hosts: 4, capacity: 10)
        #expect(u.map(\.rate) == [5, 5, 5])
        // Unequal: child 1's download (10) is split with parent 2, which also serves 3 and 4;
        // parent 2's three transfers get 10/3, child 1 takes the rest from parent 0.
        var v = [SwarmSimulation.Transfer(child: 1, parent: 0, task: 0, piece: 0, remaining: 1),
                 SwarmSimulation.Transfer(child: 1, parent: 2, task: 0, piece: 1, remaining: 1),
                 SwarmSimulation.Transfer(child: 3, parent: 2, task: 0, piece: 1, remaining: 1),
                 SwarmSimulation.Transfer(child: 4, parent: 2, task: 0, piece: 1, remaining: 1)]
        SwarmSimulation.allocate(&v, hosts: 5, capacity: 10)
        #expect(abs(v[0].rate - 20.0 / 3) < 1e-9 && v[1...].allSatisfy { abs($0.rate - 10.0 / 3) < 1e-9 })
    }

    @Test("8 peers × 200 Mbit/s × 256 MiB (the netns benchmark's shape): near T_min, the origin sends the object once")
    func defaultShape() {
        let r = SwarmSimulation.run(SwarmSimulation.Shape())
        print("simulated swarm: p50 \(r.p50VsIdeal) p99 \(r.p99VsIdeal) × ideal; uploads \(r.uploadBytes.map { $0 >> 20 }) MiB; wasted \(r.wastedBytes >> 20) MiB; \(r.steps) steps")
        #expect(r.completionSeconds.count == 8 && r.unfinished == 0)
        #expect(r.originBytes == 256 << 20)
        #expect(r.p99VsIdeal <= 1.4)
        // The peers carry most of the load: the seed sends well under N copies.
        #expect(r.uploadBytes[0] < 3 * (256 << 20))
    }

    @Test("two data centres: with IDC labels the object crosses between them about once (the gateways split it); without, many times")
    func twoDataCentres() {
        var shape = SwarmSimulation.Shape()
        shape.peers = 24
        shape.objectBytes = 32 << 20
        shape.linkBytesPerSecond = 125_000_000
        shape.dataCentres = 2
        let labelled = SwarmSimulation.run(shape)
        shape.localityLabels = false
        let unlabelled = SwarmSimulation.run(shape)
        let copies = (Double(labelled.crossDCBytes) / Double(32 << 20), Double(unlabelled.crossDCBytes) / Double(32 << 20))
        print("simulated two DCs, 24 peers: copies across \(copies.0) labelled, \(copies.1) not; p99 \(labelled.p99VsIdeal) / \(unlabelled.p99VsIdeal) × ideal")
        #expect(labelled.unfinished == 0 && labelled.originBytes == 32 << 20)
        #expect(copies.0 <= 2, "about one copy crosses (1.6 with 32 pieces over 12 gateways a DC)")
        #expect(copies.1 >= 4 * copies.0)
    }

    @Test("16 peers × 100 Mbit/s × 256 MiB: the same")
    func sixteenPeers() {
        var shape = SwarmSimulation.Shape()
        shape.peers = 16
        shape.linkBytesPerSecond = 12_500_000
        let r = SwarmSimulation.run(shape)
        print("simulated swarm, 16 peers: p50 \(r.p50VsIdeal) p99 \(r.p99VsIdeal) × ideal; seed sent \(r.uploadBytes[0] >> 20) MiB")
        #expect(r.p99VsIdeal <= 1.6)
        #expect(r.uploadBytes[0] < 2 * (256 << 20))
    }

    @Test("weighted shares: a full link is split in proportion to the transfers' weights, and what one cannot use goes to the others")
    func weightedShares() {
        var t = [SwarmSimulation.Transfer(child: 1, parent: 0, task: 0, piece: 0, remaining: 1, weight: 1),
                 SwarmSimulation.Transfer(child: 2, parent: 0, task: 0, piece: 1, remaining: 1, weight: 3)]
        FairShare.allocate(&t, up: [8, 8, 8], down: [8, 8, 8], cross: [])
        #expect(t.map(\.rate) == [2, 6])
        // Child 2's download is 4: the heavy transfer is capped there, the light one takes the rest.
        FairShare.allocate(&t, up: [8, 8, 8], down: [8, 8, 4], cross: [])
        #expect(t.map(\.rate) == [4, 4])
    }

    @Test("a flow spread: piece requests take unequal times (TCP's shares), the swarm finishes later than with fair shares; deterministic")
    func flowSpread() {
        var shape = SwarmSimulation.Shape()
        shape.objectBytes = 32 << 20
        shape.recordTimeline = true
        shape.roundTrip = 0.02
        let fair = SwarmSimulation.run(shape)
        shape.flowSpread = 0.6
        let spread = SwarmSimulation.run(shape), again = SwarmSimulation.run(shape)
        func ratio(_ r: SwarmSimulation.Result) -> Double {
            let t = r.requestSeconds
            return SwarmSimulation.Result.percentile(t, 0.9) / SwarmSimulation.Result.percentile(t, 0.5)
        }
        #expect(fair.requestSeconds.count >= 8 * 32 && spread.unfinished == 0 && spread.originBytes == 32 << 20)
        #expect(ratio(fair) < 1.25 && ratio(spread) > 1.4, "\(ratio(fair)) \(ratio(spread))")
        #expect(spread.p99VsIdeal > fair.p99VsIdeal)
        #expect(spread.completionSeconds == again.completionSeconds)
    }

    @Test("a transfer whose first byte is still on its way takes no share of the links")
    func waitingTransfersTakeNoShare() {
        var t = [SwarmSimulation.Transfer(child: 1, parent: 0, task: 0, piece: 0, remaining: 1, startsAt: 0),
                 SwarmSimulation.Transfer(child: 2, parent: 0, task: 0, piece: 1, remaining: 1, startsAt: 0.5)]
        FairShare.allocate(&t, up: [10, 10, 10], down: [10, 10, 10], cross: [], now: 0.1)
        #expect(t.map(\.rate) == [10, 0])
        FairShare.allocate(&t, up: [10, 10, 10], down: [10, 10, 10], cross: [], now: 0.5)
        #expect(t.map(\.rate) == [5, 5])
    }

    @Test("the wire: one peer taking 4 pieces from the seed one at a time pays a round trip per piece, and each piece at the link's payload rate")
    func roundTripAndWireEfficiency() {
        var shape = onePeerFourPieces()
        shape.swarm.requestsPerSeed = 1
        func completion(roundTrip: Double, efficiency: Double) -> Double {
            shape.roundTrip = roundTrip
            shape.wireEfficiency = efficiency
            let r = SwarmSimulation.run(shape)
            #expect(r.unfinished == 0)
            return r.completionSeconds[0] ?? .infinity
        }
        let piece = Double(1 << 20) / shape.linkBytesPerSecond
        let bare = completion(roundTrip: 0, efficiency: 1)
        let slowWire = completion(roundTrip: 0, efficiency: 0.5)
        let far = completion(roundTrip: 0.05, efficiency: 1)
        // Bare: four pieces back to back, after the seed's first piece from the origin (4x the link).
        #expect(bare >= 4 * piece && bare < 4 * piece + piece / 4 + 0.002)
        // Half the payload per byte: each piece takes twice as long.
        #expect(abs((slowWire - bare) - 4 * piece) < 0.003)
        // 50 ms round trips: four requests' and the feed's half (the seed's first piece).
        #expect(abs((far - bare) - (4 * 0.05 + 0.025)) < 0.003)
    }

    @Test("the get's side: a later start shifts completion by as much; a reader slower than the link sets it; the timeline records each piece held")
    func startReaderAndTimeline() {
        var shape = onePeerFourPieces()
        shape.roundTrip = 0
        shape.wireEfficiency = 1
        shape.recordTimeline = true
        let piece = Double(1 << 20) / shape.linkBytesPerSecond
        let bare = SwarmSimulation.run(shape)
        let done = bare.completionSeconds[0]!
        #expect(bare.holdingSeconds.count == 1 && bare.holdingSeconds[0].count == 4)
        #expect(bare.holdingSeconds[0] == bare.holdingSeconds[0].sorted() && abs(bare.holdingSeconds[0][3] - done) < 1e-9)
        var later = shape
        later.startSeconds = 0.5
        #expect(abs(SwarmSimulation.run(later).completionSeconds[0]! - (done + 0.5)) < 0.002)
        // A reader at 10x the link keeps up: done once it read the last piece, a tenth of a
        // piece's time after it landed.
        var fast = shape
        fast.readerBytesPerSecond = 10 * shape.linkBytesPerSecond
        #expect(abs(SwarmSimulation.run(fast).completionSeconds[0]! - (done + piece / 10)) < 0.002)
        // At a quarter of the link it reads from the first piece on and takes 4x the transfer.
        var slow = shape
        slow.readerBytesPerSecond = shape.linkBytesPerSecond / 4
        let first = bare.holdingSeconds[0][0]
        #expect(abs(SwarmSimulation.run(slow).completionSeconds[0]! - (first + 16 * piece)) < 0.002)
        var unrecorded = shape
        unrecorded.recordTimeline = false
        let quiet = SwarmSimulation.run(unrecorded)
        #expect(quiet.holdingSeconds.isEmpty && quiet.requestSeconds.isEmpty, "recorded only when asked")
    }

    @Test("a sweep's plots: completion ÷ T_min against N with Kraken's published figures, and a CDF line per N")
    func plots() {
        var shape = SwarmSimulation.Shape()
        shape.objectBytes = 16 << 20
        let runs = [2, 3, 4, 5].map { peers -> (peers: Int, result: SwarmSimulation.Result) in
            shape.peers = peers
            return (peers, SwarmSimulation.run(shape))
        }
        let files = ScalePlots.svgs(runs, shape: "200mbit/s, 16m")
        #expect(files.map(\.name) == ["scale-vs-n.svg", "scale-cdf.svg"])
        #expect(files.allSatisfy { $0.text.contains("<svg") && $0.text.contains("</svg>") })
        #expect(files[0].text.contains("Darter p99") && files[0].text.contains("Kraken, production"))
        #expect(files[1].text.contains("2 peers") && files[1].text.contains("5 peers"))
        // One colour a line: the legend's swatches in the CDF differ (the third and the last
        // were both red once).
        let swatches = files[1].text.split(separator: "\n").filter { $0.hasPrefix("<line") && $0.contains("stroke-width=\"2.5\"") }
            .compactMap { $0.split(separator: "stroke=\"").dropFirst().first?.prefix(7) }
        #expect(swatches.count == 4 && Set(swatches).count == 4, "\(swatches)")
    }

    @Test("deterministic: the same seed gives the same run")
    func deterministic() {
        var shape = SwarmSimulation.Shape()
        shape.peers = 4
        shape.objectBytes = 32 << 20
        let a = SwarmSimulation.run(shape), b = SwarmSimulation.run(shape)
        #expect(a.completionSeconds == b.completionSeconds && a.uploadBytes == b.uploadBytes)
    }
}

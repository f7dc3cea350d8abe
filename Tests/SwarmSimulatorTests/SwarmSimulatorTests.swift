import Testing
@testable import SwarmSimulator

@Suite("Swarm simulation (the real Scheduler and PieceSelector in virtual time)")
struct SwarmSimulatorTests {
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

    @Test("deterministic: the same seed gives the same run")
    func deterministic() {
        var shape = SwarmSimulation.Shape()
        shape.peers = 4
        shape.objectBytes = 32 << 20
        let a = SwarmSimulation.run(shape), b = SwarmSimulation.run(shape)
        #expect(a.completionSeconds == b.completionSeconds && a.uploadBytes == b.uploadBytes)
    }
}

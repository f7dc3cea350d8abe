#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO

/// A small swarm on loopback: `darter scheduler`, a `darter seed` and peers (`darter peer`), each
/// with its own store and port, in front of origin.py. Bytes exact on every peer; the object
/// leaves the origin once.
@Suite("Swarm: end to end on loopback (darter scheduler, seed, peers, origin.py)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && DarterBinary.helps("peer", mentioning: ["--scheduler"]),
                "needs `darter scheduler`, `darter peer`, `darter seed` and Tests/Fixtures/origin.py"))
struct SwarmEndToEndTests {
    struct Fixture {
        let dir: String
        let origin: OriginServer
        let scheduler: ChildProcess
        let schedulerURL: String
        let seed: SeedProcess
        var peers: [SeedProcess]
        let file: [UInt8]

        func get(_ peer: SeedProcess, _ out: String, timeout: Double = 90) async throws -> ProcessResult {
            try await runProcess(DarterBinary.path, ["get", origin.url(file: "obj.bin"), "-O", out, "--daemon", peer.base, "--no-fallback"],
                                 scratch: dir, timeout: timeout)
        }
        func debug(_ what: String) async throws -> JSONValue {
            try JSONValue.parse(try await curl(schedulerURL + "/debug/" + what, scratch: dir).body)
        }
        func stop() async {
            for p in peers { _ = await p.stop() }
            _ = await seed.stop()
            _ = await scheduler.stop()
            await origin.stop()
            removeTree(dir)
        }
    }

    func start(peers count: Int, size: Int) async throws -> Fixture {
        raiseFileLimit()
        let dir = makeServerTestDirectory("swarm")
        try SystemCalls.makeDirectories(dir + "/origin")
        try SystemCalls.makeDirectories(dir + "/out")
        let file = SplitMix64.bytes(size, seed: 0x5A4)
        try writeFile(dir + "/origin/obj.bin", file)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let port = try freePort()
        let scheduler = try ChildProcess(DarterBinary.path, ["scheduler", "--listen", "127.0.0.1:\(port)"], logPath: dir + "/scheduler.log")
        try await scheduler.waitForLog("scheduler: listening on")
        let schedulerURL = "http://127.0.0.1:\(port)"
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        var peers: [SeedProcess] = []
        for i in 1...count {
            peers.append(try await SeedProcess.start(dataDir: dir + "/peer\(i)", extra: ["--scheduler", schedulerURL, "--host-id", "peer-\(i)"],
                                                     command: "peer"))
        }
        let fx = Fixture(dir: dir, origin: origin, scheduler: scheduler, schedulerURL: schedulerURL, seed: seed, peers: peers, file: file)
        // Every daemon registered.
        for _ in 0..<100 {
            if try await fx.debug("hosts").array?.count == count + 1 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await fx.debug("hosts").array?.count == count + 1)
        return fx
    }

    @Test("three peers download at once through the swarm: exact bytes on each, the object leaves the origin once, peers serve each other")
    func threePeers() async throws {
        let fx = try await start(peers: 3, size: (40 << 20) + 123)
        let results = try await withThrowingTaskGroup(of: (Int, ProcessResult).self) { group in
            for (i, p) in fx.peers.enumerated() {
                group.addTask { (i, try await fx.get(p, fx.dir + "/out/\(i).bin")) }
            }
            var out: [Int: ProcessResult] = [:]
            for try await (i, r) in group { out[i] = r }
            return out
        }
        for i in 0..<fx.peers.count {
            #expect(results[i]?.exitCode == 0, "peer \(i + 1): \(results[i]?.output ?? "")\n\(fx.peers[i].log)")
            #expect(try readFile(fx.dir + "/out/\(i).bin") == fx.file, "peer \(i + 1)'s bytes")
        }
        let stats = try await fx.origin.stats(scratch: fx.dir)
        #expect(stats.bodyBytes(path: "/files/obj.bin") == fx.file.count, "origin egress: \(stats.bodyBytes(path: "/files/obj.bin")) bytes for one \(fx.file.count)-byte object")
        for p in fx.peers { #expect(p.log.contains("), 0 from the origin"), "\(p.log)") }
        // Peers passed pieces on: some came from another peer, not all from the seed.
        func sources(_ log: String) -> String {
            guard let line = log.split(separator: "\n").first(where: { $0.contains("pieces from parents (") }),
                  let open = line.firstIndex(of: "("), let close = line.firstIndex(of: ")") else { return "" }
            return String(line[line.index(after: open)..<close])
        }
        #expect(fx.peers.contains { sources($0.log).contains("peer-") }, "\(fx.peers.map { sources($0.log) })")
        // The scheduler saw every peer complete.
        let members = try await fx.debug("tasks").array?.first?["members"]?.array ?? []
        #expect(members.filter { $0["state"]?.string == "complete" }.count >= fx.peers.count, "\(members)")
        await fx.stop()
    }

    @Test("a peer whose scheduler is gone still gets the bytes from the origin (and says so); --no-back-to-source makes that an error")
    func schedulerGone() async throws {
        let fx = try await start(peers: 1, size: (8 << 20) + 7)
        _ = await fx.scheduler.stop()
        let r = try await fx.get(fx.peers[0], fx.dir + "/out/a.bin")
        #expect(r.exitCode == 0, "\(r.output)")
        #expect(try readFile(fx.dir + "/out/a.bin") == fx.file)
        #expect(fx.peers[0].log.contains("the scheduler cannot be asked"), "\(fx.peers[0].log)")
        let strict = try await SeedProcess.start(dataDir: fx.dir + "/strict", extra: ["--scheduler", fx.schedulerURL, "--host-id", "strict", "--no-back-to-source"],
                                                 command: "peer")
        let refused = try await fx.get(strict, fx.dir + "/out/b.bin")
        #expect(refused.exitCode != 0 && !SystemCalls.exists(fx.dir + "/out/b.bin"), "\(refused.output)")
        #expect(strict.log.contains("--no-back-to-source forbids the origin"), "\(strict.log)")
        _ = await strict.stop()
        await fx.stop()
    }
}

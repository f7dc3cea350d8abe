#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO
import Synchronization
import HTTPCore
import HTTPServer
import PieceProtocol

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

    func start(peers count: Int, size: Int, peerArgs: [String] = []) async throws -> Fixture {
        raiseFileLimit()
        let dir = makeServerTestDirectory("swarm")
        try SystemCalls.makeDirectories(dir + "/origin")
        try SystemCalls.makeDirectories(dir + "/out")
        let file = SplitMix64.bytes(size, seed: 0x5A4)
        try writeFile(dir + "/origin/obj.bin", file)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let (scheduler, schedulerURL) = try await startScheduler(dir: dir)
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        var peers: [SeedProcess] = []
        for i in 1...count {
            peers.append(try await SeedProcess.start(dataDir: dir + "/peer\(i)", extra: ["--scheduler", schedulerURL, "--host-id", "peer-\(i)"] + peerArgs,
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
        // The seed that read the origin published each piece's SHA-256, in its metadata and with the piece.
        let id = try TaskID.forURL(fx.origin.url(file: "obj.bin"))
        let meta = try TaskMetadata(parsing: try await curl(fx.seed.base + "/tasks/\(id)/meta", scratch: fx.dir).body)
        let pieceLength = meta.pieceLength, count = meta.pieceCount ?? 0
        let expected = (0..<count).map { i in
            SHA256Digest(bytes: SHA256Hasher.hash(Array(fx.file[(i * pieceLength)..<min(fx.file.count, (i + 1) * pieceLength)])))!
        }
        #expect(count == 41 && (0..<count).allSatisfy { meta.pieceDigests[$0] == expected[$0] }, "\(meta.pieceDigests.count) digests")
        let piece = try await curl(fx.seed.base + "/tasks/\(id)/pieces/3", scratch: fx.dir)
        #expect(piece.headers["x-darter-piece-sha256"] == expected[3].hex, "\(piece.headers)")
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

/// A parent that lies: it says it holds the whole task and sends pieces that fail their CRC32C
/// (`badCRC`), come short (`short`), are wrong bytes with a CRC32C that matches them
/// (`matchingCRC`: only the seed's SHA-256 tells), or come one byte a second (`drip`). Its feed
/// sends the snapshot and then stays quiet.
final class LyingParent: HTTPHandler {
    enum Lie: Sendable { case badCRC, short, matchingCRC, drip }
    let meta: TaskMetadata
    let lie: Lie
    let served = Atomic<Int>(0)
    let feeds = Atomic<Int>(0)
    init(meta: TaskMetadata, lie: Lie) { self.meta = meta; self.lie = lie }

    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        let parts = request.path.split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[0] == "tasks" else { return respond(.text(404, "no\n")) }
        if parts.count == 3 && parts[2] == "meta" { return respond(.text(200, meta.json.serialized, contentType: "application/json")) }
        if parts.count == 3 && parts[2] == "pieces" {
            feeds.add(1, ordering: .relaxed)
            return respond(Response(head: HTTPResponseHead(status: 200), body: .stream(QuietStream(AvailabilityEvent.snapshot(meta).line))))
        }
        guard parts.count == 4, let n = Int(parts[3]), let total = meta.contentLength else { return respond(.text(404, "no\n")) }
        served.add(1, ordering: .relaxed)
        let length = PieceMath.length(ofPiece: n, contentLength: total, pieceLength: meta.pieceLength)
        let bytes = [UInt8](repeating: 0x5A, count: lie == .short ? length / 2 : length)
        var head = HTTPResponseHead(status: 200)
        head.setContentLength(bytes.count)
        // A CRC that matches neither the real piece nor these bytes (badCRC); the right one for
        // what it sends (short: the length is what is wrong; matchingCRC: the bytes are).
        let crc = lie == .badCRC ? CRC32C.checksum(bytes) ^ 1 : CRC32C.checksum(bytes)
        head.headers.add(name: PieceProtocol.crcHeader, value: PieceProtocol.crcValue(crc))
        respond(Response(head: head, body: lie == .drip ? .stream(DripStream()) : .bytes(bytes)))
    }
}

extension SwarmEndToEndTests {
    @Test("""
          a parent whose pieces fail their CRC32C, come short, are wrong bytes with a matching CRC32C (the seed's SHA-256 \
          catches them) or drip a byte a second (the piece deadline), is dropped and reported; the bytes come whole from elsewhere
          """, arguments: [LyingParent.Lie.badCRC, .short, .matchingCRC, .drip])
    func lyingParent(_ lie: LyingParent.Lie) async throws {
        // A short piece deadline: the drip is dropped after two missed deadlines of 1 s + the 5 s wait.
        let fx = try await start(peers: 1, size: (12 << 20) + 11, peerArgs: ["--piece-timeout", "1"])
        let url = fx.origin.url(file: "obj.bin")
        let id = try TaskID.forURL(url)
        let pieceLength = PieceMath.defaultPieceLength(contentLength: Int64(fx.file.count))
        let count = PieceMath.pieceCount(contentLength: Int64(fx.file.count), pieceLength: pieceLength)
        let meta = TaskMetadata(id: id, contentLength: Int64(fx.file.count), pieceLength: pieceLength,
                                pieces: PieceSet(0..<count), complete: true)
        // The seed holds the object first (and tells the scheduler): its metadata carries the
        // pieces' SHA-256, the only thing that gives a matching-CRC liar away. The others meet the
        // liar alone (no seed holds the task, and the liar says it is complete): a drip is then
        // dropped on its deadlines, not outrun by the seed.
        if lie == .matchingCRC {
            let warm = try await curl(fx.seed.base + "/download?url=" + percentEncode(url), scratch: fx.dir)
            #expect(warm.status == 200)
        }
        for _ in 0..<50 where lie == .matchingCRC {
            let members = try await fx.debug("tasks").array?.first?["members"]?.array ?? []
            if members.contains(where: { $0["host"]?.string == "seed-1" && $0["state"]?.string == "complete" }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let liar = LyingParent(meta: meta, lie: lie)
        let group = try EventLoopGroup(count: 1)
        var config = ServerConfiguration()
        config.port = 0
        let server = try HTTPServer(configuration: config, handler: liar, group: group)
        server.start()
        // It registers as holding the whole task: the scheduler hands it out first.
        let held: JSONValue = ["task": .string(id.description), "contentLength": JSONValue(fx.file.count), "pieceLength": JSONValue(pieceLength),
                               "pieces": .string("0-\(count - 1)"), "complete": true]
        let reg: JSONValue = ["id": "liar", "address": .string("127.0.0.1:\(server.port)"), "role": "peer", "tasks": [held]]
        let r = try await curl(fx.schedulerURL + "/hosts", ["-X", "POST", "--data-binary", reg.serialized], scratch: fx.dir)
        #expect(r.status == 200, "\(r.text)")
        let got = try await fx.get(fx.peers[0], fx.dir + "/out/a.bin")
        #expect(got.exitCode == 0, "\(got.output)\n\(fx.peers[0].log)")
        #expect(try readFile(fx.dir + "/out/a.bin") == fx.file)
        #expect(liar.served.load(ordering: .relaxed) > 0, "the liar was asked")
        #expect(fx.peers[0].log.contains("dropped parent liar"), "\(fx.peers[0].log)")
        if lie == .matchingCRC { #expect(fx.peers[0].log.contains("do not match the seed's SHA-256"), "\(fx.peers[0].log)") }
        let stats = try await fx.origin.stats(scratch: fx.dir)
        #expect(stats.bodyBytes(path: "/files/obj.bin") == fx.file.count, "the seed's copy served the rest: the origin sent the object once")
        await server.shutdown(grace: .milliseconds(200))
        group.shutdown()
        await fx.stop()
    }
}

extension SwarmEndToEndTests {
    @Test("darter scheduler and darter peer stop gracefully (exit 0) on SIGTERM sent the moment they say they listen")
    func terminateAtOnce() async throws {
        let dir = makeServerTestDirectory("swarm-term")
        defer { removeTree(dir) }
        for _ in 0..<3 {
            let scheduler = try ChildProcess(DarterBinary.path, ["scheduler", "--listen", "127.0.0.1:0"], logPath: dir + "/scheduler.log")
            try await scheduler.waitForLog("scheduler: listening on")
            #expect(await scheduler.stop() == 0, "\(scheduler.log)")
        }
        let port = try freePort(), own = try freePort()
        let peer = try ChildProcess(DarterBinary.path, ["peer", "--listen", "127.0.0.1:\(own)", "--data-dir", dir + "/peer",
                                                        "--scheduler", "http://127.0.0.1:\(port)", "--host-id", "p"], logPath: dir + "/peer.log")
        try await peer.waitForLog("peer: listening on")
        #expect(await peer.stop() == 0, "\(peer.log)")
        #expect(peer.log.contains("peer: stopped"))
    }
}

extension SwarmEndToEndTests {
    @Test("a parent killed (SIGKILL) is dropped by a child with no piece request open there (its feed cannot reconnect), and the bytes come whole")
    func parentVanishes() async throws {
        // 12 MiB at 2 MiB/s: the download outlives the parent.
        let fx = try await start(peers: 1, size: (12 << 20) + 11, peerArgs: ["--download-rate", "2m"])
        let url = fx.origin.url(file: "obj.bin")
        let id = try TaskID.forURL(url)
        // It joins the task holding nothing: handed out as a parent, asked for no piece.
        let port = try freePort()
        let ghost = try ChildProcess("python3", [fixturesDirectory + "/ghost_parent.py", "\(port)", id.description, "\(fx.file.count)", "\(1 << 20)"],
                                     logPath: fx.dir + "/ghost.log")
        try await ghost.waitForLog("listening")
        let reg: JSONValue = ["id": "ghost", "address": .string("127.0.0.1:\(port)"), "role": "peer"]
        #expect(try await curl(fx.schedulerURL + "/hosts", ["-X", "POST", "--data-binary", reg.serialized], scratch: fx.dir).status == 200)
        let announce: JSONValue = ["host": "ghost", "task": .string(id.description), "url": .string(url)]
        #expect(try await curl(fx.schedulerURL + "/tasks/\(id)/announce", ["-X", "POST", "--data-binary", announce.serialized], scratch: fx.dir).status == 200)
        async let got = fx.get(fx.peers[0], fx.dir + "/out/a.bin")
        try await ghost.waitForLog("feed")
        ghost.kill()
        let result = try await got
        #expect(result.exitCode == 0, "\(result.output)")
        #expect(try readFile(fx.dir + "/out/a.bin") == fx.file)
        #expect(fx.peers[0].log.contains("dropped parent ghost (its feed cannot reconnect"), "\(fx.peers[0].log)")
        await fx.stop()
    }
}

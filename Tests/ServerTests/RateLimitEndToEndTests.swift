#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO

private func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// `darter import`s `bytes` into `dataDir`; the task id.
private func importFile(_ bytes: [UInt8], dir: String, dataDir: String) async throws -> String {
    let path = dir + "/obj.bin"
    try writeFile(path, bytes)
    let r = try await runProcess(DarterBinary.path, ["import", "--data-dir", dataDir, path], scratch: dir)
    guard r.exitCode == 0, let line = r.stdoutText.split(separator: "\n").first else {
        throw TestError("darter import exited with \(r.exitCode): \(r.output)")
    }
    return String(line.split(separator: " ")[0])
}

/// `--upload-rate`, `--download-rate` and `--origin-rate` on real daemons: 8 MiB objects at
/// 4 MiB/s take ~1.9 s (a 512 KiB burst), against well under a second without a limit. Times are
/// checked from below (a loaded machine is slower, never faster); the unlimited run only has to
/// be much faster than the limited one.
@Suite("Rate limits: end to end (darter seed, darter peer, origin.py)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && DarterBinary.helps("seed", mentioning: ["--upload-rate", "--origin-rate"]),
                "needs `darter seed` with rate limits and Tests/Fixtures/origin.py"))
struct RateLimitEndToEndTests {
    static let size = 8 << 20

    @Test("--upload-rate 4m: a seed serves 8 MiB in 1.5 s or more, over all its clients; /metrics shows the limits; without one, much faster")
    func uploadRate() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("upload-rate")
        defer { removeTree(dir) }
        let bytes = SplitMix64.bytes(Self.size, seed: 0xA7E)
        let id = try await importFile(bytes, dir: dir, dataDir: dir + "/limited")
        _ = try await importFile(bytes, dir: dir, dataDir: dir + "/free")
        // The test's clients are on loopback, which the limit leaves alone unless told.
        let limited = try await SeedProcess.start(dataDir: dir + "/limited", extra: ["--upload-rate", "4m", "--upload-rate-local"])
        let free = try await SeedProcess.start(dataDir: dir + "/free")
        defer { Task { _ = await limited.stop(); _ = await free.stop() } }
        #expect(limited.log.contains("rate limits: upload 4194304 bytes/s"), "\(limited.log)")

        var start = ContinuousClock.now
        let slow = try await curl(limited.base + "/tasks/" + id, scratch: dir)
        let slowSeconds = seconds(since: start)
        #expect(slow.status == 200 && slow.body == bytes)
        #expect(slowSeconds >= 1.5, "8 MiB at 4 MiB/s in \(slowSeconds) s")

        // Two clients at once share the one limit: 16 MiB in 3.5 s or more.
        start = ContinuousClock.now
        async let a = curl(limited.base + "/tasks/" + id, scratch: dir)
        async let b = curl(limited.base + "/tasks/" + id, scratch: dir)
        async let c = curl(limited.base + "/tasks/" + id + "/pieces/0", scratch: dir)
        let (ra, rb, rc) = try await (a, b, c)
        let sharedSeconds = seconds(since: start)
        #expect(ra.body == bytes && rb.body == bytes && rc.body == Array(bytes[0..<rc.body.count]) && !rc.body.isEmpty)
        #expect(sharedSeconds >= 3.5, "16 MiB and a piece at 4 MiB/s in \(sharedSeconds) s")

        let metrics = try await curl(limited.base + "/metrics", scratch: dir).text
        func metric(_ name: String, _ direction: String) -> Double? { metricValue("\(name){direction=\"\(direction)\"}", in: metrics) }
        #expect(metric("darter_rate_limit_bytes_per_second", "upload") == Double(4 << 20))
        #expect(metric("darter_rate_limit_bytes_per_second", "download") == 0)
        #expect(metric("darter_rate_limit_bytes_per_second", "origin") == 0)
        #expect((metric("darter_rate_limit_bytes_total", "upload") ?? 0) >= Double(3 * Self.size))
        #expect((metric("darter_rate_limit_wait_seconds_total", "upload") ?? 0) > 1)

        start = ContinuousClock.now
        let fast = try await curl(free.base + "/tasks/" + id, scratch: dir)
        let fastSeconds = seconds(since: start)
        #expect(fast.status == 200 && fast.body == bytes)
        #expect(fastSeconds * 2 < slowSeconds, "unlimited: \(fastSeconds) s, limited: \(slowSeconds) s")
        let freeMetrics = try await curl(free.base + "/metrics", scratch: dir).text
        #expect(metricValue("darter_rate_limit_bytes_per_second{direction=\"upload\"}", in: freeMetrics) == 0)
    }

    @Test("--origin-rate 4m: a cold miss of 8 MiB takes 1.5 s or more, with either http backend",
          arguments: ["loop", "curl"])
    func originRate(_ backend: String) async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("origin-rate-" + backend)
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/origin")
        let bytes = SplitMix64.bytes(Self.size + 5, seed: 0x0217)
        try writeFile(dir + "/origin/obj.bin", bytes)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--origin-rate", "4m", "--http-origin-backend", backend])
        defer { Task { _ = await seed.stop(); await origin.stop() } }
        let start = ContinuousClock.now
        let r = try await curl(seed.download(origin.url(file: "obj.bin")), scratch: dir)
        let s = seconds(since: start)
        #expect(r.status == 200 && r.body == bytes, "\(r.status)")
        #expect(s >= 1.5, "8 MiB from the origin at 4 MiB/s in \(s) s")
        let metrics = try await curl(seed.base + "/metrics", scratch: dir).text
        #expect(metricValue("darter_rate_limit_bytes_per_second{direction=\"origin\"}", in: metrics) == Double(4 << 20))
        #expect((metricValue("darter_rate_limit_bytes_total{direction=\"origin\"}", in: metrics) ?? 0) >= Double(Self.size))
    }

    @Test("--download-rate 4m on a peer: 8 MiB from its parent takes 1.5 s or more; none from the origin")
    func downloadRate() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("download-rate")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/origin")
        let bytes = SplitMix64.bytes(Self.size + 9, seed: 0xD0)
        try writeFile(dir + "/origin/obj.bin", bytes)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let (scheduler, schedulerURL) = try await startScheduler(dir: dir)
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        let peer = try await SeedProcess.start(dataDir: dir + "/peer", extra: ["--scheduler", schedulerURL, "--host-id", "peer-1", "--download-rate", "4m"],
                                               command: "peer")
        defer { Task { _ = await peer.stop(); _ = await seed.stop(); _ = await scheduler.stop(); await origin.stop() } }
        for _ in 0..<100 {
            let hosts = try JSONValue.parse(try await curl(schedulerURL + "/debug/hosts", scratch: dir).body)
            if hosts.array?.count == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let start = ContinuousClock.now
        let got = try await runProcess(DarterBinary.path, ["get", origin.url(file: "obj.bin"), "-O", dir + "/out.bin", "--daemon", peer.base, "--no-fallback"],
                                       scratch: dir, timeout: 90)
        let s = seconds(since: start)
        #expect(got.exitCode == 0, "\(got.output)\n\(peer.log)")
        #expect(try readFile(dir + "/out.bin") == bytes)
        #expect(peer.log.contains("), 0 from the origin"), "\(peer.log)")
        // Two 4 MiB pieces, each paid for before it is asked: the first waits 0.875 s, the second 1.875 s.
        #expect(s >= 1.5, "8 MiB from the parent at 4 MiB/s in \(s) s")
        let metrics = try await curl(peer.base + "/metrics", scratch: dir).text
        #expect(metricValue("darter_rate_limit_bytes_per_second{direction=\"download\"}", in: metrics) == Double(4 << 20))
        #expect((metricValue("darter_rate_limit_bytes_total{direction=\"download\"}", in: metrics) ?? 0) >= Double(Self.size))
    }

    @Test("--help lists the three limits, unlimited by default; bad values are refused naming the flag")
    func flags() async throws {
        let dir = makeServerTestDirectory("rate-flags")
        defer { removeTree(dir) }
        for command in ["seed", "peer"] {
            let help = try await runProcess(DarterBinary.path, [command, "--help"], scratch: dir, timeout: 10)
            for flag in ["--upload-rate", "--download-rate", "--origin-rate"] {
                let line = help.stdoutText.split(separator: "\n").first { $0.contains(flag + " ") } ?? ""
                #expect(line.contains("(default: unlimited)") && line.contains("bytes/s"), "\(command): \(line)")
            }
            for (flag, value) in [("--upload-rate", "fast"), ("--download-rate", "-1"), ("--origin-rate", "10x"), ("--upload-rate", "99999999999t")] {
                let r = try await runProcess(DarterBinary.path, [command, "--data-dir", dir + "/unused", flag, value], scratch: dir, timeout: 10)
                #expect(r.exitCode != 0 && r.stderr.contains(flag) && r.stderr.contains("bytes per second"), "\(command) \(flag) \(value): exit \(r.exitCode), \(r.stderr)")
            }
        }
    }
}

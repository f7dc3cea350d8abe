#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO
import PieceProtocol

/// `/metrics` and the logs of real daemons after real traffic: a download through the shield
/// from origin.py and a piece fetch (a seed), a download through a small swarm (a peer, the
/// seed, the scheduler), and the log flags.
@Suite("Observability: /metrics histograms and counters, --log-level and --log-format (darter seed, peer, scheduler, origin.py)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && DarterBinary.helps("seed", mentioning: ["--log-format"]),
                "needs `darter seed` with --log-format and Tests/Fixtures/origin.py"))
struct ObservabilityEndToEndTests {
    static let size = (5 << 20) + 123
    static let pieceLength = 1 << 20

    /// No label carries a task id (64 hex digits) or names one.
    func expectNoTaskIDs(_ samples: [MetricSample], _ where_: String) {
        for s in samples {
            #expect(!s.labels.keys.contains { ["id", "task", "url"].contains($0) }, "\(where_): \(s)")
            #expect(!s.labels.values.contains { $0.count >= 64 && $0.allSatisfy(\.isHexDigit) }, "\(where_): \(s)")
        }
    }

    @Test("a seed after a shield download and a piece fetch: request, piece, store and origin histograms and the byte counters moved; JSON debug logs")
    func seedMetricsAndJSONLogs() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("observability-seed")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/origin")
        let file = SplitMix64.bytes(Self.size, seed: 0x0B5)
        try writeFile(dir + "/origin/obj.bin", file)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--log-format", "json", "--log-level", "debug"])
        defer { Task { _ = await seed.stop(); await origin.stop() } }

        let url = origin.url(file: "obj.bin")
        let download = try await curl(seed.base + "/download?url=" + percentEncode(url), scratch: dir)
        #expect(download.status == 200 && download.body == file)
        let id = try TaskID.forURL(url)
        let piece = try await curl(seed.base + "/tasks/\(id)/pieces/1", scratch: dir)
        #expect(piece.status == 200 && piece.body.count == Self.pieceLength && Array(file[Self.pieceLength..<(2 * Self.pieceLength)]) == piece.body)

        let text = try await curl(seed.base + "/metrics", scratch: dir).text
        #expect(expositionProblems(text) == [], "\(text)")
        let m = metricSamples(text)
        let pieces = Double((Self.size + Self.pieceLength - 1) / Self.pieceLength)
        #expect(m.histogramCount("darter_http_request_duration_seconds", ["route": "download"]) == 1, "\(text)")
        #expect(m.histogramCount("darter_http_request_duration_seconds", ["route": "pieces"]) == 1)
        #expect((m.value("darter_http_request_duration_seconds_sum", ["route": "download"]) ?? 0) > 0)
        #expect(m.histogramCount("darter_piece_download_duration_seconds", ["source": "origin"]) == pieces)
        #expect(m.histogramCount("darter_piece_download_duration_seconds", ["source": "seed"]) == 0)
        #expect(m.value("darter_download_bytes_total", ["source": "origin"]) == Double(Self.size))
        #expect(m.value("darter_download_bytes_total", ["source": "peer"]) == 0)
        #expect(m.value("darter_upload_bytes_total") == Double(Self.size + Self.pieceLength))
        #expect((m.histogramCount("darter_store_operation_duration_seconds", ["op": "write"]) ?? 0) >= pieces)
        #expect((m.histogramCount("darter_store_operation_duration_seconds", ["op": "commit"]) ?? 0) >= 1)
        #expect(m.histogramCount("darter_store_operation_duration_seconds", ["op": "read"]) != nil)
        #expect((m.histogramCount("darter_origin_first_byte_seconds") ?? 0) >= 1)
        #expect((m.value("darter_origin_first_byte_seconds_sum") ?? 0) > 0)
        #expect(m.value("darter_build_info", ["version": DarterBuild.version]) == 1)
        expectNoTaskIDs(m, "seed")

        // Every line of the log is one JSON object; one per request at debug, one for the task at info.
        var lines: [JSONValue] = []
        for _ in 0..<50 {
            lines = try seed.log.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)) }
            if lines.contains(where: { $0["msg"]?.string == "task" }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(lines.allSatisfy { $0["time"]?.string?.hasSuffix("Z") == true && $0["level"]?.string != nil && $0["msg"]?.string != nil }, "\(seed.log)")
        #expect(lines.contains { $0["msg"]?.string?.hasPrefix("seed: listening on") == true && $0["level"]?.string == "info" })
        let request = lines.first { $0["msg"]?.string == "request" && $0["path"]?.string == "/download" }
        #expect(request?["level"]?.string == "debug" && request?["method"]?.string == "GET" && request?["status"]?.integer == 200, "\(seed.log)")
        #expect((request?["bytes"]?.integer ?? 0) > Int64(Self.size) && (request?["seconds"]?.number ?? 0) > 0)
        #expect(lines.contains { $0["msg"]?.string == "request" && $0["path"]?.string == "/tasks/\(id)/pieces/1" && $0["route"]?.string == "pieces" })
        let task = lines.first { $0["msg"]?.string == "task" }
        #expect(task?["level"]?.string == "info" && task?["id"]?.string == id.description && task?["source"]?.string == "origin", "\(seed.log)")
        #expect(task?["bytes"]?.integer == Int64(Self.size) && task?["result"]?.string == "ok" && (task?["seconds"]?.number ?? 0) > 0)
    }

    @Test("a peer through the swarm: pieces and bytes by source (seed, peer, origin) on the peer, upload on the seed, decisions on the scheduler; text logs at info")
    func swarmMetrics() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("observability-swarm")
        defer { removeTree(dir) }
        try SystemCalls.makeDirectories(dir + "/origin")
        let file = SplitMix64.bytes(Self.size, seed: 0x5B4)
        try writeFile(dir + "/origin/obj.bin", file)
        let origin = try await OriginServer.start(dir: dir + "/origin")
        let (scheduler, schedulerURL) = try await startScheduler(dir: dir)
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        let peer = try await SeedProcess.start(dataDir: dir + "/peer", extra: ["--scheduler", schedulerURL, "--host-id", "peer-1"], command: "peer")
        defer { Task { _ = await peer.stop(); _ = await seed.stop(); _ = await scheduler.stop(); await origin.stop() } }
        for _ in 0..<100 {
            if try JSONValue.parse(try await curl(schedulerURL + "/debug/hosts", scratch: dir).body).array?.count == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let url = origin.url(file: "obj.bin")
        let got = try await runProcess(DarterBinary.path, ["get", url, "-O", dir + "/out.bin", "--daemon", peer.base, "--no-fallback"], scratch: dir, timeout: 90)
        #expect(got.exitCode == 0, "\(got.output)\n\(peer.log)")
        #expect(try readFile(dir + "/out.bin") == file)

        let peerText = try await curl(peer.base + "/metrics", scratch: dir).text
        #expect(expositionProblems(peerText) == [], "\(peerText)")
        let p = metricSamples(peerText)
        let bySource = ["origin", "seed", "peer"].map { p.value("darter_download_bytes_total", ["source": $0]) ?? -1 }
        #expect(bySource.reduce(0, +) >= Double(Self.size) && bySource[1] > 0, "download bytes by origin, seed, peer: \(bySource)")
        #expect((p.histogramCount("darter_piece_download_duration_seconds", ["source": "seed"]) ?? 0) >= 1)
        #expect((p.histogramCount("darter_store_operation_duration_seconds", ["op": "write"]) ?? 0) >= 1)
        expectNoTaskIDs(p, "peer")

        let seedText = try await curl(seed.base + "/metrics", scratch: dir).text
        let s = metricSamples(seedText)
        #expect((s.value("darter_upload_bytes_total") ?? 0) >= bySource[1], "the seed sent what the peer got from it")
        #expect((s.histogramCount("darter_http_request_duration_seconds", ["route": "pieces"]) ?? 0) >= 1, "\(seedText)")
        #expect(s.value("darter_download_bytes_total", ["source": "origin"]) == Double(Self.size))

        let schedulerText = try await curl(schedulerURL + "/metrics", scratch: dir).text
        #expect(expositionProblems(schedulerText) == [], "\(schedulerText)")
        let c = metricSamples(schedulerText)
        #expect((c.histogramCount("darter_scheduler_decision_duration_seconds", ["kind": "register"]) ?? 0) >= 2, "\(schedulerText)")
        #expect((c.histogramCount("darter_scheduler_decision_duration_seconds", ["kind": "announce"]) ?? 0) >= 1)
        #expect((c.histogramCount("darter_http_request_duration_seconds", ["route": "announce"]) ?? 0) >= 1)
        #expect(c.value("darter_scheduler_hosts", ["role": "seed"]) == 1 && c.value("darter_scheduler_hosts", ["role": "peer"]) == 1)
        #expect(c.value("darter_scheduler_tasks") == 1)
        #expect(c.value("darter_scheduler_back_to_source_total") != nil)
        #expect(c.value("darter_build_info", ["version": DarterBuild.version]) == 1)
        expectNoTaskIDs(c, "scheduler")

        // Text at the default level: the task's line, and no request lines.
        let id = try TaskID.forURL(url)
        var log = ""
        for _ in 0..<50 {
            log = peer.log
            if log.contains("task id=\(id)") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let line = log.split(separator: "\n").first { $0.hasPrefix("task id=\(id) ") }.map(String.init) ?? ""
        #expect(line.contains(" source=swarm bytes=\(Self.size) seconds=") && line.contains(" result=ok"), "\(log)")
        #expect(!log.contains("request method="), "\(log)")
    }

    @Test("--log-level and --log-format refuse what they do not know, naming the flag")
    func badFlags() async throws {
        let dir = makeServerTestDirectory("observability-flags")
        defer { removeTree(dir) }
        let format = try await runProcess(DarterBinary.path, ["seed", "--log-format", "xml", "--check-config"], scratch: dir)
        #expect(format.exitCode == 2 && format.output.contains("--log-format must be text or json, got 'xml'"), "\(format.output)")
        let level = try await runProcess(DarterBinary.path, ["scheduler", "--log-level", "loud", "--check-config"], scratch: dir)
        #expect(level.exitCode == 2 && level.output.contains("--log-level must be debug, info, warning or error"), "\(level.output)")
        let peer = try await runProcess(DarterBinary.path, ["peer", "--help"], scratch: dir)
        #expect(peer.output.contains("--log-level") && peer.output.contains("--log-format"))
    }
}

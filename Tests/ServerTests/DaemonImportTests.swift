#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import DarterIO
import DarterCore

/// `darter import --daemon`, `PUT /tasks/sha256:…`, `POST /import`, `darter stat` and
/// `darter export` against a running `darter seed`, and who may write.
@Suite("Import into a running daemon (darter import --daemon, PUT /tasks, POST /import, stat, export)", .serialized,
       .enabled(if: DarterBinary.helps("import", mentioning: ["--daemon"]), "needs `darter import --daemon` (swift build)"))
struct DaemonImportTests {
    /// `darter import` printed `<id> <path>` for one file: the id.
    func importedID(_ r: ProcessResult, _ path: String) throws -> String {
        guard r.exitCode == 0, let line = r.stdoutText.split(separator: "\n").first, line.hasSuffix(" " + path) else {
            throw TestError("darter import \(path) exited with \(r.exitCode): \(r.output)")
        }
        return String(line.split(separator: " ")[0])
    }

    @Test("64 MiB imported by path and by body into a running seed: the offline import's id, served byte for byte, the seed's memory not growing by the file")
    func importLarge() async throws {
        let dir = makeServerTestDirectory("daemon-import")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        defer { _ = seed.process.kill() }
        for (name, size, send) in [("aligned", 64 << 20, "auto"), ("unaligned", (64 << 20) + 12345, "body")] {
            let bytes = SplitMix64.bytes(size, seed: UInt64(size))
            let path = dir + "/" + name + ".bin"
            try writeFile(path, bytes)
            // The offline import's id, from a data directory of its own.
            let offline = try importedID(try await runProcess(DarterBinary.path, ["import", "--data-dir", dir + "/offline-" + name, path], scratch: dir), path)
            let rssBefore = seed.residentMiB() ?? 0
            let r = try await runProcess(DarterBinary.path, ["import", "--daemon", seed.base, "--send", send, path], scratch: dir)
            let id = try importedID(r, path)
            #expect(id == "sha256:" + sha256Hex(bytes))
            #expect(id == offline, "a running import names the content as the offline one does")
            let grown = (seed.residentMiB() ?? 0) - rssBefore
            #expect(grown < 32, "the seed's RSS grew by \(grown) MiB importing \(size >> 20) MiB (--send \(send)): the body must not be buffered whole")
            let got = try await curl(seed.base + "/tasks/" + id, scratch: dir)
            #expect(got.status == 200)
            #expect(bodyDiff(got.body, bytes) == nil, "GET /tasks/\(id) after import (--send \(send))")
        }
        // Imported again: nothing is written, the same id comes back.
        let again = try await runProcess(DarterBinary.path, ["import", "--daemon", seed.base, dir + "/aligned.bin"], scratch: dir)
        #expect(try importedID(again, dir + "/aligned.bin") == "sha256:" + sha256Hex(SplitMix64.bytes(64 << 20, seed: UInt64(64 << 20))))
    }

    @Test("PUT /tasks/sha256:… with curl: 201 and served; a body that is not its digest 422 and not kept; chunked 411; a URL id 400; again 200")
    func putWithCurl() async throws {
        let dir = makeServerTestDirectory("daemon-put")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        defer { _ = seed.process.kill() }
        let bytes = SplitMix64.bytes(3_000_000, seed: 7)
        try writeFile(dir + "/f", bytes)
        let id = "sha256:" + sha256Hex(bytes)
        // curl sends `Expect: 100-continue` for a body this large: the seed answers it.
        let put = try await curl(seed.base + "/tasks/" + id, ["-T", dir + "/f"], scratch: dir)
        #expect(put.status == 201, "\(put.text)")
        let answer = try jsonObject(put.text)
        #expect(answer["id"] as? String == id)
        #expect((answer["contentLength"] as? NSNumber)?.intValue == bytes.count)
        #expect(bodyDiff(try await curl(seed.base + "/tasks/" + id, scratch: dir).body, bytes) == nil)
        let again = try await curl(seed.base + "/tasks/" + id, ["-T", dir + "/f"], scratch: dir)
        let againAnswer = try jsonObject(again.text)
        #expect(again.status == 200 && againAnswer["alreadyStored"] as? Bool == true, "\(again.text)")

        let wrong = "sha256:" + sha256Hex([1, 2, 3])
        let mismatch = try await curl(seed.base + "/tasks/" + wrong, ["-T", dir + "/f"], scratch: dir)
        #expect(mismatch.status == 422, "\(mismatch.text)")
        #expect(mismatch.text.contains(sha256Hex(bytes)), "the reason names the body's real digest: \(mismatch.text)")
        #expect(try await curl(seed.base + "/tasks/" + wrong + "/stat", scratch: dir).status == 404, "nothing of a mismatched body is kept")

        let chunked = try await curl(seed.base + "/tasks/" + id, ["-T", dir + "/f", "-H", "Transfer-Encoding: chunked"], scratch: dir)
        #expect(chunked.status == 411, "\(chunked.text)")
        let urlID = try await curl(seed.base + "/tasks/" + sha256Hex(bytes), ["-T", dir + "/f"], scratch: dir)
        #expect(urlID.status == 400 && urlID.text.contains("sha256:"), "\(urlID.text)")
        let badPieces = try await curl(seed.base + "/tasks/" + id + "?piece-length=1000", ["-T", dir + "/f"], scratch: dir)
        #expect(badPieces.status == 400 && badPieces.text.contains("piece-length"), "\(badPieces.text)")
    }

    @Test("POST /import refuses a relative path, a missing file, a directory and a FIFO with reasons (and does not hang on the FIFO)")
    func pathFormRefusals() async throws {
        let dir = makeServerTestDirectory("daemon-path")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        defer { _ = seed.process.kill() }
        mkfifo(dir + "/fifo", 0o644)
        let cases: [(String, Int, String)] = [
            ("{\"path\": \"relative/file\"}", 400, "absolute"),
            ("{\"path\": \"\(dir)/missing\"}", 404, "missing"),
            ("{\"path\": \"\(dir)\"}", 400, "not a regular file"),
            ("{\"path\": \"\(dir)/fifo\"}", 400, "not a regular file"),
            ("{\"file\": \"/x\"}", 400, "\"path\""),
            ("not json", 400, "JSON"),
        ]
        for (body, status, words) in cases {
            let r = try await curl(seed.base + "/import", ["-d", body], scratch: dir, maxTime: 10)
            #expect(r.status == status && r.text.contains(words), "POST /import \(body): \(r.status) \(r.text)")
        }
        let get = try await curl(seed.base + "/import", scratch: dir)
        #expect(get.status != 200)
    }

    @Test("darter stat and darter export through the daemon; the offline import's locked-store error names --daemon")
    func statAndExport() async throws {
        let dir = makeServerTestDirectory("daemon-stat")
        defer { removeTree(dir) }
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        defer { _ = seed.process.kill() }
        let bytes = SplitMix64.bytes((5 << 20) + 3, seed: 11)
        try writeFile(dir + "/f", bytes)
        let id = try importedID(try await runProcess(DarterBinary.path, ["import", "--daemon", seed.base, dir + "/f"], scratch: dir), dir + "/f")
        let stat = try await runProcess(DarterBinary.path, ["stat", id, "--daemon", seed.base], scratch: dir)
        #expect(stat.exitCode == 0, "\(stat.output)")
        for line in ["size       \(bytes.count)", "pieces     6/6 of 1048576 bytes", "complete   true", "digest     \(id)", "source     file://\(dir)/f"] {
            #expect(stat.stdoutText.contains(line), "darter stat lacks '\(line)': \(stat.stdoutText)")
        }
        let json = try await runProcess(DarterBinary.path, ["stat", id, "--daemon", seed.base, "--json"], scratch: dir)
        #expect((try jsonObject(json.stdoutText)["committedPieces"] as? NSNumber)?.intValue == 6)

        let export = try await runProcess(DarterBinary.path, ["export", id, "-O", dir + "/out", "--daemon", seed.base], scratch: dir)
        #expect(export.exitCode == 0, "\(export.output)")
        #expect(bodyDiff(try readFile(dir + "/out"), bytes) == nil)
        let missing = "sha256:" + sha256Hex([9])
        let none = try await runProcess(DarterBinary.path, ["export", missing, "-O", dir + "/none", "--daemon", seed.base], scratch: dir)
        #expect(none.exitCode == 4 && none.stderr.contains("does not hold"), "\(none.output)")
        #expect(!SystemCalls.exists(dir + "/none"))
        let noStat = try await runProcess(DarterBinary.path, ["stat", missing, "--daemon", seed.base], scratch: dir)
        #expect(noStat.exitCode == 4)
        let bad = try await runProcess(DarterBinary.path, ["stat", "nope", "--daemon", seed.base], scratch: dir)
        #expect(bad.exitCode == 2 && bad.stderr.contains("not a task id"))

        let locked = try await runProcess(DarterBinary.path, ["import", "--data-dir", dir + "/data", dir + "/f"], scratch: dir)
        #expect(locked.exitCode == 2 && locked.stderr.contains("--daemon"), "\(locked.output)")
    }

    @Test("an import tells the seed's scheduler: the task is complete at the seed")
    func schedulerLearns() async throws {
        let dir = makeServerTestDirectory("daemon-swarm")
        defer { removeTree(dir) }
        let (scheduler, schedulerURL) = try await startScheduler(dir: dir)
        defer { _ = scheduler.kill() }
        let seed = try await SeedProcess.start(dataDir: dir + "/data", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        defer { _ = seed.process.kill() }
        let deadline = now() + 20
        while try await curlResult(seed.base + "/readyz", scratch: dir).status != 200 {
            guard now() < deadline else { throw TestError("the seed never registered with the scheduler") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let bytes = SplitMix64.bytes(2 << 20, seed: 5)
        try writeFile(dir + "/f", bytes)
        let id = try importedID(try await runProcess(DarterBinary.path, ["import", "--daemon", seed.base, dir + "/f"], scratch: dir), dir + "/f")
        var seen = ""
        while now() < deadline {
            seen = try await curl(schedulerURL + "/debug/tasks", scratch: dir).text
            if seen.contains(id) && seen.contains("\"complete\"") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(seen.contains(id) && seen.contains("\"host\":\"seed-1\"") && seen.contains("\"complete\""), "scheduler tasks: \(seen)")
    }

    /// A seed on 0.0.0.0 (so this host's interface address reaches it), started by hand.
    func startWildcardSeed(_ dir: String, extra: [String] = []) async throws -> (ChildProcess, UInt16) {
        let port = try freePort()
        try SystemCalls.makeDirectories(dir)
        let process = try ChildProcess(DarterBinary.path, ["seed", "--listen", "0.0.0.0:\(port)", "--data-dir", dir + "/data"] + extra,
                                       logPath: dir + "/seed.log")
        try await process.waitForLog("seed: listening on")
        return (process, port)
    }

    @Test("writes from a non-loopback address (this host's interface address) are refused: 403 without --admin-token, 401 without or with a wrong token, the path form always",
          .enabled(if: nonLoopbackIPv4Address() != nil, "needs an IPv4 interface address other than loopback"))
    func nonLoopbackWrites() async throws {
        let address = try #require(nonLoopbackIPv4Address())
        let dir = makeServerTestDirectory("daemon-remote")
        defer { removeTree(dir) }
        let bytes = SplitMix64.bytes(100_000, seed: 3)
        try writeFile(dir + "/f", bytes)
        let id = "sha256:" + sha256Hex(bytes)

        // No token: loopback only.
        let (open, port) = try await startWildcardSeed(dir + "/a")
        defer { _ = open.kill() }
        let remote = "http://\(address):\(port)"
        let refused = try await curl(remote + "/tasks/" + id, ["-T", dir + "/f"], scratch: dir)
        #expect(refused.status == 403 && refused.text.contains("--admin-token") && refused.text.contains(address), "\(refused.status) \(refused.text)")
        let refusedPath = try await curl(remote + "/import", ["-d", "{\"path\": \"\(dir)/f\"}"], scratch: dir)
        #expect(refusedPath.status == 403 && refusedPath.text.contains("loopback"), "\(refusedPath.text)")
        #expect(try await curl(remote + "/tasks/" + id + "/stat", scratch: dir).status == 404, "nothing was stored")
        let cli = try await runProcess(DarterBinary.path, ["import", "--daemon", remote, dir + "/f"], scratch: dir)
        #expect(cli.exitCode == 1 && cli.stderr.contains("403"), "\(cli.output)")
        // Reads from there still work, and writes from loopback.
        let local = try await curl("http://127.0.0.1:\(port)/tasks/" + id, ["-T", dir + "/f"], scratch: dir)
        #expect(local.status == 201, "\(local.text)")
        #expect(bodyDiff(try await curl(remote + "/tasks/" + id, scratch: dir).body, bytes) == nil)

        // With a token: the token, right.
        let (guarded, guardedPort) = try await startWildcardSeed(dir + "/b", extra: ["--admin-token", "s3cret"])
        defer { _ = guarded.kill() }
        let base = "http://\(address):\(guardedPort)"
        let none = try await curl(base + "/tasks/" + id, ["-T", dir + "/f"], scratch: dir)
        #expect(none.status == 401 && none.headers["www-authenticate"] != nil, "\(none.text)")
        let wrong = try await curl(base + "/tasks/" + id, ["-T", dir + "/f", "-H", "Authorization: Bearer s3cre"], scratch: dir)
        #expect(wrong.status == 401 && wrong.text.contains("wrong"), "\(wrong.text)")
        let pathWithToken = try await curl(base + "/import", ["-d", "{\"path\": \"\(dir)/f\"}", "-H", "Authorization: Bearer s3cret"], scratch: dir)
        #expect(pathWithToken.status == 403, "the path form is for loopback whatever the token: \(pathWithToken.text)")
        let viaCLI = try await runProcess(DarterBinary.path, ["import", "--daemon", base, "--token", "s3cret", dir + "/f"], scratch: dir)
        #expect(try importedID(viaCLI, dir + "/f") == id)
        #expect(bodyDiff(try await curl(base + "/tasks/" + id, scratch: dir).body, bytes) == nil)
        let forcedPath = try await runProcess(DarterBinary.path, ["import", "--daemon", base, "--token", "s3cret", "--send", "path", dir + "/f"], scratch: dir)
        #expect(forcedPath.exitCode == 1 && forcedPath.stderr.contains("403"), "\(forcedPath.output)")
    }
}

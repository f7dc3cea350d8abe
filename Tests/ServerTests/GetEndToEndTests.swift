#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
import DarterIO

/// `darter get` as users run it: through a real `darter seed` (the daemon) in front of
/// origin.py, and without one (straight from the origin).
@Suite("darter get: end to end (darter seed, origin.py)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && DarterBinary.helps("get", mentioning: ["--no-fallback"]),
                "needs `darter get`, `darter seed` with the origin shield, and Tests/Fixtures/origin.py"))
struct GetEndToEndTests {
    struct Fixture {
        let origin: OriginServer
        let seed: SeedProcess
        let dir: String
        let file: [UInt8]
        var digest: String { "sha256:" + hexString(SHA256Hasher.hash(file)) }

        func get(_ args: [String], timeout: Double = 60) async throws -> ProcessResult {
            try await runProcess(DarterBinary.path, ["get"] + args, scratch: dir, timeout: timeout)
        }
        func stop() async {
            _ = await seed.stop()
            await origin.stop()
            removeTree(dir)
        }
    }

    func start() async throws -> Fixture {
        raiseFileLimit()
        let dir = makeServerTestDirectory("get")
        try SystemCalls.makeDirectories(dir + "/origin")
        try SystemCalls.makeDirectories(dir + "/out")
        let file = SplitMix64.bytes((18 << 20) + 4097, seed: 0x6E7)
        try writeFile(dir + "/origin/obj.bin", file)
        return Fixture(origin: try await OriginServer.start(dir: dir + "/origin"), seed: try await SeedProcess.start(dataDir: dir + "/data"),
                       dir: dir, file: file)
    }

    @Test("through the daemon: the bytes, atomically (no partial file left), quiet off a terminal; to standard output in order; --digest")
    func throughDaemon() async throws {
        let fx = try await start()
        let out = fx.dir + "/out/a.bin"
        let r = try await fx.get([fx.origin.url(file: "obj.bin"), "-O", out, "--daemon", fx.seed.base])
        #expect(r.exitCode == 0, "\(r.output)")
        #expect(try readFile(out) == fx.file)
        #expect(!SystemCalls.exists(out + ".darter-part"))
        #expect(r.stderr.isEmpty, "no progress or notices when stderr is not a terminal: \(r.stderr)")
        let piped = try await fx.get([fx.origin.url(file: "obj.bin"), "-O", "-", "--daemon", fx.seed.base, "--digest", fx.digest])
        #expect(piped.exitCode == 0 && piped.stdout == fx.file, "\(piped.stderr)")
        let checked = try await fx.get([fx.origin.url(file: "obj.bin"), "-O", out, "--daemon", fx.seed.base, "--digest", fx.digest])
        #expect(checked.exitCode == 0, "\(checked.output)")
        // By digest: the daemon holds it (the seed hashed the object after the first fetch).
        var byDigest: ProcessResult?
        for _ in 0..<50 {
            byDigest = try await fx.get([fx.digest, "-O", fx.dir + "/out/d.bin", "--daemon", fx.seed.base])
            if byDigest?.exitCode == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(byDigest?.exitCode == 0, "\(byDigest?.output ?? "")")
        #expect(try readFile(fx.dir + "/out/d.bin") == fx.file)
        await fx.stop()
    }

    @Test("a wrong --digest leaves no file and exits 5; an origin 404 exits 4; a digest the daemon lacks exits 4")
    func failures() async throws {
        let fx = try await start()
        let out = fx.dir + "/out/b.bin"
        let wrong = "sha256:" + String(repeating: "0", count: 64)
        let bad = try await fx.get([fx.origin.url(file: "obj.bin", "v=wrong"), "-O", out, "--daemon", fx.seed.base, "--digest", wrong])
        #expect(bad.exitCode == 5, "\(bad.output)")
        #expect(!SystemCalls.exists(out) && !SystemCalls.exists(out + ".darter-part"))
        let missing = try await fx.get([fx.origin.url(file: "nope.bin"), "-O", out, "--daemon", fx.seed.base])
        #expect(missing.exitCode == 4 && missing.stderr.contains("404"), "\(missing.output)")
        let unknown = try await fx.get(["sha256:" + String(repeating: "ab", count: 32), "-O", out, "--daemon", fx.seed.base])
        #expect(unknown.exitCode == 4, "\(unknown.output)")
        #expect(!SystemCalls.exists(out))
        await fx.stop()
    }

    @Test("no daemon: straight from the origin, saying so; --no-fallback makes it exit 3; an origin 404 is 4")
    func withoutDaemon() async throws {
        let fx = try await start()
        let none = "http://127.0.0.1:\(closedPort())"
        let out = fx.dir + "/out/c.bin"
        let r = try await fx.get([fx.origin.url(file: "obj.bin", "v=direct"), "-O", out, "--daemon", none, "--digest", fx.digest])
        #expect(r.exitCode == 0, "\(r.output)")
        #expect(r.stderr.contains("straight from the origin"), "\(r.stderr)")
        #expect(try readFile(out) == fx.file)
        let quiet = try await fx.get([fx.origin.url(file: "obj.bin", "v=direct"), "-O", out, "--daemon", none, "-q"])
        #expect(quiet.exitCode == 0 && quiet.stderr.isEmpty, "\(quiet.output)")
        let strict = try await fx.get([fx.origin.url(file: "obj.bin"), "-O", fx.dir + "/out/strict.bin", "--daemon", none, "--no-fallback"])
        #expect(strict.exitCode == 3 && strict.stderr.contains("--no-fallback"), "\(strict.output)")
        #expect(!SystemCalls.exists(fx.dir + "/out/strict.bin"))
        let missing = try await fx.get([fx.origin.url(file: "nope.bin"), "-O", out + "2", "--daemon", none])
        #expect(missing.exitCode == 4, "\(missing.output)")
        let nowhere = try await fx.get(["http://127.0.0.1:\(closedPort())/x", "-O", out + "3", "--daemon", none])
        #expect(nowhere.exitCode == 3, "\(nowhere.output)")
        await fx.stop()
    }

    @Test("-c keeps the pieces an interrupted run left (each checked against the daemon's CRC32C) and fetches the rest")
    func resume() async throws {
        let fx = try await start()
        let out = fx.dir + "/out/r.bin"
        let url = fx.origin.url(file: "obj.bin", "drip=6000000")  // ~3 s: time to interrupt it
        let child = try ChildProcess(DarterBinary.path, ["get", url, "-O", out, "--daemon", fx.seed.base], logPath: fx.dir + "/get.log")
        var size: Int64 = 0
        for _ in 0..<300 {
            size = SystemCalls.fileSize(atPath: out + ".darter-part") ?? 0
            if size >= 8 << 20 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = child.kill(SIGKILL)
        #expect(size >= 8 << 20, "the partial file grew to \(size)")
        #expect(!SystemCalls.exists(out), "never a partial file under the final name")
        // Corrupt the first piece: -c must notice (CRC) and keep nothing from there on.
        let fd = try SystemCalls.open(out + ".darter-part", .writeOnly)
        var junk: UInt8 = 0x55
        _ = pwrite(fd.rawValue, &junk, 1, 100)
        try SystemCalls.close(fd)
        let again = try await fx.get([url, "-O", out, "--daemon", fx.seed.base, "-c"])
        #expect(again.exitCode == 0, "\(again.output)")
        #expect(try readFile(out) == fx.file)
        // Interrupted again, left alone: kept pieces are reported.
        let out2 = fx.dir + "/out/r2.bin"
        let url2 = fx.origin.url(file: "obj.bin", "drip=6000000&v=2")
        let child2 = try ChildProcess(DarterBinary.path, ["get", url2, "-O", out2, "--daemon", fx.seed.base], logPath: fx.dir + "/get2.log")
        for _ in 0..<300 {
            if (SystemCalls.fileSize(atPath: out2 + ".darter-part") ?? 0) >= 8 << 20 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = child2.kill(SIGKILL)
        let resumed = try await fx.get([url2, "-O", out2, "--daemon", fx.seed.base, "-c"])
        #expect(resumed.exitCode == 0 && resumed.stderr.contains("kept"), "\(resumed.output)")
        #expect(try readFile(out2) == fx.file)
        await fx.stop()
    }

    @Test("the daemon dying mid-download costs time, not bytes: the rest comes from the origin")
    func daemonDies() async throws {
        let fx = try await start()
        let out = fx.dir + "/out/x.bin"
        let url = fx.origin.url(file: "obj.bin", "drip=6000000&v=dies")
        let child = try ChildProcess(DarterBinary.path, ["get", url, "-O", out, "--daemon", fx.seed.base, "--digest", fx.digest],
                                     logPath: fx.dir + "/get-dies.log")
        for _ in 0..<300 {
            if (SystemCalls.fileSize(atPath: out + ".darter-part") ?? 0) >= 4 << 20 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = await fx.seed.stop(signal: SIGKILL)
        let code = await child.wait(timeout: 60)
        #expect(code == 0, "\(child.output)")
        #expect(child.output.contains("from the origin"), "\(child.output)")
        #expect(try readFile(out) == fx.file)
        await fx.origin.stop()
        removeTree(fx.dir)
    }

    @Test("with --no-fallback, the daemon dying midway ends the download with exit 3 (no hang), keeping the partial file for -c")
    func daemonDiesNoFallback() async throws {
        let fx = try await start()
        let out = fx.dir + "/out/y.bin"
        let url = fx.origin.url(file: "obj.bin", "drip=6000000&v=strict")
        let child = try ChildProcess(DarterBinary.path, ["get", url, "-O", out, "--daemon", fx.seed.base, "--no-fallback"],
                                     logPath: fx.dir + "/get-strict.log")
        for _ in 0..<300 {
            if (SystemCalls.fileSize(atPath: out + ".darter-part") ?? 0) >= 4 << 20 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = await fx.seed.stop(signal: SIGKILL)
        let code = await child.wait(timeout: 30)
        #expect(code == 3, "exit \(String(describing: code)): \(child.output)")
        if code == nil { _ = child.kill(SIGKILL) }
        #expect(!SystemCalls.exists(out) && SystemCalls.exists(out + ".darter-part"))
        await fx.origin.stop()
        removeTree(fx.dir)
    }

    @Test("usage errors exit 2 naming the flag; an unwritable output exits 6")
    func usage() async throws {
        let fx = try await start()
        let cases: [([String], String)] = [
            (["http://x/"], "-O"), ([], "URL"), (["http://x/", "-O", "f", "--digest", "md5:1"], "--digest"),
            (["http://x/", "-O", "-", "-c"], "-c"), (["http://x/", "-O", "f", "-H", "nocolon"], "-H"),
            (["http://x/", "-O", "f", "--bogus"], "--bogus"), (["ftp://x/", "-O", "f"], "ftp"), (["sha256:zz", "-O", "f"], "sha256"),
            (["http://x/", "-O", "f", "--daemon", "https://d/"], "--daemon"),
        ]
        for (args, word) in cases {
            let r = try await fx.get(args)
            #expect(r.exitCode == 2 && r.stderr.contains(word), "\(args): \(r.exitCode) \(r.stderr)")
        }
        let help = try await fx.get(["--help"])
        for flag in ["--output", "--daemon", "--digest", "--header", "--timeout", "--continue", "--no-fallback", "--no-progress", "--quiet", "exit codes"] {
            #expect(help.stdoutText.contains(flag), "--help lists \(flag)")
        }
        let r = try await fx.get([fx.origin.url(file: "obj.bin"), "-O", "/proc/nope/out.bin", "--daemon", fx.seed.base])
        #expect(r.exitCode == 6, "\(r.output)")
        await fx.stop()
    }
}

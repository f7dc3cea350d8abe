#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FoundationXML
import Testing
import DarterCore
import DarterIO

/// Whether `text` parses as XML with at least one element.
private func isWellFormedXML(_ text: String) -> Bool {
    let parser = XMLParser(data: Data(text.utf8))
    return parser.parse() && text.contains("<svg")
}

/// `darter bench` as users run it: against a real `darter seed`, one command, its JSON and SVGs.
@Suite("darter bench: end to end (darter seed)", .serialized,
       .enabled(if: DarterBinary.helps("bench", mentioning: ["--concurrency", "--compare"]) && DarterBinary.helps("seed"),
                "needs `darter bench` and `darter seed`"))
struct BenchEndToEndTests {
    @Test("a short sweep against a seed: the summary, bench.json with every step's figures, SVGs that parse as XML, index.html")
    func againstSeed() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("bench")
        defer { removeTree(dir) }
        let size = 256 << 10
        try writeFile(dir + "/obj.bin", SplitMix64.bytes(size, seed: 0xBE4C))
        let imported = try await runProcess(DarterBinary.path, ["import", "--data-dir", dir + "/data", dir + "/obj.bin"], scratch: dir)
        #expect(imported.exitCode == 0, "\(imported.output)")
        let task = String(imported.stdoutText.split(separator: " ").first ?? "")
        let seed = try await SeedProcess.start(dataDir: dir + "/data")
        let url = seed.base + "/tasks/" + task
        let out = dir + "/out"
        let r = try await runProcess(DarterBinary.path, ["bench", url, "--concurrency", "1,4", "--duration", "600ms", "--warmup", "200ms",
                                                         "--label", "seed", "-o", out], scratch: dir, timeout: 60)
        #expect(r.exitCode == 0, "\(r.output)")
        #expect(r.stdoutText.contains("p99 ms") && r.stdoutText.contains("wrote \(out)/bench.json"), "\(r.stdoutText)")
        #expect(r.stderr.contains("[1/2] seed c=1:") && r.stderr.contains("[2/2] seed c=4:"), "a line per step off a terminal: \(r.stderr)")

        let json = try jsonObject(readText(out + "/bench.json"))
        let series = try #require(json["series"] as? [[String: Any]])
        #expect(series.count == 1 && series[0]["url"] as? String == url)
        let steps = try #require(series[0]["steps"] as? [[String: Any]])
        #expect(steps.map { $0["concurrency"] as? Int } == [1, 4])
        for step in steps {
            let requests = step["requests"] as? Int ?? 0, rps = step["rps"] as? Double ?? 0
            #expect(requests > 0 && rps > 0, "\(step)")
            #expect((step["status"] as? [String: Int])?["2xx"] == requests, "\(step)")
            #expect((step["errors"] as? [String: Int])?.values.reduce(0, +) == 0, "\(step)")
            let body = (step["body_bytes_per_s"] as? Double ?? 0) / rps
            #expect(abs(body - Double(size)) < 2, "every response carried the whole object: \(body)")
            let latency = try #require(step["latency_ms"] as? [String: Double])
            #expect((latency["p50"] ?? 0) > 0 && latency["p50"]! <= latency["p99"]! && latency["p99"]! <= latency["p99.9"]! && latency["p99.9"]! <= latency["max"]!)
            #expect(!((step["timeseries"] as? [Any]) ?? []).isEmpty && !((step["latency_cdf_ms"] as? [Any]) ?? []).isEmpty)
        }
        for svg in ["throughput.svg", "latency-cdf.svg", "throughput-over-time.svg"] {
            #expect(isWellFormedXML(readText(out + "/" + svg)), "\(svg)")
        }
        #expect(readText(out + "/index.html").contains("<img src=\"throughput.svg\""))

        // Without keep-alive: a connection per request, no errors.
        let off = try await runProcess(DarterBinary.path, ["bench", url, "--concurrency", "2", "--duration", "400ms", "--warmup", "0",
                                                           "--keep-alive", "off", "-o", dir + "/off"], scratch: dir, timeout: 60)
        #expect(off.exitCode == 0 && !off.stderr.contains("warning"), "\(off.output)")
        let offSteps = ((try jsonObject(readText(dir + "/off/bench.json"))["series"] as? [[String: Any]])?.first?["steps"] as? [[String: Any]]) ?? []
        #expect(offSteps.count == 1 && (offSteps.first?["connects"] as? Int ?? 0) >= (offSteps.first?["requests"] as? Int ?? 1))
        _ = await seed.stop()
    }

    @Test("bad flags and URLs: exit 2 naming the flag or URL; an unreachable URL: exit 1 naming it, no files")
    func errors() async throws {
        let dir = makeServerTestDirectory("bench-errors")
        defer { removeTree(dir) }
        for (args, words) in [(["http://127.0.0.1:1/x", "--duration", "soon"], "--duration"),
                              (["http://127.0.0.1:1/x", "--concurrency", "0,4"], "--concurrency"),
                              (["http://127.0.0.1:1/x", "--keep-alive", "maybe"], "--keep-alive"),
                              (["http://127.0.0.1:1/x", "--miss-ratio", "2"], "--miss-ratio"),
                              (["--compare", "http://127.0.0.1:1/x"], "--compare"),
                              (["http://127.0.0.1:1/x", "--label", "a", "--label", "b"], "--label"),
                              ([], "URL")] {
            let r = try await runProcess(DarterBinary.path, ["bench"] + args, scratch: dir)
            #expect(r.exitCode == 2 && r.stderr.contains(words), "\(args): \(r.output)")
        }
        let port = try freePort()
        let refused = try await runProcess(DarterBinary.path, ["bench", "http://127.0.0.1:\(port)/x", "--concurrency", "1", "--duration", "200ms",
                                                               "-o", dir + "/r"], scratch: dir)
        #expect(refused.exitCode == 1 && refused.stderr.contains("127.0.0.1:\(port)"), "\(refused.output)")
        #expect(!SystemCalls.exists(dir + "/r/bench.json"))
        let https = try await runProcess(DarterBinary.path, ["bench", "https://example.com/"], scratch: dir)
        #expect(https.exitCode == 2 && https.stderr.contains("https"), "\(https.output)")
    }
}

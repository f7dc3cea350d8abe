#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterIO
import DarterCore
@testable import PieceStore

/// Kills a real `darter debug-ingest` process with SIGKILL at random moments and checks that
/// every piece it reported committed survived byte-exact, and that nothing the recovered
/// store believes is wrong.
@Suite("Piece store: crash recovery (SIGKILL)")
struct StoreCrashTests {
    @Test("20 rounds of kill -9 during ingest lose no committed piece and believe nothing uncommitted",
          .enabled(if: DarterBinary.exists, "needs the darter binary (swift build first)"))
    func killDuringIngest() async throws {
        let dir = makeTestDirectory(); defer { removeTree(dir) }
        var rng = SystemRandomNumberGenerator()
        var totalReported = 0
        for round in 0..<20 {
            let seed = 1 + round % 4  // rounds revisit the same tasks, resuming after each crash
            let out = dir + "/out-\(round).txt"
            let child = try ChildProcess(DarterBinary.path, ["debug-ingest", "--data-dir", dir + "/store", "--seed", "\(seed)",
                                                              "--tasks", "3", "--pieces", "48", "--piece-length", "64k",
                                                              "--concurrency", "4", "--compaction-threshold", "8k",
                                                              // Odd rounds crash the fallback backend.
                                                              "--io-backend", round % 2 == 0 ? "uring" : "threads"],
                                     logPath: out, errorLogPath: "/dev/null")
            let delay = UInt64.random(in: 30...500, using: &rng)
            try await Task.sleep(for: .milliseconds(delay))
            child.signal(SIGKILL)
            // Poll rather than block a pool thread while the kernel tears the child down.
            _ = await child.wait()

            let reported = try readLines(out).compactMap { line -> (TaskID, Int)? in
                let parts = line.split(separator: " ")
                guard parts.count == 3, parts[0] == "committed", let id = TaskID(parts[1]), let i = Int(parts[2]) else { return nil }
                return (id, i)
            }
            totalReported += reported.count
            let store = try await openTestStore(dir + "/store", io: (round % 3 == 0 ? BackendKind.threads : .uring).make())
            for (id, index) in reported {
                #expect(store.info(id, pieces: true)?.committed[index] == true, "round \(round): piece \(index) of \(id) was reported committed but is missing")
            }
            for id in store.taskIDs {
                guard let info = store.info(id, pieces: true) else { continue }
                let length = try #require(info.contentLength)
                for (index, isCommitted) in info.committed.enumerated() where isCommitted {
                    let start = PieceMath.offset(ofPiece: index, pieceLength: info.pieceLength)
                    let end = min(length, start + Int64(info.pieceLength))
                    let ok = try await contentMatches(store, id, range: start..<end)
                    #expect(ok, "round \(round): piece \(index) of \(id) is believed but wrong")
                }
            }
            #expect(store.usage.corruptPiecesDropped == 0)
            await store.close()
        }
        #expect(totalReported > 0, "the child never got to commit anything: the test proved nothing")
    }
}

func readLines(_ path: String) throws -> [String] {
    guard let f = fopen(path, "r") else { throw Errno.current }
    defer { fclose(f) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    // A line cut by the kill has no newline: drop it.
    var lines = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    lines.removeLast()
    return lines
}

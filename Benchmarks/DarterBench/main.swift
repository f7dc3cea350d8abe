// darter-bench: Darter's side of `tools/bench`. Each mode prints `RESULT <metric> <value> <unit>`
// lines; tools/bench runs the anchor (fio) interleaved with it and computes medians and ratios.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import DarterIO
import PieceStore
import Synchronization
import DarterCore

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func note(_ text: String) {
    SystemCalls.writeStandardError(text)
}

func flag(_ name: String, _ defaultValue: String) -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: "--" + name), i + 1 < args.count { return args[i + 1] }
    return defaultValue
}

func size(_ s: String) -> Int {
    let units: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
    if let u = s.last.flatMap({ units[$0] }) { return Int(s.dropLast())! * u }
    return Int(s)!
}

final class Counter: Sendable {
    let value = Mutex<Int>(0)
    func next() -> Int { value.withLock { v in defer { v += 1 }; return v } }
}

/// One store under test: `ingest` makes it afresh; the read tests read what it holds. The store
/// stays open between tests, as in a running seed (pieces written by this process are trusted,
/// so reads are not checked against their CRC32C again).
final class StorageSession {
    let dir = flag("dir", "./.build/bench/darter")
    let total = Int64(size(flag("size", "2g")))
    let pieceLength = 4 << 20
    let seconds = Double(flag("seconds", "5"))!
    let io: any IOBackend
    var store: PieceStore?
    let id = try! TaskID.forURL("http://bench.local/ingest")

    init() throws {
        io = try makeIOBackend(IOBackendChoice(rawValue: flag("io-backend", "auto"))!, fixedBuffers: 48, fixedBufferSize: 4 << 20) {
            note($0 + "\n")
        }
    }

    /// ingest: 8 writes in flight, pieces in order, like a fetch streaming into the store: each
    /// writer goes on once its data write is done while group commits make earlier pieces
    /// durable; the time runs until every piece is committed (data and journal synced).
    func ingest() async throws -> Double {
        if let store { await store.close() }
        _ = system("rm -rf '\(dir)'")
        var configuration = StoreConfiguration(directory: dir)
        configuration.groupCommitWindowMilliseconds = Int(flag("commit-window-ms", "\(configuration.groupCommitWindowMilliseconds)"))!
        let store = try await PieceStore.open(configuration, io: io)
        self.store = store
        let (io, id, total, pieceLength) = (self.io, self.id, self.total, self.pieceLength)
        let count = PieceMath.pieceCount(contentLength: total, pieceLength: pieceLength)
        let t0 = monotonicSeconds()
        try await store.createTask(id, pieceLength: pieceLength, contentLength: total)
        let next = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    let buffer = io.makeBuffer(capacity: pieceLength)
                    buffer.fillPattern(seed: UInt64(w), streamOffset: 0, range: 0..<pieceLength)
                    var commits: [Task<Void, any Error>] = []
                    while case let i = next.next(), i < count {
                        buffer[0] = UInt8(truncatingIfNeeded: i)  // distinct pieces
                        commits.append(try await store.startPieceWrite(id, index: i, from: buffer,
                                                                       length: PieceMath.length(ofPiece: i, contentLength: total, pieceLength: pieceLength)))
                    }
                    for c in commits { try await c.value }
                }
            }
            try await group.waitForAll()
        }
        precondition(store.info(id)?.committedPieceCount == count, "ingest: not every piece is committed")
        return Double(total) / (monotonicSeconds() - t0) / 1e9
    }

    /// `inFlight` readers, each reading `length` bytes at random `align`ed offsets until the time is up.
    private func timedReads(inFlight: Int, length: Int, align: Int64,
                            body: @escaping @Sendable (PieceStore, Int64, borrowing IOBuffer) async throws -> Void) async throws -> (ops: Int, bytes: Int64, seconds: Double) {
        guard let store else { throw BenchError("read before ingest: no store") }
        let (io, total, pieceLength) = (self.io, self.total, self.pieceLength)
        let ops = Counter()
        let start = monotonicSeconds()
        let deadline = start + seconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<inFlight {
                group.addTask {
                    let buffer = io.makeBuffer(capacity: length == pieceLength ? length : length + 4096)
                    var rng = SystemRandomNumberGenerator()
                    while monotonicSeconds() < deadline {
                        let offset = Int64.random(in: 0..<(total / align), using: &rng) * align
                        try await body(store, offset, buffer)
                        _ = ops.next()
                    }
                }
            }
            try await group.waitForAll()
        }
        let n = ops.next()
        return (n, Int64(n) * Int64(length), monotonicSeconds() - start)
    }

    /// read_piece: random whole pieces, 8 in flight (GB/s).
    func readPieces() async throws -> Double {
        let (id, pieceLength) = (self.id, self.pieceLength)
        let r = try await timedReads(inFlight: 8, length: pieceLength, align: Int64(pieceLength)) { store, offset, buffer in
            _ = try await store.readPiece(id, index: Int(offset / Int64(pieceLength)), into: buffer)
        }
        return Double(r.bytes) / r.seconds / 1e9
    }

    /// read_64k: random 64 KiB ranges, 32 in flight (IOPS).
    func read64k() async throws -> Double {
        let id = self.id
        let r = try await timedReads(inFlight: 32, length: 65536, align: 65536) { store, offset, buffer in
            _ = try await store.read(id, range: offset..<(offset + 65536), into: buffer)
        }
        return Double(r.ops) / r.seconds
    }

    func run(_ test: String) async throws {
        switch test {
        case "ingest": print("RESULT ingest \(try await ingest()) GB/s")
        case "read_piece": print("RESULT read_piece \(try await readPieces()) GB/s")
        case "read_64k": print("RESULT read_64k \(try await read64k()) IOPS")
        default: throw BenchError("unknown test '\(test)': ingest, read_piece or read_64k")
        }
        fflush(nil)  // every stream: the driver reads each RESULT line as it comes
    }

    func close() async {
        if let store { await store.close() }
        store = nil
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// ingest + read_piece + read_64k on one fresh store, in this order.
func storageRound() async throws {
    let session = try StorageSession()
    for test in ["ingest", "read_piece", "read_64k"] { try await session.run(test) }
    await session.close()
}

/// Tests named one per line on standard input (`ingest`, `read_piece`, `read_64k`; `quit` or
/// end of input closes the store), each answered by its RESULT line: tools/bench interleaves
/// them with fio's, test by test.
func storageSession() async throws {
    let session = try StorageSession()
    while let line = readLine() {
        let test = String(line.filter { !$0.isWhitespace })
        if test == "quit" { break }
        if test.isEmpty { continue }
        try await session.run(test)
    }
    await session.close()
}

/// Builds (once) a store holding `pieces` committed pieces, then times opening it.
func recovery() async throws {
    let dir = flag("dir", "./.build/bench/recovery")
    let pieces = Int(flag("pieces", "100000"))!
    let rounds = Int(flag("rounds", "3"))!
    let io = try makeIOBackend(.auto) { note($0 + "\n") }
    let perTask = 1000, pieceLength = 4096
    let marker = dir + "/.complete-\(pieces)"
    if !SystemCalls.exists(marker) {
        _ = system("rm -rf '\(dir)'")
        let store = try await PieceStore.open(StoreConfiguration(directory: dir), io: io)
        let tasks = (pieces + perTask - 1) / perTask
        let next = Counter()
        let t0 = monotonicSeconds()
        for t in 0..<tasks {
            try await store.createTask(try TaskID.forURL("http://bench.local/recovery/\(t)"), pieceLength: pieceLength,
                                       contentLength: Int64(min(perTask, pieces - t * perTask) * pieceLength))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    let buffer = io.makeBuffer(capacity: pieceLength)
                    while case let n = next.next(), n < pieces {
                        buffer.fillPattern(seed: UInt64(n), streamOffset: 0, range: 0..<pieceLength)
                        try await store.writePiece(try TaskID.forURL("http://bench.local/recovery/\(n / perTask)"), index: n % perTask, from: buffer, length: pieceLength)
                    }
                }
            }
            try await group.waitForAll()
        }
        await store.close()
        note("recovery fixture: \(pieces) pieces written in \(monotonicSeconds() - t0) s\n")
        _ = system("touch '\(marker)'")
    }
    for _ in 0..<rounds {
        let t0 = monotonicSeconds()
        let store = try await PieceStore.open(StoreConfiguration(directory: dir), io: io)
        let elapsed = monotonicSeconds() - t0
        let committed = store.usage.committedPieces
        await store.close()
        guard committed == pieces else { note("recovery: expected \(pieces) pieces, found \(committed)\n"); exit(1) }
        print("RESULT recovery_100k \(elapsed) s")
    }
}

/// metrics: the cost of recording one histogram observation (what a request, a piece or a store
/// operation pays), beside a bare uncontended lock and the clock reads around a timed operation.
func metricsCost() {
    let n = Int(flag("observations", "5000000"))!
    let family = HistogramFamily(name: "bench_seconds", help: "B.", label: "route", values: ["tasks"])
    func perOp(_ threads: Int, _ body: @escaping @Sendable (Int) -> Void) -> Double {
        let t0 = monotonicSeconds()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in for i in 0..<n { body(i) } }
        return (monotonicSeconds() - t0) / Double(n * threads) * 1e9
    }
    let lock = Mutex<Int>(0)
    print("RESULT metrics_lock_increment \(perOp(1) { _ in lock.withLock { $0 += 1 } }) ns")
    print("RESULT metrics_clock_pair \(perOp(1) { _ in let t = ContinuousClock.now; if ContinuousClock.now < t { exit(3) } }) ns")
    let series = family.series("tasks")
    print("RESULT metrics_observe_1_thread \(perOp(1) { i in family.observe(Double(i & 1023) * 1e-5, "tasks") }) ns")
    print("RESULT metrics_observe_2_threads \(perOp(2) { i in family.observe(Double(i & 1023) * 1e-5, "tasks") }) ns")
    print("RESULT metrics_observe_series_1_thread \(perOp(1) { i in series.observe(Double(i & 1023) * 1e-5) }) ns")
    print("RESULT metrics_observe_series_2_threads \(perOp(2) { i in series.observe(Double(i & 1023) * 1e-5) }) ns")
    guard family.snapshot["tasks"]?.count == UInt64(6 * n) else { note("metrics: lost observations\n"); exit(1) }
}

switch CommandLine.arguments.dropFirst().first {
case "metrics": metricsCost()
case "storage-round": try await storageRound()
case "storage-session": try await storageSession()
case "recovery": try await recovery()
default:
    note("usage: darter-bench storage-round|storage-session|recovery|metrics [--dir D] [--size 2g] [--seconds 5] [--pieces N] [--observations N]\n")
    exit(2)
}


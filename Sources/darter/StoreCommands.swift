#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import PieceStore

let storeFlags: [Arguments.Flag] = [
    .init(name: "data-dir", defaultValue: "./darter-data", help: "cache directory (ext4/xfs: O_DIRECT required)"),
    .init(name: "io-backend", defaultValue: "auto", help: "auto | uring | threads (env DARTER_IO_BACKEND)"),
    .init(name: "quota", defaultValue: "", help: "byte quota for the cache, e.g. 100g (empty: none)"),
]

/// Opens the store named by the flags. Four 4 MiB buffers are registered with the ring
/// (pinned memory): a seed needs few, as its disk reads are piece verifications and ingest.
func openStore(_ args: Arguments, configure: (inout StoreConfiguration) -> Void = { _ in }) async throws -> PieceStore {
    var settings = try storeSettings(args)
    configure(&settings.configuration)
    return try await openStore(settings)
}

/// The store's flags, validated, with nothing opened (`--check-config` stops here).
func storeSettings(_ args: Arguments) throws(UsageError) -> (backend: IOBackendChoice, configuration: StoreConfiguration) {
    let choice = args.string("io-backend")
    guard let backendChoice = IOBackendChoice(rawValue: choice) else {
        throw UsageError("\(args.command): --io-backend must be auto, uring or threads, got '\(choice)'")
    }
    guard !args.string("data-dir").isEmpty else { throw UsageError("\(args.command): --data-dir must name a directory") }
    var config = StoreConfiguration(directory: args.string("data-dir"))
    if let quota = try args.optionalInt("quota") { config.eviction.quotaBytes = Int64(quota) }
    return (backendChoice, config)
}

func openStore(_ settings: (backend: IOBackendChoice, configuration: StoreConfiguration)) async throws -> PieceStore {
    // Registered buffers a default piece each (1 MiB): a bigger piece gets a plain buffer, a
    // smaller one never takes a whole slot it would leave three quarters empty.
    let io = try makeIOBackend(settings.backend, fixedBuffers: 16, fixedBufferSize: PieceMath.minimumDefaultPieceLength, log: log)
    return try await PieceStore.open(settings.configuration, io: io)
}

enum ImportCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "import", flags: storeFlags + [
            .init(name: "piece-length", defaultValue: "", help: "piece length (default: from the file size, 1-64 MiB)"),
            .init(name: "daemon", defaultValue: "", help: "import into this running daemon (e.g. \(DaemonStore.defaultDaemon)) instead of opening --data-dir"),
            .init(name: "send", defaultValue: "auto", help: "with --daemon: path (the daemon reads the file: loopback only) | body (the bytes are sent) | auto (path to a daemon on loopback, falling back to body)"),
            .init(name: "token", defaultValue: SystemCalls.environment()["DARTER_ADMIN_TOKEN"] ?? "",
                  help: "with --daemon: the daemon's --admin-token, needed from other hosts (default: $DARTER_ADMIN_TOKEN)"),
        ], arguments: argv)
        if args.wantsHelp { print(args.usage + "\nPrints one line per file: <task-id> <path>"); return }
        guard !args.positional.isEmpty else { throw UsageError("import: name at least one FILE") }
        let pieceLength = try args.optionalInt("piece-length")  // a bad value stops before the store opens
        if let pieceLength, !PieceMath.isValidPieceLength(pieceLength) {
            throw UsageError("import: --piece-length must be a multiple of 4k from 4k to 64m, got '\(args.string("piece-length"))'")
        }
        if !args.string("daemon").isEmpty { return try await runThroughDaemon(args, pieceLength: pieceLength) }
        let store: PieceStore
        do { store = try await openStore(args) } catch StoreError.directoryInUse(let dir) {
            throw UsageError("import: data directory \(dir) is in use by a running daemon; import through it with --daemon \(DaemonStore.defaultDaemon) (its --listen address)")
        }
        var failed = false
        for path in args.positional {
            do {
                let imported = try await store.importFile(path, pieceLength: pieceLength)
                print("\(imported.id) \(path)")
            } catch {
                writeError("darter import: \(path): \(error)\n")
                failed = true
            }
        }
        await store.close()
        if failed { exit(1) }
    }
}

enum InfoCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "info", flags: storeFlags, arguments: argv)
        if args.wantsHelp { print(args.usage); return }
        let store = try await openStore(args)
        for id in store.taskIDs {
            guard let t = store.info(id, pieces: true) else { continue }
            let length = t.contentLength.map(String.init) ?? "?"
            print("\(id) length=\(length) pieces=\(t.committedPieceCount)/\(t.committed.count) complete=\(t.complete) pinned=\(t.pinned)")
        }
        let u = store.usage
        print("tasks=\(u.taskCount) bytes=\(u.bytesUsed) journal=\(u.journalBytes)")
        await store.close()
    }
}

/// Writes deterministic content and prints `committed <task> <piece>` after each commit, so a
/// test can SIGKILL it at any moment and check that everything printed survived.
enum DebugIngestCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "debug-ingest", flags: storeFlags + [
            .init(name: "seed", defaultValue: "1", help: "random seed (task names, order)"),
            .init(name: "tasks", defaultValue: "3", help: "number of tasks"),
            .init(name: "pieces", defaultValue: "64", help: "pieces per task"),
            .init(name: "piece-length", defaultValue: "64k", help: "piece length"),
            .init(name: "concurrency", defaultValue: "4", help: "pieces in flight"),
            .init(name: "compaction-threshold", defaultValue: "64k", help: "journal size that triggers compaction checks"),
        ], arguments: argv)
        if args.wantsHelp { print(args.usage); return }
        let seed = try args.int("seed"), tasks = try args.int("tasks"), pieces = try args.int("pieces")
        let pieceLength = try args.int("piece-length"), concurrency = max(1, try args.int("concurrency"))
        let threshold = try args.int("compaction-threshold")
        let store = try await openStore(args) { $0.compactionThresholdBytes = Int64(threshold) }
        var rng = SplitMix64(seed: UInt64(seed))
        var work: [(TaskID, Int, Int)] = []
        for t in 0..<tasks {
            let id = try TaskID.forURL("http://crash.test/\(seed)/\(t)")
            let length = Int64(pieces * pieceLength - 1000)  // a short, unaligned last piece
            if store.info(id) == nil { try await store.createTask(id, pieceLength: pieceLength, contentLength: length) }
            for i in 0..<pieces { work.append((id, i, PieceMath.length(ofPiece: i, contentLength: length, pieceLength: pieceLength))) }
        }
        for i in stride(from: work.count - 1, to: 0, by: -1) { work.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        print("ready"); fflush(nil)
        let queue = WorkQueue(work)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    let buffer = store.io.makeBuffer(capacity: pieceLength)
                    while let (id, index, length) = queue.next() {
                        if store.info(id, pieces: true)?.committed[index] == true { continue }
                        buffer.fillPattern(seed: id.hash.w0, streamOffset: PieceMath.offset(ofPiece: index, pieceLength: pieceLength),
                                           range: 0..<alignUp(length))
                        try await store.writePiece(id, index: index, from: buffer, length: length)
                        print("committed \(id) \(index)")
                        fflush(nil)
                    }
                }
            }
            // Churn: short-lived tasks leave dead records behind, so compaction runs (and gets
            // interrupted) during crash tests too.
            group.addTask {
                let buffer = store.io.makeBuffer(capacity: 4096)
                var n = 0
                while queue.remaining > 0 {
                    let scratch = try TaskID.forURL("http://crash.test/\(seed)/scratch/\(n)")
                    try await store.createTask(scratch, pieceLength: 4096, contentLength: 4096)
                    buffer.fillPattern(seed: scratch.hash.w0, streamOffset: 0, range: 0..<4096)
                    try await store.writePiece(scratch, index: 0, from: buffer, length: 4096)
                    try await store.deleteTask(scratch)
                    n += 1
                }
            }
            try await group.waitForAll()
        }
        print("done"); fflush(nil)
        await store.close()
    }
}


import Synchronization
import DarterCore
final class WorkQueue<T: Sendable>: Sendable {
    private let items: Mutex<[T]>
    init(_ items: [T]) { self.items = Mutex(items.reversed()) }
    func next() -> T? { items.withLock { $0.popLast() } }
    var remaining: Int { items.withLock { $0.count } }
}

import DarterIO
import DarterCore

/// How a store is set up.
public struct StoreConfiguration: Sendable {
    /// Where the journal and the data files live (ext4 or xfs: O_DIRECT is required).
    public var directory: String
    public var eviction: EvictionPolicy
    /// Verify a piece's CRC32C on its first read after a restart.
    public var verifyAfterRestart = true
    /// The journal is rewritten from the index once it is larger than this and more than
    /// twice what the index needs.
    public var compactionThresholdBytes: Int64 = 64 << 20
    /// How stale a persisted access time may get before it is written (seconds).
    public var accessPersistInterval: Int64 = 60
    /// How long a group commit may wait for piece writes still under way to join it
    /// (milliseconds). Each commit costs two device flushes and a filesystem journal commit
    /// that makes the host flush its write cache; with writes streaming, fewer larger commits
    /// measured faster (bench ingest medians, interleaved: 20 ms 2.48, 50 ms 3.02, 100 ms
    /// 3.29 GB/s; fio with one fsync at the end 3.08). A lone writer is never delayed, and
    /// neither is a commit that a reader is waiting for (read-while-write stays prompt).
    /// 0: commit as soon as anything is pending.
    public var groupCommitWindowMilliseconds = 100

    public init(directory: String, eviction: EvictionPolicy = EvictionPolicy()) {
        self.directory = directory
        self.eviction = eviction
    }
}

/// Why a store call failed. Each case reads as one line for logs and HTTP reasons.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownTask(TaskID)
    case invalidPieceLength(Int)
    case pieceOutOfRange(TaskID, index: Int)
    case pieceNotCommitted(TaskID, index: Int)
    case pieceBeingWritten(TaskID, index: Int)
    case wrongPieceLength(TaskID, index: Int, expected: Int, got: Int)
    case rangeOutOfBounds(TaskID)
    case corruptPiece(TaskID, index: Int)
    case incomplete(TaskID, missingPieces: Int)
    case digestMismatch(TaskID, expected: String, actual: String)
    case noSpace(TaskID?, String)
    case taskFailed(TaskID, String)
    case timedOut
    case closed
    case journalUnreadable(String)
    case directoryInUse(String)
    case io(String, Errno)

    public var description: String {
        switch self {
        case .unknownTask(let id): return "task \(id) is not in the store"
        case .invalidPieceLength(let n): return "piece length \(n) is not a multiple of 4096 between 4 KiB and 64 MiB"
        case .pieceOutOfRange(let id, let i): return "task \(id) has no piece \(i)"
        case .pieceNotCommitted(let id, let i): return "piece \(i) of task \(id) is not committed"
        case .pieceBeingWritten(let id, let i): return "piece \(i) of task \(id) is being written by another writer"
        case .wrongPieceLength(let id, let i, let e, let g): return "piece \(i) of task \(id) must be \(e) bytes, got \(g)"
        case .rangeOutOfBounds(let id): return "byte range is outside task \(id)"
        case .corruptPiece(let id, let i): return "piece \(i) of task \(id) failed its CRC32C check and was dropped"
        case .incomplete(let id, let n): return "task \(id) still misses \(n) pieces"
        case .digestMismatch(let id, let e, let a): return "task \(id) content digest is sha256:\(a), expected sha256:\(e)"
        case .noSpace(let id, let why): return "no space for \(id.map { "task \($0)" } ?? "the store"): \(why)"
        case .taskFailed(let id, let why): return "task \(id) failed: \(why)"
        case .timedOut: return "timed out waiting for a piece"
        case .closed: return "the store is closed"
        case .journalUnreadable(let why): return "metadata journal unreadable: \(why)"
        case .directoryInUse(let dir): return "data directory \(dir) is in use by another darter process (stop it first)"
        case .io(let what, let e): return "\(what): \(e)"
        }
    }
}

/// A snapshot of one task for callers (serving, metadata endpoints).
public struct TaskInfo: Sendable, Equatable {
    public var id: TaskID
    public var pieceLength: Int
    public var contentLength: Int64?
    public var complete: Bool
    /// One entry per known piece: committed or not.
    public var committed: [Bool]
    public var committedPieceCount: Int
    /// The SHA-256 of each committed piece whose writer computed one (filled with `committed`).
    public var pieceSHA256: [Int: SHA256Digest] = [:]
    public var sha256: SHA256Digest?
    public var expectedDigest: SHA256Digest?
    public var origin: OriginMetadata
    public var pinned: Bool
    public var createdAt: Int64
    public var lastAccess: Int64
    public var bytesOnDisk: Int64
    public var failure: String?
}

/// Totals for metrics.
public struct StoreUsage: Sendable, Equatable {
    public var bytesUsed: Int64
    public var quotaBytes: Int64?
    public var taskCount: Int
    public var committedPieces: Int
    public var evictions: Int
    public var corruptPiecesDropped: Int
    public var journalBytes: Int64
}

/// What waiting for a piece found.
public enum PieceAvailability: Sendable, Equatable {
    /// The piece is committed and may be read.
    case committed
    /// The content ended before that piece (unknown-length tasks learn their end late).
    case beyondEnd
}

/// A committed byte extent that can be sent without copying (sendfile/splice from `fd`).
/// Holding it keeps the task from eviction and its descriptor open.
public struct ServableExtent: Sendable {
    /// A page-cache (not O_DIRECT) descriptor of the data file.
    public let fd: FileDescriptor
    public let offset: Int64
    public let length: Int
    public let lease: ReadLease
}

/// Marks a task as being read while it lives.
public final class ReadLease: Sendable {
    let release: @Sendable () -> Void
    init(release: @escaping @Sendable () -> Void) { self.release = release }
    deinit { release() }
}

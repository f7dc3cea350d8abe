import DarterIO
import DarterCore

/// State of one piece.
public enum PieceState: UInt8, Sendable { case missing, writing, committed }

struct PieceSlot {
    var state: PieceState = .missing
    var length: UInt32 = 0
    var crc32c: UInt32 = 0
    /// The piece's SHA-256 when its writer computed it (see ``JournalRecord/pieceCommitted``).
    var sha256: SHA256Digest?
    /// Checked against its CRC since this process started (pieces we wrote count as checked).
    var verified = false
}

/// One task's entry in the index: its durable facts plus runtime bookkeeping.
struct TaskEntry {
    var descriptor: TaskDescriptor
    var pieces: [PieceSlot] = []
    var committedCount = 0
    var complete = false
    var sha256: SHA256Digest?
    var lastAccess: Int64
    var persistedAccess: Int64
    /// Bytes reserved on disk (aligned), counted against the quota.
    var allocatedBytes: Int64 = 0
    // Runtime only:
    var readers = 0
    var writers = 0
    var deleting = false
    var failure: String?
    var directFD: FileDescriptor?
    var bufferedFD: FileDescriptor?
    /// Which incarnation of this id (a task deleted and created again gets a new one), so a
    /// write that began on the old one never commits into the new one.
    var generation: UInt64 = 0

    init(descriptor: TaskDescriptor) {
        self.descriptor = descriptor
        lastAccess = descriptor.createdAt
        persistedAccess = descriptor.createdAt
        if let n = descriptor.contentLength {
            pieces = Array(repeating: PieceSlot(), count: PieceMath.pieceCount(contentLength: n, pieceLength: descriptor.pieceLength))
            allocatedBytes = Int64(alignUp(Int(n)))
        }
    }

    var pieceLength: Int { descriptor.pieceLength }
    var contentLength: Int64? { descriptor.contentLength }
    var inUse: Bool { readers > 0 || writers > 0 }

    /// A read begins: it protects the task from eviction and counts as use (LRU).
    mutating func addReader(now: Int64) {
        readers += 1
        lastAccess = now
    }

    /// The piece count when the length is known.
    var pieceCount: Int? { contentLength.map { PieceMath.pieceCount(contentLength: $0, pieceLength: pieceLength) } }

    /// Expected length of piece `index`, nil when the content length is unknown.
    func expectedLength(ofPiece index: Int) -> Int? {
        contentLength.map { PieceMath.length(ofPiece: index, contentLength: $0, pieceLength: pieceLength) }
    }

    /// Bytes from `offset` that are committed contiguously.
    func committedRun(from offset: Int64) -> Int64 {
        var end = offset
        var index = Int(offset / Int64(pieceLength))
        while index < pieces.count, pieces[index].state == .committed {
            end = PieceMath.offset(ofPiece: index, pieceLength: pieceLength) + Int64(pieces[index].length)
            if Int(pieces[index].length) < pieceLength { break }
            index += 1
        }
        return max(0, end - offset)
    }
}

/// The in-memory index rebuilt from the journal. `apply` is the only way durable facts change,
/// both during recovery and after each group commit.
struct StoreIndex {
    var tasks: [TaskID: TaskEntry] = [:]
    /// Content digest → a URL task holding those bytes (one copy on disk).
    var aliases: [SHA256Digest: TaskID] = [:]
    var bytesUsed: Int64 = 0
    private var nextGeneration: UInt64 = 1

    /// Applies one record (the committer then wakes the readers it concerns).
    mutating func apply(_ record: JournalRecord) {
        switch record {
        case .taskCreated(let d):
            guard tasks[d.id] == nil else { return }
            var entry = TaskEntry(descriptor: d)
            entry.generation = nextGeneration
            nextGeneration += 1
            bytesUsed += entry.allocatedBytes
            tasks[d.id] = entry
        case .pieceCommitted(let id, let index, let length, let crc, let sha256):
            guard var t = tasks.removeValue(forKey: id) else { return }
            if index >= t.pieces.count {
                t.pieces += Array(repeating: PieceSlot(), count: index + 1 - t.pieces.count)
            }
            if t.pieces[index].state != .committed { t.committedCount += 1 }
            t.pieces[index] = PieceSlot(state: .committed, length: UInt32(length), crc32c: crc, sha256: sha256, verified: t.pieces[index].verified)
            if t.contentLength == nil {  // unknown length: the file grows piece by piece
                let end = Int64(alignUp(Int(PieceMath.offset(ofPiece: index, pieceLength: t.pieceLength)) + length))
                if end > t.allocatedBytes { bytesUsed += end - t.allocatedBytes; t.allocatedBytes = end }
            }
            tasks[id] = t
        case .pieceDropped(let id, let index):
            guard var t = tasks.removeValue(forKey: id) else { return }
            if index < t.pieces.count, t.pieces[index].state == .committed {
                t.pieces[index] = PieceSlot()
                t.committedCount -= 1
                t.complete = false
            }
            tasks[id] = t
        case .taskCompleted(let id, let length, let digest):
            guard var t = tasks.removeValue(forKey: id) else { return }
            if t.descriptor.contentLength == nil {
                t.descriptor.contentLength = length
                let count = PieceMath.pieceCount(contentLength: length, pieceLength: t.pieceLength)
                if t.pieces.count > count { t.pieces.removeLast(t.pieces.count - count) }
            }
            t.complete = true
            if let digest {
                t.sha256 = digest
                if id.kind == .url { aliases[digest] = id }
            }
            tasks[id] = t
        case .taskAccessed(let id, let at):
            guard var t = tasks.removeValue(forKey: id) else { return }
            t.lastAccess = max(t.lastAccess, at)
            t.persistedAccess = max(t.persistedAccess, at)
            tasks[id] = t
        case .taskPinned(let id, let pinned):
            tasks[id]?.descriptor.pinned = pinned
        case .taskDeleted(let id):
            guard let t = tasks.removeValue(forKey: id) else { return }
            bytesUsed -= t.allocatedBytes
            if let d = t.sha256, aliases[d] == id { aliases[d] = nil }
        }
    }

    /// The records that recreate this index: what compaction writes.
    func snapshot() -> [JournalRecord] {
        var out: [JournalRecord] = []
        for (id, t) in tasks.sorted(by: { $0.key < $1.key }) where !t.deleting {
            out.append(.taskCreated(t.descriptor))
            for (i, p) in t.pieces.enumerated() where p.state == .committed {
                out.append(.pieceCommitted(id, index: i, length: Int(p.length), crc32c: p.crc32c, sha256: p.sha256))
            }
            if t.complete, let n = t.contentLength { out.append(.taskCompleted(id, contentLength: n, sha256: t.sha256)) }
            if t.lastAccess > t.descriptor.createdAt { out.append(.taskAccessed(id, at: t.lastAccess)) }
        }
        return out
    }
}

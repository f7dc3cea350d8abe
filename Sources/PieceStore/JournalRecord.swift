import DarterIO
import DarterCore

/// What the store knows about a task when it is created. Persisted in the journal.
public struct TaskDescriptor: Equatable, Sendable {
    public var id: TaskID
    public var pieceLength: Int
    /// Nil until the stream ends when the origin did not say.
    public var contentLength: Int64?
    public var createdAt: Int64
    public var pinned: Bool
    /// The digest the content must have (from an OCI reference or a `digest=` parameter).
    public var expectedDigest: SHA256Digest?
    public var origin: OriginMetadata

    public init(id: TaskID, pieceLength: Int, contentLength: Int64?, createdAt: Int64, pinned: Bool = false,
                expectedDigest: SHA256Digest? = nil, origin: OriginMetadata = OriginMetadata()) {
        self.id = id
        self.pieceLength = pieceLength
        self.contentLength = contentLength
        self.createdAt = createdAt
        self.pinned = pinned
        self.expectedDigest = expectedDigest
        self.origin = origin
    }
}

/// Origin response headers needed to serve the object again.
public struct OriginMetadata: Equatable, Sendable {
    public var contentType: String?
    public var etag: String?
    public var lastModified: String?
    public var sourceURL: String?
    public init(contentType: String? = nil, etag: String? = nil, lastModified: String? = nil, sourceURL: String? = nil) {
        self.contentType = contentType
        self.etag = etag
        self.lastModified = lastModified
        self.sourceURL = sourceURL
    }
}

/// One entry of the metadata journal. The journal is append-only; replaying it in order
/// rebuilds the index.
public enum JournalRecord: Equatable, Sendable {
    case taskCreated(TaskDescriptor)
    /// Data and record are both durable: the piece may be served. `sha256`: the piece's own
    /// digest, when the writer computed it (a seed reading the origin): children check pieces
    /// from other peers against it.
    case pieceCommitted(TaskID, index: Int, length: Int, crc32c: UInt32, sha256: SHA256Digest? = nil)
    /// A piece failed its checksum and is gone.
    case pieceDropped(TaskID, index: Int)
    /// Every piece is in; `sha256` is the content's digest once computed.
    case taskCompleted(TaskID, contentLength: Int64, sha256: SHA256Digest?)
    case taskAccessed(TaskID, at: Int64)
    case taskPinned(TaskID, Bool)
    case taskDeleted(TaskID)

    public var taskID: TaskID {
        switch self {
        case .taskCreated(let d): return d.id
        case .pieceCommitted(let id, _, _, _, _), .pieceDropped(let id, _), .taskCompleted(let id, _, _),
             .taskAccessed(let id, _), .taskPinned(let id, _), .taskDeleted(let id):
            return id
        }
    }
}

/// Frames records as `[u32 length][u32 crc32c(payload)][payload]`, little-endian, after an
/// 8-byte file magic. A frame whose length or checksum does not match ends the valid journal:
/// that is a torn tail from a crash, and everything after it is discarded.
public enum JournalCodec {
    public static let magic: [UInt8] = Array("DARTJNL1".utf8)
    static let maximumPayload = 1 << 20

    public static func encode(_ record: JournalRecord, into out: inout [UInt8]) {
        var payload = ByteWriter()
        switch record {
        case .taskCreated(let d):
            payload.u8(1); payload.taskID(d.id)
            payload.u32(UInt32(d.pieceLength)); payload.i64(d.contentLength ?? -1); payload.i64(d.createdAt)
            payload.u8(d.pinned ? 1 : 0)
            payload.optionalDigest(d.expectedDigest)
            payload.optionalString(d.origin.contentType); payload.optionalString(d.origin.etag)
            payload.optionalString(d.origin.lastModified); payload.optionalString(d.origin.sourceURL)
        case .pieceCommitted(let id, let index, let length, let crc, let sha256):
            // Type 8 is type 2 with the piece's digest; journals written before it still read.
            payload.u8(sha256 == nil ? 2 : 8); payload.taskID(id); payload.u32(UInt32(index)); payload.u32(UInt32(length)); payload.u32(crc)
            if let sha256 { payload.digest(sha256) }
        case .pieceDropped(let id, let index):
            payload.u8(3); payload.taskID(id); payload.u32(UInt32(index))
        case .taskCompleted(let id, let length, let digest):
            payload.u8(4); payload.taskID(id); payload.i64(length); payload.optionalDigest(digest)
        case .taskAccessed(let id, let at):
            payload.u8(5); payload.taskID(id); payload.i64(at)
        case .taskPinned(let id, let pinned):
            payload.u8(6); payload.taskID(id); payload.u8(pinned ? 1 : 0)
        case .taskDeleted(let id):
            payload.u8(7); payload.taskID(id)
        }
        var header = ByteWriter()
        header.u32(UInt32(payload.bytes.count))
        header.u32(CRC32C.checksum(payload.bytes))
        out += header.bytes
        out += payload.bytes
    }

    /// Decodes frames from `bytes` (which start with the magic). Returns the records and the
    /// length of the valid prefix; the caller truncates the file there.
    public static func decode(_ bytes: [UInt8]) -> (records: [JournalRecord], validLength: Int) {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else { return ([], 0) }
        var records: [JournalRecord] = []
        var position = magic.count
        while position + 8 <= bytes.count {
            var header = ByteReader(bytes, from: position)
            guard let length = header.u32(), let crc = header.u32() else { break }
            let start = position + 8
            guard length <= maximumPayload, start + Int(length) <= bytes.count else { break }
            let end = start + Int(length)
            guard CRC32C.checksum(bytes[start..<end]) == crc else { break }
            var reader = ByteReader(bytes, from: start, to: end)
            guard let record = decodePayload(&reader), reader.atEnd else { break }
            records.append(record)
            position = end
        }
        return (records, position)
    }

    static func decodePayload(_ r: inout ByteReader) -> JournalRecord? {
        guard let type = r.u8(), let id = r.taskID() else { return nil }
        switch type {
        case 1:
            guard let pieceLength = r.u32(), let length = r.i64(), let created = r.i64(), let pinned = r.u8(),
                  let digest = r.optionalDigest(), let contentType = r.optionalString(), let etag = r.optionalString(),
                  let lastModified = r.optionalString(), let source = r.optionalString() else { return nil }
            return .taskCreated(TaskDescriptor(
                id: id, pieceLength: Int(pieceLength), contentLength: length < 0 ? nil : length, createdAt: created,
                pinned: pinned != 0, expectedDigest: digest,
                origin: OriginMetadata(contentType: contentType, etag: etag, lastModified: lastModified, sourceURL: source)))
        case 2, 8:
            guard let index = r.u32(), let length = r.u32(), let crc = r.u32() else { return nil }
            var sha256: SHA256Digest?
            if type == 8 {
                guard let d = r.digest() else { return nil }
                sha256 = d
            }
            return .pieceCommitted(id, index: Int(index), length: Int(length), crc32c: crc, sha256: sha256)
        case 3:
            guard let index = r.u32() else { return nil }
            return .pieceDropped(id, index: Int(index))
        case 4:
            guard let length = r.i64(), let digest = r.optionalDigest() else { return nil }
            return .taskCompleted(id, contentLength: length, sha256: digest)
        case 5:
            guard let at = r.i64() else { return nil }
            return .taskAccessed(id, at: at)
        case 6:
            guard let pinned = r.u8() else { return nil }
            return .taskPinned(id, pinned != 0)
        case 7:
            return .taskDeleted(id)
        default:
            return nil
        }
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func digest(_ d: SHA256Digest) { bytes += d.bytes }
    mutating func taskID(_ id: TaskID) { u8(id.kind.rawValue); digest(id.hash) }
    mutating func optionalDigest(_ d: SHA256Digest?) {
        if let d { u8(1); digest(d) } else { u8(0) }
    }
    mutating func optionalString(_ s: String?) {
        guard let s else { u32(UInt32.max); return }
        let utf8 = Array(s.utf8.prefix(65536))
        u32(UInt32(utf8.count)); bytes += utf8
    }
}

struct ByteReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int
    init(_ bytes: [UInt8], from: Int, to: Int? = nil) {
        self.bytes = bytes
        position = from
        end = to ?? bytes.count
    }
    var atEnd: Bool { position == end }
    mutating func u8() -> UInt8? {
        guard position < end else { return nil }
        defer { position += 1 }
        return bytes[position]
    }
    mutating func u32() -> UInt32? {
        guard position + 4 <= end else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
        position += 4
        return v
    }
    mutating func u64() -> UInt64? {
        guard position + 8 <= end else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += 8
        return v
    }
    mutating func i64() -> Int64? { u64().map { Int64(bitPattern: $0) } }
    mutating func digest() -> SHA256Digest? {
        guard position + 32 <= end else { return nil }
        defer { position += 32 }
        return SHA256Digest(bytes: Array(bytes[position..<position + 32]))
    }
    mutating func taskID() -> TaskID? {
        guard let k = u8(), let kind = TaskID.Kind(rawValue: k), let d = digest() else { return nil }
        return TaskID(kind: kind, hash: d)
    }
    mutating func optionalDigest() -> SHA256Digest?? {
        guard let flag = u8() else { return nil }
        if flag == 0 { return .some(nil) }
        guard flag == 1, let d = digest() else { return nil }
        return .some(d)
    }
    mutating func optionalString() -> String?? {
        guard let n = u32() else { return nil }
        if n == UInt32.max { return .some(nil) }
        guard position + Int(n) <= end else { return nil }
        defer { position += Int(n) }
        return .some(String(decoding: bytes[position..<position + Int(n)], as: UTF8.self))
    }
}

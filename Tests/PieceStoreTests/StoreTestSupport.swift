#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import DarterCore
@testable import PieceStore

@_exported import DarterTestSupport

/// A fresh directory on a filesystem with O_DIRECT (not tmpfs): under .build/store-tests by default.
func makeTestDirectory(_ name: String = #function) -> String { makeTestDirectory(name, area: "store-tests") }

/// Backends every store test runs against.
enum BackendKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case uring, threads
    var description: String { rawValue }
    func make() -> any IOBackend {
        switch self {
        case .uring: return try! UringBackend(fixedBuffers: 8, fixedBufferSize: 1 << 20)
        case .threads: return ThreadPoolBackend()
        }
    }
}

func openTestStore(_ dir: String, io: any IOBackend, configure: (inout StoreConfiguration) -> Void = { _ in }) async throws -> PieceStore {
    var config = StoreConfiguration(directory: dir)
    // Filesystem watermarks off unless a test sets them: the test machine's disk may be fuller
    // than the default 80 %, which would make every test evict its own tasks.
    config.eviction = EvictionPolicy(highWatermark: 1.0, lowWatermark: 1.0)
    configure(&config)
    return try await PieceStore.open(config, io: io)
}

/// Writes every piece of a task with pattern content (seed = the task id's first word).
func fillTask(_ store: PieceStore, _ id: TaskID, contentLength: Int64, pieceLength: Int, pieces: Range<Int>? = nil) async throws {
    try await store.createTask(id, pieceLength: pieceLength, contentLength: contentLength)
    let count = PieceMath.pieceCount(contentLength: contentLength, pieceLength: pieceLength)
    let buffer = store.io.makeBuffer(capacity: pieceLength)
    for i in pieces ?? 0..<count {
        let length = PieceMath.length(ofPiece: i, contentLength: contentLength, pieceLength: pieceLength)
        buffer.fillPattern(seed: id.hash.w0, streamOffset: PieceMath.offset(ofPiece: i, pieceLength: pieceLength), range: 0..<alignUp(length))
        try await store.writePiece(id, index: i, from: buffer, length: length)
    }
}

/// Whether bytes `range` of the task match the pattern `fillTask` writes.
func contentMatches(_ store: PieceStore, _ id: TaskID, range: Range<Int64>) async throws -> Bool {
    let bytes = try await store.readBytes(id, range: range)
    let start = alignDown(Int(range.lowerBound) / 8 * 8)
    let end = alignUp(Int(range.upperBound))
    let expected = IOBuffer(capacity: end - start)
    expected.fillPattern(seed: id.hash.w0, streamOffset: Int64(start), range: 0..<(end - start))
    let lead = Int(range.lowerBound) - start
    return expected.bytes(lead..<(lead + range.count)) == bytes
}

func taskID(_ name: String) -> TaskID { try! TaskID.forURL("http://test.example/\(name)") }

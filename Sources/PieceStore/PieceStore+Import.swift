import DarterCore
import DarterIO

/// Content a user puts in the store (`darter import`, offline or through a running daemon):
/// stored as a digest task, `sha256:<hex>` of its bytes, so the same content has the same id
/// however it came in.
extension PieceStore {
    /// What an import stored.
    public struct Imported: Sendable, Equatable {
        public var id: TaskID
        public var contentLength: Int64
        public var pieceLength: Int
        /// The content was in the store, complete, already: nothing was written.
        public var alreadyStored: Bool
    }

    /// Why a file cannot be imported.
    public enum ImportError: Error, Equatable, Sendable, CustomStringConvertible {
        case notRegularFile(String)
        case changed(String)
        public var description: String {
            switch self {
            case .notRegularFile(let path): "\(path) is not a regular file"
            case .changed(let path): "\(path) changed while it was being imported"
            }
        }
    }

    /// Stores the file at `path` under its SHA-256, read through the store's I/O backend:
    /// a first pass names the task (content already stored complete is not written again),
    /// the second writes it piece by piece. `pieceLength` nil: from the file's size.
    public func importFile(_ path: String, pieceLength: Int?) async throws -> Imported {
        // O_NONBLOCK: a FIFO put at the path does not hang the open; it is refused below.
        let fd: FileDescriptor
        do { fd = try await io.open(path, [.readOnly, .nonBlocking]) } catch { throw StoreError.io("opening \(path)", error) }
        defer { try? SystemCalls.close(fd) }
        guard try SystemCalls.isRegularFile(fd) else { throw ImportError.notRegularFile(path) }
        let size = try SystemCalls.fileSize(fd)
        let pieceLength = pieceLength ?? PieceMath.defaultPieceLength(contentLength: size)
        guard PieceMath.isValidPieceLength(pieceLength) else { throw StoreError.invalidPieceLength(pieceLength) }
        let buffer = io.makeBuffer(capacity: pieceLength)
        var hasher = SHA256Hasher()
        var offset: Int64 = 0
        while offset < size {
            let n = try await io.readFully(fd, into: buffer, range: 0..<Int(min(Int64(pieceLength), size - offset)), at: offset)
            guard n > 0 else { throw ImportError.changed(path) }
            hasher.update(buffer, range: 0..<n)
            offset += Int64(n)
        }
        let digest = SHA256Digest(bytes: hasher.finalize())!
        let id = TaskID(kind: .digest, hash: digest)
        if let info = info(id), info.complete {
            return Imported(id: id, contentLength: info.contentLength ?? size, pieceLength: info.pieceLength, alreadyStored: true)
        }
        let created = try await createTaskForImport(id, pieceLength: pieceLength, contentLength: size, source: "file://" + path)
        let count = PieceMath.pieceCount(contentLength: size, pieceLength: created.pieceLength)
        for index in 0..<count {
            let length = PieceMath.length(ofPiece: index, contentLength: size, pieceLength: created.pieceLength)
            let n = try await io.readFully(fd, into: buffer, range: 0..<length, at: PieceMath.offset(ofPiece: index, pieceLength: created.pieceLength))
            guard n == length else {
                await failTask(id, reason: ImportError.changed(path).description)
                throw ImportError.changed(path)
            }
            try await writePiece(id, index: index, from: buffer, length: length)
        }
        do { try await completeTask(id, sha256: digest) } catch {
            // The bytes written are not the bytes hashed: the file changed between the passes.
            if case StoreError.digestMismatch = error { throw ImportError.changed(path) }
            throw error
        }
        return Imported(id: id, contentLength: size, pieceLength: created.pieceLength, alreadyStored: false)
    }

    /// Creates `id` for an import, or takes up an earlier, unfinished import of it with the
    /// same piece length (its committed pieces hold these bytes: the id is their digest, checked
    /// at the end). A failed task, or one cut into other pieces, is deleted first.
    func createTaskForImport(_ id: TaskID, pieceLength: Int, contentLength: Int64, source: String) async throws -> TaskInfo {
        if let old = info(id), old.failure != nil || old.pieceLength != pieceLength || old.contentLength != contentLength {
            _ = try await deleteTask(id, force: true)
        }
        return try await createTask(id, pieceLength: pieceLength, contentLength: contentLength, expectedDigest: id.hash,
                                    origin: OriginMetadata(sourceURL: source))
    }
}

/// Content streamed into the store (a request body) as the digest task its writer names up
/// front: the store's tasks are named when created, and a digest task's name is its content's
/// SHA-256, so the writer states it and the bytes are checked against it at the end (a
/// mismatch fails the task and keeps nothing). Bytes are gathered into one piece buffer and
/// each full piece is written at once (its commit queued): memory stays one piece.
///
/// Confined: its methods are called one at a time, in order (a request body's parts).
public final class ContentImport: @unchecked Sendable {
    public let store: PieceStore
    public let id: TaskID
    public let contentLength: Int64
    public let pieceLength: Int
    /// The content was in the store, complete, already: the bytes are only checked.
    public let alreadyStored: Bool
    private let buffer: IOBuffer
    private var filled = 0
    private var nextPiece = 0
    private var received: Int64 = 0
    private var hasher = SHA256Hasher()
    private var commits: [Task<Void, any Error>] = []
    private var ended = false

    /// Why the bytes cannot be stored (the task is failed and deleted before this is thrown).
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case tooLong(Int64)
        case tooShort(received: Int64, expected: Int64)
        case digestMismatch(expected: SHA256Digest, actual: SHA256Digest)
        public var description: String {
            switch self {
            case .tooLong(let n): "the body is longer than its declared \(n) bytes"
            case .tooShort(let got, let want): "the body ended after \(got) of \(want) bytes"
            case .digestMismatch(let want, let got): "the body's SHA-256 is sha256:\(got.hex), not the sha256:\(want.hex) it was sent as"
            }
        }
    }

    /// Starts storing `contentLength` bytes whose SHA-256 is `digest`. `pieceLength` nil: from
    /// the length.
    public init(store: PieceStore, digest: SHA256Digest, contentLength: Int64, pieceLength: Int?, source: String) async throws {
        self.store = store
        id = TaskID(kind: .digest, hash: digest)
        self.contentLength = contentLength
        let wanted = pieceLength ?? PieceMath.defaultPieceLength(contentLength: contentLength)
        guard PieceMath.isValidPieceLength(wanted) else { throw StoreError.invalidPieceLength(wanted) }
        if let info = store.info(id), info.complete {
            alreadyStored = true
            self.pieceLength = info.pieceLength
            buffer = IOBuffer(capacity: 0)
            return
        }
        alreadyStored = false
        let created = try await store.createTaskForImport(id, pieceLength: wanted, contentLength: contentLength, source: source)
        self.pieceLength = created.pieceLength
        buffer = store.io.makeBuffer(capacity: created.pieceLength)
    }

    /// Takes `bytes` when they complete no piece (a copy into the piece buffer, nothing to
    /// wait for: a request body's small parts are taken on the event loop this way); false
    /// when ``append(_:)`` must take them.
    public func appendWithoutWriting(_ bytes: [UInt8]) -> Bool {
        guard !alreadyStored, filled + bytes.count < pieceLength, received + Int64(bytes.count) <= contentLength else { return false }
        buffer.copyBytes(from: bytes, at: filled)
        filled += bytes.count
        received += Int64(bytes.count)
        return true
    }

    /// Takes the next bytes; writes each piece they complete.
    public func append(_ bytes: [UInt8]) async throws {
        guard received + Int64(bytes.count) <= contentLength else { throw await fail(.tooLong(contentLength)) }
        received += Int64(bytes.count)
        if alreadyStored { return hasher.update(bytes) }
        var taken = 0
        while taken < bytes.count {
            let n = min(bytes.count - taken, pieceLength - filled)
            buffer.copyBytes(from: bytes[taken..<(taken + n)], at: filled)
            filled += n
            taken += n
            if filled == pieceLength { try await writeFilledPiece() }
        }
    }

    /// The body has ended: writes the last piece, checks length and digest, completes the task.
    public func finish() async throws -> PieceStore.Imported {
        ended = true
        guard received == contentLength else { throw await fail(.tooShort(received: received, expected: contentLength)) }
        if !alreadyStored && filled > 0 { try await writeFilledPiece() }  // hashed as it is written
        var done = SHA256Hasher()
        swap(&done, &hasher)
        let digest = SHA256Digest(bytes: done.finalize())!
        guard digest == id.hash else { throw await fail(.digestMismatch(expected: id.hash, actual: digest)) }
        if !alreadyStored {
            for c in commits { try await c.value }
            try await store.completeTask(id, sha256: digest)
        }
        return PieceStore.Imported(id: id, contentLength: contentLength, pieceLength: pieceLength, alreadyStored: alreadyStored)
    }

    /// The body will not be finished (the client went away): nothing of it is kept.
    public func cancel() async {
        guard !ended else { return }
        ended = true
        _ = await fail(nil)
    }

    /// Hashes the piece in the buffer (off the event loop) and writes it.
    private func writeFilledPiece() async throws {
        let length = filled
        hasher.update(buffer, range: 0..<length)
        filled = 0
        let index = nextPiece
        nextPiece += 1
        do {
            commits.append(try await store.startPieceWrite(id, index: index, from: buffer, length: length))
        } catch {
            _ = await fail(nil)
            throw error
        }
    }

    /// Drops the unfinished task (not content that was stored before); returns `failure`.
    private func fail(_ failure: Failure?) async -> any Error {
        ended = true
        if !alreadyStored {
            for c in commits { _ = try? await c.value }
            await store.failTask(id, reason: failure?.description ?? "import abandoned")
            _ = try? await store.deleteTask(id, force: true)
        }
        return failure ?? StoreError.taskFailed(id, "import abandoned")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO
import Synchronization

/// Where the pieces go, in order: a file written under a partial name and renamed into place
/// only when complete and verified (never a partial file under the final name), or standard
/// output. Pieces are handed over in any order and written in order: the SHA-256 of the whole
/// is computed as they pass, and a file grows by appending (with O_DIRECT where the filesystem
/// has it: the piece buffer goes to disk without a copy into the page cache).
final class Output: @unchecked Sendable {
    let path: String
    let io: any IOBackend
    let pieceLength: Int
    private(set) var hasher: SHA256Hasher?
    private var fd: FileDescriptor?
    private var direct = false
    private let standardOutput: Bool

    /// The partial file's name: `-c` finds it again.
    static func partialPath(_ path: String) -> String { path + ".darter-part" }
    var partialPath: String { Self.partialPath(path) }

    private struct Pending {
        var pieces: [Int: (SharedIOBuffer, Int)] = [:]
        var next = 0
        var writing = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var error: GetError?
    }
    private let pending = Mutex(Pending())
    /// Bytes written in order so far.
    let written = Atomic<Int64>(0)

    init(path: String, io: any IOBackend, pieceLength: Int, hashing: Bool) {
        self.path = path
        self.io = io
        self.pieceLength = pieceLength
        standardOutput = path == "-"
        if hashing { hasher = SHA256Hasher() }
    }

    /// Opens the partial file (fresh, or kept for `-c` up to `keep` pieces), or standard output.
    func open(keepingPieces keep: Int) async throws(GetError) {
        pending.withLock { $0.next = keep }
        written.store(Int64(keep) * Int64(pieceLength), ordering: .relaxed)
        if standardOutput { fd = FileDescriptor(rawValue: 1); return }
        let options: OpenOptions = keep > 0 ? [.writeOnly, .create] : [.writeOnly, .create, .truncate]
        do {
            fd = try await io.open(partialPath, options.union(.direct), mode: 0o644)
            direct = true
        } catch {
            // No O_DIRECT here (tmpfs, some network filesystems): through the page cache.
            do { fd = try await io.open(partialPath, options, mode: 0o644) } catch {
                throw GetError(.localIO, "cannot create \(partialPath): \(error)")
            }
        }
        if keep > 0 { try await truncate(Int64(keep) * Int64(pieceLength)) }
    }

    /// Feeds the bytes of pieces kept from an earlier run through the hash (read back).
    func hashKept(_ pieces: Int, contentLength: Int64) async throws(GetError) {
        guard hasher != nil, pieces > 0 else { return }
        let buffer = io.makeBuffer(capacity: pieceLength)
        let reader: FileDescriptor
        do { reader = try await io.open(partialPath, .readOnly) } catch { throw GetError(.localIO, "cannot read \(partialPath): \(error)") }
        defer { Task { [io] in try? await io.close(reader) } }
        for i in 0..<pieces {
            let length = PieceMath.length(ofPiece: i, contentLength: contentLength, pieceLength: pieceLength)
            do {
                let n = try await io.readFully(reader, into: buffer, range: 0..<length, at: PieceMath.offset(ofPiece: i, pieceLength: pieceLength))
                guard n == length else { throw GetError(.localIO, "\(partialPath) is shorter than it was") }
            } catch let e as GetError { throw e } catch { throw GetError(.localIO, "reading \(partialPath): \(error)") }
            hasher!.update(buffer, range: 0..<length)
        }
    }

    /// Piece `index` (`length` bytes of `buffer`) is ready; returns once it is written (or
    /// queued behind earlier pieces: the caller's buffer is then held until its turn).
    func accept(_ index: Int, _ buffer: SharedIOBuffer, length: Int) async throws(GetError) {
        let mustWrite = pending.withLock { p -> Bool in
            p.pieces[index] = (buffer, length)
            guard !p.writing, p.pieces[p.next] != nil else { return false }
            p.writing = true
            return true
        }
        if mustWrite { await drain() }
        // Wait until this piece is out (it may be behind a missing one).
        while true {
            let state = pending.withLock { p -> (done: Bool, error: GetError?) in (p.next > index, p.error) }
            if let e = state.error { throw e }
            if state.done { return }
            await withCheckedContinuation { c in
                let ready = pending.withLock { p -> Bool in
                    if p.next > index || p.error != nil { return true }
                    p.waiters.append(c)
                    return false
                }
                if ready { c.resume() }
            }
        }
    }

    /// Writes every piece that is next in order; wakes the waiters after each.
    private func drain() async {
        while true {
            let item = pending.withLock { p -> (Int, SharedIOBuffer, Int)? in
                guard p.error == nil, let (b, l) = p.pieces.removeValue(forKey: p.next) else { p.writing = false; return nil }
                return (p.next, b, l)
            }
            guard let (index, buffer, length) = item else { return wakeAll() }
            var failure: GetError?
            do { try await write(index, buffer, length) } catch { failure = error }
            let waiters = pending.withLock { p -> [CheckedContinuation<Void, Never>] in
                if let failure { p.error = failure } else { p.next = index + 1 }
                defer { p.waiters = [] }
                return p.waiters
            }
            for w in waiters { w.resume() }
        }
    }

    /// The download failed (`error`): pieces waiting their turn are told, not left waiting.
    func fail(_ error: GetError) {
        let waiters = pending.withLock { p -> [CheckedContinuation<Void, Never>] in
            if p.error == nil { p.error = error }
            defer { p.waiters = [] }
            return p.waiters
        }
        for w in waiters { w.resume() }
    }

    private func wakeAll() {
        let waiters = pending.withLock { p -> [CheckedContinuation<Void, Never>] in
            defer { p.waiters = [] }
            return p.waiters
        }
        for w in waiters { w.resume() }
    }

    private func write(_ index: Int, _ buffer: SharedIOBuffer, _ length: Int) async throws(GetError) {
        hasher?.update(buffer.buffer, range: 0..<length)
        guard let fd else { return }
        do {
            if standardOutput {
                try SystemCalls.writeAll(fd, from: buffer.buffer, range: 0..<length)
            } else {
                // Direct I/O writes whole blocks: the last piece's padding is cut off at the end.
                let count = direct ? alignUp(length) : length
                if direct && count > length { buffer.buffer.fill(0, range: length..<count) }
                try await io.writeAll(fd, from: buffer.buffer, range: 0..<count, at: PieceMath.offset(ofPiece: index, pieceLength: pieceLength))
            }
        } catch {
            throw GetError(.localIO, "writing \(standardOutput ? "standard output" : partialPath): \(error)")
        }
        written.add(Int64(length), ordering: .relaxed)
    }

    private func truncate(_ length: Int64) async throws(GetError) {
        guard let fd else { return }
        do { try await io.truncate(fd, length: length) } catch { throw GetError(.localIO, "truncating \(partialPath): \(error)") }
    }

    /// The content is whole (`length` bytes): it is cut to its length, checked against
    /// `digest` (a mismatch removes it), and renamed to its name.
    func finish(length: Int64, digest: SHA256Digest?) async throws(GetError) {
        var got: SHA256Digest?
        if let h = hasher.take() { got = SHA256Digest(bytes: h.finalize()) }
        if standardOutput {
            if let digest, got != digest { throw GetError(.verification, "the content's SHA-256 is \(got.map { "sha256:" + $0.hex } ?? "?"), not sha256:\(digest.hex)") }
            return
        }
        try await truncate(length)
        if let fd { try? await io.close(fd) }
        fd = nil
        if let digest, got != digest {
            try? SystemCalls.unlink(partialPath)
            throw GetError(.verification, "the content's SHA-256 is \(got.map { "sha256:" + $0.hex } ?? "?"), not sha256:\(digest.hex): nothing was written")
        }
        do { try SystemCalls.rename(partialPath, path) } catch { throw GetError(.localIO, "renaming \(partialPath) to \(path): \(error)") }
    }

    /// The download failed: the partial file stays for `-c` (or goes, when `keep` is false).
    func abandon(keep: Bool) async {
        if let fd, !standardOutput { try? await io.close(fd) }
        fd = nil
        if !keep && !standardOutput { try? SystemCalls.unlink(partialPath) }
    }
}

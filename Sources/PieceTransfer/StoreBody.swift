import DarterCore
import DarterIO
import HTTPServer
import PieceStore

/// A byte range of a task, sent extent by extent as pieces are committed and verified.
public final class StoreBody: FileBodySource {
    let store: PieceStore
    let id: TaskID
    let range: Range<Int64>
    /// Task offset from which bytes are sent only once the task is complete (digest verified).
    let holdBackFrom: Int64?

    /// Pieces of the fetch this body follows, held in memory (nil: read the store only).
    let resident: ResidentPieces?

    public init(store: PieceStore, id: TaskID, range: Range<Int64>, holdBackFrom: Int64? = nil, following resident: ResidentPieces? = nil) {
        self.store = store
        self.id = id
        self.range = range
        self.holdBackFrom = holdBackFrom
        self.resident = resident
        resident?.addReader(id, ObjectIdentifier(self), at: range.lowerBound)
    }

    deinit { resident?.removeReader(id, ObjectIdentifier(self)) }

    /// Where bytes may be sent up to now.
    private func limit() -> Int64 {
        guard let hold = holdBackFrom, store.info(id)?.complete != true else { return range.upperBound }
        return max(range.lowerBound, min(range.upperBound, hold))
    }

    public var length: Int64 { range.upperBound - range.lowerBound }

    public func extent(at position: Int64, maxLength: Int) -> BodyExtent? {
        let start = range.lowerBound + position
        let end = min(limit(), start + Int64(maxLength))
        guard end > start else { return nil }
        // A fresh piece still in memory is sent from there (it may not be committed yet).
        if let memory = resident?.bytes(id, reader: ObjectIdentifier(self), at: start, maxLength: Int(end - start)) {
            return .memory(memory.buffer, offset: memory.offset, length: memory.length)
        }
        guard let e = store.servableExtentNow(id, range: start..<end) else { return nil }
        return .file(FileExtent(fd: e.fd, offset: e.offset, length: e.length, owner: e.lease))
    }

    public func waitForData(at position: Int64, _ ready: @escaping @Sendable ((any Error)?) -> Void) {
        let start = range.lowerBound + position
        let end = range.upperBound
        let held = holdBackFrom.map { start >= $0 } ?? false
        // Following a fetch: wait for the piece to arrive (not for the store's commit, so the
        // store's group commit is not forced to flush for every piece).
        if !held, let resident, resident.whenHeld(id, offset: start, { ready(nil) }) {
            return
        }
        Task { [store, id] in
            do {
                if held {  // wait for verification: the task completes, or fails
                    while store.info(id)?.complete != true {
                        guard let info = store.info(id), info.failure == nil else { throw StoreError.taskFailed(id, "verification failed") }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                guard try await store.waitForOffset(id, offset: start, timeout: .seconds(300)) == .committed else {
                    throw StoreError.rangeOutOfBounds(id)
                }
                // Verifies the pieces and opens the page-cache descriptor; then the loop's
                // synchronous path can take it.
                guard try await store.servableExtent(id, range: start..<end) != nil else { throw StoreError.pieceNotCommitted(id, index: -1) }
                ready(nil)
            } catch {
                ready(error)
            }
        }
    }
}


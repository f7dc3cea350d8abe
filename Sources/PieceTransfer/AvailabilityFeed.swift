import DarterCore
import DarterIO
import HTTPServer
import PieceProtocol
import PieceStore
import Synchronization

extension TaskMetadata {
    /// What a daemon holding `info` (and, in memory, `held` pieces that arrived but may not be
    /// committed yet, with the digests of those it knows) tells others about the task.
    public init(_ info: TaskInfo, held: [Int] = [], heldDigests: [Int: SHA256Digest] = [:]) {
        var pieces = PieceSet(bitmap: info.committed)
        for i in held { pieces.insert(i) }
        self.init(id: info.id, contentLength: info.contentLength, pieceLength: info.pieceLength, pieces: pieces, complete: info.complete,
                  digest: info.sha256 ?? (info.id.kind == .digest ? info.id.hash : nil), contentType: info.origin.contentType,
                  pieceDigests: info.pieceSHA256.merging(heldDigests) { a, _ in a })
    }
}

/// The piece protocol's availability feed for one task and one child (`GET /tasks/{id}/pieces`):
/// the snapshot of what is held, then each batch of pieces that lands here — pushed as
/// ``PieceArrivals`` announces them, never polled — heartbeats while quiet, and the end.
public final class AvailabilityFeed: StreamBodySource {
    private struct State {
        var snapshotSent = false
        var pending = PieceSet()
        var pendingDigests: [Int: SHA256Digest] = [:]
        var ended: String??  // nil: going on; .some(nil): complete; .some(reason): failed
        var finished = false
        var waiting: (@Sendable ([UInt8]?) -> Void)?
        var heartbeat: Task<Void, Never>?
    }
    private let state = Mutex(State())
    private let snapshot: @Sendable () -> TaskMetadata?
    private let isFetching: @Sendable () -> Bool
    private let listener = Mutex<PieceArrivals.Listener?>(nil)
    private let heartbeatInterval: Duration

    /// - Parameters:
    ///   - snapshot: what is held now (nil: the task is gone).
    ///   - isFetching: whether pieces are still coming here (else the feed ends after the snapshot).
    public init(_ id: TaskID, arrivals: PieceArrivals, heartbeat: Duration = .seconds(PieceProtocol.heartbeatSeconds),
                snapshot: @escaping @Sendable () -> TaskMetadata?, isFetching: @escaping @Sendable () -> Bool) {
        self.snapshot = snapshot
        self.isFetching = isFetching
        heartbeatInterval = heartbeat
        // Listen before the snapshot is taken: a piece landing in between is sent twice, never missed.
        let l = arrivals.listen(id) { [weak self] event in self?.heard(event) }
        listener.withLock { $0 = l }
    }

    deinit {
        listener.withLock { $0 }?.cancel()
        state.withLock { $0.heartbeat?.cancel() }
    }

    private func heard(_ event: PieceArrivals.Event) {
        let deliver = state.withLock { s -> (@Sendable ([UInt8]?) -> Void, [UInt8])? in
            switch event {
            case .piece(let i, let sha256):
                s.pending.insert(i)
                if let sha256 { s.pendingDigests[i] = sha256 }
            case .ended(let failure): s.ended = .some(failure)
            }
            guard s.snapshotSent, let w = s.waiting, let line = takeLine(&s) else { return nil }
            s.waiting = nil
            return (w, line)
        }
        if let (w, line) = deliver { w(line) }
    }

    /// The next line to send, if one is due (pieces first, then the end).
    private func takeLine(_ s: inout State) -> [UInt8]? {
        if !s.pending.isEmpty {
            defer { s.pending = PieceSet(); s.pendingDigests = [:] }
            return AvailabilityEvent.have(s.pending, sha256: s.pendingDigests).line
        }
        if let ended = s.ended, !s.finished {
            s.finished = true
            return (ended.map { AvailabilityEvent.failed($0) } ?? .complete).line
        }
        return nil
    }

    public func next(_ deliver: @escaping @Sendable ([UInt8]?) -> Void) {
        enum Step { case send([UInt8]), end, wait }
        let step = state.withLock { s -> Step in
            if s.finished { return .end }
            if !s.snapshotSent {
                s.snapshotSent = true
                guard var meta = snapshot() else {
                    s.finished = true
                    return .send(AvailabilityEvent.failed("the task is gone").line)
                }
                if meta.pieceDigests.count > PieceProtocol.maxDigestsInSnapshot { meta.pieceDigests = [:] }
                var line = AvailabilityEvent.snapshot(meta).line
                // The snapshot has them (those whose digests it lacks as well: it was taken later).
                s.pending = PieceSet()
                s.pendingDigests = [:]
                if meta.complete {
                    s.finished = true
                    line += AvailabilityEvent.complete.line
                } else if s.ended == nil && !isFetching() {
                    s.finished = true
                    // A fetch that just ended holds every piece (in memory) before the store has
                    // committed them and calls the task complete: that is complete, not a failure
                    // (the child dropped this parent and went to the origin: a containerd pull
                    // saw a config blob leave the registry twice, 1 run in about 10).
                    let whole = meta.pieceCount.map { meta.pieces.count >= $0 } ?? false
                    line += (whole ? AvailabilityEvent.complete : AvailabilityEvent.failed("no fetch of this task is running here")).line
                }
                return .send(line)
            }
            if let line = takeLine(&s) { return .send(line) }
            s.waiting = deliver
            if s.heartbeat == nil { s.heartbeat = startHeartbeat() }
            return .wait
        }
        switch step {
        case .send(let line): deliver(line)
        case .end: deliver(nil)
        case .wait: break
        }
    }

    /// Every interval, a waiting delivery gets `{}`: the connection shows life, and a child
    /// notices a parent that died.
    private func startHeartbeat() -> Task<Void, Never> {
        Task { [weak self, heartbeatInterval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeatInterval)
                guard let self else { return }
                let w = state.withLock { s -> (@Sendable ([UInt8]?) -> Void)? in
                    defer { s.waiting = nil }
                    return s.waiting
                }
                w?(AvailabilityEvent.heartbeat.line)
            }
        }
    }

    public func cancel() {
        listener.withLock { $0 }?.cancel()
        let waiting = state.withLock { s -> (@Sendable ([UInt8]?) -> Void)? in
            s.finished = true
            s.heartbeat?.cancel()
            defer { s.waiting = nil }
            return s.waiting
        }
        waiting?(nil)  // the server counts the pending delivery until it comes
    }
}

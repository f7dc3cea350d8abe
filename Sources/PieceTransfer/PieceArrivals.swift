import DarterCore
import Synchronization

/// Who wants to hear that a task's pieces land: the availability feeds of the piece protocol
/// (a child's open `GET /tasks/{id}/pieces`). Assemblers announce each piece once it has arrived
/// whole and been checked; the fetch announces its end. Listeners are called on the announcing
/// thread and must only queue.
public final class PieceArrivals: Sendable {
    public enum Event: Sendable, Equatable {
        /// A piece landed, with its SHA-256 when this daemon knows it.
        case piece(Int, sha256: SHA256Digest? = nil)
        /// The task is complete, or its fetch ended without it (`failure`).
        case ended(failure: String?)
    }

    /// A registration; ``cancel()`` ends it.
    public final class Listener: Sendable {
        let id: TaskID
        let token: Int
        weak let hub: PieceArrivals?
        init(id: TaskID, token: Int, hub: PieceArrivals) { self.id = id; self.token = token; self.hub = hub }
        public func cancel() { hub?.remove(self) }
    }

    private struct State {
        var listeners: [TaskID: [Int: @Sendable (Event) -> Void]] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Calls `handler` for every later event of `id` until the listener is cancelled.
    public func listen(_ id: TaskID, _ handler: @escaping @Sendable (Event) -> Void) -> Listener {
        state.withLock { s in
            s.next += 1
            s.listeners[id, default: [:]][s.next] = handler
            return Listener(id: id, token: s.next, hub: self)
        }
    }

    func remove(_ l: Listener) {
        state.withLock { s in
            s.listeners[l.id]?[l.token] = nil
            if s.listeners[l.id]?.isEmpty == true { s.listeners[l.id] = nil }
        }
    }

    public func announce(_ id: TaskID, _ event: Event) {
        let handlers = state.withLock { s in s.listeners[id].map { Array($0.values) } ?? [] }
        for h in handlers { h(event) }
    }

    /// Listeners now (tests, metrics).
    public var listenerCount: Int { state.withLock { $0.listeners.values.reduce(0) { $0 + $1.count } } }
}

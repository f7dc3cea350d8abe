import Synchronization
import HTTPServer

/// A streamed body that sends `first` and then nothing until it is cancelled (a quiet
/// availability feed): shutdown and feed handling must not wait on it.
public final class QuietStream: StreamBodySource {
    private let state: Mutex<(first: [UInt8]?, waiting: (@Sendable ([UInt8]?) -> Void)?, cancelled: Bool)>
    public init(_ first: [UInt8]) { state = Mutex((first, nil, false)) }
    public func next(_ deliver: @escaping @Sendable ([UInt8]?) -> Void) {
        let now = state.withLock { s -> [UInt8]?? in
            if s.cancelled { return .some(nil) }
            if let f = s.first { s.first = nil; return .some(f) }
            s.waiting = deliver
            return nil
        }
        if let now { deliver(now) }
    }
    public func cancel() {
        let w = state.withLock { s in s.cancelled = true; defer { s.waiting = nil }; return s.waiting }
        w?(nil)
    }
}

/// A streamed body that sends one byte per `interval` (a parent that drips), until cancelled.
public final class DripStream: StreamBodySource {
    private let state = Mutex<(task: Task<Void, Never>?, cancelled: Bool)>((nil, false))
    private let interval: Duration
    public init(interval: Duration = .seconds(1)) { self.interval = interval }
    public func next(_ deliver: @escaping @Sendable ([UInt8]?) -> Void) {
        let interval = self.interval
        let cancelled = state.withLock { s -> Bool in
            if s.cancelled { return true }
            s.task = Task {
                try? await Task.sleep(for: interval)
                deliver(Task.isCancelled ? nil : [0x44])
            }
            return false
        }
        if cancelled { deliver(nil) }
    }
    public func cancel() {
        let t = state.withLock { s in s.cancelled = true; return s.task }
        t?.cancel()
    }
}

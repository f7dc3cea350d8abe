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

import Synchronization

/// Counters the server keeps for `/metrics`. Updated from every loop.
public final class ServerMetrics: Sendable {
    struct Key: Hashable { var route: String; var status: Int }
    private let requests = Mutex<[Key: Int]>([:])
    private let bytes = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)

    public init() {}

    func recordRequest(route: String, status: Int) {
        requests.withLock { $0[Key(route: route, status: status), default: 0] += 1 }
    }
    func addBytes(_ n: Int) { bytes.add(n, ordering: .relaxed) }
    func connectionOpened() { connections.add(1, ordering: .relaxed) }
    func connectionClosed() { connections.subtract(1, ordering: .relaxed) }

    public var activeConnections: Int { connections.load(ordering: .relaxed) }
    public var responseBytes: Int { bytes.load(ordering: .relaxed) }
    /// (route, status, count), sorted.
    public var requestCounts: [(route: String, status: Int, count: Int)] {
        requests.withLock { $0.map { ($0.key.route, $0.key.status, $0.value) } }.sorted { ($0.route, $0.status) < ($1.route, $1.status) }
    }
}

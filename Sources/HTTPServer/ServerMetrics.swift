import DarterCore
import Synchronization

/// Counters the server keeps for `/metrics`. Updated from every loop.
public final class ServerMetrics: Sendable {
    struct Key: Hashable { var route: String; var status: Int }
    private let requests = Mutex<[Key: Int]>([:])
    private let bytes = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)
    private let uploaded = Atomic<Int>(0)
    /// From a request's last byte received to its response's last byte sent (or the
    /// connection's end), by route.
    public let requestDurations = HistogramFamily(name: "darter_http_request_duration_seconds",
                                                  help: "Time from a request's last byte received to its response's last byte sent, by route.",
                                                  label: "route")

    public init() {}

    func recordRequest(route: String, status: Int) {
        requests.withLock { $0[Key(route: route, status: status), default: 0] += 1 }
    }
    func addBytes(_ n: Int) { bytes.add(n, ordering: .relaxed) }
    /// A response ended: its duration, and the body bytes it sent from a file body (content and
    /// pieces: what `darter_upload_bytes_total` counts).
    func recordResponse(_ duration: Histogram, seconds: Double, fileBodyBytes: Int) {
        duration.observe(seconds)
        if fileBodyBytes > 0 { uploaded.add(fileBodyBytes, ordering: .relaxed) }
    }
    func connectionOpened() { connections.add(1, ordering: .relaxed) }
    func connectionClosed() { connections.subtract(1, ordering: .relaxed) }

    public var activeConnections: Int { connections.load(ordering: .relaxed) }
    public var responseBytes: Int { bytes.load(ordering: .relaxed) }
    /// Content and piece body bytes sent (``recordResponse(_:seconds:fileBodyBytes:)``).
    public var uploadBytes: Int { uploaded.load(ordering: .relaxed) }
    /// (route, status, count), sorted.
    public var requestCounts: [(route: String, status: Int, count: Int)] {
        requests.withLock { $0.map { ($0.key.route, $0.key.status, $0.value) } }.sorted { ($0.route, $0.status) < ($1.route, $1.status) }
    }

    /// What every server shows in `/metrics`: requests by route and status, their durations,
    /// response and upload bytes, open connections.
    public var exposition: String {
        var out = "# HELP darter_http_requests_total HTTP requests answered, by route and status.\n# TYPE darter_http_requests_total counter\n"
        for r in requestCounts {
            out += "darter_http_requests_total{route=\"\(r.route)\",status=\"\(r.status)\"} \(r.count)\n"
        }
        out += requestDurations.exposition
        out += """
        # HELP darter_http_response_bytes_total Response bytes sent (heads and bodies).
        # TYPE darter_http_response_bytes_total counter
        darter_http_response_bytes_total \(responseBytes)
        # HELP darter_upload_bytes_total Content and piece body bytes sent to clients and children.
        # TYPE darter_upload_bytes_total counter
        darter_upload_bytes_total \(uploadBytes)
        # HELP darter_http_connections_active Open client connections.
        # TYPE darter_http_connections_active gauge
        darter_http_connections_active \(activeConnections)

        """
        return out
    }
}

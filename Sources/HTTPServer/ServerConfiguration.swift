import DarterIO

/// How response bodies that live in files reach the socket.
public enum ServeMode: String, Sendable, CaseIterable {
    /// READ into a buffer linked to SEND (one submission per chunk).
    case copy
    /// sendfile(2) on a non-blocking socket, POLLOUT when it is full.
    case sendfile
    /// SPLICE file → pipe → socket, linked.
    case splice
    /// READ into a registered buffer, then SEND_ZC.
    case zerocopy
    /// Per response: sendfile for bodies up to ``ServerConfiguration/smallBodyLimit``, copy
    /// for larger ones.
    case mixed

    /// Chosen by `tools/bench serve` on this machine's loopback (see docs/API.md): on 64 KiB
    /// objects sendfile beat copy by ~4 % (wrk -c64, interleaved), on 1 MiB ranges and 1 GiB
    /// streams copy beat sendfile.
    public static let measuredDefault: ServeMode = .mixed

    /// Whether sockets must be non-blocking (sendfile runs synchronously on the loop).
    var usesSendfile: Bool { self == .sendfile || self == .mixed }
}

public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 65001
    /// Event loops (threads), one listener each with SO_REUSEPORT.
    public var loops = Socket.processorCount
    public var serveMode = ServeMode.measuredDefault
    /// Open connections across all loops; past it accepting pauses (backpressure).
    public var maxConnections = 10_000
    /// Seconds a client may take to send a complete request head.
    public var headerTimeout: Int64 = 10
    /// Seconds an idle keep-alive connection stays open.
    public var idleTimeout: Int64 = 60
    /// Seconds a response may make no progress before the connection is dropped.
    public var sendTimeout: Int64 = 60
    /// Bytes per chunk of a file body (one READ + SEND, or one splice).
    public var chunkSize = 1 << 20
    /// In `mixed` mode, bodies up to this many bytes go out with sendfile.
    public var smallBodyLimit: Int64 = 256 << 10
    /// Largest request body collected in memory for a handler (over it: 413). A handler that
    /// streams a body (``HTTPHandler/bodyDisposition(for:client:)``) has no limit from the server.
    public var maxBufferedBodyLength = 1 << 20
    /// Receive buffer per connection.
    public var receiveBufferSize = 8 << 10
    /// Registered send buffers per loop (copy and zerocopy modes).
    public var registeredBuffersPerLoop = 16
    /// Paces the bytes of file bodies (content and pieces) over all connections together
    /// (`--upload-rate`); heads, small in-memory bodies and streams (feeds) are not counted.
    /// Nil: unlimited.
    public var uploadLimit: RateLimiter? = nil
    /// Whether clients on this host (loopback, or this host's own address) are paced too. Off by default: the limit is for
    /// the network, and this host's own `darter get` or containerd reading from its peer would
    /// otherwise share it with the children the peer serves (measured, 8 peers each limited to
    /// its link: 2.25x ideal instead of 1.50x).
    public var uploadLimitCoversLoopback = false

    public init() {}
}

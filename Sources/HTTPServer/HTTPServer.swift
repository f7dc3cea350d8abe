#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO
import HTTPCore
import Synchronization

/// The HTTP/1.1 server: on each event loop its own SO_REUSEPORT listener, accepting with
/// multishot accept and serving connections with the handler's responses.
public final class HTTPServer: Sendable {
    public let configuration: ServerConfiguration
    public let metrics: ServerMetrics
    private let loops: [LoopServer]
    /// The loops, when the server made them (it then stops them at shutdown).
    private let ownGroup: EventLoopGroup?
    /// The port actually bound (useful with port 0).
    public let port: UInt16

    /// Serves on `group`'s loops (shared with clients, e.g. the origin fetches), or on loops of
    /// its own (``ServerConfiguration/loops``, with registered send buffers) when nil.
    public init(configuration: ServerConfiguration, handler: any HTTPHandler, metrics: ServerMetrics = ServerMetrics(),
                group: EventLoopGroup? = nil) throws(Errno) {
        self.configuration = configuration
        self.metrics = metrics
        Socket.raiseOpenFileLimit()
        let own = group == nil ? try Self.makeGroup(configuration) : nil
        let group = group ?? own!
        var loops: [LoopServer] = []
        var port = configuration.port
        let perLoop = max(1, configuration.maxConnections / group.loops.count)
        for loop in group.loops {
            let listener = try Socket.listen(host: configuration.host, port: port, reusePort: true)
            if port == 0 { port = Socket.localPort(listener) }  // the other loops join the same port
            loops.append(LoopServer(loop: loop, listener: listener, configuration: configuration, handler: handler,
                                    metrics: metrics, connectionLimit: perLoop))
        }
        self.loops = loops
        self.port = port
        ownGroup = own
    }

    /// The loops a server with ``ServerConfiguration`` `configuration` runs on: registered send
    /// buffers of its chunk size (none for sendfile, which needs no buffer).
    public static func makeGroup(_ configuration: ServerConfiguration) throws(Errno) -> EventLoopGroup {
        try EventLoopGroup(count: configuration.loops,
                           fixedBuffersPerLoop: configuration.serveMode == .sendfile ? 0 : configuration.registeredBuffersPerLoop,
                           fixedBufferSize: configuration.chunkSize)
    }

    /// Chunk-sized send buffers the loops have allocated (for tests).
    func chunkBuffersAllocated() async -> Int {
        var total = 0
        for l in loops {
            total += await withCheckedContinuation { c in l.loop.execute { [l] in c.resume(returning: l.chunkBuffersAllocated) } }
        }
        return total
    }

    /// Starts accepting on every loop.
    public func start() {
        for l in loops { l.loop.execute { [l] in l.begin() } }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let in-flight responses
    /// finish (up to `grace`), then end the loops.
    public func shutdown(grace: Duration = .seconds(10)) async {
        for l in loops { l.loop.execute { [l] in l.beginShutdown() } }
        let deadline = ContinuousClock.now + grace
        while metrics.activeConnections > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for l in loops { l.loop.execute { [l] in l.closeAll() } }
        try? await Task.sleep(for: .milliseconds(50))
        ownGroup?.shutdown()
    }
}

/// The server's state on one loop. Confined to that loop's thread.
final class LoopServer: @unchecked Sendable {
    let loop: EventLoop
    let listener: FileDescriptor
    let configuration: ServerConfiguration
    let handler: any HTTPHandler
    let metrics: ServerMetrics
    let connectionLimit: Int
    private var connections: [Int32: Connection] = [:]
    private var accepting = false
    private(set) var stopping = false
    /// Spare send buffers: chunk-sized ones (a body copied through memory) and small ones (a
    /// head, a body sent by sendfile or splice, a short body from memory).
    private var freeBuffers: [SendBuffer] = []
    private var freeSmallBuffers: [SendBuffer] = []
    /// Chunk-sized send buffers allocated so far (for tests: responses that copy no file body
    /// must not take one).
    private(set) var chunkBuffersAllocated = 0
    private var dateSecond: Int64 = -1
    /// `darter_http_request_duration_seconds` by route, found on this loop without a lock or a
    /// hash: routes are a dozen short strings, compared in a few nanoseconds each.
    private var durations: [(route: String, histogram: Histogram)] = []
    private var dateValue = ""

    init(loop: EventLoop, listener: FileDescriptor, configuration: ServerConfiguration, handler: any HTTPHandler,
         metrics: ServerMetrics, connectionLimit: Int) {
        self.loop = loop
        self.listener = listener
        self.configuration = configuration
        self.handler = handler
        self.metrics = metrics
        self.connectionLimit = connectionLimit
    }

    func begin() {
        loop.assertInLoop()
        startAccepting()
        scheduleTick()
    }

    private func startAccepting() {
        guard !accepting, !stopping, connections.count < connectionLimit else { return }
        accepting = true
        loop.acceptMultishot(listener, nonBlocking: configuration.serveMode.usesSendfile) { [self] r, more in
            if case .success(let fd) = r { accepted(fd) }
            if !more {
                accepting = false
                startAccepting()
            }
        }
    }

    private func accepted(_ fd: FileDescriptor) {
        if stopping { Socket.close(fd); return }
        Socket.setNoDelay(fd)
        let c = Connection(fd: fd, owner: self)
        connections[fd.rawValue] = c
        metrics.connectionOpened()
        // At the cap, stop accepting: new clients wait in the kernel's backlog.
        if connections.count >= connectionLimit && accepting { loop.cancelAll(on: listener) }
        c.start()
    }

    func requestDuration(route: String) -> Histogram {
        if let d = durations.first(where: { $0.route == route }) { return d.histogram }
        let h = metrics.requestDurations.series(route)
        durations.append((route, h))
        return h
    }

    func remove(_ c: Connection) {
        guard connections.removeValue(forKey: c.fd.rawValue) != nil else { return }
        metrics.connectionClosed()
        startAccepting()
    }

    // MARK: Timeouts

    private func scheduleTick() {
        loop.schedule(after: .milliseconds(500)) { [self] in
            tick()
            if !stopping || !connections.isEmpty { scheduleTick() }
        }
    }

    private func tick() {
        let now = monotonicMilliseconds()
        var responding = 0
        // Hand spare send buffers back when nothing is being sent (memory stays bounded).
        defer {
            if responding == 0 && freeBuffers.count > 4 { freeBuffers.removeLast(freeBuffers.count - 4) }
            if responding == 0 && freeSmallBuffers.count > 16 { freeSmallBuffers.removeLast(freeSmallBuffers.count - 16) }
        }
        for c in connections.values {
            let limit: Int64
            switch c.timeoutPhase {
            case .idle: limit = configuration.idleTimeout
            case .readingHead: limit = configuration.headerTimeout
            // A handler may wait for what it answers with (a piece still arriving, up to a
            // minute): its time is its own, bounded only against handlers that never answer.
            case .handling: limit = configuration.sendTimeout + 65; responding += 1
            case .responding: limit = configuration.sendTimeout; responding += 1
            // Held back by --upload-rate: its own timer ends the wait; that is not a stall.
            case .waitingForUploadRate: responding += 1; continue
            case .none: continue
            }
            if now - c.phaseStarted > limit * 1000 { c.close() }
        }
    }

    // MARK: Shutdown

    func beginShutdown() {
        stopping = true
        if accepting { loop.cancelAll(on: listener) }
        Socket.close(listener)
        for c in Array(connections.values) { c.stopAfterResponse() }
    }

    func closeAll() {
        for c in Array(connections.values) { c.close() }
    }

    // MARK: Shared per-loop resources

    /// Bytes in a small send buffer: a head with room to spare.
    static let smallBufferSize = 16 << 10

    /// A send buffer for one response. `chunk`: a chunk-sized one, registered with the ring when
    /// one is free (a file body copied through memory); else a small one. Every response used to
    /// take a chunk (1 MiB) even to send a head before sendfile: past the 64 kept per loop each
    /// was a fresh mapping, zero-filled, so a seed serving 64 KiB objects to 256 connections did
    /// 4,355 requests/s against 39,082 at 64 (darter bench on loopback, the same CPU); with small
    /// buffers 57,791 at 256 and 47,640 at 64 (measured the same way, the same hour).
    func takeBuffer(chunk: Bool) -> SendBuffer {
        if !chunk { return freeSmallBuffers.popLast() ?? SendBuffer(IOBuffer(capacity: Self.smallBufferSize)) }
        if let b = freeBuffers.popLast() { return b }
        chunkBuffersAllocated += 1
        return SendBuffer(loop.makeBuffer(capacity: configuration.chunkSize))
    }

    func returnBuffer(_ b: SendBuffer) {
        // Keep a bounded stock; the rest go back to the registered pool or the allocator.
        if b.buffer.capacity < configuration.chunkSize {
            if freeSmallBuffers.count < 1024 { freeSmallBuffers.append(b) }
        } else if freeBuffers.count < 64 {
            freeBuffers.append(b)
        }
    }

    /// The Date header value, formatted once per second.
    func dateHeader() -> String {
        let second = SystemCalls.wallClockSeconds()
        if second != dateSecond {
            dateSecond = second
            dateValue = HTTPDate.format(epochSeconds: dateSecond)
        }
        return dateValue
    }
}

import DarterIO
import Dispatch
import HTTPCore
import Synchronization

/// Settings of an ``HTTPClient``.
public struct HTTPClientConfiguration: Sendable {
    /// Connections kept to one host:port at most.
    public var maxConnectionsPerHost = 4
    /// Requests outstanding on one connection (pipelined: sent before the earlier responses
    /// have come). 1 turns pipelining off.
    public var pipelineDepth = 4
    /// An idle pooled connection is closed after this.
    public var idleTimeout: Duration = .seconds(30)
    public var connectTimeout: Duration = .seconds(10)
    /// Each connection's buffer for response heads (and the body bytes that come with them;
    /// the rest of a body is received straight into the handler's buffers).
    public var headBufferSize = 16 << 10
    /// Body receives of at least this many bytes use MSG_WAITALL (one completion per piece
    /// rather than one per segment the network delivers).
    public var waitAllThreshold = 64 << 10
    public var limits = HTTPResponseParser.Limits()
    public var userAgent = "darter"
    /// Asked just before each connect (host as the URL names it, the address about to be
    /// used): false refuses that address (an origin allowlist; SSRF defence). Nil allows all.
    public var connectFilter: (@Sendable (_ host: String, _ address: SocketAddress) -> Bool)?
    public init() {}
}

/// A handle on one request: cancel it, or resume reading after its handler paused.
public final class HTTPClientTask: Sendable {
    private let pending: LoopBound<PendingRequest>

    init(_ pending: PendingRequest, loop: EventLoop) {
        self.pending = LoopBound(pending, loop: loop)
    }

    /// Ends the request with ``HTTPClientError/cancelled`` (its handler hears it). If it was
    /// already on a connection, that connection is closed (the other requests on it go on
    /// another). A no-op once it has ended. Callable from any thread.
    public func cancel() {
        pending.loop.execute { [pending] in pending.value.fail(.cancelled) }
    }

    /// Reading resumes after the handler returned nil from ``HTTPResponseHandler/bodySpace()``.
    /// Callable from any thread.
    public func resume() {
        pending.loop.execute { [pending] in pending.value.connection?.resumeReading() }
    }
}

/// An HTTP/1.1 client on the project's event loops: keep-alive connection pools per host:port
/// (a capacity and an idle timeout), requests pipelined on one connection, bodies received
/// straight into the handler's buffers (piece buffers: no copy beyond the few bytes that come
/// with a head), connect timeouts, per-request deadlines and cancellation. It does not retry a
/// failed request (backoff is the caller's policy) except for the one case HTTP allows: a GET
/// or HEAD whose connection closed before any byte of its response came is sent once more on
/// another connection.
public final class HTTPClient: Sendable {
    public let group: EventLoopGroup
    public let configuration: HTTPClientConfiguration
    private let pools = Mutex<[PoolKey: ConnectionPool]>([:])

    struct PoolKey: Hashable { var host: String; var port: UInt16 }

    public init(group: EventLoopGroup, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.group = group
        self.configuration = configuration
    }

    /// Starts `request`; `handler` is called on the loop of the request's host pool. Returns at once.
    @discardableResult
    public func execute(_ request: HTTPClientRequest, handler: any HTTPResponseHandler) -> HTTPClientTask {
        let pool = self.pool(for: request.url)
        let pending = PendingRequest(request: request, bytes: request.serialized(userAgent: configuration.userAgent), handler: handler)
        let task = HTTPClientTask(pending, loop: pool.loop)
        let bound = LoopBound(pending, loop: pool.loop)
        pool.loop.execute { pool.enqueue(bound.value) }
        return task
    }

    /// Sends `request` and collects its body (at most `bodyLimit` bytes).
    public func send(_ request: HTTPClientRequest, bodyLimit: Int = 1 << 20) async throws(HTTPClientError) -> HTTPClientResponse {
        try await run(request, CollectingHandler(limit: bodyLimit))
    }

    /// Sends `request` and receives a 2xx response's body into `buffer[range]` (an error if
    /// longer; `bodyLength` says how much came). Other statuses' bodies are collected instead.
    public func send(_ request: HTTPClientRequest, into buffer: SharedIOBuffer, range: Range<Int>) async throws(HTTPClientError) -> HTTPClientResponse {
        try await run(request, BufferHandler(buffer: buffer, range: range))
    }

    private func run(_ request: HTTPClientRequest, _ handler: some CompletingHandler) async throws(HTTPClientError) -> HTTPClientResponse {
        let result: Result<HTTPClientResponse, HTTPClientError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                handler.whenDone { continuation.resume(returning: $0) }
                let task = execute(request, handler: handler)
                handler.task.withLock { $0 = task }
                if Task.isCancelled { task.cancel() }  // cancelled before the handle was there
            }
        } onCancel: {
            handler.task.withLock { $0 }?.cancel()
        }
        // The handler holds the task, whose pending request holds the handler: break the cycle,
        // or every buffer received into stays allocated (a peer's RSS grew by each 4 MiB piece).
        handler.task.withLock { $0 = nil }
        return try result.get()
    }

    /// The pool of `url`'s host:port, made on first use on the caller's loop (if the caller is
    /// on one of the group's) or the next one.
    private func pool(for url: HTTPClientURL) -> ConnectionPool {
        let key = PoolKey(host: url.host.lowercased(), port: url.port)
        return pools.withLock { pools in
            if let p = pools[key] { return p }
            let p = ConnectionPool(host: key.host, port: key.port, loop: group.current ?? group.next(), configuration: configuration)
            pools[key] = p
            return p
        }
    }

    /// Open connections over all pools (tests, metrics).
    public func connectionCount() async -> Int {
        let all = pools.withLock { Array($0.values) }
        var n = 0
        for p in all {
            n += await withCheckedContinuation { c in p.loop.execute { c.resume(returning: p.connectionCountOnLoop) } }
        }
        return n
    }
}

/// A handler the async calls wait on.
protocol CompletingHandler: HTTPResponseHandler, Sendable {
    var task: Mutex<HTTPClientTask?> { get }
    func whenDone(_ done: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void)
}

/// Collects a body in memory, up to a limit.
final class CollectingHandler: CompletingHandler, @unchecked Sendable {
    // Loop-confined after `whenDone` (set before the request starts).
    let task = Mutex<HTTPClientTask?>(nil)
    private let limit: Int
    private var done: (@Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void)?
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    private var scratch: SharedIOBuffer?
    private var overflow = false

    init(limit: Int) { self.limit = limit }

    func whenDone(_ done: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void) { self.done = done }

    func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool {
        self.head = head
        if case .contentLength(let n) = body, n > Int64(limit) { overflow = true; return false }
        return true
    }

    func bodySpace() -> BufferSpace? {
        if scratch == nil { scratch = SharedIOBuffer(IOBuffer(capacity: 64 << 10)) }
        return BufferSpace(buffer: scratch!, range: 0..<scratch!.buffer.capacity)
    }

    func bodyReceived(_ count: Int) {
        if body.count + count > limit { overflow = true }
        if !overflow { body += scratch!.buffer.bytes(0..<count) }
    }

    func responseEnded(_ result: Result<Void, HTTPClientError>) {
        done?(outcome(result))
        done = nil
    }

    /// The response as collected, given how it ended.
    func outcome(_ result: Result<Void, HTTPClientError>) -> Result<HTTPClientResponse, HTTPClientError> {
        if overflow { return .failure(.bodyTooLarge(limit: limit)) }
        return result.map { HTTPClientResponse(head: head!, body: body, bodyLength: body.count) }
    }
}

/// Receives a 2xx body into a caller's buffer range; other statuses' bodies are collected (up
/// to 64 KiB, the reason text).
final class BufferHandler: CompletingHandler, @unchecked Sendable {
    let task = Mutex<HTTPClientTask?>(nil)
    private let buffer: SharedIOBuffer
    private let range: Range<Int>
    private var filled = 0
    private var done: (@Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void)?
    private var head: HTTPResponseHead?
    private var errorBody: CollectingHandler?
    private var overflow = false
    private var discard: SharedIOBuffer?
    private var lastSpaceDiscards = false

    init(buffer: SharedIOBuffer, range: Range<Int>) {
        self.buffer = buffer
        self.range = range
    }

    func whenDone(_ done: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Void) { self.done = done }

    func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool {
        self.head = head
        if !(200..<300).contains(head.status) {
            errorBody = CollectingHandler(limit: 64 << 10)
            return errorBody!.responseHead(head, body: .none)
        }
        if case .contentLength(let n) = body, n > Int64(range.count) { overflow = true; return false }
        return true
    }

    func bodySpace() -> BufferSpace? {
        if let errorBody { return errorBody.bodySpace() }
        lastSpaceDiscards = filled == range.count
        if !lastSpaceDiscards { return BufferSpace(buffer: buffer, range: (range.lowerBound + filled)..<range.upperBound) }
        // Full: should the body go on, the rest lands in scratch space and the request fails.
        if discard == nil { discard = SharedIOBuffer(IOBuffer(capacity: 64 << 10)) }
        return BufferSpace(buffer: discard!, range: 0..<discard!.buffer.capacity)
    }

    func bodyReceived(_ count: Int) {
        if let errorBody { return errorBody.bodyReceived(count) }
        if lastSpaceDiscards { overflow = true } else { filled += count }
    }

    func responseEnded(_ result: Result<Void, HTTPClientError>) {
        var outcome: Result<HTTPClientResponse, HTTPClientError>
        switch result {
        case .failure(let e): outcome = .failure(e)
        case .success:
            if overflow { outcome = .failure(.bodyTooLarge(limit: range.count)) }
            else if let errorBody {
                outcome = errorBody.outcome(.success(()))
            } else {
                outcome = .success(HTTPClientResponse(head: head!, body: [], bodyLength: filled))
            }
        }
        if case .failure(.aborted) = result, overflow { outcome = .failure(.bodyTooLarge(limit: range.count)) }
        done?(outcome)
        done = nil
    }
}

// MARK: - Requests and pools (loop-confined)

/// A request from submission to its end. Confined to its pool's loop.
final class PendingRequest {
    let request: HTTPClientRequest
    let bytes: [UInt8]
    let handler: any HTTPResponseHandler
    var pool: ConnectionPool?
    /// The connection it is on (sent or queued to send), if any.
    var connection: ClientConnection?
    var deadline: TimerID?
    var finished = false
    /// It was sent again after its first connection closed under it.
    var resent = false

    init(request: HTTPClientRequest, bytes: [UInt8], handler: any HTTPResponseHandler) {
        self.request = request
        self.bytes = bytes
        self.handler = handler
    }

    /// Ends the request (once): tells the handler, stops its deadline, and takes it off its
    /// connection, which closes if the request's response had begun or it was in flight.
    func fail(_ error: HTTPClientError) {
        guard !finished else { return }
        if let c = connection { return c.abandon(self, error) }
        pool?.removeWaiting(self)
        finish(.failure(error))
    }

    func finish(_ result: Result<Void, HTTPClientError>) {
        guard !finished else { return }
        finished = true
        connection = nil
        if let d = deadline, let pool { pool.loop.cancelTimer(d) }
        deadline = nil
        handler.responseEnded(result)
    }
}

/// The connections to one host:port, all on one loop, and the requests waiting for one.
final class ConnectionPool: @unchecked Sendable {
    let host: String
    let port: UInt16
    let loop: EventLoop
    let configuration: HTTPClientConfiguration
    // Loop-confined state.
    private var addresses: [SocketAddress] = []
    private var nextAddress = 0
    /// Addresses a connect failed to since the last success: once every address has, requests
    /// fail instead of trying again (several connects to one address count once).
    private var failedAddresses = Set<SocketAddress>()
    private var resolving = false
    private var connections: [ClientConnection] = []
    private var waiting: [PendingRequest] = []

    init(host: String, port: UInt16, loop: EventLoop, configuration: HTTPClientConfiguration) {
        self.host = host
        self.port = port
        self.loop = loop
        self.configuration = configuration
        if let literal = SocketAddress(ipLiteral: host, port: port) { addresses = [literal] }
    }

    var connectionCountOnLoop: Int { loop.assertInLoop(); return connections.count }

    func enqueue(_ r: PendingRequest) {
        loop.assertInLoop()
        r.pool = self
        if let d = r.request.deadline {
            r.deadline = loop.schedule(after: d) { [r] in r.fail(.deadlineExceeded) }
        }
        waiting.append(r)
        dispatch()
    }

    /// Puts a request that got no byte of its response back at the front of the queue.
    func requeue(_ r: PendingRequest) {
        r.connection = nil
        r.resent = true
        waiting.insert(r, at: 0)
    }

    func removeWaiting(_ r: PendingRequest) {
        waiting.removeAll { $0 === r }
    }

    /// Hands waiting requests to connections: an idle one first; else a new connection while
    /// under the cap; else pipelined onto the least busy one while under the depth.
    func dispatch() {
        loop.assertInLoop()
        while let r = waiting.first {
            let open = connections.filter(\.acceptsRequests)
            let least = open.min { $0.outstanding < $1.outstanding }
            if least == nil || least!.outstanding > 0, connections.count < configuration.maxConnectionsPerHost {
                guard let c = openConnection() else { return }
                waiting.removeFirst()
                c.assign(r)
                // Connect last: a connect that fails at once re-enters dispatch() through
                // connectionClosed, and the queue must already be as it looks from here.
                c.connect()
                continue
            }
            guard let c = least, c.outstanding < configuration.pipelineDepth else { return }
            waiting.removeFirst()
            c.assign(r)
        }
    }

    /// A new connection (connecting: it takes requests at once and sends them once open), or
    /// nil while the host's addresses are being looked up.
    private func openConnection() -> ClientConnection? {
        if addresses.isEmpty {
            resolve()
            return nil
        }
        if let allows = configuration.connectFilter {
            var tries = 0
            while tries < addresses.count && !allows(host, addresses[nextAddress % addresses.count]) { nextAddress += 1; tries += 1 }
            if tries == addresses.count {
                let failed = waiting
                waiting = []
                for r in failed { r.finish(.failure(.refused(host: host, address: addresses[0].description))) }
                return nil
            }
        }
        // The next address that has not refused since the last success.
        for _ in 0..<addresses.count where failedAddresses.contains(addresses[nextAddress % addresses.count]) { nextAddress += 1 }
        let address = addresses[nextAddress % addresses.count]
        let c = ClientConnection(address: address, pool: self)
        connections.append(c)
        return c
    }

    /// getaddrinfo blocks: it runs on a Dispatch thread and the answer comes back to the loop.
    private func resolve() {
        guard !resolving else { return }
        resolving = true
        let (host, port) = (self.host, self.port)
        let back = loop.hop { [self] (result: Result<[SocketAddress], ResolveError>) in
            resolving = false
            switch result {
            case .success(let a):
                addresses = a
                dispatch()
            case .failure(let e):
                let failed = waiting
                waiting = []
                for r in failed { r.finish(.failure(.resolveFailed(e.description))) }
            }
        }
        DispatchQueue.global().async {
            back(Result { () throws(ResolveError) in try Socket.resolve(host: host, port: port) })
        }
    }

    func connected() { failedAddresses = [] }

    /// A connection has closed: it is forgotten; its requests that got no response byte are
    /// sent again once (GET, HEAD) or fail with `error`. After a failed connect they wait for
    /// the host's next address, and fail once every address has refused.
    func connectionClosed(_ c: ClientConnection, unanswered: [PendingRequest], error: HTTPClientError, connectFailed: Bool) {
        connections.removeAll { $0 === c }
        var retryAll = false
        if connectFailed {
            nextAddress += 1
            failedAddresses.insert(c.address)
            retryAll = failedAddresses.count < addresses.count
            if !retryAll { failedAddresses = [] }
        }
        for r in unanswered.reversed() {
            if retryAll {
                r.connection = nil
                waiting.insert(r, at: 0)
            } else if !connectFailed && r.request.isIdempotent && !r.resent {
                requeue(r)
            } else {
                r.finish(.failure(error))
            }
        }
        if connectFailed && !retryAll {
            // A name is looked up again next time (its addresses may have moved).
            if SocketAddress(ipLiteral: host, port: port) == nil { addresses = [] }
            // The host is down: what waits would only try the same addresses again.
            let failed = waiting
            waiting = []
            for r in failed { r.finish(.failure(error)) }
        }
        dispatch()
    }
}

extension HTTPClient {
    /// The addresses `host` resolves to now, as IP literals (`10.0.0.5`, `fd00::5`) in the
    /// resolver's order; an IP literal is its own answer. getaddrinfo blocks, so it runs on a
    /// Dispatch thread, never on an event loop or Swift's cooperative pool (as the pools' own
    /// lookups do). For callers that follow a name's addresses over time (a headless Service).
    public static func addresses(of host: String) async throws(HTTPClientError) -> [String] {
        let result = await withCheckedContinuation { (done: CheckedContinuation<Result<[SocketAddress], ResolveError>, Never>) in
            DispatchQueue.global().async {
                done.resume(returning: Result { () throws(ResolveError) in try Socket.resolve(host: host, port: 0) })
            }
        }
        switch result {
        case .success(let a): return a.map(\.hostLiteral)
        case .failure(let e): throw .resolveFailed(e.description)
        }
    }
}

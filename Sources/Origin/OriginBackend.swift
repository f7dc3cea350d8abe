import DarterCore
import DarterIO
import HTTPClient
import HTTPCore
import Synchronization

/// Where an origin's bytes come from, behind one interface (as Dragonfly's backend factory):
/// ``OriginBackends/backend(for:)`` picks one by the URL's scheme.
public protocol OriginBackend: Sendable {
    /// One transfer into `sink` (redirects followed). HTTP statuses ≥ 400 are not thrown: the
    /// head says so. Transport problems throw; a body shorter than its Content-Length throws
    /// `.transferFailed`; cancelling the task aborts the transfer (`.aborted`).
    func fetch(_ request: OriginRequest, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead
}

extension OriginClient: OriginBackend {}

/// The origin backends by scheme: `http` through the project's own client on the event loops
/// (bodies straight into piece buffers, no transfer thread, no copy out of libcurl's buffer),
/// `https` and `s3` through libcurl (TLS, SigV4), as are registry token flows (``RegistryClient``).
public struct OriginBackends: Sendable {
    public let curl: OriginClient
    public let http: HTTPOriginBackend?

    /// - Parameter http: nil sends plain-http origins through libcurl too.
    public init(curl: OriginClient, http: HTTPOriginBackend?) {
        self.curl = curl
        self.http = http
    }

    public func backend(for url: String) -> any OriginBackend {
        if let http, url.prefix(7).lowercased() == "http://" { return http }
        return curl
    }

    public func fetch(_ request: OriginRequest, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead {
        try await backend(for: request.url).fetch(request, into: sink)
    }
}

/// Plain-http origins over ``HTTPClient``: the origin configuration's allowlist is checked at
/// every connect (redirects included), redirects are followed (one to https goes on through
/// libcurl), a transfer that moves no byte for `lowSpeedTimeSeconds` while the sink has room
/// is a timeout, and an ``OriginDirectSink`` gets the body in its own buffers.
public final class HTTPOriginBackend: OriginBackend {
    public let client: HTTPClient
    public let configuration: OriginConfiguration
    let fallback: OriginClient

    /// Makes its own ``HTTPClient`` on `group`, with the allowlist as its connect filter.
    public init(group: EventLoopGroup, configuration: OriginConfiguration, fallback: OriginClient) {
        var c = HTTPClientConfiguration()
        c.userAgent = configuration.userAgent
        c.connectTimeout = .seconds(configuration.connectTimeoutSeconds)
        c.maxConnectionsPerHost = 16
        c.pipelineDepth = 1  // origins: one request per connection at a time (many break on pipelining)
        let allowlist = configuration.allowlist
        c.connectFilter = { host, address in allowlist.allowsConnection(host: host, address: address.addressBytes) }
        client = HTTPClient(group: group, configuration: c)
        self.configuration = configuration
        self.fallback = fallback
    }

    public func fetch(_ request: OriginRequest, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead {
        var url = request.url
        var redirects = 0
        var firstHost: String?
        var request = request
        while true {
            if Task.isCancelled { throw .aborted }
            let target: HTTPClientURL
            do { target = try HTTPClientURL(parsing: url) } catch { throw .invalidURL("\(url): \(error)") }
            // Credentials go only to the host they were given for (as libcurl does on redirects).
            if firstHost == nil { firstHost = target.hostHeader.lowercased() }
            if target.hostHeader.lowercased() != firstHost {
                request.headers.removeAll { ["authorization", "cookie", "proxy-authorization"].contains($0.0.lowercased()) }
            }
            var headers = HTTPHeaders()
            for (name, value) in request.headers {
                guard !name.isEmpty, !name.contains(where: { $0 == ":" || $0 == "\r" || $0 == "\n" || $0 == " " }),
                      !value.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                    throw .invalidURL("\(url): bad request header \(name)")
                }
                headers.add(name: name, value: value)
            }
            if let range = request.range {
                guard range.lowerBound >= 0, !range.isEmpty else { throw .invalidURL("\(url): empty range \(range)") }
                headers.add(name: "Range", value: range.upperBound == Int64.max ? "bytes=\(range.lowerBound)-" : "bytes=\(range.lowerBound)-\(range.upperBound - 1)")
            }
            let method = HTTPMethod(rawValue: request.method.uppercased())
            let adapter = SinkAdapter(sink: sink, effectiveURL: url, label: "\(method) \(url)", rateLimit: configuration.rateLimit)
            let outcome = await run(HTTPClientRequest(method: method, url: target, headers: headers), adapter)
            if let location = adapter.redirect {
                redirects += 1
                guard redirects <= configuration.maxRedirects else {
                    throw .tooManyRedirects("\(request.method) \(request.url): more than \(configuration.maxRedirects) redirects")
                }
                url = Self.resolve(location, against: target)
                if !url.lowercased().hasPrefix("http://") {
                    var next = request
                    next.url = url
                    return try await fallback.fetch(next, into: sink)
                }
                continue
            }
            switch outcome {
            case .success:
                if adapter.sinkAborted { throw .aborted }
                guard let head = adapter.head else { throw .transferFailed("\(adapter.label): no response") }
                return head
            case .failure(let e):
                if adapter.sinkAborted { throw .aborted }
                if adapter.stalled {
                    throw .timedOut("\(adapter.label): no byte for \(configuration.lowSpeedTimeSeconds) s")
                }
                throw Self.originError(e, label: adapter.label)
            }
        }
    }

    /// Runs one request; a watchdog ends it when it stalls while the sink has room.
    private func run(_ request: HTTPClientRequest, _ adapter: SinkAdapter) async -> Result<Void, HTTPClientError> {
        let limit = Int64(configuration.lowSpeedTimeSeconds) * 1000
        // The adapter holds the task, whose pending request holds the adapter (and its sink):
        // let go once the request ended, or each fetch's adapter stays allocated.
        defer { adapter.task.withLock { $0 = nil } }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<Void, HTTPClientError>, Never>) in
                adapter.onEnd = { c.resume(returning: $0) }
                let task = client.execute(request, handler: adapter)
                adapter.task.withLock { $0 = task }
                if Task.isCancelled { adapter.abort() }
                let watchdog = Task {
                    while !adapter.ended.load(ordering: .relaxed) {
                        try? await Task.sleep(for: .seconds(1))
                        if adapter.stalledFor() > limit {
                            adapter.stalled = true
                            task.cancel()
                            return
                        }
                    }
                }
                adapter.watchdog.withLock { $0 = watchdog }
            }
        } onCancel: {
            adapter.abort()
        }
    }

    static func originError(_ e: HTTPClientError, label: String) -> OriginError {
        switch e {
        case .invalidURL(let s): .invalidURL(s)
        case .resolveFailed(let s): .connectFailed("\(label): \(s)")
        case .connectFailed, .connectTimedOut: .connectFailed("\(label): \(e)")
        case .refused(let host, let address): .refused("\(label): connecting to \(address) for \(host) is not allowed")
        case .deadlineExceeded: .timedOut("\(label): \(e)")
        case .cancelled, .aborted: .aborted
        case .connectionClosed, .invalidResponse, .bodyTooLarge: .transferFailed("\(label): \(e)")
        }
    }

    /// A Location value against the URL it came from: absolute, scheme-relative, or a path.
    static func resolve(_ location: String, against base: HTTPClientURL) -> String {
        if location.contains("://") { return location }
        if location.hasPrefix("//") { return "http:" + location }
        if location.hasPrefix("/") { return "http://\(base.hostHeader)\(location)" }
        let path = base.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let dir = path.hasSuffix("/") ? path : String(path[...(path.lastIndex(of: "/") ?? path.startIndex)])
        return "http://\(base.hostHeader)\(dir.hasPrefix("/") ? dir : "/" + dir)\(location)"
    }
}

/// Bridges one HTTP client response to an ``OriginSink``. Called on the pool's loop.
final class SinkAdapter: HTTPResponseHandler, @unchecked Sendable {
    let sink: any OriginSink
    let direct: (any OriginDirectSink)?
    let effectiveURL: String
    let label: String
    let task = Mutex<HTTPClientTask?>(nil)
    let watchdog = Mutex<Task<Void, Never>?>(nil)
    let ended = Atomic<Bool>(false)
    /// Loop-confined below (and read by `fetch` after the end).
    var onEnd: (@Sendable (Result<Void, HTTPClientError>) -> Void)?
    var head: OriginResponseHead?
    var redirect: String?
    var sinkAborted = false
    var stalled = false
    private var staging: SharedIOBuffer?
    private var discarding = false
    /// --origin-rate: what the last bytes received cost, in nanoseconds to wait before the next.
    let rateLimit: RateLimiter?
    private var owedWait: Int64 = 0
    // The watchdog's view: the last progress (monotonic ms), and whether the sink paused us.
    private let lastProgress = Atomic<Int64>(SystemCalls.monotonicMilliseconds())
    private let waitingForSink = Atomic<Bool>(false)

    init(sink: any OriginSink, effectiveURL: String, label: String, rateLimit: RateLimiter? = nil) {
        self.sink = sink
        direct = sink as? any OriginDirectSink
        self.effectiveURL = effectiveURL
        self.label = label
        self.rateLimit = rateLimit
    }

    /// Milliseconds without progress while the sink had room (0 while it has none).
    func stalledFor() -> Int64 {
        waitingForSink.load(ordering: .relaxed) ? 0 : SystemCalls.monotonicMilliseconds() - lastProgress.load(ordering: .relaxed)
    }

    func abort() {
        task.withLock { $0 }?.cancel()
    }

    func responseHead(_ head: HTTPResponseHead, body: HTTPResponseBodyFraming) -> Bool {
        lastProgress.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed)
        if [301, 302, 303, 307, 308].contains(head.status), let location = head.headers.first("Location") {
            redirect = location
            discarding = true  // a redirect's body is not the object
            return true
        }
        var h = OriginResponseHead(status: head.status, headers: head.headers.map { (name: $0.name, value: $0.value) }, effectiveURL: effectiveURL)
        h.httpVersion = head.version == .http1_0 ? "1.0" : "1.1"
        self.head = h
        guard sink.receive(head: h) else { sinkAborted = true; return false }
        return true
    }

    func bodySpace() -> BufferSpace? {
        if let rateLimit { return pacedBodySpace(rateLimit) }
        return unpacedBodySpace()
    }

    /// Under --origin-rate: reading pauses (as for a sink with no room: not a stall) until the
    /// bytes already received are paid for, and a space is at most one chunk of the rate, so a
    /// piece buffer is not filled in one gulp.
    private func pacedBodySpace(_ limit: RateLimiter) -> BufferSpace? {
        if owedWait > 0 {
            let wait = owedWait
            owedWait = 0
            waitingForSink.store(true, ordering: .relaxed)
            Task { [self] in
                try? await Task.sleep(for: .nanoseconds(wait))
                waitingForSink.store(false, ordering: .relaxed)
                lastProgress.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed)
                task.withLock { $0 }?.resume()
            }
            return nil
        }
        guard let space = unpacedBodySpace() else { return nil }
        let end = min(space.range.upperBound, space.range.lowerBound + limit.chunk)
        return BufferSpace(buffer: space.buffer, range: space.range.lowerBound..<end)
    }

    private func unpacedBodySpace() -> BufferSpace? {
        if let direct, !discarding {
            let resume: @Sendable () -> Void = { [self] in
                waitingForSink.store(false, ordering: .relaxed)
                lastProgress.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed)
                task.withLock { $0 }?.resume()
            }
            waitingForSink.store(true, ordering: .relaxed)
            switch direct.bodySpace(orWake: resume) {
            case .space(let s):
                waitingForSink.store(false, ordering: .relaxed)
                return s
            case .wait:
                return nil
            case .abort:
                waitingForSink.store(false, ordering: .relaxed)
                sinkAborted = true
                abort()
                return nil
            }
        }
        if staging == nil { staging = SharedIOBuffer(IOBuffer(capacity: OriginClient.receiveBufferSize)) }
        return BufferSpace(buffer: staging!, range: 0..<staging!.buffer.capacity)
    }

    func bodyReceived(_ count: Int) {
        lastProgress.store(SystemCalls.monotonicMilliseconds(), ordering: .relaxed)
        if let rateLimit { owedWait = rateLimit.reserve(count) }
        if discarding || sinkAborted { return }
        let accepted: Bool
        if let direct {
            accepted = direct.bodyReceived(count)
        } else {
            accepted = OriginChunk.viewing(staging!.buffer, 0..<count) { sink.receive(body: $0) }
        }
        if !accepted {
            sinkAborted = true
            abort()
        }
    }

    func responseEnded(_ result: Result<Void, HTTPClientError>) {
        ended.store(true, ordering: .relaxed)
        watchdog.withLock { $0 }?.cancel()
        onEnd?(result)
        onEnd = nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import HTTPCore

/// One connection to a server, confined to its pool's loop. An explicit state machine
/// (``State``) whose illegal transitions crash. Requests are sent in order as they are assigned
/// (pipelined, up to the pool's depth) and their responses read in the same order: the first
/// request's response is the one being parsed. Head bytes go to a small buffer of its own; body
/// bytes go straight into the handler's buffers (`directBodyBytes`), so a 4 MiB piece lands in
/// its piece buffer with at most the head buffer's worth copied.
final class ClientConnection {
    enum State: CustomStringConvertible {
        case connecting, open, closing, closed
        var description: String {
            switch self {
            case .connecting: "connecting"
            case .open: "open"
            case .closing: "closing"
            case .closed: "closed"
            }
        }
        func allows(_ next: State) -> Bool {
            switch (self, next) {
            case (.connecting, .open), (.connecting, .closing), (.open, .closing), (.closing, .closed): true
            default: false
            }
        }
    }

    let address: SocketAddress
    let pool: ConnectionPool
    var loop: EventLoop { pool.loop }
    private var configuration: HTTPClientConfiguration { pool.configuration }
    private(set) var state = State.connecting
    private var fd = FileDescriptor(rawValue: -1)
    /// Assigned requests in order; the first one's response is the one being read.
    private var requests: [PendingRequest] = []
    private var sendQueue: [UInt8] = []
    private var sending = false
    /// The streamed body being sent (``HTTPClientRequest/bodySource``) and its bytes still to
    /// come; requests assigned meanwhile wait in `sendBacklog`.
    private var streamingBody: (source: any HTTPRequestBodySource, remaining: Int64)?
    private var sendBacklog: [PendingRequest] = []
    /// A streamed body's send failed: the server may have answered early (and closed), so the
    /// response is still read.
    private var sendFailed = false
    private let sendBuffer = SharedIOBuffer(IOBuffer(capacity: 16 << 10))
    private let headBuffer: SharedIOBuffer
    private var parser: HTTPResponseParser
    private var receiving = false
    private var paused = false
    private var peerClosed = false
    private var inBody = false
    /// Bytes of the first request's response have been taken: it can no longer be sent again.
    private var responseBegun = false
    /// The server said it closes after the current response: take no more requests.
    private var closingAfterResponse = false
    /// Operations whose completion is still to come (counted by ``track(_:then:)`` only).
    private var inFlight = 0
    private var idleTimer: TimerID?
    private var connectTimer: TimerID?
    private var closeError = HTTPClientError.connectionClosed("closed")
    /// Requests ended early (cancelled, past their deadline): told when the connection has closed.
    private var abandoned: [(PendingRequest, HTTPClientError)] = []
    private var connectFailed = false

    init(address: SocketAddress, pool: ConnectionPool) {
        self.address = address
        self.pool = pool
        headBuffer = SharedIOBuffer(IOBuffer(capacity: pool.configuration.headBufferSize))
        parser = HTTPResponseParser(limits: pool.configuration.limits)
    }

    var outstanding: Int { requests.count }
    var acceptsRequests: Bool { (state == .connecting || state == .open) && !closingAfterResponse }

    private func transition(to next: State) {
        precondition(state.allows(next), "client connection to \(address): illegal transition \(state) → \(next)")
        state = next
    }

    /// Starts an operation; its completion runs `then` unless the connection began closing
    /// meanwhile (the close goes on once nothing is in flight). The one place operations are counted.
    private func track<R>(_ start: (@escaping (R) -> Void) -> Void, then: @escaping (R) -> Void) {
        inFlight += 1
        start { [self] result in
            loop.assertInLoop()
            inFlight -= 1
            if state == .closing { return finishClosing() }
            then(result)
        }
    }

    // MARK: Connecting

    func connect() {
        loop.assertInLoop()
        do {
            fd = try Socket.makeStreamSocket(for: address)
        } catch {
            connectFailed = true
            return close(.connectFailed(address: address.description, error))
        }
        connectTimer = loop.schedule(after: configuration.connectTimeout) { [self] in
            connectTimer = nil
            connectFailed = true
            close(.connectTimedOut(address: address.description))
        }
        let (socket, to) = (fd, address)
        track({ loop.connect(socket, to: to, $0) }) { [self] (r: Result<Void, Errno>) in
            if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
            switch r {
            case .success:
                transition(to: .open)
                pool.connected()
                flushSends()
                process()
            case .failure(let e):
                connectFailed = true
                close(.connectFailed(address: to.description, e))
            }
        }
    }

    // MARK: Requests

    func assign(_ r: PendingRequest) {
        loop.assertInLoop()
        precondition(acceptsRequests, "request assigned to a \(state) connection")
        r.connection = self
        requests.append(r)
        if streamingBody != nil { sendBacklog.append(r) } else { queueSend(r) }
        if let t = idleTimer { loop.cancelTimer(t); idleTimer = nil }
        if state == .open { flushSends() }
    }

    /// `r` (on this connection) ends with `error`; the connection closes, since its place in the
    /// pipeline cannot be skipped, and the other requests on it go to another connection.
    func abandon(_ r: PendingRequest, _ error: HTTPClientError) {
        loop.assertInLoop()
        if let i = requests.firstIndex(where: { $0 === r }) {
            requests.remove(at: i)
            if i == 0 { responseBegun = false }
        }
        // Its end is told once the connection has closed: a receive into its buffer may still
        // be armed until then, and the caller may reuse the buffer the moment it hears.
        abandoned.append((r, error))
        if state == .connecting || state == .open { close(.connectionClosed("a request on it ended early")) } else { finishClosing() }
    }

    func resumeReading() {
        loop.assertInLoop()
        guard paused else { return }
        paused = false
        process()
    }

    private func queueSend(_ r: PendingRequest) {
        sendQueue += r.bytes
        if let source = r.request.bodySource, source.length > 0 { streamingBody = (source, source.length) }
    }

    private func flushSends() {
        guard state == .open, !sending, !sendFailed else { return }
        if sendQueue.isEmpty {
            if let body = streamingBody { return pullBody(body.source, remaining: body.remaining) }
            while streamingBody == nil, !sendBacklog.isEmpty { queueSend(sendBacklog.removeFirst()) }
            if sendQueue.isEmpty { return }
        }
        let n = min(sendQueue.count, sendBuffer.buffer.capacity)
        sendBuffer.buffer.copyBytes(from: sendQueue[0..<n])
        sending = true
        sendChunk(0..<n)
    }

    /// The next part of the streamed body into the send queue.
    private func pullBody(_ source: any HTTPRequestBodySource, remaining: Int64) {
        sending = true
        let n = Int(min(Int64(sendBuffer.buffer.capacity), remaining))
        let loop = self.loop
        track({ done in source.next(maxLength: n, loop.hop(done)) }) { [self] (r: Result<[UInt8], HTTPClientError>) in
            sending = false
            switch r {
            case .success(let bytes) where !bytes.isEmpty && bytes.count <= n:
                let left = remaining - Int64(bytes.count)
                streamingBody = left > 0 ? (source, left) : nil
                sendQueue += bytes
                flushSends()
            case .success:
                close(.aborted("the request body source gave a part of the wrong size"))
            case .failure(let e):
                if let first = requests.first { abandon(first, e) } else { close(e) }
            }
        }
    }

    private func sendChunk(_ range: Range<Int>) {
        let (socket, buffer) = (fd, sendBuffer)
        track({ loop.send(socket, from: buffer.buffer, range: range, more: sendQueue.count > range.upperBound || streamingBody != nil, $0) }) { [self] (r: Result<Int, Errno>) in
            guard case .success(let sent) = r, sent > 0 else {
                sending = false
                if streamingBody != nil || sendQueue.count > range.upperBound, !requests.isEmpty, requests[0].request.bodySource != nil {
                    // The server stopped reading an upload: its answer (a refusal) may be on the way.
                    sendFailed = true
                    streamingBody = nil
                    sendQueue = []
                    return process()
                }
                return close(.connectionClosed("send failed: \(r)"))
            }
            if sent < range.count { return sendChunk((range.lowerBound + sent)..<range.upperBound) }
            sendQueue.removeFirst(range.upperBound)
            sending = false
            flushSends()
        }
    }

    // MARK: Responses

    /// Takes what the parser has, in order, handing heads and body bytes to the first request's
    /// handler; receives more when it needs more.
    private func process() {
        while state == .open {
            guard let current = requests.first else {
                // An idle connection: a stray CRLF after the last response is allowed (and
                // dropped); anything else is a response nobody asked for.
                if !parser.skipBlankLinesBetweenResponses() { return close(.connectionClosed("the server sent bytes no request asked for")) }
                if peerClosed { return close(.connectionClosed("the server closed the connection")) }
                return receive()
            }
            // Room is asked for only where body bytes come next: a handler whose buffer is
            // exactly full still sees its response end.
            var space: BufferSpace?
            var limit = Int.max
            if inBody {
                if parser.isAtBodyData && (parser.bufferedByteCount > 0 || parser.directBodyBytes != nil) {
                    guard let s = current.handler.bodySpace() else { paused = true; return }
                    space = s
                    limit = s.range.count
                } else {
                    limit = 0
                }
            } else {
                parser.nextResponseIsToHEAD = current.request.method == .head
            }
            switch parser.next(maxBodyBytes: limit) {
            case .head(let head, let framing):
                responseBegun = true
                guard current.handler.responseHead(head, body: framing) else {
                    return abandon(current, .aborted("the handler refused a \(head.status) response"))
                }
                inBody = framing != .none
            case .body(let bytes):
                guard let space, !bytes.isEmpty else { continue }  // framing reached body bytes: ask for room
                responseBegun = true
                space.buffer.buffer.copyBytes(from: bytes, at: space.range.lowerBound)
                current.handler.bodyReceived(bytes.count)
            case .end(let keepAlive):
                inBody = false
                responseBegun = false
                requests.removeFirst()
                current.finish(.success(()))
                if !keepAlive || sendFailed {
                    closingAfterResponse = true
                    return close(.connectionClosed("the server ends the connection after a response"))
                }
                if requests.isEmpty { startIdleTimer() }
                pool.dispatch()  // room for a waiting request
            case .needMoreData:
                if parser.bufferedByteCount > 0 { responseBegun = true }
                if peerClosed { return close(.connectionClosed("the server closed the connection")) }
                return receive(into: space, for: current)
            case .error(let e):
                return close(.invalidResponse(e))
            }
        }
    }

    /// Posts the one receive: straight into the handler's space when inside a body with nothing
    /// buffered, else into the head buffer.
    private func receive(into space: BufferSpace? = nil, for current: PendingRequest? = nil) {
        guard state == .open, !receiving else { return }
        receiving = true
        let socket = fd
        if let space, let current, let direct = parser.directBodyBytes {
            let n = Int(min(Int64(space.range.count), direct))
            let range = space.range.lowerBound..<(space.range.lowerBound + n)
            track({ loop.receive(socket, into: space.buffer.buffer, range: range, waitAll: n >= configuration.waitAllThreshold, $0) }) {
                [self] (r: Result<Int, Errno>) in
                receiving = false
                switch r {
                case .success(0):
                    peerClosed = true
                    parser.connectionClosed()
                case .success(let got):
                    responseBegun = true
                    parser.bodyReceivedDirectly(got)
                    current.handler.bodyReceived(got)
                case .failure(let e):
                    return close(.connectionClosed("receive failed: \(e)"))
                }
                withExtendedLifetime(space) {}
                process()
            }
            return
        }
        let buffer = headBuffer
        track({ loop.receive(socket, into: buffer.buffer, range: 0..<buffer.buffer.capacity, $0) }) { [self] (r: Result<Int, Errno>) in
            receiving = false
            switch r {
            case .success(0):
                peerClosed = true
                parser.connectionClosed()
            case .success(let got):
                // Bytes for the first request's response: it can no longer be sent elsewhere.
                if !requests.isEmpty { responseBegun = true }
                parser.feed(buffer.buffer.bytes(0..<got))
            case .failure(let e):
                return close(.connectionClosed("receive failed: \(e)"))
            }
            process()
        }
    }

    private func startIdleTimer() {
        idleTimer = loop.schedule(after: configuration.idleTimeout) { [self] in
            idleTimer = nil
            if requests.isEmpty { close(.connectionClosed("idle")) }
        }
    }

    // MARK: Closing

    /// Ends the connection: shutdown(2) and a cancel make pending operations finish; the
    /// descriptor is closed and the requests handed back once the last of them has.
    func close(_ error: HTTPClientError) {
        guard state == .connecting || state == .open else { return }
        closeError = error
        transition(to: .closing)
        if let t = idleTimer { loop.cancelTimer(t); idleTimer = nil }
        if let t = connectTimer { loop.cancelTimer(t); connectTimer = nil }
        if fd.rawValue >= 0 {
            Socket.shutdown(fd)
            loop.cancelAll(on: fd)
        }
        finishClosing()
    }

    private func finishClosing() {
        guard state == .closing, inFlight == 0 else { return }
        transition(to: .closed)
        if fd.rawValue >= 0 { Socket.close(fd) }
        for (r, error) in abandoned { r.finish(.failure(error)) }
        abandoned = []
        if responseBegun, let started = requests.first {
            requests.removeFirst()
            started.finish(.failure(closeError))
        }
        let unanswered = requests
        requests = []
        pool.connectionClosed(self, unanswered: unanswered, error: closeError, connectFailed: connectFailed)
    }
}

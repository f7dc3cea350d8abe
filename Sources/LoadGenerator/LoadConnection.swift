import BenchReport
import DarterCore
import DarterIO
import HTTPCore

/// One connection of a load step, confined to its loop: requests back to back (the next one is
/// sent when the last response has ended; no pipelining, as wrk), a new connection per request
/// without keep-alive. Head bytes arrive in a small buffer of its own and are parsed by
/// HTTPCore's response parser (only the head is fed to it: its end is found in place); body
/// bytes of a known length are received with MSG_WAITALL into the loop's shared discard buffer,
/// so a 4 MiB response is 16 receives of 256 KiB and no copy beyond the kernel's.
final class LoadConnection {
    enum State { case idle, connecting, open, closing }

    let engine: LoopLoad
    let id: Int
    var loop: EventLoop { engine.loop }
    private var state = State.idle
    private var fd = FileDescriptor(rawValue: -1)
    private var parser = HTTPResponseParser()
    private let headBuffer = SharedIOBuffer(IOBuffer(capacity: 16 << 10))
    private let sendBuffer = SharedIOBuffer(IOBuffer(capacity: 16 << 10))
    private var sendLength = 0
    /// The send buffer holds the hit request (misses overwrite it).
    private var sendBufferHoldsHit = false
    /// Body bytes that came in the head buffer after the head, still to be accounted.
    private var pendingRest = 0..<0
    private var inFlight = 0
    private var reconnectTimer: TimerID?
    /// The request in progress.
    private var requestStart: Int64 = 0
    private var isMiss = false
    private var responseBytes = 0
    private var bodyBytes = 0
    private var status = 0
    /// The response ended with the server closing: wait for its FIN (so the server, not us,
    /// keeps the TIME_WAIT), then connect again.
    private var awaitingClose = false
    private var finishedForGood = false
    private var missCounter: UInt64 = 0

    init(engine: LoopLoad, id: Int) {
        self.engine = engine
        self.id = id
    }

    // MARK: Operations, counted

    /// Starts an operation; its completion runs `then` unless the connection began closing meanwhile.
    private func track<R>(_ start: (@escaping (R) -> Void) -> Void, then: @escaping (R) -> Void) {
        inFlight += 1
        start { [self] result in
            inFlight -= 1
            if state == .closing { return finishClosing() }
            then(result)
        }
    }

    // MARK: Connecting

    func start() {
        guard !engine.stopping else { return finish() }
        do {
            fd = try Socket.makeStreamSocket(for: engine.plan.address)
        } catch {
            return fail(.connect, "socket: \(error)")
        }
        state = .connecting
        parser = HTTPResponseParser()
        engine.counters.connects += 1
        let (socket, address) = (fd, engine.plan.address)
        if !engine.plan.keepAlive { requestStart = SystemCalls.monotonicNanoseconds() }  // a connect is part of each request
        track({ loop.connect(socket, to: address, $0) }) { [self] (r: Result<Void, Errno>) in
            switch r {
            case .success:
                state = .open
                sendRequest()
            case .failure(let e):
                fail(.connect, "connect to \(address): \(e)")
            }
        }
    }

    // MARK: A request

    private func sendRequest() {
        let plan = engine.plan
        isMiss = plan.missRatio > 0 && engine.drawMiss()
        if isMiss {
            missCounter += 1
            let bytes = plan.missRequest(loop: loop.index, connection: id, counter: missCounter)
            sendBuffer.buffer.copyBytes(from: bytes)
            sendLength = bytes.count
            sendBufferHoldsHit = false
        } else if !sendBufferHoldsHit {
            sendBuffer.buffer.copyBytes(from: plan.hitRequest)
            sendLength = plan.hitRequest.count
            sendBufferHoldsHit = true
        }
        if plan.keepAlive { requestStart = SystemCalls.monotonicNanoseconds() }
        responseBytes = 0
        bodyBytes = 0
        status = 0
        pendingRest = 0..<0
        send(0..<sendLength)
        // The receive goes in the same submission as the send: it waits in the kernel.
        receiveHead()
    }

    private func send(_ range: Range<Int>) {
        let (socket, buffer) = (fd, sendBuffer)
        track({ loop.send(socket, from: buffer.buffer, range: range, $0) }) { [self] (r: Result<Int, Errno>) in
            guard case .success(let sent) = r, sent > 0 else { return fail(.read, "send failed: \(r)") }
            if sent < range.count { send((range.lowerBound + sent)..<range.upperBound) }
        }
    }

    private func receiveHead() {
        let (socket, buffer) = (fd, headBuffer)
        track({ loop.receive(socket, into: buffer.buffer, range: 0..<buffer.buffer.capacity, $0) }) { [self] (r: Result<Int, Errno>) in
            switch r {
            case .success(0):
                if awaitingClose { return reconnect() }
                parser.connectionClosed()
            case .success(let n):
                if awaitingClose { return fail(.protocolError, "bytes after a response that closed the connection") }
                responseBytes += n
                let head = headBuffer
                if parser.isIdle, let end = head.buffer.firstIndex(of: headEnd, in: 0..<n) {
                    parser.feed(head.buffer.bytes(0..<(end + 4)))
                    pendingRest = (end + 4)..<n
                } else {
                    parser.feed(head.buffer.bytes(0..<n))
                }
            case .failure(let e):
                return fail(.read, "receive failed: \(e)")
            }
            drive()
        }
    }

    private func receiveBody(_ count: Int) {
        let (socket, discard) = (fd, engine.discard)
        let n = min(count, discard.buffer.capacity)
        // Several connections of the loop receive into the same bytes at once: they are never read.
        track({ loop.receive(socket, into: discard.buffer, range: 0..<n, waitAll: true, $0) }) { [self] (r: Result<Int, Errno>) in
            switch r {
            case .success(0):
                parser.connectionClosed()
            case .success(let got):
                responseBytes += got
                bodyBytes += got
                parser.bodyReceivedDirectly(got)
            case .failure(let e):
                return fail(.read, "receive failed: \(e)")
            }
            drive()
        }
    }

    /// Takes what the parser has; receives more when it needs more.
    private func drive() {
        while true {
            switch parser.next() {
            case .head(let head, _):
                status = head.status
            case .body(let bytes):
                bodyBytes += bytes.count
            case .end(let keepAlive):
                guard pendingRest.isEmpty, parser.bufferedByteCount == 0 else {
                    return fail(.protocolError, "the server sent bytes no request asked for")
                }
                return responseEnded(serverKeepsAlive: keepAlive)
            case .needMoreData:
                if !pendingRest.isEmpty {
                    if let direct = parser.directBodyBytes, direct > 0 {
                        let k = Int(min(Int64(pendingRest.count), direct))
                        parser.bodyReceivedDirectly(k)
                        bodyBytes += k
                        pendingRest = (pendingRest.lowerBound + k)..<pendingRest.upperBound
                    } else {
                        parser.feed(headBuffer.buffer.bytes(pendingRest))
                        pendingRest = 0..<0
                    }
                    continue
                }
                if let direct = parser.directBodyBytes {
                    return receiveBody(Int(clamping: direct))
                }
                return receiveHead()
            case .error(let e):
                return fail(.protocolError, "invalid response: \(e)")
            }
        }
    }

    private func responseEnded(serverKeepsAlive: Bool) {
        let now = SystemCalls.monotonicNanoseconds()
        engine.recordResponse(at: now, latency: now - requestStart, status: status, bytes: responseBytes, bodyBytes: bodyBytes, miss: isMiss)
        if engine.stopping || now >= engine.windowEnd { return close(forGood: true) }
        if engine.plan.keepAlive && serverKeepsAlive { return sendRequest() }
        // The server ends the connection (we asked it to, or it chose to): its FIN follows.
        awaitingClose = true
        receiveHead()
    }

    // MARK: Ends

    enum Failure { case connect, read, protocolError }

    private func fail(_ kind: Failure, _ message: String) {
        engine.recordError(kind, message)
        close(forGood: false, afterFailure: true)
    }

    private func reconnect() {
        close(forGood: false)
    }

    private var reconnectDelay: Duration?

    /// Ends the socket (shutdown and a cancel make pending operations complete); once nothing is
    /// in flight it is closed and, unless for good or stopping, a new connection starts (after a
    /// pause when the last one failed, so a refusing server is not hammered).
    func close(forGood: Bool, afterFailure: Bool = false) {
        finishedForGood = finishedForGood || forGood
        reconnectDelay = afterFailure ? .milliseconds(20) : nil
        if let t = reconnectTimer {  // between connections
            loop.cancelTimer(t)
            reconnectTimer = nil
            return finish()
        }
        guard state != .closing else { return }
        guard state != .idle else { return finish() }
        state = .closing
        if inFlight > 0 {
            Socket.shutdown(fd)
            loop.cancelAll(on: fd)
        }
        finishClosing()
    }

    private func finishClosing() {
        guard state == .closing, inFlight == 0 else { return }
        Socket.close(fd)
        fd = FileDescriptor(rawValue: -1)
        state = .idle
        awaitingClose = false
        if finishedForGood || engine.stopping { return finish() }
        if let delay = reconnectDelay {
            reconnectTimer = loop.schedule(after: delay) { [self] in
                reconnectTimer = nil
                start()
            }
        } else {
            start()
        }
    }

    private var reported = false
    private func finish() {
        guard !reported else { return }
        reported = true
        engine.connectionFinished()
    }
}

private let headEnd: [UInt8] = Array("\r\n\r\n".utf8)

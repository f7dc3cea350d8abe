#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO
import HTTPCore

/// A send buffer lent by a loop's pool for one response.
final class SendBuffer {
    let buffer: IOBuffer
    init(_ buffer: consuming IOBuffer) { self.buffer = buffer }
}

/// One client connection, confined to its event loop's thread (hence unchecked Sendable: it
/// only crosses threads inside closures that `EventLoop.execute` runs back on that thread; its
/// entry points check that in debug builds).
///
/// Its life is an explicit state machine (``State``); ``transition(to:)`` crashes on an edge
/// that is not in the table, so a late completion or a double close cannot quietly corrupt it.
final class Connection: @unchecked Sendable {
    enum State: Equatable, CustomStringConvertible {
        /// Waiting for, or parsing, a request (idle between requests, or mid-head).
        case reading
        /// The handler has a request; the response has not begun.
        case handling
        /// A response is going out.
        case sending
        /// shutdown(2) done; waiting for the operations in flight to complete.
        case closing
        /// The descriptor is closed and the server has forgotten the connection.
        case closed

        var description: String {
            switch self {
            case .reading: "reading"
            case .handling: "handling"
            case .sending: "sending"
            case .closing: "closing"
            case .closed: "closed"
            }
        }

        /// The edges of the state machine.
        func allows(_ next: State) -> Bool {
            switch (self, next) {
            case (.reading, .handling), (.reading, .sending), (.reading, .closing),
                 (.handling, .sending), (.handling, .closing),
                 (.sending, .reading), (.sending, .closing),
                 (.closing, .closed):
                return true
            default:
                return false
            }
        }
    }

    /// Which timeout applies (``LoopServer``'s tick).
    enum TimeoutPhase { case idle, readingHead, handling, responding, waitingForUploadRate, none }

    let fd: FileDescriptor
    unowned let owner: LoopServer
    var loop: EventLoop { owner.loop }
    var parser: HTTPRequestParser
    let receiveBuffer: IOBuffer
    private(set) var state = State.reading
    /// When the current phase started or last made progress (milliseconds, monotonic).
    var phaseStarted: Int64
    /// Operations (and waits) whose completion is still to come: counted by ``track(_:then:)`` only.
    private var inFlight = 0
    private var pendingHead: HTTPRequestHead?
    private var requestBody: [UInt8] = []
    /// The handler's taker of the current request's body (``RequestBodyDisposition/stream``),
    /// until it has answered.
    private var bodySink: (any RequestBodySink)?
    /// The sink is taking a part of the body: nothing more is read until it is done.
    private var sinkBusy = false

    // The response being sent.
    private var keepAlive = true
    private var sendBuffer: SendBuffer?
    private var pending: [UInt8] = []      // bytes to send before the file body (head, small bodies, stream chunks)
    private var body: (any FileBodySource)?
    private var stream: (any StreamBodySource)?
    private var chunkedStream = false
    private var position: Int64 = 0
    private var pipe: (read: FileDescriptor, write: FileDescriptor)?
    /// Body bytes the upload limit has granted and that are not sent yet (with a limit only).
    private var allowance = 0
    /// Waiting for the upload limit: the timer, and what ends the wait (``close()`` ends it early).
    private var pacing: (timer: TimerID, end: () -> Void)?
    /// The upload limit this connection's bodies are paced by (none for a client on this host
    /// unless the configuration says so).
    private let uploadLimit: RateLimiter?
    /// The request being answered, for its duration, the debug log line and the upload count.
    private var exchange = Exchange()

    init(fd: FileDescriptor, owner: LoopServer) {
        self.fd = fd
        self.owner = owner
        let configuration = owner.configuration
        if configuration.uploadLimit != nil, !configuration.uploadLimitCoversLoopback, Socket.peerIsLocal(fd) {
            uploadLimit = nil
        } else {
            uploadLimit = configuration.uploadLimit
        }
        // No body limit in the parser: a handler may stream a body of any size; a buffered one
        // is held to maxBufferedBodyLength here.
        parser = HTTPRequestParser(limits: HTTPRequestParser.Limits(maxBodyLength: .max))
        receiveBuffer = IOBuffer(capacity: owner.configuration.receiveBufferSize)
        phaseStarted = monotonicMilliseconds()
    }

    func start() {
        loop.assertInLoop()
        receive()
    }

    private func transition(to next: State) {
        precondition(state.allows(next), "connection \(fd): illegal transition \(state) → \(next)")
        state = next
    }

    var timeoutPhase: TimeoutPhase {
        switch state {
        case .reading:
            if sinkBusy { return .handling }  // a body part being stored: the handler's time
            return parser.bufferedByteCount == 0 && pendingHead == nil ? .idle : .readingHead
        case .handling: return .handling
        case .sending: return pacing != nil ? .waitingForUploadRate : .responding
        case .closing, .closed: return .none
        }
    }

    /// Starts an operation; its completion runs `then` on the loop unless the connection began
    /// closing meanwhile, in which case the close goes on once nothing is in flight. The one
    /// place in-flight operations are counted.
    private func track<R>(_ start: (@escaping (R) -> Void) -> Void, then: @escaping (R) -> Void) {
        inFlight += 1
        start { [self] result in
            loop.assertInLoop()
            inFlight -= 1
            if state == .closing { return finishClosing() }
            then(result)
        }
    }

    // MARK: Reading requests

    private func receive() {
        let range = 0..<receiveBuffer.capacity
        track({ loop.receive(fd, into: receiveBuffer, range: range, $0) }) { [self] (r: Result<Int, Errno>) in
            guard case .success(let n) = r, n > 0 else { return close() }
            parser.feed(receiveBuffer.bytes(0..<n))
            phaseStarted = monotonicMilliseconds()
            process()
        }
    }

    /// Takes requests from the parser until one needs answering or more bytes are needed.
    private func process() {
        while true {
            switch parser.next() {
            case .request(let head):
                pendingHead = head
                requestBody.removeAll()
                switch owner.handler.bodyDisposition(for: head, client: RequestClient(fd: fd)) {
                case .buffer:
                    if case .contentLength(let n) = head.bodyFraming, n > owner.configuration.maxBufferedBodyLength {
                        return refuse(tooLarge(), head)
                    }
                case .stream(let sink):
                    bodySink = sink
                    if head.version == .http1_1, head.headers.containsToken("100-continue", in: "Expect") {
                        // curl waits a second for this before it sends a large body.
                        pending = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                        return sendPending { [self] in process() }
                    }
                case .refuse(let response):
                    return refuse(response, head)
                }
            case .body(let bytes):
                guard let head = pendingHead else { continue }
                if let sink = bodySink { return feed(sink, bytes, head) }
                requestBody += bytes
                if requestBody.count > owner.configuration.maxBufferedBodyLength { return refuse(tooLarge(), head) }
            case .end:
                guard let head = pendingHead else { continue }
                pendingHead = nil
                if let sink = bodySink { return finishStreamedBody(sink, head) }
                let body = requestBody
                requestBody = []
                return dispatch(head, body: body)
            case .needMoreData:
                return receive()
            case .error(let error):
                // Not HTTP/1 at all (a TLS ClientHello, an HTTP/2 preface): hang up cleanly.
                if error == .tlsHandshake || error == .http2Preface { return close() }
                keepAlive = false
                transition(to: .sending)
                phaseStarted = monotonicMilliseconds()
                exchange.begin(nil)
                return begin(Response.text(error.status, error.reason + "\n", route: "invalid"), version: .http1_1, isHead: false)
            }
        }
    }

    private func tooLarge() -> Response {
        .text(413, "request body too large (more than \(owner.configuration.maxBufferedBodyLength) bytes)\n", route: "invalid")
    }

    /// Answers `head` before its body is read (or while it is being read): the connection
    /// closes after, as the rest of the body is not read.
    private func refuse(_ response: Response, _ head: HTTPRequestHead) {
        pendingHead = nil
        requestBody = []
        bodySink = nil
        keepAlive = false
        transition(to: .sending)
        phaseStarted = monotonicMilliseconds()
        begin(response, version: head.version, isHead: head.method == .head)
    }

    /// Hands a part of a streamed body to its sink; reading goes on when the sink is done.
    private func feed(_ sink: any RequestBodySink, _ bytes: [UInt8], _ head: HTTPRequestHead) {
        sinkBusy = true
        let loop = self.loop
        track({ done in sink.receive(bytes, next: loop.hop(done)) }) { [self] (answer: Response?) in
            sinkBusy = false
            phaseStarted = monotonicMilliseconds()
            if let answer { return refuse(answer, head) }
            process()
        }
    }

    /// The streamed body is complete: the sink answers.
    private func finishStreamedBody(_ sink: any RequestBodySink, _ head: HTTPRequestHead) {
        transition(to: .handling)
        phaseStarted = monotonicMilliseconds()
        keepAlive = head.keepAlive && !owner.stopping
        let version = head.version, isHead = head.method == .head
        let loop = self.loop
        sink.end { [self] response in
            if loop.inLoopThread { respond(response, version: version, isHead: isHead) }
            else { loop.execute { [self] in respond(response, version: version, isHead: isHead) } }
        }
    }

    private func dispatch(_ head: HTTPRequestHead, body: [UInt8]) {
        transition(to: .handling)
        phaseStarted = monotonicMilliseconds()
        exchange.begin(head)
        keepAlive = head.keepAlive && !owner.stopping
        let version = head.version, isHead = head.method == .head
        let loop = self.loop
        owner.handler.handle(head, body: body) { [self] response in
            if loop.inLoopThread { respond(response, version: version, isHead: isHead) }
            else { loop.execute { [self] in respond(response, version: version, isHead: isHead) } }
        }
    }

    /// The handler's answer; dropped if the connection closed while the handler worked.
    private func respond(_ response: Response, version: HTTPVersion, isHead: Bool) {
        guard state == .handling else {
            if case .stream(let s) = response.body { s.cancel() }
            return
        }
        bodySink = nil
        transition(to: .sending)
        begin(response, version: version, isHead: isHead)
    }

    // MARK: Writing responses

    private func begin(_ response: Response, version: HTTPVersion, isHead: Bool) {
        owner.metrics.recordRequest(route: response.route, status: response.head.status)
        exchange.responding(route: response.route, status: response.head.status)
        var head = response.head
        // A handler may end the connection after its response (as any HTTP/1.1 server may).
        if head.headers.containsToken("close", in: "Connection") { keepAlive = false }
        if case .stream = response.body {
            // A body of unknown length: chunked for HTTP/1.1, ended by closing for HTTP/1.0.
            head.headers.remove(name: "Content-Length")
            chunkedStream = version == .http1_1
            if chunkedStream { head.headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked") } else { keepAlive = false }
        }
        head.setConnection(keepAlive: keepAlive, requestVersion: version)
        head.headers.add(name: "Date", value: owner.dateHeader())
        pending.removeAll(keepingCapacity: true)
        head.serialize(into: &pending)
        position = 0
        switch response.body {
        case .none: break
        case .bytes(let bytes): if !isHead { pending += bytes }
        case .file(let source): if !isHead && source.length > 0 { body = source }
        case .stream(let source):
            if isHead { source.cancel() } else { stream = source }
        }
        if stream != nil { return sendPending { [self] in pumpStream() } }
        sendPendingThenBody()
    }

    /// This response's send buffer; `chunk`: one of a whole chunk (a small one held so far goes back).
    private func buffer(chunk: Bool) -> SendBuffer {
        if let b = sendBuffer {
            if !chunk || b.buffer.capacity >= owner.configuration.chunkSize { return b }
            owner.returnBuffer(b)
        }
        let b = owner.takeBuffer(chunk: chunk)
        sendBuffer = b
        return b
    }


    /// Sends `pending` (all of it when there is no file body; with the first body chunk when
    /// it fits), then the file body.
    private func sendPendingThenBody() {
        let chunk = owner.configuration.chunkSize
        if let body, mode(for: body) == .copy, pending.count < chunk / 2 {
            return copyChunk(body)
        }
        sendPending { [self] in continueBody() }
    }

    /// Sends all of `pending`, buffer by buffer, then runs `then`.
    private func sendPending(then: @escaping () -> Void) {
        guard !pending.isEmpty else { return then() }
        let b = buffer(chunk: pending.count > LoopServer.smallBufferSize)
        let n = min(pending.count, b.buffer.capacity)
        b.buffer.copyBytes(from: pending[0..<n])
        pending.removeFirst(n)
        sendAll(b, 0..<n, more: body != nil || !pending.isEmpty) { [self] in sendPending(then: then) }
    }

    /// Sends `buffer[range]` in full (resending after short sends), then runs `then`.
    private func sendAll(_ b: SendBuffer, _ range: Range<Int>, more: Bool, then: @escaping () -> Void) {
        track({ loop.send(fd, from: b.buffer, range: range, more: more, $0) }) { [self] (r: Result<Int, Errno>) in
            guard let n = sent(r) else { return }
            if n < range.count { return sendAll(b, (range.lowerBound + n)..<range.upperBound, more: more, then: then) }
            then()
        }
    }

    /// The bytes a send moved (counted), or nil after closing on a failed or empty send.
    private func sent(_ r: Result<Int, Errno>) -> Int? {
        guard case .success(let n) = r, n > 0 else { close(); return nil }
        progress(n)
        return n
    }

    private func progress(_ bytes: Int) {
        owner.metrics.addBytes(bytes)
        exchange.bytesSent += bytes
        phaseStarted = monotonicMilliseconds()
    }

    /// The serve mode for this body (`mixed` resolves by size).
    private func mode(for body: any FileBodySource) -> ServeMode {
        let configured = owner.configuration.serveMode
        guard configured == .mixed else { return configured }
        return body.length <= owner.configuration.smallBodyLimit ? .sendfile : .copy
    }

    private func continueBody() {
        guard let body else { return finishResponse() }
        if position >= body.length { return finishResponse() }
        switch mode(for: body) {
        case .copy: copyChunk(body)
        case .zerocopy: zeroCopyChunk(body)
        case .sendfile: sendFileChunk(body)
        case .splice: spliceChunk(body)
        case .mixed: copyChunk(body)  // not reached: mode(for:) resolves mixed
        }
    }

    /// Next extent of the body to send from its file, or nil after arranging to continue:
    /// when the bytes are ready, or after sending them from memory.
    private func nextExtent(_ body: any FileBodySource, maxLength: Int) -> FileExtent? {
        var maxLength = maxLength
        if let limit = uploadLimit {
            if allowance == 0 && !takeUploadAllowance(limit, body) { return nil }
            maxLength = min(maxLength, allowance)
        }
        switch body.extent(at: position, maxLength: maxLength) {
        case .file(let e)?:
            return e
        case .memory(let buffer, let offset, let length)?:
            sendFromMemory(buffer, offset..<(offset + length), last: position + Int64(length) >= body.length)
            return nil
        case nil:
            break
        }
        let loop = self.loop, at = position
        track({ done in body.waitForData(at: at, loop.hop(done)) }) { [self] (error: (any Error)?) in
            // Headers may be out already: a body that cannot be completed ends the
            // connection, never a short body under a success status.
            if error != nil { return close() }
            phaseStarted = monotonicMilliseconds()
            continueBody()
        }
        return nil
    }

    /// Takes the next chunk of the upload limit for this body; false when it must wait first
    /// (a timer on the loop, then the body goes on). Each take is small (``RateLimiter/chunk``),
    /// so connections sharing the limit take turns and the pace stays smooth.
    private func takeUploadAllowance(_ limit: RateLimiter, _ body: any FileBodySource) -> Bool {
        let n = Int(min(Int64(limit.chunk), body.length - position))
        allowance = n
        let resume = { [self] in
            let end = pacing?.end
            pacing = nil
            end?()
        }
        guard let timer = limit.take(n, on: loop, resume: resume) else { return true }
        // Counted like an operation in flight, so a close waits for it (or ends it: close()).
        track({ [self] (done: @escaping (()) -> Void) in pacing = (timer, { done(()) }) }) { [self] (_: ()) in
            phaseStarted = monotonicMilliseconds()
            continueBody()
        }
        return false
    }

    /// `n` body bytes are on their way: the position moves, and they come out of the allowance.
    private func advance(_ n: Int) {
        position += Int64(n)
        allowance = max(0, allowance - n)
    }

    /// Sends `memory[range]` (after any pending head bytes), whatever the serve mode: one copy
    /// into the socket instead of a read and a copy. The closure holds `memory` until sent.
    private func sendFromMemory(_ memory: SharedIOBuffer, _ range: Range<Int>, last: Bool) {
        if !pending.isEmpty {
            return sendPending { [self] in sendFromMemory(memory, range, last: last) }
        }
        track({ loop.send(fd, from: memory.buffer, range: range, more: !last, $0) }) { [self] (r: Result<Int, Errno>) in
            guard let n = sent(r) else { return }
            advance(n)
            if n < range.count { return sendFromMemory(memory, (range.lowerBound + n)..<range.upperBound, last: last) }
            continueBody()
        }
    }

    /// copy: READ the next extent after any pending head bytes, linked to one SEND.
    private func copyChunk(_ body: any FileBodySource) {
        let lead = pending.count
        // The extent first: bytes already in memory are sent from there, and need no chunk.
        guard let e = nextExtent(body, maxLength: owner.configuration.chunkSize - lead) else { return }
        let b = buffer(chunk: true)
        if lead > 0 { b.buffer.copyBytes(from: pending); pending.removeAll(keepingCapacity: true) }
        let total = lead + e.length
        let last = position + Int64(e.length) >= body.length
        track({ loop.readThenSend(e.fd, at: e.offset, into: b.buffer, readRange: lead..<total, to: fd, sendRange: 0..<total, more: !last, $0) }) {
            [self] (r: Result<Int, Errno>) in
            withExtendedLifetime(e) {}
            guard let n = sent(r) else { return }
            advance(e.length)
            if n < total { return sendAll(b, n..<total, more: !last) { [self] in continueBody() } }
            continueBody()
        }
    }

    /// zerocopy: READ into a registered buffer, then SEND_ZC (its buffer is free at the notification).
    private func zeroCopyChunk(_ body: any FileBodySource) {
        guard let e = nextExtent(body, maxLength: owner.configuration.chunkSize) else { return }
        let b = buffer(chunk: true)
        track({ loop.read(e.fd, into: b.buffer, range: 0..<e.length, at: e.offset, $0) }) { [self] (r: Result<Int, Errno>) in
            guard case .success(e.length) = r else { return close() }
            sendZeroCopy(b, 0..<e.length, extent: e)
        }
    }

    private func sendZeroCopy(_ b: SendBuffer, _ range: Range<Int>, extent e: FileExtent) {
        track({ loop.sendZeroCopy(fd, from: b.buffer, range: range, $0) }) { [self] (r: Result<Int, Errno>) in
            guard let n = sent(r) else { return }
            if n < range.count { return sendZeroCopy(b, (range.lowerBound + n)..<range.upperBound, extent: e) }
            advance(e.length)
            continueBody()
        }
    }

    /// sendfile: synchronous sendfile(2) on the non-blocking socket until it is full, then POLLOUT.
    private func sendFileChunk(_ body: any FileBodySource) {
        while position < body.length {
            guard let e = nextExtent(body, maxLength: 1 << 30) else { return }
            let sent: Int
            do { sent = try Socket.sendFile(to: fd, from: e.fd, offset: e.offset, count: e.length) } catch { return close() }
            if sent == 0 {
                track({ loop.whenWritable(fd, $0) }) { [self] (_: Result<Void, Errno>) in continueBody() }
                return
            }
            progress(sent)
            advance(sent)
        }
        finishResponse()
    }

    /// splice: file → pipe → socket, linked; what the socket did not take is drained from the pipe.
    private func spliceChunk(_ body: any FileBodySource) {
        if pipe == nil {
            do { pipe = try Socket.makePipe(capacity: owner.configuration.chunkSize) } catch { return close() }
        }
        guard let e = nextExtent(body, maxLength: owner.configuration.chunkSize) else { return }
        let through = pipe!
        track({ loop.spliceToSocket(e.fd, at: e.offset, through: through, to: fd, count: e.length, $0) }) { [self] (r: Result<Int, Errno>) in
            withExtendedLifetime(e) {}
            guard let n = sent(r) else { return }
            advance(e.length)
            drainPipe(e.length - n)
        }
    }

    private func drainPipe(_ remaining: Int) {
        guard remaining > 0 else { return continueBody() }
        let from = pipe!.read
        track({ loop.spliceToSocket(fromPipe: from, to: fd, count: remaining, $0) }) { [self] (r: Result<Int, Errno>) in
            guard let n = sent(r) else { return }
            drainPipe(remaining - n)
        }
    }

    /// A streamed body: asks the source for the next bytes, sends them as one chunk, repeats;
    /// the source's end sends the last chunk.
    private func pumpStream() {
        guard let source = stream else { return finishResponse() }
        let loop = self.loop
        track({ done in source.next(loop.hop(done)) }) { [self] (bytes: [UInt8]?) in
            guard let bytes else {
                stream = nil
                if chunkedStream { pending += Array("0\r\n\r\n".utf8) }
                return sendPending { [self] in finishResponse() }
            }
            if bytes.isEmpty { return pumpStream() }
            if chunkedStream {
                pending += Array((String(bytes.count, radix: 16) + "\r\n").utf8)
                pending += bytes
                pending += [13, 10]
            } else {
                pending += bytes
            }
            sendPending { [self] in pumpStream() }
        }
    }

    private func finishResponse() {
        endExchange()
        body = nil
        allowance = 0
        if let b = sendBuffer { owner.returnBuffer(b); sendBuffer = nil }
        guard keepAlive else { return close() }
        transition(to: .reading)
        phaseStarted = monotonicMilliseconds()
        process()  // a pipelined request may be waiting in the parser
    }

    // MARK: Closing

    /// Ends the connection: shutdown(2) makes pending operations finish; the descriptor is
    /// closed when the last of them has.
    func close() {
        loop.assertInLoop()
        guard state != .closing && state != .closed else { return }
        if state == .sending { endExchange() }  // cut short: it still took this long
        transition(to: .closing)
        stream?.cancel()
        stream = nil
        if let sink = bodySink {
            bodySink = nil
            sink.abort()
        }
        Socket.shutdown(fd)
        if let p = pacing {
            pacing = nil
            loop.cancelTimer(p.timer)
            p.end()
        }
        finishClosing()
    }

    /// Called on a connection that should stop after its current response.
    func stopAfterResponse() {
        loop.assertInLoop()
        keepAlive = false
        if state == .reading { close() }
        // A stream (an availability feed) has no end of its own: end it, so shutdown does not
        // wait out its grace for a feed (peers keep feeds open to each other).
        stream?.cancel()
    }

    /// A response ended (sent, or its connection closed): its duration by route, the file body
    /// bytes it sent, and at debug level one line (method, path, status, bytes, seconds).
    private func endExchange() {
        guard let started = exchange.started else { return }
        let seconds = Double(SystemCalls.monotonicNanoseconds() - started) / 1e9
        owner.metrics.recordResponse(owner.requestDuration(route: exchange.route), seconds: seconds, fileBodyBytes: body != nil ? Int(position) : 0)
        if Log.isEnabled(.debug) {
            Log.debug("request", fields: [("method", .string(exchange.method)), ("path", .string(exchange.path)), ("route", .string(exchange.route)),
                                          ("status", .int(Int64(exchange.status))), ("bytes", .int(Int64(exchange.bytesSent))), ("seconds", .seconds(seconds))])
        }
        exchange = Exchange()
    }

    private func finishClosing() {
        guard state == .closing, inFlight == 0 else { return }
        transition(to: .closed)
        body = nil
        if let b = sendBuffer { owner.returnBuffer(b); sendBuffer = nil }
        if let p = pipe { Socket.close(p.read); Socket.close(p.write); pipe = nil }
        owner.remove(self)
        Socket.close(fd)
    }
}

func monotonicMilliseconds() -> Int64 { SystemCalls.monotonicMilliseconds() }

/// One request and its response on a connection, for ``Connection``'s metrics and log line.
struct Exchange {
    /// Monotonic nanoseconds when the request was complete; nil between requests.
    var started: Int64?
    var route = "other"
    var status = 0
    var bytesSent = 0
    /// Only kept when debug lines are written (the request log).
    var method = ""
    var path = ""

    mutating func begin(_ head: HTTPRequestHead?) {
        self = Exchange(started: SystemCalls.monotonicNanoseconds())
        if let head, Log.isEnabled(.debug) {
            method = head.method.description
            // The path without the query: queries may carry signed URLs and tokens.
            path = String(head.target.prefix { $0 != "?" }.prefix(300))
        }
    }

    mutating func responding(route: String, status: Int) {
        self.route = route
        self.status = status
    }
}

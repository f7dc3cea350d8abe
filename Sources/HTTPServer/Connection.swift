#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import HTTPCore

/// A send buffer lent by a loop's pool for one response.
final class SendBuffer {
    let buffer: IOBuffer
    init(_ buffer: consuming IOBuffer) { self.buffer = buffer }
}

/// One client connection. Confined to its event loop's thread (hence unchecked Sendable: it
/// only crosses threads inside closures that `EventLoop.execute` runs back on that thread).
final class Connection: @unchecked Sendable {
    enum Phase { case idle, readingHead, responding, closing }

    let fd: FileDescriptor
    unowned let owner: LoopServer
    var loop: EventLoop { owner.loop }
    var parser: HTTPRequestParser
    let receiveBuffer: IOBuffer
    private(set) var phase = Phase.idle
    /// When the current phase started or last made progress (milliseconds, monotonic).
    var phaseStarted: Int64
    /// Operations (and waits) whose completion is still to come.
    private var inFlight = 0
    private var pendingHead: HTTPRequestHead?
    private var requestBody: [UInt8] = []

    // The response being sent.
    private var keepAlive = true
    private var sendBuffer: SendBuffer?
    private var pending: [UInt8] = []      // bytes to send before the file body (head, small bodies)
    private var body: (any FileBodySource)?
    private var position: Int64 = 0
    private var pipe: (read: FileDescriptor, write: FileDescriptor)?

    init(fd: FileDescriptor, owner: LoopServer) {
        self.fd = fd
        self.owner = owner
        parser = HTTPRequestParser()
        receiveBuffer = IOBuffer(capacity: owner.configuration.receiveBufferSize)
        phaseStarted = monotonicMilliseconds()
    }

    func start() { receive() }

    // MARK: Reading requests

    private func receive() {
        inFlight += 1
        loop.receive(fd, into: receiveBuffer, range: 0..<receiveBuffer.capacity) { [self] r, _ in
            inFlight -= 1
            if phase == .closing { return finishClosing() }
            guard r > 0 else { return close() }
            parser.feed(receiveBuffer.bytes(0..<Int(r)))
            if phase == .idle { phase = .readingHead; phaseStarted = monotonicMilliseconds() }
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
            case .body(let bytes):
                requestBody += bytes  // bounded by the parser's body limit
            case .end:
                guard let head = pendingHead else { continue }
                pendingHead = nil
                let body = requestBody
                requestBody = []
                return dispatch(head, body: body)
            case .needMoreData:
                if parser.bufferedByteCount == 0 && pendingHead == nil {
                    if phase != .idle { phase = .idle; phaseStarted = monotonicMilliseconds() }
                } else if phase != .readingHead {
                    phase = .readingHead
                    phaseStarted = monotonicMilliseconds()
                }
                return receive()
            case .error(let error):
                // Not HTTP/1 at all (a TLS ClientHello, an HTTP/2 preface): hang up cleanly.
                if error == .tlsHandshake || error == .http2Preface { return close() }
                keepAlive = false
                phase = .responding
                return begin(Response.text(error.status, error.reason + "\n", route: "invalid"), version: .http1_1, isHead: false)
            }
        }
    }

    private func dispatch(_ head: HTTPRequestHead, body: [UInt8]) {
        phase = .responding
        phaseStarted = monotonicMilliseconds()
        keepAlive = head.keepAlive && !owner.stopping
        let version = head.version, isHead = head.method == .head
        let loop = self.loop
        owner.handler.handle(head, body: body) { [self] response in
            if loop.inLoopThread { begin(response, version: version, isHead: isHead) }
            else { loop.execute { [self] in begin(response, version: version, isHead: isHead) } }
        }
    }

    // MARK: Writing responses

    private func begin(_ response: Response, version: HTTPVersion, isHead: Bool) {
        guard phase == .responding else { return finishClosing() }
        owner.metrics.recordRequest(route: response.route, status: response.head.status)
        var head = response.head
        head.setConnection(keepAlive: keepAlive, requestVersion: version)
        head.headers.add(name: "Date", value: owner.dateHeader())
        pending.removeAll(keepingCapacity: true)
        head.serialize(into: &pending)
        position = 0
        switch response.body {
        case .none: break
        case .bytes(let bytes): if !isHead { pending += bytes }
        case .file(let source): if !isHead && source.length > 0 { body = source }
        }
        sendPendingThenBody()
    }

    private func buffer() -> SendBuffer {
        if let b = sendBuffer { return b }
        let b = owner.takeBuffer()
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
        guard !pending.isEmpty else { return continueBody() }
        let b = buffer()
        let n = min(pending.count, b.buffer.capacity)
        b.buffer.copyBytes(from: pending[0..<n])
        pending.removeFirst(n)
        sendAll(b, 0..<n, more: body != nil || !pending.isEmpty) { [self] in sendPendingThenBody() }
    }

    /// Sends `buffer[range]` in full (resending after short sends), then runs `then`.
    private func sendAll(_ b: SendBuffer, _ range: Range<Int>, more: Bool, then: @escaping () -> Void) {
        inFlight += 1
        loop.send(fd, from: b.buffer, range: range, more: more) { [self] r, _ in
            guard sent(r) else { return }
            if Int(r) < range.count { return sendAll(b, (range.lowerBound + Int(r))..<range.upperBound, more: more, then: then) }
            then()
        }
    }

    /// The common start of a send's completion: ends the operation, and unless the connection
    /// is closing or the send failed (both handled here) counts the bytes and returns true.
    private func sent(_ r: Int32) -> Bool {
        inFlight -= 1
        if phase == .closing { finishClosing(); return false }
        guard r > 0 else { close(); return false }
        progress(Int(r))
        return true
    }

    private func progress(_ bytes: Int) {
        owner.metrics.addBytes(bytes)
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
        switch body.extent(at: position, maxLength: maxLength) {
        case .file(let e)?:
            return e
        case .memory(let buffer, let offset, let length)?:
            sendFromMemory(buffer, offset..<(offset + length), last: position + Int64(length) >= body.length)
            return nil
        case nil:
            break
        }
        inFlight += 1
        let loop = self.loop
        body.waitForData(at: position) { [self] error in
            loop.execute { [self] in
                inFlight -= 1
                if phase == .closing { return finishClosing() }
                // Headers may be out already: a body that cannot be completed ends the
                // connection, never a short body under a success status.
                if error != nil { return close() }
                phaseStarted = monotonicMilliseconds()
                continueBody()
            }
        }
        return nil
    }

    /// Sends `memory[range]` (after any pending head bytes), whatever the serve mode: one copy
    /// into the socket instead of a read and a copy. The closure holds `memory` until sent.
    private func sendFromMemory(_ memory: SharedIOBuffer, _ range: Range<Int>, last: Bool) {
        if !pending.isEmpty {
            let b = buffer()
            let n = min(pending.count, b.buffer.capacity)
            b.buffer.copyBytes(from: pending[0..<n])
            pending.removeFirst(n)
            return sendAll(b, 0..<n, more: true) { [self] in sendFromMemory(memory, range, last: last) }
        }
        inFlight += 1
        loop.send(fd, from: memory.buffer, range: range, more: !last) { [self] r, _ in
            guard sent(r) else { return }
            position += Int64(r)
            if Int(r) < range.count { return sendFromMemory(memory, (range.lowerBound + Int(r))..<range.upperBound, last: last) }
            continueBody()
        }
    }

    /// copy: READ the next extent after any pending head bytes, linked to one SEND.
    private func copyChunk(_ body: any FileBodySource) {
        let b = buffer()
        let lead = pending.count
        guard let e = nextExtent(body, maxLength: b.buffer.capacity - lead) else { return }
        if lead > 0 { b.buffer.copyBytes(from: pending) ; pending.removeAll(keepingCapacity: true) }
        let total = lead + e.length
        let last = position + Int64(e.length) >= body.length
        inFlight += 1
        loop.readThenSend(e.fd, at: e.offset, into: b.buffer, readRange: lead..<total, to: fd, sendRange: 0..<total, more: !last) { [self] r, _ in
            withExtendedLifetime(e) {}
            guard sent(r) else { return }
            position += Int64(e.length)
            if Int(r) < total { return sendAll(b, Int(r)..<total, more: !last) { [self] in continueBody() } }
            continueBody()
        }
    }

    /// zerocopy: READ into a registered buffer, then SEND_ZC (its buffer is free at the notification).
    private func zeroCopyChunk(_ body: any FileBodySource) {
        let b = buffer()
        guard let e = nextExtent(body, maxLength: b.buffer.capacity) else { return }
        inFlight += 1
        loop.read(e.fd, into: b.buffer, range: 0..<e.length, at: e.offset) { [self] r, _ in
            inFlight -= 1
            if phase == .closing { return finishClosing() }
            guard Int(r) == e.length else { return close() }
            sendZeroCopy(b, 0..<e.length, extent: e)
        }
    }

    private func sendZeroCopy(_ b: SendBuffer, _ range: Range<Int>, extent e: FileExtent) {
        inFlight += 1
        loop.sendZeroCopy(fd, from: b.buffer, range: range) { [self] r, _ in
            guard sent(r) else { return }
            if Int(r) < range.count { return sendZeroCopy(b, (range.lowerBound + Int(r))..<range.upperBound, extent: e) }
            position += Int64(e.length)
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
                inFlight += 1
                loop.whenWritable(fd) { [self] _, _ in
                    inFlight -= 1
                    if phase == .closing { return finishClosing() }
                    continueBody()
                }
                return
            }
            progress(sent)
            position += Int64(sent)
        }
        finishResponse()
    }

    /// splice: file → pipe → socket, linked; what the socket did not take is drained from the pipe.
    private func spliceChunk(_ body: any FileBodySource) {
        if pipe == nil {
            do { pipe = try Socket.makePipe(capacity: owner.configuration.chunkSize) } catch { return close() }
        }
        guard let e = nextExtent(body, maxLength: owner.configuration.chunkSize) else { return }
        inFlight += 1
        loop.spliceToSocket(e.fd, at: e.offset, through: pipe!, to: fd, count: e.length) { [self] r, _ in
            withExtendedLifetime(e) {}
            guard sent(r) else { return }
            position += Int64(e.length)
            drainPipe(Int(e.length) - Int(r))
        }
    }

    private func drainPipe(_ remaining: Int) {
        guard remaining > 0 else { return continueBody() }
        inFlight += 1
        loop.spliceToSocket(fromPipe: pipe!.read, to: fd, count: remaining) { [self] r, _ in
            guard sent(r) else { return }
            drainPipe(remaining - Int(r))
        }
    }

    private func finishResponse() {
        body = nil
        if let b = sendBuffer { owner.returnBuffer(b); sendBuffer = nil }
        guard keepAlive else { return close() }
        phase = .idle
        phaseStarted = monotonicMilliseconds()
        process()  // a pipelined request may be waiting in the parser
    }

    // MARK: Closing

    /// Ends the connection: shutdown(2) makes pending operations finish; the descriptor is
    /// closed when the last of them has.
    func close() {
        guard phase != .closing else { return }
        phase = .closing
        Socket.shutdown(fd)
        finishClosing()
    }

    /// Called on a connection that should stop after its current response.
    func stopAfterResponse() {
        keepAlive = false
        if phase == .idle || phase == .readingHead { close() }
    }

    private var closed = false

    private func finishClosing() {
        guard phase == .closing, inFlight == 0, !closed else { return }
        closed = true
        body = nil
        if let b = sendBuffer { owner.returnBuffer(b); sendBuffer = nil }
        if let p = pipe { Socket.close(p.read); Socket.close(p.write); pipe = nil }
        owner.remove(self)
        Socket.close(fd)
    }
}

func monotonicMilliseconds() -> Int64 { SystemCalls.monotonicMilliseconds() }

#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterCore
@testable import DarterIO
import Synchronization
import DarterTestSupport

// MARK: Socket helpers (plain Glibc, independent of the code under test)

/// A TCP listener on 127.0.0.1 with a kernel-chosen port.
func makeLoopbackListener() throws -> (listener: FileDescriptor, port: UInt16) {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { throw Errno.current }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
    guard bound == 0, listen(s, 16) == 0 else { let e = Errno.current; Glibc.close(s); throw e }
    let named = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
    guard named == 0 else { let e = Errno.current; Glibc.close(s); throw e }
    return (FileDescriptor(rawValue: s), UInt16(bigEndian: addr.sin_port))
}

/// A blocking connect to 127.0.0.1:port (completes against the listen backlog).
func connectLoopback(port: UInt16) throws -> FileDescriptor {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { throw Errno.current }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { let e = Errno.current; Glibc.close(s); throw e }
    return FileDescriptor(rawValue: s)
}

func makeSocketPair() throws -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { throw Errno.current }
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}

func closeQuietly(_ fds: FileDescriptor...) { for fd in fds { Glibc.close(fd.rawValue) } }

/// Runs `body` on `loop` and waits for the value it hands `done` (from the loop's thread).
func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable (_ done: @escaping @Sendable (T) -> Void) -> Void) async -> T {
    await withCheckedContinuation { c in loop.execute { body { c.resume(returning: $0) } } }
}

/// One started loop per test, stopped at the end.
final class TestLoop: Sendable {
    let loop: EventLoop
    init(fixedBuffers: Int = 0, fixedBufferSize: Int = 256 << 10) throws {
        loop = try EventLoop(index: 0, entries: 256, fixedBuffers: fixedBuffers, fixedBufferSize: fixedBufferSize)
        loop.start()
    }
    deinit {
        loop.stop()
        loop.join()
    }
}

/// Sends all of `buffer[range]` from the loop (zero-copy or plain), continuing after short sends.
func sendAll(_ loop: EventLoop, _ socket: FileDescriptor, _ buffer: SharedIOBuffer, _ range: Range<Int>, zeroCopy: Bool = false) async -> Result<Int, Errno> {
    await onLoop(loop) { done in
        @Sendable func step(_ from: Int) {
            if from == range.upperBound { return done(.success(range.count)) }
            let handler: (Result<Int, Errno>) -> Void = { r in
                switch r {
                case .success(let n) where n > 0: step(from + n)
                case .success: done(.failure(.ioError))
                case .failure(let e): done(.failure(e))
                }
            }
            if zeroCopy { loop.sendZeroCopy(socket, from: buffer.buffer, range: from..<range.upperBound, handler) }
            else { loop.send(socket, from: buffer.buffer, range: from..<range.upperBound, handler) }
        }
        step(range.lowerBound)
    }
}

/// Receives from the loop until `range` is full or the peer closes; the byte count.
func receiveAll(_ loop: EventLoop, _ socket: FileDescriptor, _ buffer: SharedIOBuffer, _ range: Range<Int>) async -> Result<Int, Errno> {
    await onLoop(loop) { done in
        @Sendable func step(_ from: Int) {
            if from == range.upperBound { return done(.success(from - range.lowerBound)) }
            loop.receive(socket, into: buffer.buffer, range: from..<range.upperBound) { r in
                switch r {
                case .success(0): done(.success(from - range.lowerBound))
                case .success(let n): step(from + n)
                case .failure(let e): done(.failure(e))
                }
            }
        }
        step(range.lowerBound)
    }
}

/// Accepts one connection and connects to it, both through the loop; (client, server).
func connectedPair(_ loop: EventLoop) async throws -> (client: FileDescriptor, server: FileDescriptor) {
    let listener = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
    defer { closeQuietly(listener) }
    let address = SocketAddress(ipLiteral: "127.0.0.1", port: Socket.localPort(listener))!
    let client = try Socket.makeStreamSocket(for: address)
    let accepted = Mutex<FileDescriptor?>(nil)
    let connected: Result<Void, Errno> = await onLoop(loop) { done in
        var pending = 2
        var outcome: Result<Void, Errno> = .success(())
        let finish: (Result<Void, Errno>) -> Void = { r in
            if case .failure = r { outcome = r }
            pending -= 1
            if pending == 0 { done(outcome) }
        }
        let op = loop.acceptMultishot(listener, nonBlocking: false) { r, _ in
            switch r {
            case .success(let fd): accepted.withLock { $0 = fd }; finish(.success(()))
            case .failure(let e): finish(.failure(e))
            }
        }
        loop.connect(client, to: address) { r in
            finish(r)
            loop.cancel(op)  // one connection is enough
        }
    }
    try connected.get()
    return (client, accepted.withLock { $0 }!)
}

@Suite("EventLoop sockets: server and client on one loop")
struct EventLoopSocketTests {
    @Test("connect, accept, send and receive over loopback TCP; receive returns 0 after the peer shuts down")
    func tcpRoundTrip() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let (client, server) = try await connectedPair(loop)
        defer { closeQuietly(client, server) }
        #expect(fcntl(server.rawValue, F_GETFD) & FD_CLOEXEC != 0, "accepted socket is close-on-exec")
        #expect(fcntl(client.rawValue, F_GETFL) & O_NONBLOCK != 0, "client socket is non-blocking")
        let total = 1 << 20  // more than a socket buffer: exercises short sends and receives
        let out = SharedIOBuffer(IOBuffer(capacity: total))
        out.buffer.fillPattern(seed: 80, streamOffset: 0, range: 0..<total)
        let input = SharedIOBuffer(IOBuffer(capacity: total + 4096))
        async let received = receiveAll(loop, client, input, 0..<(total + 4096))
        #expect(try await sendAll(loop, server, out, 0..<total).get() == total)
        Glibc.shutdown(server.rawValue, Int32(SHUT_WR))
        #expect(try await received.get() == total)
        #expect(holds(input.buffer.matchesPattern(seed: 80, streamOffset: 0, range: 0..<total)))
        // The peer has shut down writing: further receives return 0.
        let again: Result<Int, Errno> = await onLoop(loop) { done in loop.receive(client, into: input.buffer, range: 0..<10, done) }
        #expect(try again.get() == 0)
        // The other direction, one small message, into the middle of a buffer.
        let msg = SharedIOBuffer(IOBuffer(capacity: 4096))
        msg.buffer.copyBytes(from: Array("ping".utf8))
        #expect(try await sendAll(loop, client, msg, 0..<4).get() == 4)
        let got: Result<Int, Errno> = await onLoop(loop) { done in loop.receive(server, into: input.buffer, range: 100..<200, done) }
        #expect(try got.get() == 4)
        #expect(input.buffer.bytes(100..<104) == Array("ping".utf8))
    }

    @Test("a receive with waitAll completes once its whole range has arrived, over many sends")
    func waitAll() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let (client, server) = try await connectedPair(loop)
        defer { closeQuietly(client, server) }
        let size = 4 << 20
        let input = SharedIOBuffer(IOBuffer(capacity: size))
        let completions = Atomic<Int>(0)
        let received: Task<Result<Int, Errno>, Never> = Task {
            await onLoop(loop) { done in
                loop.receive(client, into: input.buffer, range: 0..<size, waitAll: true) { r in
                    completions.add(1, ordering: .relaxed)
                    done(r)
                }
            }
        }
        let out = SharedIOBuffer(IOBuffer(capacity: size))
        out.buffer.fillPattern(seed: 3, streamOffset: 0, range: 0..<size)
        for start in stride(from: 0, to: size, by: 64 << 10) {
            #expect(try await sendAll(loop, server, out, start..<(start + (64 << 10))).get() == 64 << 10)
        }
        #expect(try await received.value.get() == size)
        #expect(completions.load(ordering: .relaxed) == 1)
        #expect(holds(input.buffer.matchesPattern(seed: 3, streamOffset: 0, range: 0..<size)))
    }

    @Test("connecting to a closed port fails with ECONNREFUSED")
    func connectRefused() async throws {
        let t = try TestLoop()
        let listener = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let address = SocketAddress(ipLiteral: "127.0.0.1", port: Socket.localPort(listener))!
        closeQuietly(listener)
        let s = try Socket.makeStreamSocket(for: address)
        defer { closeQuietly(s) }
        let r: Result<Void, Errno> = await onLoop(t.loop) { done in t.loop.connect(s, to: address, done) }
        #expect(throws: Errno(rawValue: ECONNREFUSED)) { try r.get() }
    }

    @Test("send to a peer that closed fails with EPIPE or ECONNRESET (no SIGPIPE)")
    func sendToClosedPeer() async throws {
        let t = try TestLoop()
        let (a, b) = try makeSocketPair()
        closeQuietly(b)
        defer { closeQuietly(a) }
        let out = SharedIOBuffer(IOBuffer(capacity: 4096))
        let r = await sendAll(t.loop, a, out, 0..<4096)
        #expect(r == .failure(.brokenPipe) || r == .failure(.connectionReset), "\(r)")
    }

    @Test("sendZeroCopy delivers the bytes, from registered and plain buffers; the buffer is free at completion", arguments: [64 << 10, 1 << 20])
    func zeroCopySend(size: Int) async throws {
        let t = try TestLoop(fixedBuffers: 2, fixedBufferSize: 256 << 10)
        let loop = t.loop
        let (client, server) = try await connectedPair(loop)
        defer { closeQuietly(client, server) }
        let out = SharedIOBuffer(loop.makeBuffer(capacity: size))
        #expect(out.buffer.isRegistered == (size <= 256 << 10))
        out.buffer.fillPattern(seed: UInt64(size), streamOffset: 0, range: 0..<size)
        let input = SharedIOBuffer(IOBuffer(capacity: size + 4096))
        async let received = receiveAll(loop, client, input, 0..<(size + 4096))
        #expect(try await sendAll(loop, server, out, 0..<size, zeroCopy: true).get() == size)
        // The completion came after the kernel released the buffer: changing it now must not
        // change what the peer receives.
        out.buffer.fill(0, range: 0..<size)
        Glibc.shutdown(server.rawValue, Int32(SHUT_WR))
        #expect(try await received.get() == size)
        #expect(holds(input.buffer.matchesPattern(seed: UInt64(size), streamOffset: 0, range: 0..<size)))
    }

    @Test("readThenSend and spliceToSocket move file bytes to a socket; a short read is EIO")
    func fileToSocket() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let dir = try TempDirectory("splice")
        let data = SplitMix64.bytes(20_000, seed: 12)
        try writeFile(dir.file("src"), data)
        let file = try SystemCalls.open(dir.file("src"), .readOnly)
        let (a, b) = try makeSocketPair()
        defer { closeQuietly(file, a, b) }
        let buffer = SharedIOBuffer(IOBuffer(capacity: 65536))
        buffer.buffer.copyBytes(from: Array("HEAD".utf8))
        let sent: Result<Int, Errno> = await onLoop(loop) { done in
            loop.readThenSend(file, at: 5000, into: buffer.buffer, readRange: 4..<10_004, to: a, sendRange: 0..<10_004, done)
        }
        #expect(try sent.get() == 10_004)
        let input = SharedIOBuffer(IOBuffer(capacity: 65536))
        #expect(try await receiveAll(loop, b, input, 0..<10_004).get() == 10_004)
        #expect(input.buffer.bytes(0..<4) == Array("HEAD".utf8))
        #expect(input.buffer.bytes(4..<10_004) == Array(data[5000..<15_000]))
        // Past the end of the file the read is short: the linked send is cancelled, reported as EIO.
        let short: Result<Int, Errno> = await onLoop(loop) { done in
            loop.readThenSend(file, at: 19_000, into: buffer.buffer, readRange: 0..<4096, to: a, sendRange: 0..<4096, done)
        }
        #expect(short == .failure(.ioError))

        let pipe = try Socket.makePipe(capacity: 1 << 16)
        defer { closeQuietly(pipe.read, pipe.write) }
        let spliced: Result<Int, Errno> = await onLoop(loop) { done in
            loop.spliceToSocket(file, at: 100, through: pipe, to: a, count: 3000, done)
        }
        #expect(try spliced.get() == 3000)
        #expect(try await receiveAll(loop, b, input, 0..<3000).get() == 3000)
        #expect(input.buffer.bytes(0..<3000) == Array(data[100..<3100]))
    }

    @Test("cancelling a pending receive ends it with ECANCELED; the socket works afterwards; a stale id cancels nothing")
    func cancelReceive() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let (a, b) = try makeSocketPair()
        defer { closeQuietly(a, b) }
        let buffer = SharedIOBuffer(IOBuffer(capacity: 4096))
        // Timed on the loop: from the cancel to the completion (the test task may wait long for
        // a pool thread when the suites run in parallel).
        let (r, delay): (Result<Int, Errno>, Duration) = await onLoop(loop) { done in
            var cancelledAt = ContinuousClock.now
            let op = loop.receive(a, into: buffer.buffer, range: 0..<4096) { r in done((r, ContinuousClock.now - cancelledAt)) }
            loop.schedule(after: .milliseconds(50)) {
                cancelledAt = ContinuousClock.now
                loop.cancel(op)
            }
        }
        #expect(r == .failure(.canceled))
        #expect(delay < .seconds(1), "the receive ended \(delay) after its cancel")

        // A receive that completed leaves a stale id; cancelling it must not hit the next
        // operation filed in the same slot.
        let out = SharedIOBuffer(IOBuffer(capacity: 4096))
        out.buffer.copyBytes(from: [1, 2, 3])
        let stale: OperationID = await onLoop(loop) { done in
            var id: OperationID?
            id = loop.receive(a, into: buffer.buffer, range: 0..<4096) { _ in done(id!) }
            loop.send(b, from: out.buffer, range: 0..<1) { _ in }
        }
        let second: Result<Int, Errno> = await onLoop(loop) { done in
            loop.receive(a, into: buffer.buffer, range: 0..<4096, done)
            loop.cancel(stale)
            loop.schedule(after: .milliseconds(50)) { loop.send(b, from: out.buffer, range: 0..<3) { _ in } }
        }
        #expect(try second.get() == 3)
    }

    @Test("cancelAll(on:) ends a pending accept")
    func cancelAccept() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let listener = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        defer { closeQuietly(listener) }
        let r: Result<FileDescriptor, Errno> = await onLoop(loop) { done in
            loop.acceptMultishot(listener, nonBlocking: false) { r, more in if !more { done(r) } }
            loop.schedule(after: .milliseconds(30)) { loop.cancelAll(on: listener) }
        }
        #expect(r == .failure(.canceled))
    }

    @Test("hop runs a callback from any thread on the loop, never re-entrantly")
    func hop() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let ran: (Bool, Bool) = await onLoop(loop) { done in
            var afterCall = false
            let back = loop.hop { (v: Int) in done((loop.inLoopThread && v == 7, afterCall)) }
            back(7)  // from the loop itself: runs on a later iteration
            afterCall = true
        }
        #expect(ran.0 && ran.1)
        let fromOther: Bool = await withCheckedContinuation { c in
            let back = loop.hop { (_: Int) in c.resume(returning: loop.inLoopThread) }
            detachThread { back(1) }
        }
        #expect(fromOther)
    }
}

@Suite("EventLoop confinement and groups")
struct EventLoopConfinementTests {
    @Test("a LoopBound value read off its loop's thread stops the process (debug builds)")
    func loopBoundOffLoop() async {
        await #expect(processExitsWith: .failure) {
            let loop = try! EventLoop(index: 0, entries: 8)
            loop.start()
            let bound = LoopBound(1, loop: loop)
            _ = bound.value  // the test's thread is not the loop's
        }
    }

    @Test("an operation started off the loop's thread stops the process (debug builds)")
    func operationOffLoop() async {
        await #expect(processExitsWith: .failure) {
            let loop = try! EventLoop(index: 0, entries: 8)
            loop.start()
            loop.schedule(after: .seconds(1)) {}
        }
    }

    @Test("a group hands out its loops in turn and knows the current one")
    func group() async throws {
        let group = try EventLoopGroup(count: 3, entries: 16)
        defer { group.shutdown() }
        let picks = (0..<6).map { _ in group.next().index }
        #expect(Set(picks) == [0, 1, 2])
        #expect(picks[0..<3].sorted() == [0, 1, 2])
        #expect(group.current == nil)
        let loop = group.loops[1]
        let current: Int? = await onLoop(loop) { done in done(group.current?.index) }
        #expect(current == 1)
    }
}


@Suite("EventLoop timers")
struct EventLoopTimerTests {
    @Test("a timer fires after about its delay; several run in deadline order")
    func delayAndOrder() async throws {
        let t = try TestLoop()
        let loop = t.loop
        for ms in [0, 20, 80] {
            let start = ContinuousClock.now
            let _: Bool = await onLoop(loop) { done in loop.schedule(after: .milliseconds(ms)) { done(true) } }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(ms), "fired after \(elapsed) for \(ms) ms")
            #expect(elapsed < .milliseconds(ms + 2000), "fired after \(elapsed) for \(ms) ms")
        }
        let order: [Int] = await onLoop(loop) { done in
            var fired: [Int] = []
            for (i, ms) in [60, 10, 40, 30, 50, 20].enumerated() {
                loop.schedule(after: .milliseconds(ms)) {
                    fired.append(i)
                    if fired.count == 6 { done(fired) }
                }
            }
        }
        #expect(order == [1, 5, 3, 2, 4, 0])
    }

    @Test("a cancelled timer never fires; the loop sleeps past it to the next")
    func cancel() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let fired: [String] = await onLoop(loop) { done in
            var fired: [String] = []
            let a = loop.schedule(after: .milliseconds(20)) { fired.append("a") }
            loop.schedule(after: .milliseconds(60)) { fired.append("b"); done(fired) }
            loop.cancelTimer(a)
            loop.cancelTimer(a)  // twice: harmless
        }
        #expect(fired == ["b"])
        let pending: Int = await onLoop(loop) { done in done(loop.pendingTimerCount) }
        #expect(pending == 0)
    }

    @Test("ten thousand timers cost one wait each iteration, not a submission each")
    func many() async throws {
        let t = try TestLoop()
        let loop = t.loop
        let start = ContinuousClock.now
        let count: Int = await onLoop(loop) { done in
            var n = 0
            for i in 0..<10_000 {
                loop.schedule(after: .milliseconds(10 + i % 50)) {
                    n += 1
                    if n == 10_000 { done(n) }
                }
            }
        }
        #expect(count == 10_000)
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}

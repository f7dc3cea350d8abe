#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Testing
@testable import DarterIO
import Synchronization

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

/// Sends all of `buffer[range]` with `send` (or `sendZeroCopy`), continuing after short sends.
func sendAll(_ uring: UringBackend, _ socket: FileDescriptor, _ buffer: borrowing IOBuffer, _ range: Range<Int>, zeroCopy: Bool = false) async throws(Errno) {
    var done = 0
    while done < range.count {
        let r = (range.lowerBound + done)..<range.upperBound
        let n = zeroCopy ? try await uring.sendZeroCopy(socket, from: buffer, range: r) : try await uring.send(socket, from: buffer, range: r)
        if n <= 0 { throw Errno.ioError }
        done += n
    }
}

/// Receives until `range` is full or the peer closes; returns the byte count.
func receiveAll(_ uring: UringBackend, _ socket: FileDescriptor, _ buffer: borrowing IOBuffer, _ range: Range<Int>) async throws(Errno) -> Int {
    var done = 0
    while done < range.count {
        let n = try await uring.receive(socket, into: buffer, range: (range.lowerBound + done)..<range.upperBound)
        if n == 0 { break }
        done += n
    }
    return done
}

/// Runs `operation` in a task, cancels it after `after`, and returns its outcome and how long
/// it took to end after the cancel. If the operation ignores the cancel, `unblock` runs after
/// `watchdog` so the test fails instead of hanging.
func cancelAndMeasure<T: Sendable>(after: Duration, watchdog: Duration = .seconds(3),
                                   unblock: @escaping @Sendable () -> Void,
                                   _ operation: @escaping @Sendable () async throws -> T) async -> (Result<T, any Error>, Duration) {
    let task = Task { try await operation() }
    if after > .zero { try? await Task.sleep(for: after) }
    let clock = ContinuousClock()
    let start = clock.now
    task.cancel()
    let guardTask = Task {
        try await Task.sleep(for: watchdog)
        unblock()
    }
    let result = await task.result
    guardTask.cancel()
    return (result, clock.now - start)
}

func makeUring(slots: Int = BackendKind.slotCount, slotSize: Int = BackendKind.slotSize) throws -> UringBackend {
    try UringBackend(entries: 256, fixedBuffers: slots, fixedBufferSize: slotSize)
}

// MARK: Registered buffers

@Suite("UringBackend registered buffers")
struct UringBufferTests {
    @Test("makeBuffer uses a registered slot when the capacity fits, a plain allocation when not")
    func registeredWhenFits() throws {
        let uring = try makeUring(slots: 4, slotSize: 64 << 10)
        let small = uring.makeBuffer(capacity: 100)
        #expect(holds(small.isRegistered))
        #expect(small.capacity == 64 << 10)
        let exact = uring.makeBuffer(capacity: 64 << 10)
        #expect(holds(exact.isRegistered))
        let large = uring.makeBuffer(capacity: (64 << 10) + 1)
        #expect(!holds(large.isRegistered))
        #expect(large.capacity == (64 << 10) + 4096)
        large.withUnsafeMutableBytes { #expect(Int(bitPattern: $0.baseAddress) % directIOAlignment == 0) }
        small.withUnsafeMutableBytes { #expect(Int(bitPattern: $0.baseAddress) % directIOAlignment == 0) }
        #expect(uring.fixedBufferSummary.hasPrefix("4 x "))
    }

    /// Holds `count` buffers at once (noncopyable values cannot go in an Array) and reports
    /// which were registered and their addresses.
    func holdBuffers(_ count: Int, from uring: UringBackend, capacity: Int) -> [(registered: Bool, address: Int)] {
        if count == 0 { return [] }
        let b = uring.makeBuffer(capacity: capacity)
        let me = (b.isRegistered, b.withUnsafeMutableBytes { Int(bitPattern: $0.baseAddress) })
        return [me] + holdBuffers(count - 1, from: uring, capacity: capacity)
    }

    @Test("a pool runs out after slotCount live buffers; dropped buffers go back")
    func poolExhaustionAndReturn() throws {
        let uring = try makeUring(slots: 16, slotSize: 64 << 10)
        let pool = try #require(uring.core.fixedBuffers)
        #expect(pool.freeCount == 16)
        let held = holdBuffers(17, from: uring, capacity: 4096)
        #expect(held.prefix(16).allSatisfy { $0.registered })
        #expect(!held[16].registered)
        #expect(Set(held.prefix(16).map { $0.address }).count == 16, "each live buffer has its own slot")
        #expect(pool.freeCount == 16, "all slots returned when the buffers were dropped")

        for i in 0..<20 {
            let b = uring.makeBuffer(capacity: 4096)
            #expect(holds(b.isRegistered), "buffer \(i)")
            #expect(pool.freeCount == 15)
        }
        #expect(pool.freeCount == 16)
    }

    @Test("with fixedBuffers: 0 nothing is registered")
    func noRegisteredBuffers() throws {
        let uring = try UringBackend(entries: 32, fixedBuffers: 0)
        #expect(uring.fixedBufferSummary == "no registered buffers")
        #expect(!holds(uring.makeBuffer(capacity: 4096).isRegistered))
    }

    @Test("buffers outlive the backend that made them")
    func bufferOutlivesBackend() throws {
        var uring: UringBackend? = try makeUring(slots: 2, slotSize: 8192)
        let b = uring!.makeBuffer(capacity: 4096)
        #expect(holds(b.isRegistered))
        uring = nil
        b.fill(7, range: 0..<8192)
        #expect(b.bytes(8000..<8192).allSatisfy { $0 == 7 })
    }

    @Test("the summary names the slot size even below 1 MiB")
    func summaryForSmallSlots() throws {
        let uring = try makeUring(slots: 16, slotSize: 256 << 10)
        #expect(!uring.fixedBufferSummary.contains(" 0 MiB"), "\(uring.fixedBufferSummary)")
    }
}

// MARK: Operations only io_uring has

@Suite("UringBackend operations")
struct UringOperationTests {
    @Test("statx reports the size")
    func statx() async throws {
        let uring = try makeUring()
        let dir = try TempDirectory("statx")
        for size in [0, 1, 12_345, 1 << 20] {
            let path = dir.file("f\(size)")
            try writeFile(path, SplitMix64.bytes(size, seed: UInt64(size)))
            let st = try await uring.statx(path)
            #expect(st.size == Int64(size))
            let a = st.directIOOffsetAlignment
            #expect(a == 0 || (a & (a - 1) == 0 && a <= 4096), "dio alignment \(a)")
        }
        await #expect(throws: Errno.noEntry) { _ = try await uring.statx(dir.file("missing")) }
    }

    @Test("accept, send and receive over loopback TCP; receive returns 0 after the peer closes")
    func tcpRoundTrip() async throws {
        let uring = try makeUring()
        let (listener, port) = try makeLoopbackListener()
        defer { closeQuietly(listener) }
        async let acceptedFD = uring.accept(listener)
        let client = try connectLoopback(port: port)
        let server = try await acceptedFD
        #expect(server.rawValue >= 0 && server != client)
        #expect(fcntl(server.rawValue, F_GETFD) & FD_CLOEXEC != 0, "accepted socket is close-on-exec")

        let total = 1 << 20  // more than a socket buffer: exercises short sends
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let out = uring.makeBuffer(capacity: total)
                out.fillPattern(seed: 80, streamOffset: 0, range: 0..<total)
                try await sendAll(uring, server, out, 0..<total)
                Glibc.shutdown(server.rawValue, Int32(SHUT_WR))
            }
            group.addTask {
                let input = uring.makeBuffer(capacity: total + 4096)
                let n = try await receiveAll(uring, client, input, 0..<(total + 4096))
                #expect(n == total)
                #expect(holds(input.matchesPattern(seed: 80, streamOffset: 0, range: 0..<total)))
                // The peer has shut down writing: further receives return 0.
                #expect(try await uring.receive(client, into: input, range: 0..<10) == 0)
            }
            try await group.waitForAll()
        }

        // And the other direction, one small message.
        let msg = uring.makeBuffer(capacity: 4096)
        msg.copyBytes(from: Array("ping".utf8))
        #expect(try await uring.send(client, from: msg, range: 0..<4) == 4)
        let reply = uring.makeBuffer(capacity: 4096)
        #expect(try await uring.receive(server, into: reply, range: 100..<200) == 4)
        #expect(reply.bytes(100..<104) == Array("ping".utf8))
        closeQuietly(client, server)
    }

    @Test("send to a peer that closed fails with EPIPE or ECONNRESET (no SIGPIPE)")
    func sendToClosedPeer() async throws {
        let uring = try makeUring()
        let (a, b) = try makeSocketPair()
        closeQuietly(b)
        let out = uring.makeBuffer(capacity: 4096)
        await #expect {
            _ = try await uring.send(a, from: out, range: 0..<4096)
        } throws: { error in
            (error as? Errno) == .brokenPipe || (error as? Errno) == .connectionReset
        }
        closeQuietly(a)
    }

    @Test("sendZeroCopy delivers the bytes, from registered and plain buffers", arguments: [64 << 10, 1 << 20])
    func zeroCopySend(size: Int) async throws {
        let uring = try makeUring()
        let (listener, port) = try makeLoopbackListener()
        defer { closeQuietly(listener) }
        async let acceptedFD = uring.accept(listener)
        let client = try connectLoopback(port: port)
        let server = try await acceptedFD
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let out = uring.makeBuffer(capacity: size)
                #expect(out.isRegistered == (size <= BackendKind.slotSize))
                out.fillPattern(seed: UInt64(size), streamOffset: 0, range: 0..<size)
                try await sendAll(uring, server, out, 0..<size, zeroCopy: true)
                // The send returned only after the kernel released the buffer: reusing it now
                // must not change what the peer receives.
                out.fill(0, range: 0..<size)
                Glibc.shutdown(server.rawValue, Int32(SHUT_WR))
            }
            group.addTask {
                let input = IOBuffer(capacity: size + 4096)
                let n = try await receiveAll(uring, client, input, 0..<(size + 4096))
                #expect(n == size)
                #expect(holds(input.matchesPattern(seed: UInt64(size), streamOffset: 0, range: 0..<size)))
            }
            try await group.waitForAll()
        }
        closeQuietly(client, server)
    }

    @Test("splice moves file bytes into a pipe, from an offset")
    func spliceFileToPipe() async throws {
        let uring = try makeUring()
        let dir = try TempDirectory("splice")
        let data = SplitMix64.bytes(20_000, seed: 12)
        try writeFile(dir.file("src"), data)
        let file = try SystemCalls.open(dir.file("src"), .readOnly)
        var p: [Int32] = [0, 0]
        #expect(pipe(&p) == 0)
        defer { closeQuietly(file, FileDescriptor(rawValue: p[0]), FileDescriptor(rawValue: p[1])) }

        var moved = 0
        while moved < 10_000 {
            let n = try await uring.splice(from: file, offsetIn: Int64(5000 + moved), to: FileDescriptor(rawValue: p[1]), offsetOut: nil, count: 10_000 - moved)
            #expect(n > 0)
            if n <= 0 { break }
            moved += n
        }
        var got = [UInt8](repeating: 0, count: 10_000)
        var read = 0
        while read < moved {
            let n = got[read...].withUnsafeMutableBytes { Glibc.read(p[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            read += n
        }
        #expect(read == 10_000)
        #expect(got == Array(data[5000..<15_000]))
        // Splicing at EOF moves nothing.
        #expect(try await uring.splice(from: file, offsetIn: 20_000, to: FileDescriptor(rawValue: p[1]), offsetOut: nil, count: 100) == 0)
        // Splicing between two regular files is not allowed (one end must be a pipe).
        let other = try SystemCalls.open(dir.file("dst"), [.create, .readWrite])
        defer { closeQuietly(other) }
        await #expect(throws: Errno.invalidArgument) {
            _ = try await uring.splice(from: file, offsetIn: 0, to: other, offsetOut: 0, count: 100)
        }
        // Into a descriptor not open for writing.
        await #expect(throws: Errno.badFileDescriptor) {
            _ = try await uring.splice(from: file, offsetIn: 0, to: FileDescriptor(rawValue: p[0]), offsetOut: nil, count: 100)
        }
    }

    @Test("sleep waits about as long as asked")
    func sleepDuration() async throws {
        let uring = try makeUring()
        for ms in [0, 20, 80] {
            let (_, elapsed) = try await measure { try await uring.sleep(nanoseconds: Int64(ms) * 1_000_000) }
            #expect(elapsed.milliseconds >= Double(ms) - 1, "slept \(elapsed) for \(ms) ms")
            // Generous: the whole suite shares 2 cores, so resuming can wait for a pool thread.
            #expect(elapsed.milliseconds < Double(ms) + 5000, "slept \(elapsed) for \(ms) ms")
        }
        // Several sleeps at once overlap rather than queue.
        let (_, together) = try await measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<10 { group.addTask { try await uring.sleep(nanoseconds: 100_000_000) } }
                try await group.waitForAll()
            }
        }
        #expect(together.milliseconds >= 99 && together.milliseconds < 950, "\(together)")
    }

    @Test("cancelling a task blocked in receive ends it promptly with ECANCELED (IORING_OP_ASYNC_CANCEL)")
    func cancelReceive() async throws {
        let uring = try makeUring()
        let (a, b) = try makeSocketPair()
        defer { closeQuietly(a, b) }
        let (result, elapsed) = await cancelAndMeasure(after: .milliseconds(100), unblock: { Glibc.shutdown(a.rawValue, Int32(SHUT_RDWR)) }) {
            let buffer = uring.makeBuffer(capacity: 4096)
            return try await uring.receive(a, into: buffer, range: 0..<4096)
        }
        #expect(throws: Errno.canceled) { try result.get() }
        #expect(elapsed < .seconds(1), "cancel took \(elapsed)")

        // The socket still works afterwards.
        let out = uring.makeBuffer(capacity: 4096)
        out.copyBytes(from: [1, 2, 3])
        #expect(try await uring.send(b, from: out, range: 0..<3) == 3)
        let input = uring.makeBuffer(capacity: 4096)
        #expect(try await uring.receive(a, into: input, range: 0..<4096) == 3)
    }

    @Test("cancelling accept and sleep works the same way")
    func cancelAcceptAndSleep() async throws {
        let uring = try makeUring()
        let (listener, _) = try makeLoopbackListener()
        defer { closeQuietly(listener) }
        let (accepted, t1) = await cancelAndMeasure(after: .milliseconds(50), unblock: { Glibc.shutdown(listener.rawValue, Int32(SHUT_RDWR)) }) {
            try await uring.accept(listener)
        }
        #expect(throws: Errno.canceled) { try accepted.get() }
        #expect(t1 < .seconds(1))

        let (slept, t2) = await cancelAndMeasure(after: .milliseconds(50), unblock: {}) {
            try await uring.sleep(nanoseconds: 5_000_000_000)
        }
        #expect(throws: Errno.canceled) { try slept.get() }
        #expect(t2 < .seconds(1))
    }

    @Test("an already-cancelled task does not start the operation")
    func alreadyCancelled() async throws {
        let uring = try makeUring()
        let (a, b) = try makeSocketPair()
        defer { closeQuietly(a, b) }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            let buffer = uring.makeBuffer(capacity: 4096)
            return try await uring.receive(a, into: buffer, range: 0..<4096)
        }
        await #expect(throws: Errno.canceled) { try await task.value }
    }

    @Test("dataSync on more descriptors than the submission queue holds")
    func dataSyncLargerThanRing() async throws {
        let uring = try UringBackend(entries: 8, fixedBuffers: 0)
        let dir = try TempDirectory("batch")
        var fds: [FileDescriptor] = []
        for i in 0..<9 { fds.append(try await uring.open(dir.file("f\(i)"), [.create, .readWrite])) }
        await #expect(throws: Never.self) { try await uring.dataSync(fds) }
        for fd in fds { try await uring.close(fd) }
    }

    @Test("a cancel that lands between the isCancelled check and the submit still cancels")
    func cancelRaceStress() async throws {
        let uring = try makeUring()
        let (a, b) = try makeSocketPair()
        defer { closeQuietly(a, b) }
        var hangs = 0, canceled = 0
        for i in 0..<20_000 {
            let started = Atomic<Bool>(false)
            let task = Task {
                let buffer = uring.makeBuffer(capacity: 4096)
                started.store(true, ordering: .releasing)
                return try await uring.receive(a, into: buffer, range: 0..<4096)
            }
            // Cancel at a varying moment shortly after the task starts its receive.
            while !started.load(ordering: .acquiring) {}
            var spin = 0
            for _ in 0..<(i % 400) { spin &+= 1; if spin < 0 { print() } }
            task.cancel()
            let outcome = await withTaskGroup(of: Result<Int, any Error>?.self) { group in
                group.addTask { await task.result }
                group.addTask { try? await Task.sleep(for: .milliseconds(500)); return nil }
                var outcome: Result<Int, any Error>?
                for await r in group {
                    if let r { outcome = r; group.cancelAll(); break }
                    // Watchdog: the receive ignored the cancel; feed it a byte so it returns.
                    let one = IOBuffer(capacity: 4096)
                    _ = try? await uring.send(b, from: one, range: 0..<1)
                }
                return outcome!
            }
            switch outcome {
            case .failure(let e as Errno) where e == .canceled: canceled += 1
            default: hangs += 1
            }
        }
        #expect(hangs == 0, "\(hangs) receives ignored their cancel (\(canceled) cancelled)")
    }
}

#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Testing
import DarterIO

@Suite("FaultInjectingBackend")
struct FaultInjectionTests {
    func make() throws -> FaultInjectingBackend {
        FaultInjectingBackend(wrapping: try makeUring())
    }

    @Test("an injected ENOSPC on allocate surfaces once, does nothing, then allocate works")
    func allocateNoSpaceOnce() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        let fd = try await backend.open(dir.file("f"), [.create, .readWrite])
        backend.inject(.fail(.noSpace), on: .allocate)
        await #expect(throws: Errno.noSpace) { try await backend.allocate(fd, offset: 0, length: 1 << 20) }
        #expect(try SystemCalls.fileSize(fd) == 0, "the failed call did nothing")
        try await backend.allocate(fd, offset: 0, length: 1 << 20)
        #expect(try SystemCalls.fileSize(fd) == 1 << 20)
        try await backend.allocate(fd, offset: 0, length: 2 << 20)
        #expect(backend.count(.allocate) == 3)
        #expect(backend.count(.write) == 0)
        try await backend.close(fd)
    }

    @Test("skip lets that many calls through, then `times` calls fail, then calls succeed again")
    func skipAndTimes() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        try writeFile(dir.file("f"), SplitMix64.bytes(4096, seed: 1))
        let fd = try await backend.open(dir.file("f"), .readOnly)
        backend.inject(.fail(.ioError), on: .read, skip: 2, times: 2)
        let b = backend.makeBuffer(capacity: 4096)
        var outcomes: [Bool] = []
        for _ in 0..<6 {
            do {
                let n = try await backend.read(fd, into: b, range: 0..<4096, at: 0)
                #expect(n == 4096)
                outcomes.append(true)
            } catch {
                #expect(error == .ioError)
                outcomes.append(false)
            }
        }
        #expect(outcomes == [true, true, false, false, true, true])
        #expect(backend.count(.read) == 6)
        try await backend.close(fd)
    }

    @Test("a torn write leaves exactly the prefix and throws EIO")
    func tornWrite() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        let fd = try await backend.open(dir.file("torn"), [.create, .readWrite])
        let b = backend.makeBuffer(capacity: 8192)
        b.fillPattern(seed: 9, streamOffset: 0, range: 0..<8192)
        backend.inject(.tornWrite(bytes: 1234), on: .write)
        await #expect(throws: Errno.ioError) { _ = try await backend.write(fd, from: b, range: 8..<3008, at: 100) }
        #expect(try SystemCalls.fileSize(fd) == 100 + 1234)
        let onDisk = try readFile(dir.file("torn"))
        #expect(onDisk[0..<100].allSatisfy { $0 == 0 })
        #expect(Array(onDisk[100...]) == b.bytes(8..<(8 + 1234)))

        // The fault was used up: the retry writes everything.
        try await backend.writeAll(fd, from: b, range: 8..<3008, at: 100)
        #expect(try SystemCalls.fileSize(fd) == 3100)
        #expect(Array(try readFile(dir.file("torn"))[100...]) == b.bytes(8..<3008))

        // A torn write asking for more than the range keeps the whole range, still EIO.
        backend.inject(.tornWrite(bytes: 1 << 20), on: .write)
        await #expect(throws: Errno.ioError) { _ = try await backend.write(fd, from: b, range: 0..<16, at: 5000) }
        #expect(try SystemCalls.fileSize(fd) == 5016)
        #expect(backend.count(.write) == 3)
        try await backend.close(fd)
    }

    @Test("a torn O_DIRECT write keeps the whole blocks of its prefix")
    func tornDirectWrite() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        let fd = try await backend.open(dir.file("torn"), [.create, .readWrite, .direct])
        let b = backend.makeBuffer(capacity: 16 << 10)
        b.fillPattern(seed: 10, streamOffset: 0, range: 0..<(16 << 10))
        backend.inject(.tornWrite(bytes: 6000), on: .write)
        await #expect(throws: Errno.ioError) { _ = try await backend.write(fd, from: b, range: 0..<(16 << 10), at: 0) }
        #expect(try SystemCalls.fileSize(fd) == 4096)
        try await backend.close(fd)
    }

    @Test("faults on open, rename, unlink, truncate, dataSync and sync do nothing and surface the error")
    func metadataFaults() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        try writeFile(dir.file("a"), [1, 2, 3])

        backend.inject(.fail(.permissionDenied), on: .open)
        await #expect(throws: Errno.permissionDenied) { try await backend.open(dir.file("new"), [.create, .readWrite]) }
        #expect(!SystemCalls.exists(dir.file("new")))

        backend.inject(.fail(.ioError), on: .rename)
        await #expect(throws: Errno.ioError) { try await backend.rename(dir.file("a"), to: dir.file("b")) }
        #expect(SystemCalls.exists(dir.file("a")) && !SystemCalls.exists(dir.file("b")))

        backend.inject(.fail(.busy), on: .unlink)
        await #expect(throws: Errno.busy) { try await backend.unlink(dir.file("a")) }
        #expect(SystemCalls.exists(dir.file("a")))

        let fd = try await backend.open(dir.file("a"), .readWrite)
        backend.inject(.fail(.ioError), on: .truncate)
        await #expect(throws: Errno.ioError) { try await backend.truncate(fd, length: 0) }
        #expect(try SystemCalls.fileSize(fd) == 3)

        // sync is counted and faulted as .dataSync.
        backend.inject(.fail(.ioError), on: .dataSync, times: 2)
        await #expect(throws: Errno.ioError) { try await backend.dataSync([fd]) }
        await #expect(throws: Errno.ioError) { try await backend.sync(fd) }
        try await backend.dataSync([fd])
        try await backend.sync(fd)
        #expect(backend.count(.dataSync) == 4)
        #expect(backend.count(.open) == 2)
        #expect(backend.count(.rename) == 1)
        #expect(backend.count(.unlink) == 1)
        #expect(backend.count(.truncate) == 1)
        try await backend.close(fd)
    }

    @Test("clearFaults drops pending faults; rules apply per operation")
    func clearAndScope() async throws {
        let backend = try make()
        let dir = try TempDirectory("fault")
        let fd = try await backend.open(dir.file("f"), [.create, .readWrite])
        backend.inject(.fail(.noSpace), on: .allocate, times: 5)
        backend.inject(.fail(.ioError), on: .write)
        // A read is not affected by the write rule.
        let b = backend.makeBuffer(capacity: 4096)
        #expect(try await backend.read(fd, into: b, range: 0..<10, at: 0) == 0)
        await #expect(throws: Errno.noSpace) { try await backend.allocate(fd, offset: 0, length: 4096) }
        backend.clearFaults()
        try await backend.allocate(fd, offset: 0, length: 4096)
        #expect(try await backend.write(fd, from: b, range: 0..<10, at: 0) == 10)
        #expect(backend.count(.allocate) == 2)
        try await backend.close(fd)
    }

    @Test("makeBuffer and name come from the wrapped backend")
    func forwarding() throws {
        let backend = try make()
        #expect(backend.name == "fault-injecting(io_uring)")
        #expect(holds(backend.makeBuffer(capacity: 4096).isRegistered))
        let threads = FaultInjectingBackend(wrapping: ThreadPoolBackend())
        #expect(threads.name == "fault-injecting(thread-pool)")
        #expect(!holds(threads.makeBuffer(capacity: 4096).isRegistered))
    }
}

@Suite("makeIOBackend")
struct MakeIOBackendTests {
    final class Lines: @unchecked Sendable {
        var lines: [String] = []
    }

    @Test(".threads gives the thread pool and logs one line")
    func threads() throws {
        let log = Lines()
        let b = try makeIOBackend(.threads, log: { log.lines.append($0) })
        #expect(b is ThreadPoolBackend)
        #expect(b.name == "thread-pool")
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("thread-pool") == true)
    }

    @Test(".auto gives io_uring on this host and logs one line naming it",
          .enabled(if: getenv("DARTER_IO_BACKEND") == nil, "the process environment forces a backend"))
    func auto() throws {
        let log = Lines()
        let b = try makeIOBackend(.auto, fixedBuffers: 2, fixedBufferSize: 1 << 20, log: { log.lines.append($0) })
        #expect(b is UringBackend)
        #expect(b.name == "io_uring")
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("io_uring") == true)
        #expect(log.lines.first?.contains("2 x 1 MiB registered buffers") == true, "\(log.lines)")
    }

    @Test(".uring gives io_uring and says it was requested")
    func uring() throws {
        let log = Lines()
        let b = try makeIOBackend(.uring, fixedBuffers: 0, environment: ["DARTER_IO_BACKEND": "threads"], log: { log.lines.append($0) })
        #expect(b is UringBackend, "an explicit choice wins over the environment")
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("io_uring") == true)
        #expect(log.lines.first?.contains("requested") == true)
    }

    @Test("DARTER_IO_BACKEND=threads in the environment turns .auto into the thread pool")
    func environmentForcesThreads() throws {
        let log = Lines()
        let b = try makeIOBackend(.auto, environment: ["DARTER_IO_BACKEND": "threads"], log: { log.lines.append($0) })
        #expect(b is ThreadPoolBackend)
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("thread-pool") == true)
    }

    @Test("DARTER_IO_BACKEND=uring in the environment gives io_uring; an unknown value is ignored")
    func environmentOtherValues() throws {
        #expect(try makeIOBackend(.auto, fixedBuffers: 0, environment: ["DARTER_IO_BACKEND": "uring"]) is UringBackend)
        #expect(try makeIOBackend(.threads, environment: ["DARTER_IO_BACKEND": "uring"]) is ThreadPoolBackend)
        if getenv("DARTER_IO_BACKEND") == nil {
            #expect(try makeIOBackend(.auto, fixedBuffers: 0, environment: ["DARTER_IO_BACKEND": "bogus"]) is UringBackend)
        }
        #expect(Set(IOBackendChoice.allCases.map(\.rawValue)) == ["auto", "uring", "threads"])
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import DarterIO

/// The IOBackend contract, run against every backend.
@Suite("IOBackend contract")
struct BackendContractTests {
    @Test("create / write / read back / sync / size", arguments: BackendKind.allCases)
    func writeReadBack(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let path = dir.file("data")
        let fd = try await backend.open(path, [.create, .readWrite, .exclusive])
        let segment = 100 << 10
        let out = backend.makeBuffer(capacity: segment)
        for i in 0..<3 {
            out.fillPattern(seed: 1, streamOffset: Int64(i * segment), range: 0..<segment)
            try await backend.writeAll(fd, from: out, range: 0..<segment, at: Int64(i * segment))
        }
        try await backend.dataSync([fd])
        try await backend.sync(fd)
        #expect(try SystemCalls.fileSize(fd) == Int64(3 * segment))

        let input = backend.makeBuffer(capacity: 3 * segment)
        let n = try await backend.readFully(fd, into: input, range: 0..<(3 * segment), at: 0)
        #expect(n == 3 * segment)
        #expect(holds(input.matchesPattern(seed: 1, streamOffset: 0, range: 0..<(3 * segment))))

        // A read at EOF returns 0; readFully near EOF returns what is there.
        #expect(try await backend.read(fd, into: input, range: 0..<100, at: Int64(3 * segment)) == 0)
        let tail = try await backend.readFully(fd, into: input, range: 0..<4096, at: Int64(3 * segment - 1000))
        #expect(tail == 1000)
        #expect(holds(input.equals(0..<8, out, (segment - 1000)..<(segment - 992))))
        try await backend.close(fd)

        // An independent reader sees the same bytes.
        let onDisk = try readFile(path)
        #expect(onDisk.count == 3 * segment)
        #expect(onDisk[(2 * segment)..<(2 * segment + 64)].elementsEqual(out.bytes(0..<64)))
    }

    @Test("writes at an offset past EOF leave a zero-filled hole", arguments: BackendKind.allCases)
    func sparseWrite(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let fd = try await backend.open(dir.file("sparse"), [.create, .readWrite])
        let b = backend.makeBuffer(capacity: 4096)
        b.fill(0xEE, range: 0..<10)
        try await backend.writeAll(fd, from: b, range: 0..<10, at: 1 << 20)
        #expect(try SystemCalls.fileSize(fd) == (1 << 20) + 10)
        let r = backend.makeBuffer(capacity: 8192)
        r.fill(0xFF, range: 0..<8192)
        #expect(try await backend.readFully(fd, into: r, range: 0..<8192, at: (1 << 20) - 8182) == 8192)
        #expect(r.bytes(0..<8182).allSatisfy { $0 == 0 })
        #expect(r.bytes(8182..<8192) == [UInt8](repeating: 0xEE, count: 10))
        try await backend.close(fd)
    }

    @Test("allocate reserves the size; truncate shrinks and grows", arguments: BackendKind.allCases)
    func allocateAndTruncate(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let fd = try await backend.open(dir.file("alloc"), [.create, .readWrite])
        #expect(try SystemCalls.fileSize(fd) == 0)
        try await backend.allocate(fd, offset: 0, length: 1 << 20)
        #expect(try SystemCalls.fileSize(fd) == 1 << 20)
        try await backend.allocate(fd, offset: 3 << 20, length: 5000)
        #expect(try SystemCalls.fileSize(fd) == (3 << 20) + 5000)
        // Allocating inside the file does not shrink it.
        try await backend.allocate(fd, offset: 0, length: 10)
        #expect(try SystemCalls.fileSize(fd) == (3 << 20) + 5000)
        var st = stat()
        #expect(fstat(fd.rawValue, &st) == 0)
        #expect(Int64(st.st_blocks) * 512 >= (1 << 20) + 4096, "fallocate reserved blocks")

        try await backend.truncate(fd, length: 5000)
        #expect(try SystemCalls.fileSize(fd) == 5000)
        try await backend.truncate(fd, length: 0)
        #expect(try SystemCalls.fileSize(fd) == 0)
        try await backend.truncate(fd, length: 123_456)
        #expect(try SystemCalls.fileSize(fd) == 123_456)

        await #expect(throws: Errno.invalidArgument) { try await backend.allocate(fd, offset: 0, length: 0) }
        await #expect(throws: Errno.invalidArgument) { try await backend.truncate(fd, length: -1) }
        try await backend.close(fd)
    }

    @Test("allocate keepingSize reserves blocks without changing the size; writes then extend it", arguments: BackendKind.allCases)
    func allocateKeepingSize(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let fd = try await backend.open(dir.file("keep"), [.create, .readWrite, .direct])
        try await backend.allocate(fd, offset: 0, length: 4 << 20, keepingSize: true)
        #expect(try SystemCalls.fileSize(fd) == 0)
        var st = stat()
        #expect(fstat(fd.rawValue, &st) == 0)
        #expect(Int64(st.st_blocks) * 512 >= 4 << 20, "fallocate reserved blocks")
        let buffer = backend.makeBuffer(capacity: 1 << 20)
        buffer.fillPattern(seed: 7, streamOffset: 0, range: 0..<(1 << 20))
        _ = try await backend.writeAll(fd, from: buffer, range: 0..<(1 << 20), at: 2 << 20)
        #expect(try SystemCalls.fileSize(fd) == 3 << 20, "a write past the size extends it")
        let back = backend.makeBuffer(capacity: 1 << 20)
        #expect(try await backend.readFully(fd, into: back, range: 0..<(1 << 20), at: 2 << 20) == 1 << 20)
        #expect(back.bytes(0..<(1 << 20)) == buffer.bytes(0..<(1 << 20)))
        try await backend.close(fd)
    }

    @Test("rename, unlink, and their errors", arguments: BackendKind.allCases)
    func renameAndUnlink(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let a = dir.file("a"), b = dir.file("b with spaces é")
        try writeFile(a, Array("hello".utf8))
        try await backend.rename(a, to: b)
        #expect(!SystemCalls.exists(a))
        #expect(SystemCalls.exists(b))
        #expect(try readFile(b) == Array("hello".utf8))
        // Rename over an existing file replaces it.
        try writeFile(a, Array("other".utf8))
        try await backend.rename(a, to: b)
        #expect(try readFile(b) == Array("other".utf8))

        await #expect(throws: Errno.noEntry) { try await backend.rename(dir.file("missing"), to: dir.file("x")) }
        try await backend.unlink(b)
        #expect(!SystemCalls.exists(b))
        await #expect(throws: Errno.noEntry) { try await backend.unlink(b) }
        #expect(try SystemCalls.listDirectory(dir.path).isEmpty)
    }

    @Test("open errors are typed", arguments: BackendKind.allCases)
    func openErrors(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        await #expect(throws: Errno.noEntry) { try await backend.open(dir.file("missing"), .readOnly) }
        await #expect(throws: Errno.noEntry) { try await backend.open(dir.file("no/such/dir"), [.create, .readWrite]) }
        let fd = try await backend.open(dir.file("f"), [.create, .readWrite], mode: 0o600)
        try await backend.close(fd)
        var st = stat()
        #expect(stat(dir.file("f"), &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        await #expect(throws: Errno.exists) { try await backend.open(dir.file("f"), [.create, .exclusive, .readWrite]) }
        await #expect(throws: Errno(rawValue: EISDIR)) { try await backend.open(dir.path, .readWrite) }
        let d = try await backend.open(dir.path, [.readOnly, .directory])
        try await backend.close(d)
        await #expect(throws: Errno(rawValue: ENOTDIR)) { try await backend.open(dir.file("f"), [.readOnly, .directory]) }
    }

    @Test("operations on a descriptor that is not open fail with EBADF", arguments: BackendKind.allCases)
    func badDescriptor(kind: BackendKind) async throws {
        // Tests run in parallel, so a just-closed number may already belong to another test:
        // use one far above anything this process opens.
        let fd = unusedDescriptor
        let backend = try kind.make()
        let b = backend.makeBuffer(capacity: 4096)
        await #expect(throws: Errno.badFileDescriptor) { _ = try await backend.read(fd, into: b, range: 0..<10, at: 0) }
        await #expect(throws: Errno.badFileDescriptor) { _ = try await backend.write(fd, from: b, range: 0..<10, at: 0) }
        await #expect(throws: Errno.badFileDescriptor) { try await backend.sync(fd) }
        await #expect(throws: Errno.badFileDescriptor) { try await backend.allocate(fd, offset: 0, length: 4096) }
        await #expect(throws: Errno.badFileDescriptor) { try await backend.truncate(fd, length: 0) }
        await #expect(throws: Errno.badFileDescriptor) { try await backend.close(fd) }
    }

    @Test("dataSync on several descriptors at once; one bad descriptor fails the batch", arguments: BackendKind.allCases)
    func dataSyncBatch(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        var fds: [FileDescriptor] = []
        let b = backend.makeBuffer(capacity: 4096)
        b.fill(1, range: 0..<4096)
        for i in 0..<5 {
            let fd = try await backend.open(dir.file("f\(i)"), [.create, .readWrite])
            try await backend.writeAll(fd, from: b, range: 0..<4096, at: 0)
            fds.append(fd)
        }
        try await backend.dataSync(fds)
        try await backend.dataSync([])
        let bad = unusedDescriptor
        await #expect(throws: Errno.badFileDescriptor) { try await backend.dataSync([fds[0], bad, fds[1]]) }
        for fd in fds { try await backend.close(fd) }
    }

    @Test("O_DIRECT with aligned buffers: registered and unregistered; unaligned I/O is EINVAL", arguments: BackendKind.allCases)
    func directIO(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let fd = try await backend.open(dir.file("direct"), [.create, .readWrite, .direct])
        // Small enough for a registered slot, and larger than any slot (plain READ/WRITE).
        for (size, offset) in [(64 << 10, Int64(0)), (1 << 20, Int64(1 << 20)), (4096, Int64(8 << 20))] {
            let out = backend.makeBuffer(capacity: size)
            #expect(out.isRegistered == (kind.registersBuffers && size <= BackendKind.slotSize))
            out.fillPattern(seed: UInt64(size), streamOffset: offset, range: 0..<size)
            try await backend.writeAll(fd, from: out, range: 0..<size, at: offset)
            let input = backend.makeBuffer(capacity: size)
            input.fill(0, range: 0..<size)
            #expect(try await backend.readFully(fd, into: input, range: 0..<size, at: offset) == size)
            #expect(holds(input.matchesPattern(seed: UInt64(size), streamOffset: offset, range: 0..<size)))
        }
        try await backend.dataSync([fd])
        // Read at an aligned offset into the middle of a buffer (aligned too).
        let mid = backend.makeBuffer(capacity: 16 << 10)
        #expect(try await backend.read(fd, into: mid, range: 4096..<12_288, at: 4096) == 8192)
        #expect(holds(mid.matchesPattern(seed: 64 << 10, streamOffset: 4096, range: 4096..<12_288)))

        let b = backend.makeBuffer(capacity: 8192)
        await #expect(throws: Errno.invalidArgument) { _ = try await backend.write(fd, from: b, range: 0..<100, at: 0) }
        await #expect(throws: Errno.invalidArgument) { _ = try await backend.write(fd, from: b, range: 0..<4096, at: 100) }
        await #expect(throws: Errno.invalidArgument) { _ = try await backend.read(fd, into: b, range: 1..<4097, at: 0) }
        try await backend.close(fd)
    }

    @Test("64 concurrent reads complete with the right bytes", arguments: BackendKind.allCases)
    func concurrentReads(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let segment = 16 << 10, count = 64
        let fd = try await backend.open(dir.file("many"), [.create, .readWrite, .direct])
        let out = backend.makeBuffer(capacity: segment * count)
        out.fillPattern(seed: 64, streamOffset: 0, range: 0..<(segment * count))
        try await backend.writeAll(fd, from: out, range: 0..<(segment * count), at: 0)

        let good = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in (0..<count).reversed() {
                group.addTask {
                    let b = backend.makeBuffer(capacity: segment)  // 64 > 16 slots: some registered, some not
                    let n = try await backend.readFully(fd, into: b, range: 0..<segment, at: Int64(i * segment))
                    return n == segment && b.matchesPattern(seed: 64, streamOffset: Int64(i * segment), range: 0..<segment)
                }
            }
            var good = 0
            for try await ok in group where ok { good += 1 }
            return good
        }
        #expect(good == count)
        try await backend.close(fd)
    }

    @Test("concurrent writes to disjoint ranges, then verify", arguments: BackendKind.allCases)
    func concurrentWrites(kind: BackendKind) async throws {
        let backend = try kind.make()
        let dir = try TempDirectory(kind.rawValue)
        let segment = 8 << 10, count = 48
        let fd = try await backend.open(dir.file("w"), [.create, .readWrite])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                group.addTask {
                    let b = backend.makeBuffer(capacity: segment)
                    b.fillPattern(seed: 5, streamOffset: Int64(i * segment), range: 0..<segment)
                    try await backend.writeAll(fd, from: b, range: 0..<segment, at: Int64(i * segment))
                }
            }
            try await group.waitForAll()
        }
        let all = backend.makeBuffer(capacity: segment * count)
        #expect(try await backend.readFully(fd, into: all, range: 0..<(segment * count), at: 0) == segment * count)
        #expect(holds(all.matchesPattern(seed: 5, streamOffset: 0, range: 0..<(segment * count))))
        try await backend.close(fd)
    }

    @Test("name", arguments: BackendKind.allCases)
    func name(kind: BackendKind) throws {
        let expected = ["uring": "io_uring", "threads": "thread-pool", "faultInjectingUring": "fault-injecting(io_uring)"]
        #expect(try kind.make().name == expected[kind.rawValue])
    }
}

@Suite("SystemCalls")
struct SystemCallsTests {
    @Test("fileSystemSpace reports a plausible disk")
    func fileSystemSpace() throws {
        let dir = try TempDirectory("fs")
        let space = try SystemCalls.fileSystemSpace(dir.path)
        #expect(space.totalBytes > 0)
        #expect(space.availableBytes >= 0 && space.availableBytes <= space.totalBytes)
        #expect(space.usedFraction >= 0 && space.usedFraction <= 1)
        #expect(throws: Errno.noEntry) { try SystemCalls.fileSystemSpace(dir.file("missing")) }
        #expect(FileSystemSpace(totalBytes: 0, availableBytes: 0).usedFraction == 0)
        #expect(FileSystemSpace(totalBytes: 100, availableBytes: 25).usedFraction == 0.75)
    }

    @Test("makeDirectories, listDirectory, rename, unlink, removeDirectory, syncDirectory")
    func metadata() throws {
        let dir = try TempDirectory("meta")
        let deep = dir.file("a/b/c")
        try SystemCalls.makeDirectories(deep)
        try SystemCalls.makeDirectories(deep)  // idempotent
        #expect(SystemCalls.exists(deep))
        try writeFile(deep + "/x", [1, 2, 3])
        try writeFile(deep + "/y", [])
        #expect(Set(try SystemCalls.listDirectory(deep)) == ["x", "y"])
        try SystemCalls.rename(deep + "/x", deep + "/z")
        #expect(Set(try SystemCalls.listDirectory(deep)) == ["y", "z"])
        try SystemCalls.syncDirectory(deep)
        #expect(throws: Errno(rawValue: ENOTEMPTY)) { try SystemCalls.removeDirectory(deep) }
        try SystemCalls.unlink(deep + "/y")
        try SystemCalls.unlink(deep + "/z")
        try SystemCalls.removeDirectory(deep)
        #expect(!SystemCalls.exists(deep))
        #expect(throws: Errno.noEntry) { try SystemCalls.listDirectory(deep) }
        #expect(throws: Errno.noEntry) { try SystemCalls.unlink(deep + "/y") }

        let fd = try SystemCalls.open(dir.file("s"), [.create, .writeOnly])
        #expect(try SystemCalls.fileSize(fd) == 0)
        try SystemCalls.close(fd)
        #expect(throws: Errno.badFileDescriptor) { try SystemCalls.fileSize(fd) }
        #expect(SystemCalls.residentBytes() > 1 << 20)
    }

    @Test("Errno descriptions name the error")
    func errnoDescription() {
        #expect(Errno.noEntry.description.contains("No such file"))
        #expect(Errno.noEntry.description.contains("errno 2"))
        #expect(Errno.noSpace == Errno(rawValue: ENOSPC))
    }
}

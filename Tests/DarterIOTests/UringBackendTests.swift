#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Testing
@testable import DarterIO
import Synchronization

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

    @Test("dataSync on more descriptors than the submission queue holds")
    func dataSyncLargerThanRing() async throws {
        let uring = try UringBackend(entries: 8, fixedBuffers: 0)
        let dir = try TempDirectory("batch")
        var fds: [FileDescriptor] = []
        for i in 0..<9 { fds.append(try await uring.open(dir.file("f\(i)"), [.create, .readWrite])) }
        await #expect(throws: Never.self) { try await uring.dataSync(fds) }
        for fd in fds { try await uring.close(fd) }
    }
}

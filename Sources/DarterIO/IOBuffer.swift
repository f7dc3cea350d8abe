#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CURing
import DarterCore

/// Alignment for direct I/O: buffer address, file offset and length must be multiples of it.
public let directIOAlignment = 4096

/// Rounds `n` up to a multiple of ``directIOAlignment``.
@inlinable public func alignUp(_ n: Int) -> Int { (n + directIOAlignment - 1) & ~(directIOAlignment - 1) }
/// Rounds `n` down to a multiple of ``directIOAlignment``.
@inlinable public func alignDown(_ n: Int) -> Int { n & ~(directIOAlignment - 1) }

/// `size` bytes of zeroed, page-aligned memory, and how much of it is an own mapping.
private func allocateZeroed(_ size: Int) -> (UnsafeMutableRawPointer, Int) {
    if size >= 1 << 20 {
        let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
        precondition(raw != MAP_FAILED && raw != nil, "mmap(\(size)) failed: errno \(errno)")
        return (raw!, size)
    }
    var p: UnsafeMutableRawPointer?
    let r = posix_memalign(&p, directIOAlignment, size)
    precondition(r == 0 && p != nil, "posix_memalign(\(size)) failed: \(r)")
    memset(p!, 0, size)
    return (p!, 0)
}

/// A page-aligned byte buffer that I/O reads into and writes from. It is the only way bytes
/// reach the disk, so it owns its memory: when the buffer came from a backend's registered
/// pool, dropping it hands the slot back; otherwise it frees the allocation.
public struct IOBuffer: ~Copyable, @unchecked Sendable {
    // The memory is owned uniquely by this value; sending it moves ownership.
    let base: UnsafeMutableRawPointer
    public let capacity: Int
    /// Index among the ring's registered buffers, or -1.
    let fixedIndex: Int32
    let pool: FixedBufferPool?
    /// Bytes mapped with mmap(2) for this buffer (0: from posix_memalign).
    let mappedLength: Int

    init(base: UnsafeMutableRawPointer, capacity: Int, fixedIndex: Int32, pool: FixedBufferPool?, mappedLength: Int = 0) {
        self.base = base
        self.capacity = capacity
        self.fixedIndex = fixedIndex
        self.pool = pool
        self.mappedLength = mappedLength
    }

    /// A fresh aligned allocation, zero-filled. From 1 MiB up it is its own anonymous mapping,
    /// populated at once (MAP_POPULATE: the kernel zero-fills the pages in one call instead of
    /// a page fault per 4 KiB on first touch, and no memset follows). Not transparent huge
    /// pages: under a hypervisor that takes back free memory (virtio-balloon free page
    /// reporting, which reports free blocks of 2 MiB and more), a huge page is usually such a
    /// block, and touching it cost 1.7-2.2 s per GiB after a few seconds idle against 0.3 s for
    /// 4 KiB pages; a seed's first cold miss fell from 1.21 to 0.46 GB/s with them.
    public init(capacity: Int) {
        let size = max(alignUp(capacity), directIOAlignment)
        let (memory, mapped) = allocateZeroed(size)
        self.init(base: memory, capacity: size, fixedIndex: -1, pool: nil, mappedLength: mapped)
    }

    deinit {
        if let pool { pool.release(slot: fixedIndex) } else if mappedLength > 0 { munmap(base, mappedLength) } else { free(base) }
    }

    /// Whether this buffer is registered with an io_uring (READ_FIXED / WRITE_FIXED apply).
    public var isRegistered: Bool { fixedIndex >= 0 }

    @inline(__always) private func check(_ range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= capacity, "range \(range) outside buffer of \(capacity)")
    }

    public subscript(index: Int) -> UInt8 {
        get { precondition(index >= 0 && index < capacity); return base.load(fromByteOffset: index, as: UInt8.self) }
        nonmutating set { precondition(index >= 0 && index < capacity); base.storeBytes(of: newValue, toByteOffset: index, as: UInt8.self) }
    }

    /// Copies `bytes` into the buffer at `offset`.
    public func copyBytes<C: Collection<UInt8>>(from bytes: C, at offset: Int = 0) {
        check(offset..<(offset + bytes.count))
        let done: Void? = bytes.withContiguousStorageIfAvailable { src in
            if let b = src.baseAddress { memcpy(base + offset, b, src.count) }
        }
        if done == nil {
            var i = offset
            for b in bytes { base.storeBytes(of: b, toByteOffset: i, as: UInt8.self); i += 1 }
        }
    }

    /// Copies raw bytes (e.g. a libcurl receive buffer) into the buffer at `offset`.
    public func copyBytes(from source: UnsafeRawBufferPointer, at offset: Int) {
        check(offset..<(offset + source.count))
        if let b = source.baseAddress, source.count > 0 { memcpy(base + offset, b, source.count) }
    }

    /// Copies a range of another buffer into this one.
    public func copyBytes(from other: borrowing IOBuffer, range: Range<Int>, at offset: Int = 0) {
        other.check(range)
        check(offset..<(offset + range.count))
        memmove(base + offset, other.base + range.lowerBound, range.count)
    }

    /// The bytes in `range` as an array (a copy).
    public func bytes(_ range: Range<Int>) -> [UInt8] {
        check(range)
        return [UInt8](UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    /// Where `pattern` first occurs within `range` (finding a response head's end without
    /// copying the bytes out: memchr for the first byte, memcmp for the rest), or nil.
    public func firstIndex(of pattern: [UInt8], in range: Range<Int>) -> Int? {
        check(range)
        guard !pattern.isEmpty, pattern.count <= range.count else { return nil }
        let last = range.upperBound - pattern.count  // the last index a match may start at
        var i = range.lowerBound
        return pattern.withUnsafeBytes { p -> Int? in
            while i <= last {
                guard let hit = memchr(base + i, Int32(p[0]), last - i + 1) else { return nil }
                let at = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                if memcmp(base + at, p.baseAddress!, p.count) == 0 { return at }
                i = at + 1
            }
            return nil
        }
    }

    /// Sets every byte in `range` to `value`.
    public func fill(_ value: UInt8, range: Range<Int>) {
        check(range)
        memset(base + range.lowerBound, Int32(value), range.count)
    }

    /// Fills `range` with a reproducible pseudo-random stream that depends on `seed` and the
    /// absolute position `streamOffset + i`, so any slice of a logical stream can be regenerated.
    /// Used by tests and benchmarks to make and check content without keeping it.
    public func fillPattern(seed: UInt64, streamOffset: Int64, range: Range<Int>) {
        check(range)
        precondition(streamOffset % 8 == 0 && range.count % 8 == 0 && range.lowerBound % 8 == 0)
        let words = (base + range.lowerBound).bindMemory(to: UInt64.self, capacity: range.count / 8)
        var index = UInt64(streamOffset / 8)
        for i in 0..<(range.count / 8) {
            words[i] = SplitMix64.word(seed: seed, index: index)
            index &+= 1
        }
    }

    /// Whether `range` holds the pattern ``fillPattern(seed:streamOffset:range:)`` writes.
    public func matchesPattern(seed: UInt64, streamOffset: Int64, range: Range<Int>) -> Bool {
        check(range)
        precondition(streamOffset % 8 == 0 && range.count % 8 == 0 && range.lowerBound % 8 == 0)
        let words = (base + range.lowerBound).bindMemory(to: UInt64.self, capacity: range.count / 8)
        var index = UInt64(streamOffset / 8)
        for i in 0..<(range.count / 8) {
            if words[i] != SplitMix64.word(seed: seed, index: index) { return false }
            index &+= 1
        }
        return true
    }

    /// CRC32C of the bytes in `range`, continuing from `seed`.
    public func crc32c(_ range: Range<Int>, seed: UInt32 = 0) -> UInt32 {
        check(range)
        return CRC32C.checksum(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count), seed: seed)
    }

    /// Whether two ranges hold the same bytes.
    public func equals(_ range: Range<Int>, _ other: borrowing IOBuffer, _ otherRange: Range<Int>) -> Bool {
        check(range); other.check(otherRange)
        return range.count == otherRange.count && memcmp(base + range.lowerBound, other.base + otherRange.lowerBound, range.count) == 0
    }

    /// Raw access for code that talks to C (the server's socket calls, libcurl callbacks).
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: capacity))
    }
}

/// A fixed set of equally sized aligned buffers carved from one allocation, registered with
/// an io_uring so READ_FIXED / WRITE_FIXED skip per-I/O page pinning.
final class FixedBufferPool: Sendable {
    let slotSize: Int
    let slotCount: Int
    // Owned for the pool's lifetime; slots are handed out exclusively under `free`.
    nonisolated(unsafe) let region: UnsafeMutableRawPointer
    private let free: Mutex<[Int32]>

    init(slotSize: Int, slotCount: Int) {
        self.slotSize = alignUp(slotSize)
        self.slotCount = slotCount
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, directIOAlignment, self.slotSize * slotCount) == 0)
        region = p!
        free = Mutex((0..<Int32(slotCount)).reversed())
    }

    deinit { Glibc.free(region) }

    /// A pool of `count` buffers registered with `ring` (IORING_REGISTER_BUFFERS), or nil when
    /// `count` is 0 or the kernel refuses (e.g. the memlock limit): I/O then uses plain buffers.
    static func registered(with ring: UnsafeMutablePointer<io_uring>, count: Int, size: Int) -> FixedBufferPool? {
        guard count > 0 else { return nil }
        let pool = FixedBufferPool(slotSize: size, slotCount: count)
        let iovs = pool.iovecs()
        let r = iovs.withUnsafeBufferPointer { io_uring_register_buffers(ring, $0.baseAddress, UInt32($0.count)) }
        return r == 0 ? pool : nil
    }

    /// The iovecs to register: one per slot.
    func iovecs() -> [iovec] {
        (0..<slotCount).map { iovec(iov_base: region + $0 * slotSize, iov_len: slotSize) }
    }

    /// A registered slot if one is free and large enough, else nil.
    func take(capacity: Int) -> IOBuffer? {
        guard capacity <= slotSize, let slot = free.withLock({ $0.popLast() }) else { return nil }
        return IOBuffer(base: region + Int(slot) * slotSize, capacity: slotSize, fixedIndex: slot, pool: self)
    }

    func release(slot: Int32) {
        free.withLock { $0.append(slot) }
    }

    var freeCount: Int { free.withLock { $0.count } }
}

/// Prepares IORING_OP_READ_FIXED into registered buffer `fixedIndex` (≥ 0), else
/// IORING_OP_READ. Takes the address, not the buffer: the prep closures that call it escape.
func prepareRead(_ sqe: UnsafeMutablePointer<io_uring_sqe>, from file: FileDescriptor, into address: UnsafeMutableRawPointer,
                 count: Int, at offset: Int64, fixedIndex: Int32) {
    if fixedIndex >= 0 {
        io_uring_prep_read_fixed(sqe, file.rawValue, address, UInt32(count), UInt64(offset), fixedIndex)
    } else {
        io_uring_prep_read(sqe, file.rawValue, address, UInt32(count), UInt64(offset))
    }
}

/// An ``IOBuffer`` shared by reference: bytes that several senders read at once (a piece kept
/// in memory while clients stream it). The memory is freed, or goes back to its pool, when the
/// last holder lets go. Whoever fills it does so before sharing it; after that it is read only,
/// which is why it may cross threads.
public final class SharedIOBuffer: @unchecked Sendable {
    public let buffer: IOBuffer
    public init(_ buffer: consuming IOBuffer) { self.buffer = buffer }
}

extension SHA256Hasher {
    /// Hashes `buffer[range]`.
    public mutating func update(_ buffer: borrowing IOBuffer, range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        update(UnsafeRawBufferPointer(start: buffer.base + range.lowerBound, count: range.count))
    }
}

/// Room for bytes: `range` of `buffer`, where a receive or a copy may put them.
public struct BufferSpace: Sendable {
    public let buffer: SharedIOBuffer
    public let range: Range<Int>
    public init(buffer: SharedIOBuffer, range: Range<Int>) {
        precondition(!range.isEmpty && range.lowerBound >= 0 && range.upperBound <= buffer.buffer.capacity, "space \(range) outside its buffer")
        self.buffer = buffer
        self.range = range
    }
}

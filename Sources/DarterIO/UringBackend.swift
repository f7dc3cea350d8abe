#if canImport(Glibc)
import Glibc
#endif
import CURing
import Synchronization

/// Owns one io_uring instance (io_uring_queue_init / io_uring_queue_exit).
struct IORing: ~Copyable {
    let raw: UnsafeMutablePointer<io_uring>

    /// - Parameter extraFlags: setup flags beyond SUBMIT_ALL; dropped if the kernel refuses them.
    init(entries: UInt32, extraFlags: UInt32 = 0) throws(Errno) {
        raw = .allocate(capacity: 1)
        raw.initialize(to: io_uring())
        var params = io_uring_params()
        // SUBMIT_ALL: keep submitting a batch past a failed SQE. Not COOP_TASKRUN here:
        // submissions come from Swift's pool threads, and completion work queued to a pool
        // thread that sleeps in a futex would wait (seconds, measured) until it happened to wake.
        params.flags = UInt32(IORING_SETUP_SUBMIT_ALL) | extraFlags
        params.cq_entries = entries * 4
        params.flags |= UInt32(IORING_SETUP_CQSIZE)
        var r = io_uring_queue_init_params(entries, raw, &params)
        if r == -EINVAL {  // older kernel: plain setup
            params = io_uring_params()
            r = io_uring_queue_init_params(entries, raw, &params)
        }
        if r < 0 {
            raw.deallocate()
            throw Errno(rawValue: -r)
        }
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deallocate()
    }
}

/// One submitted operation: where its completion goes.
final class PendingOperation: @unchecked Sendable {
    // Touched by the submitter before submission and by the reaper after; the kernel
    // orders the two (completion happens after submission).
    var continuation: UnsafeContinuation<Int32, Never>?
    /// Completions still expected (a batch shares one token).
    var remaining: Int
    var firstError: Int32 = 0
    var result: Int32 = 0
    /// Memory the kernel reads until completion (a path); freed afterwards.
    var keepAlive: UnsafeMutableRawPointer?

    init(expected: Int = 1) {
        remaining = expected
    }
    deinit { if let keepAlive { free(keepAlive) } }
}

private let stopMarker: UInt64 = 1

/// The ring plus its completion thread. Submissions come from any thread under `submitLock`;
/// one thread reaps completions and resumes the waiting tasks.
final class RingCore: @unchecked Sendable {
    let ring: IORing
    let submitLock = Mutex<Void>(())
    let fixedBuffers: FixedBufferPool?

    init(entries: UInt32, fixedBuffers: Int, fixedBufferSize: Int) throws(Errno) {
        let ring = try IORing(entries: entries)
        let raw = ring.raw
        self.ring = ring
        self.fixedBuffers = FixedBufferPool.registered(with: raw, count: fixedBuffers, size: fixedBufferSize)
    }

    /// Preps `count` SQEs with `prep(sqe, i)`, tags them with `op` and submits them in one
    /// io_uring_enter. Returns false (and submits nothing) when the ring is full.
    func submit(_ op: PendingOperation, count: Int = 1, prep: (UnsafeMutablePointer<io_uring_sqe>, Int) -> Void) -> Bool {
        submitLock.withLock { _ in
            let ring = self.ring.raw
            if io_uring_sq_space_left(ring) < UInt32(count) {
                io_uring_submit(ring)
                if io_uring_sq_space_left(ring) < UInt32(count) { return false }
            }
            let userData = UInt64(UInt(bitPattern: Unmanaged.passRetained(op).toOpaque()))
            for i in 0..<count {
                let sqe = io_uring_get_sqe(ring)!
                prep(sqe, i)
                sqe.pointee.user_data = userData
                if i > 0 { _ = Unmanaged.passRetained(op) }  // one reference per completion
            }
            io_uring_submit(ring)
            return true
        }
    }

    /// Submits and waits for the combined result: the first negative result, else the last.
    func perform(expected: Int = 1, keepAlive: UnsafeMutableRawPointer? = nil,
                 _ prep: @escaping (UnsafeMutablePointer<io_uring_sqe>, Int) -> Void) async -> Int32 {
        let op = PendingOperation(expected: expected)
        op.keepAlive = keepAlive
        return await withUnsafeContinuation { (c: UnsafeContinuation<Int32, Never>) in
            op.continuation = c
            var tries = 0
            while !submit(op, count: expected, prep: prep) {
                tries += 1
                if tries > 1000 { op.continuation = nil; c.resume(returning: -EBUSY); return }
                sched_yield()  // the reaper frees SQ space as completions drain
            }
        }
    }

    func requestStop() {
        submitLock.withLock { _ in
            if let sqe = io_uring_get_sqe(ring.raw) {
                io_uring_prep_nop(sqe)
                sqe.pointee.user_data = stopMarker
                io_uring_submit(ring.raw)
            }
        }
    }

    /// The completion thread's loop.
    func reapLoop() {
        let batch = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: 256)
        defer { batch.deallocate() }
        var ready: [(UnsafeContinuation<Int32, Never>, Int32)] = []
        ready.reserveCapacity(256)
        var running = true
        while running {
            var first: UnsafeMutablePointer<io_uring_cqe>?
            let w = io_uring_wait_cqe(ring.raw, &first)
            if w < 0 { if w == -EINTR || w == -EAGAIN { continue }; fatalError("io_uring_wait_cqe: \(Errno(rawValue: -w))") }
            let n = Int(io_uring_peek_batch_cqe(ring.raw, batch, 256))
            for i in 0..<n {
                let cqe = batch[i]!.pointee
                if cqe.user_data == stopMarker { running = false; continue }
                if cqe.user_data == 0 { continue }
                let op = Unmanaged<PendingOperation>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(cqe.user_data))!)
                let o = op.takeRetainedValue()
                if cqe.res < 0 && o.firstError == 0 { o.firstError = cqe.res }
                o.result = cqe.res
                o.remaining -= 1
                if o.remaining == 0, let c = o.continuation {
                    o.continuation = nil
                    ready.append((c, o.firstError != 0 ? o.firstError : o.result))
                }
            }
            io_uring_cq_advance(ring.raw, UInt32(n))
            // Resume after advancing the CQ so the kernel has room while tasks run.
            for (c, r) in ready { c.resume(returning: r) }
            ready.removeAll(keepingCapacity: true)
        }
    }
}

/// The io_uring disk backend: one ring shared by every caller, one completion thread. Sockets
/// are not driven here but on an ``EventLoop`` (the one network runtime).
public final class UringBackend: IOBackend, @unchecked Sendable {
    public let name = "io_uring"
    let core: RingCore
    private var reaper = pthread_t()

    /// - Parameters:
    ///   - entries: submission queue size.
    ///   - fixedBuffers: how many buffers to register (IORING_REGISTER_BUFFERS); 0 for none.
    ///   - fixedBufferSize: bytes in each registered buffer.
    public init(entries: UInt32 = 256, fixedBuffers: Int = 16, fixedBufferSize: Int = 4 << 20) throws(Errno) {
        core = try RingCore(entries: entries, fixedBuffers: fixedBuffers, fixedBufferSize: fixedBufferSize)
        let context = Unmanaged.passRetained(core).toOpaque()
        let r = pthread_create(&reaper, nil, { arg in
            let core = Unmanaged<RingCore>.fromOpaque(arg!).takeRetainedValue()
            core.reapLoop()
            return nil
        }, context)
        if r != 0 {
            Unmanaged<RingCore>.fromOpaque(context).release()
            throw Errno(rawValue: r)
        }
    }

    deinit {
        core.requestStop()
        pthread_join(reaper, nil)
    }

    /// "16 x 4 MiB registered buffers" or "no registered buffers".
    public var fixedBufferSummary: String {
        guard let pool = core.fixedBuffers else { return "no registered buffers" }
        let size = pool.slotSize >= 1 << 20 ? "\(pool.slotSize >> 20) MiB" : "\(pool.slotSize >> 10) KiB"
        return "\(pool.slotCount) x \(size) registered buffers"
    }

    public func makeBuffer(capacity: Int) -> IOBuffer {
        core.fixedBuffers?.take(capacity: capacity) ?? IOBuffer(capacity: capacity)
    }

    private func run(_ keepAlive: UnsafeMutableRawPointer? = nil, _ prep: @escaping (UnsafeMutablePointer<io_uring_sqe>) -> Void) async throws(Errno) -> Int32 {
        try checkKernelResult(await core.perform(keepAlive: keepAlive) { sqe, _ in prep(sqe) })
    }

    public func open(_ path: String, _ options: OpenOptions, mode: UInt32) async throws(Errno) -> FileDescriptor {
        let cPath = strdup(path)!
        let flags = options.kernelFlags
        let fd = try await run(UnsafeMutableRawPointer(cPath)) { io_uring_prep_openat($0, AT_FDCWD, cPath, flags, mode) }
        return FileDescriptor(rawValue: fd)
    }

    public func close(_ fd: FileDescriptor) async throws(Errno) {
        _ = try await run { io_uring_prep_close($0, fd.rawValue) }
    }

    public func read(_ fd: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex, count = range.count
        return Int(try await run { prepareRead($0, from: fd, into: address, count: count, at: offset, fixedIndex: Int32(index)) })
    }

    public func write(_ fd: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex, count = UInt32(range.count)
        return Int(try await run { sqe in
            if index >= 0 {
                io_uring_prep_write_fixed(sqe, fd.rawValue, address, count, UInt64(offset), Int32(index))
            } else {
                io_uring_prep_write(sqe, fd.rawValue, address, count, UInt64(offset))
            }
        })
    }

    public func dataSync(_ fds: [FileDescriptor]) async throws(Errno) {
        // One submission per chunk that fits the submission queue.
        let chunk = Int(core.ring.raw.pointee.sq.ring_entries)
        for start in stride(from: 0, to: fds.count, by: chunk) {
            let part = Array(fds[start..<min(fds.count, start + chunk)])
            _ = try checkKernelResult(await core.perform(expected: part.count) { sqe, i in
                io_uring_prep_fsync(sqe, part[i].rawValue, UInt32(IORING_FSYNC_DATASYNC))
            })
        }
    }

    public func sync(_ fd: FileDescriptor) async throws(Errno) {
        _ = try await run { io_uring_prep_fsync($0, fd.rawValue, 0) }
    }

    public func allocate(_ fd: FileDescriptor, offset: Int64, length: Int64, keepingSize: Bool) async throws(Errno) {
        let mode = keepingSize ? fallocateKeepSize : 0
        _ = try await run { io_uring_prep_fallocate($0, fd.rawValue, mode, Int(offset), Int(length)) }
    }

    public func truncate(_ fd: FileDescriptor, length: Int64) async throws(Errno) {
        // liburing 2.3 has no IORING_OP_FTRUNCATE; ftruncate on an open file is quick.
        _ = try retryingOnInterrupt { ftruncate(fd.rawValue, off_t(length)) }
    }

    public func rename(_ from: String, to: String) async throws(Errno) {
        let a = strdup(from)!, b = strdup(to)!
        defer { free(b) }
        _ = try await run(UnsafeMutableRawPointer(a)) { io_uring_prep_renameat($0, AT_FDCWD, a, AT_FDCWD, b, 0) }
    }

    public func unlink(_ path: String) async throws(Errno) {
        let p = strdup(path)!
        _ = try await run(UnsafeMutableRawPointer(p)) { io_uring_prep_unlinkat($0, AT_FDCWD, p, 0) }
    }

    // MARK: Operations the server uses (io_uring only)

    /// statx(2) through IORING_OP_STATX: size and the direct-I/O alignment the file needs.
    public func statx(_ path: String) async throws(Errno) -> (size: Int64, directIOOffsetAlignment: UInt32) {
        let p = strdup(path)!
        let out = malloc(Int(darter_statx_buffer_size()))!
        defer { free(out) }
        _ = try await run(UnsafeMutableRawPointer(p)) { darter_prep_statx($0, p, out) }
        return (Int64(darter_statx_size(out)), darter_statx_dio_offset_align(out))
    }
}

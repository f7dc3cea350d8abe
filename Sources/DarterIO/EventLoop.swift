#if canImport(Glibc)
import Glibc
#endif
import CURing
import CDarterShim
import Synchronization

/// One thread, one io_uring: the server's event loop. Operations are started from the loop's
/// own thread and their handlers run there, so connection state needs no locks; other threads
/// hand work in with ``execute(_:)``. The ring is single-issuer with deferred task running:
/// completions are gathered in the one `io_uring_submit_and_wait` each iteration makes, which
/// also submits everything queued since the last.
///
/// Buffers passed to an operation must stay alive until its handler runs.
public final class EventLoop: @unchecked Sendable {
    /// `result` is the kernel's (negative errno on failure); `more` is set on multishot
    /// completions that will be followed by others.
    public typealias Handler = (_ result: Int32, _ more: Bool) -> Void

    public let index: Int
    let ring: IORing
    let fixedBuffers: FixedBufferPool?
    // Loop-thread state:
    private var handlers: [Handler?] = []
    private var freeSlots: [Int] = []
    private var zeroCopyResults: [Int: Int32] = [:]
    private var running = true
    private var thread = pthread_t()
    private let loopThreadID = Atomic<UInt>(0)

    /// Whether the caller runs on this loop's thread.
    public var inLoopThread: Bool { loopThreadID.load(ordering: .relaxed) == UInt(pthread_self()) }
    // Cross-thread inbox, woken through an eventfd the loop keeps a read posted on.
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private let wakeFD: Int32
    private let wakeWord: UnsafeMutablePointer<UInt64>

    /// - Parameters:
    ///   - fixedBuffers: buffers registered with this loop's ring (for READ_FIXED / SEND_ZC).
    public init(index: Int, entries: UInt32 = 1024, fixedBuffers: Int = 0, fixedBufferSize: Int = 256 << 10) throws(Errno) {
        self.index = index
        // SINGLE_ISSUER (1<<12) | DEFER_TASKRUN (1<<13): only the loop's thread touches the ring.
        // R_DISABLED: the issuer is whoever enables the ring, which the loop's thread does.
        let ring = try IORing(entries: entries, extraFlags: UInt32(IORING_SETUP_SINGLE_ISSUER) | (1 << 13) | UInt32(IORING_SETUP_R_DISABLED))
        let raw = ring.raw
        self.ring = ring
        self.fixedBuffers = FixedBufferPool.registered(with: raw, count: fixedBuffers, size: fixedBufferSize)
        wakeFD = darter_eventfd()
        guard wakeFD >= 0 else { throw Errno(rawValue: -wakeFD) }
        wakeWord = .allocate(capacity: 1)
    }

    deinit {
        Glibc.close(wakeFD)
        wakeWord.deallocate()
        timerSpec.deallocate()
    }

    /// Starts the loop's thread. `setup` runs first on that thread (start accepting there).
    public func start(_ setup: @escaping @Sendable () -> Void) {
        execute(setup)
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
            loop.run()
            return nil
        }, context)
    }

    /// Waits for the loop's thread to end (after ``stop()``).
    public func join() { pthread_join(thread, nil) }

    /// Ends the loop after the current iteration. Callable from any thread.
    public func stop() { execute { [self] in running = false } }

    /// Runs `work` on the loop's thread. Callable from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let wasEmpty = inbox.withLock { q in
            q.append(work)
            return q.count == 1
        }
        if wasEmpty {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    /// A buffer registered with this loop's ring when one is free, else a plain one.
    public func makeBuffer(capacity: Int) -> IOBuffer {
        fixedBuffers?.take(capacity: capacity) ?? IOBuffer(capacity: capacity)
    }

    // MARK: Submission (loop thread only)

    @discardableResult
    private func prepare(_ handler: @escaping Handler, _ prep: (UnsafeMutablePointer<io_uring_sqe>) -> Void) -> Int {
        var s = io_uring_get_sqe(ring.raw)
        if s == nil {  // the SQ is full: flush it
            io_uring_submit(ring.raw)
            s = io_uring_get_sqe(ring.raw)
        }
        prep(s!)
        let i: Int
        if let free = freeSlots.popLast() { i = free; handlers[i] = handler } else { i = handlers.count; handlers.append(handler) }
        s!.pointee.user_data = UInt64(i + 1)
        return i
    }

    private func prepareLinked(_ handler: @escaping Handler, _ prep: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        prepare(handler) { sqe in
            prep(sqe)
            sqe.pointee.flags |= UInt8(darter_iosqe_io_link())
        }
    }

    /// IORING_OP_ACCEPT, multishot: one completion per new connection (close-on-exec, and
    /// non-blocking when asked).
    public func acceptMultishot(_ listener: FileDescriptor, nonBlocking: Bool, _ handler: @escaping Handler) {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        prepare(handler) { io_uring_prep_multishot_accept($0, listener.rawValue, nil, nil, flags) }
    }

    /// IORING_OP_RECV into `buffer[range]`.
    public func receive(_ socket: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, _ handler: @escaping Handler) {
        precondition(range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound
        prepare(handler) { io_uring_prep_recv($0, socket.rawValue, address, range.count, 0) }
    }

    /// IORING_OP_SEND of `buffer[range]`; `more` sets MSG_MORE (more data follows soon).
    public func send(_ socket: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, more: Bool = false, _ handler: @escaping Handler) {
        precondition(range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        prepare(handler) { io_uring_prep_send($0, socket.rawValue, address, range.count, flags) }
    }

    /// IORING_OP_SEND_ZC (from a registered buffer when it is one). The handler runs once the
    /// kernel's notification says the buffer may be reused, with the send's result.
    public func sendZeroCopy(_ socket: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, _ handler: @escaping Handler) {
        precondition(range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex
        let slot = prepare(handler) { sqe in
            if index >= 0 {
                io_uring_prep_send_zc_fixed(sqe, socket.rawValue, address, range.count, Int32(MSG_NOSIGNAL), 0, UInt32(index))
            } else {
                io_uring_prep_send_zc(sqe, socket.rawValue, address, range.count, Int32(MSG_NOSIGNAL), 0)
            }
        }
        zeroCopySlots.insert(slot)
    }
    private var zeroCopySlots = Set<Int>()

    /// IORING_OP_READ(_FIXED) of `file` at `offset` into `buffer[range]`.
    public func read(_ file: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64, _ handler: @escaping Handler) {
        precondition(range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex
        prepare(handler) { prepareRead($0, from: file, into: address, count: range.count, at: offset, fixedIndex: Int32(index)) }
    }

    /// A READ of `file` into `buffer[readRange]` linked to a SEND of `buffer[sendRange]`: one
    /// submission for "copy this file range after these header bytes to the socket". A short
    /// read breaks the link: the send then completes with -ECANCELED. `handler` gets the send's
    /// result (or the read's error).
    public func readThenSend(_ file: FileDescriptor, at offset: Int64, into buffer: borrowing IOBuffer, readRange: Range<Int>,
                             to socket: FileDescriptor, sendRange: Range<Int>, more: Bool = false, _ handler: @escaping Handler) {
        precondition(readRange.upperBound <= buffer.capacity && sendRange.upperBound <= buffer.capacity)
        var readResult: Int32 = 0
        let index = buffer.fixedIndex, readAddress = buffer.base + readRange.lowerBound
        prepareLinked({ r, _ in readResult = r }) {
            prepareRead($0, from: file, into: readAddress, count: readRange.count, at: offset, fixedIndex: Int32(index))
        }
        send(socket, from: buffer, range: sendRange, more: more) { r, more in
            handler(readResult < 0 ? readResult : (r == -ECANCELED && readResult >= 0 ? -EIO : r), more)
        }
    }

    /// SPLICE file → pipe linked to SPLICE pipe → socket: moves `count` bytes of `file` at
    /// `offset` to the socket without copying through user space. `handler` gets the second
    /// splice's result (or the first's error).
    public func spliceToSocket(_ file: FileDescriptor, at offset: Int64, through pipe: (read: FileDescriptor, write: FileDescriptor),
                               to socket: FileDescriptor, count: Int, _ handler: @escaping Handler) {
        var first: Int32 = 0
        let more = darter_splice_f_more()
        prepareLinked({ r, _ in first = r }) { io_uring_prep_splice($0, file.rawValue, offset, pipe.write.rawValue, -1, UInt32(count), more) }
        prepare({ r, m in handler(first < 0 ? first : (r == -ECANCELED && first >= 0 ? -EIO : r), m) }) {
            io_uring_prep_splice($0, pipe.read.rawValue, -1, socket.rawValue, -1, UInt32(count), more)
        }
    }

    /// SPLICE of bytes already in a pipe to the socket.
    public func spliceToSocket(fromPipe pipe: FileDescriptor, to socket: FileDescriptor, count: Int, _ handler: @escaping Handler) {
        let more = darter_splice_f_more()
        prepare(handler) { io_uring_prep_splice($0, pipe.rawValue, -1, socket.rawValue, -1, UInt32(count), more) }
    }

    /// IORING_OP_POLL_ADD for POLLOUT: the handler runs when `socket` can take more bytes.
    public func whenWritable(_ socket: FileDescriptor, _ handler: @escaping Handler) {
        prepare(handler) { io_uring_prep_poll_add($0, socket.rawValue, UInt32(POLLOUT)) }
    }

    /// IORING_OP_TIMEOUT: the handler runs after `nanoseconds` (result -ETIME).
    public func after(nanoseconds: Int64, _ handler: @escaping Handler) {
        timerSpec.pointee = __kernel_timespec(tv_sec: nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
        let spec = timerSpec
        // The kernel copies the timespec at submission, so one buffer serves every timer.
        prepare(handler) { io_uring_prep_timeout($0, spec, 0, 0) }
        io_uring_submit(ring.raw)
    }
    private let timerSpec = UnsafeMutablePointer<__kernel_timespec>.allocate(capacity: 1)

    /// Cancels every operation in flight on `fd` (IORING_ASYNC_CANCEL_FD | ALL); they complete
    /// with -ECANCELED.
    public func cancelAll(on fd: FileDescriptor) {
        prepare({ _, _ in }) { io_uring_prep_cancel_fd($0, fd.rawValue, UInt32(IORING_ASYNC_CANCEL_ALL)) }
    }

    // MARK: The loop

    private func run() {
        let batch = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: 256)
        defer { batch.deallocate() }
        loopThreadID.store(UInt(pthread_self()), ordering: .relaxed)
        let enabled = darter_enable_rings(ring.raw)
        if enabled < 0 && enabled != -EBADFD { fatalError("io_uring_enable_rings: \(Errno(rawValue: -enabled))") }
        postWakeRead()
        var completions: [(Int, Int32, UInt32)] = []  // reused: this loop runs per batch of CQEs
        completions.reserveCapacity(256)
        while running {
            let r = io_uring_submit_and_wait(ring.raw, 1)
            if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY { fatalError("io_uring_submit_and_wait: \(Errno(rawValue: -r))") }
            while true {
                let n = Int(io_uring_peek_batch_cqe(ring.raw, batch, 256))
                if n == 0 { break }
                completions.removeAll(keepingCapacity: true)
                for i in 0..<n {
                    let cqe = batch[i]!.pointee
                    completions.append((Int(cqe.user_data), cqe.res, cqe.flags))
                }
                io_uring_cq_advance(ring.raw, UInt32(n))
                for (userData, res, flags) in completions where userData != 0 { complete(slot: userData - 1, res, flags) }
            }
        }
    }

    private func complete(slot: Int, _ res: Int32, _ flags: UInt32) {
        guard let handler = handlers[slot] else { return }
        let more = flags & UInt32(IORING_CQE_F_MORE) != 0
        if zeroCopySlots.contains(slot) {
            if flags & UInt32(IORING_CQE_F_NOTIF) != 0 {
                let result = zeroCopyResults.removeValue(forKey: slot) ?? res
                zeroCopySlots.remove(slot)
                release(slot)
                handler(result, false)
            } else if more {
                zeroCopyResults[slot] = res  // the buffer is still the kernel's
            } else {
                zeroCopySlots.remove(slot)
                release(slot)
                handler(res, false)
            }
            return
        }
        if !more { release(slot) }
        handler(res, more)
    }

    private func release(_ slot: Int) {
        handlers[slot] = nil
        freeSlots.append(slot)
    }

    private func postWakeRead() {
        let fd = wakeFD, word = wakeWord
        prepare({ [self] _, _ in
            let work = inbox.withLock { q in defer { q.removeAll(keepingCapacity: true) }; return q }
            for w in work { w() }
            if running { postWakeRead() }
        }) { io_uring_prep_read($0, fd, word, 8, 0) }
    }
}

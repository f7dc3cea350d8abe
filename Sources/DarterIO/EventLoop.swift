#if canImport(Glibc)
import Glibc
#endif
import CURing
import CDarterShim
import Synchronization

/// Identifies one submitted operation, to cancel it (``EventLoop/cancel(_:)``). Stale ids are
/// harmless: the generation in the low bits never matches a later operation in the same slot.
public struct OperationID: Hashable, Sendable {
    let userData: UInt64
}

/// Identifies a timer (``EventLoop/schedule(after:_:)``).
public struct TimerID: Hashable, Sendable {
    let value: UInt64
}

/// One thread, one io_uring: the only place sockets are driven, for the server and the client
/// alike. Operations are started from the loop's own thread and their completions run there, so
/// connection state needs no locks; other threads hand work in with ``execute(_:)``. Every
/// operation's completion is typed (`Result<Int, Errno>` and the like, never a raw kernel
/// result) and every entry point checks, in debug builds, that it runs on the loop's thread.
///
/// The ring is single-issuer with deferred task running: completions are gathered in the one
/// `io_uring_submit_and_wait_timeout` each iteration makes, which also submits everything queued
/// since the last and sleeps no longer than the nearest timer. Timers live in a heap on the loop
/// (no submission each), so a thousand request deadlines cost nothing until one fires.
///
/// Buffers passed to an operation must stay alive until its completion runs.
public final class EventLoop: @unchecked Sendable {
    /// A completion with the kernel's result (negative errno on failure) and CQE flags.
    typealias RawCompletion = (_ result: Int32, _ flags: UInt32) -> Void

    public let index: Int
    let ring: IORing
    let fixedBuffers: FixedBufferPool?
    // Loop-thread state:
    private var completions: [RawCompletion?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private var zeroCopySlots = Set<Int>()
    private var zeroCopyResults: [Int: Int32] = [:]
    private var timers = TimerHeap()
    private var running = true
    private var thread = pthread_t()
    private let loopThreadID = Atomic<UInt>(0)
    private let started = Atomic<Bool>(false)
    // Cross-thread inbox, woken through an eventfd the loop keeps a read posted on.
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private let wakeFD: Int32
    private let wakeWord: UnsafeMutablePointer<UInt64>
    private let waitSpec = UnsafeMutablePointer<__kernel_timespec>.allocate(capacity: 1)

    /// Whether the caller runs on this loop's thread.
    public var inLoopThread: Bool { loopThreadID.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Checks, in debug builds, that the caller runs on this loop's thread: loop-confined state
    /// touched from elsewhere is a bug that should fail loudly where it happens.
    @inline(__always)
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoopThread, "called off event loop \(index)'s thread", file: file, line: line)
    }

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
        waitSpec.deallocate()
    }

    /// Starts the loop's thread. `setup` runs first on that thread.
    public func start(_ setup: @escaping @Sendable () -> Void = {}) {
        precondition(!started.exchange(true, ordering: .relaxed), "event loop \(index) started twice")
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

    /// Runs `work` on the loop's thread. Callable from any thread (also from the loop's own,
    /// where it runs on a later iteration).
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

    /// `body` as a function any thread may call: each call runs `body` on this loop, on a later
    /// iteration (never re-entrantly, even when called from the loop: the way back from a
    /// callback on another thread to loop-confined state).
    public func hop<T: Sendable>(_ body: @escaping (T) -> Void) -> @Sendable (T) -> Void {
        let bound = LoopBound(body, loop: self)
        return { [self] value in execute { bound.value(value) } }
    }

    /// A buffer registered with this loop's ring when one is free, else a plain one.
    public func makeBuffer(capacity: Int) -> IOBuffer {
        fixedBuffers?.take(capacity: capacity) ?? IOBuffer(capacity: capacity)
    }

    // MARK: Submission (loop thread only)

    /// The one submit helper: takes an SQE (flushing a full SQ), files `completion` under a
    /// fresh slot and generation, and lets `prep` fill the SQE.
    @discardableResult
    private func submit(_ completion: @escaping RawCompletion, _ prep: (UnsafeMutablePointer<io_uring_sqe>) -> Void) -> OperationID {
        assertInLoop()
        var s = io_uring_get_sqe(ring.raw)
        if s == nil {  // the SQ is full: flush it
            io_uring_submit(ring.raw)
            s = io_uring_get_sqe(ring.raw)
        }
        prep(s!)
        let i: Int
        if let free = freeSlots.popLast() {
            i = free
            completions[i] = completion
        } else {
            i = completions.count
            completions.append(completion)
            generations.append(0)
        }
        generations[i] &+= 1
        let userData = UInt64(i + 1) << 32 | UInt64(generations[i])
        s!.pointee.user_data = userData
        return OperationID(userData: userData)
    }

    /// The first SQE of a linked pair. Both must go in one submission (a flush between them
    /// would end the chain: the second would run unlinked), so room for two is made first.
    private func submitLinked(_ completion: @escaping RawCompletion, _ prep: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        if io_uring_sq_space_left(ring.raw) < 2 { io_uring_submit(ring.raw) }
        submit(completion) { sqe in
            prep(sqe)
            sqe.pointee.flags |= UInt8(darter_iosqe_io_link())
        }
    }

    /// A byte count, or the error.
    private static func count(_ r: Int32) -> Result<Int, Errno> { r < 0 ? .failure(Errno(rawValue: -r)) : .success(Int(r)) }

    /// IORING_OP_ACCEPT, multishot: one completion per new connection (close-on-exec, and
    /// non-blocking when asked); `more` is false on the last one (re-arm then).
    @discardableResult
    public func acceptMultishot(_ listener: FileDescriptor, nonBlocking: Bool,
                                _ completion: @escaping (_ accepted: Result<FileDescriptor, Errno>, _ more: Bool) -> Void) -> OperationID {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return submit({ r, f in
            completion(r < 0 ? .failure(Errno(rawValue: -r)) : .success(FileDescriptor(rawValue: r)), f & UInt32(IORING_CQE_F_MORE) != 0)
        }) { io_uring_prep_multishot_accept($0, listener.rawValue, nil, nil, flags) }
    }

    /// IORING_OP_CONNECT of `socket` (from ``Socket/makeStreamSocket(for:)``) to `address`.
    @discardableResult
    public func connect(_ socket: FileDescriptor, to address: SocketAddress, _ completion: @escaping (Result<Void, Errno>) -> Void) -> OperationID {
        // The kernel may read the address after submission (an async connect): it lives until the completion.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<sockaddr_storage>.size, alignment: 8)
        address.copy(to: storage)
        let length = address.length
        return submit({ r, _ in
            storage.deallocate()
            completion(r < 0 ? .failure(Errno(rawValue: -r)) : .success(()))
        }) { io_uring_prep_connect($0, socket.rawValue, storage.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// IORING_OP_RECV into `buffer[range]`: the bytes received, 0 when the peer closed.
    /// `waitAll` (MSG_WAITALL) completes only when the range is full, the peer closed or an
    /// error came: one completion per piece instead of one per segment the network delivers.
    @discardableResult
    public func receive(_ socket: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, waitAll: Bool = false,
                        _ completion: @escaping (Result<Int, Errno>) -> Void) -> OperationID {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound
        let flags = waitAll ? Int32(MSG_WAITALL) : 0
        return submit({ r, _ in completion(Self.count(r)) }) { io_uring_prep_recv($0, socket.rawValue, address, range.count, flags) }
    }

    /// IORING_OP_SEND of `buffer[range]` (may send less); `more` sets MSG_MORE (more data follows soon).
    @discardableResult
    public func send(_ socket: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, more: Bool = false,
                     _ completion: @escaping (Result<Int, Errno>) -> Void) -> OperationID {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        return submit({ r, _ in completion(Self.count(r)) }) { io_uring_prep_send($0, socket.rawValue, address, range.count, flags) }
    }

    /// IORING_OP_SEND_ZC (from a registered buffer when it is one). The completion runs once the
    /// kernel's notification says the buffer may be reused, with the send's result.
    @discardableResult
    public func sendZeroCopy(_ socket: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>,
                             _ completion: @escaping (Result<Int, Errno>) -> Void) -> OperationID {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex
        let op = submit({ r, _ in completion(Self.count(r)) }) { sqe in
            if index >= 0 {
                io_uring_prep_send_zc_fixed(sqe, socket.rawValue, address, range.count, Int32(MSG_NOSIGNAL), 0, UInt32(index))
            } else {
                io_uring_prep_send_zc(sqe, socket.rawValue, address, range.count, Int32(MSG_NOSIGNAL), 0)
            }
        }
        zeroCopySlots.insert(Self.slot(op.userData))
        return op
    }

    /// IORING_OP_READ(_FIXED) of `file` at `offset` into `buffer[range]`.
    @discardableResult
    public func read(_ file: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64,
                     _ completion: @escaping (Result<Int, Errno>) -> Void) -> OperationID {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        let address = buffer.base + range.lowerBound, index = buffer.fixedIndex
        return submit({ r, _ in completion(Self.count(r)) }) {
            prepareRead($0, from: file, into: address, count: range.count, at: offset, fixedIndex: Int32(index))
        }
    }

    /// A READ of `file` into `buffer[readRange]` linked to a SEND of `buffer[sendRange]`: one
    /// submission for "copy this file range after these header bytes to the socket". A short
    /// read breaks the link (the send is cancelled): that is reported as EIO. The completion gets
    /// the send's result, or the read's error.
    public func readThenSend(_ file: FileDescriptor, at offset: Int64, into buffer: borrowing IOBuffer, readRange: Range<Int>,
                             to socket: FileDescriptor, sendRange: Range<Int>, more: Bool = false,
                             _ completion: @escaping (Result<Int, Errno>) -> Void) {
        precondition(readRange.upperBound <= buffer.capacity && sendRange.upperBound <= buffer.capacity)
        var readResult: Int32 = 0
        let index = buffer.fixedIndex, readAddress = buffer.base + readRange.lowerBound
        submitLinked({ r, _ in readResult = r }) {
            prepareRead($0, from: file, into: readAddress, count: readRange.count, at: offset, fixedIndex: Int32(index))
        }
        send(socket, from: buffer, range: sendRange, more: more) { sent in
            if readResult < 0 { return completion(.failure(Errno(rawValue: -readResult))) }
            if case .failure(.canceled) = sent { return completion(.failure(.ioError)) }
            completion(sent)
        }
    }

    /// SPLICE file → pipe linked to SPLICE pipe → socket: moves `count` bytes of `file` at
    /// `offset` to the socket without copying through user space. The completion gets the
    /// second splice's result (or the first's error; a short first one is EIO).
    public func spliceToSocket(_ file: FileDescriptor, at offset: Int64, through pipe: (read: FileDescriptor, write: FileDescriptor),
                               to socket: FileDescriptor, count: Int, _ completion: @escaping (Result<Int, Errno>) -> Void) {
        var first: Int32 = 0
        let more = darter_splice_f_more()
        submitLinked({ r, _ in first = r }) { io_uring_prep_splice($0, file.rawValue, offset, pipe.write.rawValue, -1, UInt32(count), more) }
        submit({ r, _ in
            if first < 0 { return completion(.failure(Errno(rawValue: -first))) }
            completion(r == -ECANCELED ? .failure(.ioError) : Self.count(r))
        }) { io_uring_prep_splice($0, pipe.read.rawValue, -1, socket.rawValue, -1, UInt32(count), more) }
    }

    /// SPLICE of bytes already in a pipe to the socket.
    @discardableResult
    public func spliceToSocket(fromPipe pipe: FileDescriptor, to socket: FileDescriptor, count: Int,
                               _ completion: @escaping (Result<Int, Errno>) -> Void) -> OperationID {
        let more = darter_splice_f_more()
        return submit({ r, _ in completion(Self.count(r)) }) { io_uring_prep_splice($0, pipe.rawValue, -1, socket.rawValue, -1, UInt32(count), more) }
    }

    /// IORING_OP_POLL_ADD for POLLOUT: the completion runs when `socket` can take more bytes.
    @discardableResult
    public func whenWritable(_ socket: FileDescriptor, _ completion: @escaping (Result<Void, Errno>) -> Void) -> OperationID {
        submit({ r, _ in completion(r < 0 ? .failure(Errno(rawValue: -r)) : .success(())) }) {
            io_uring_prep_poll_add($0, socket.rawValue, UInt32(POLLOUT))
        }
    }

    /// Cancels one operation (IORING_OP_ASYNC_CANCEL): it completes with ECANCELED, unless it
    /// completed already (then nothing happens).
    public func cancel(_ operation: OperationID) {
        submit({ _, _ in }) { io_uring_prep_cancel64($0, operation.userData, 0) }
    }

    /// Cancels every operation in flight on `fd` (IORING_ASYNC_CANCEL_FD | ALL); they complete
    /// with ECANCELED.
    public func cancelAll(on fd: FileDescriptor) {
        submit({ _, _ in }) { io_uring_prep_cancel_fd($0, fd.rawValue, UInt32(IORING_ASYNC_CANCEL_ALL)) }
    }

    // MARK: Timers (loop thread only)

    /// Runs `handler` on the loop after `delay` (at the first iteration after it passes).
    @discardableResult
    public func schedule(after delay: Duration, _ handler: @escaping () -> Void) -> TimerID {
        assertInLoop()
        let (s, a) = delay.components
        let ns = s * 1_000_000_000 + a / 1_000_000_000
        return timers.add(deadline: SystemCalls.monotonicNanoseconds() + max(0, ns), handler)
    }

    /// Forgets a timer that has not fired (a no-op for one that has).
    public func cancelTimer(_ timer: TimerID) {
        assertInLoop()
        timers.remove(timer)
    }

    /// Timers waiting to fire (tests).
    public var pendingTimerCount: Int {
        assertInLoop()
        return timers.count
    }

    // MARK: The loop

    private static func slot(_ userData: UInt64) -> Int { Int(userData >> 32) - 1 }

    private func run() {
        let batch = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: 256)
        defer { batch.deallocate() }
        loopThreadID.store(UInt(pthread_self()), ordering: .relaxed)
        let enabled = darter_enable_rings(ring.raw)
        if enabled < 0 && enabled != -EBADFD { fatalError("io_uring_enable_rings: \(Errno(rawValue: -enabled))") }
        postWakeRead()
        var reaped: [(UInt64, Int32, UInt32)] = []  // reused: this loop runs per batch of CQEs
        reaped.reserveCapacity(256)
        while running {
            let r: Int32
            if let deadline = timers.nextDeadline {
                let wait = max(0, deadline - SystemCalls.monotonicNanoseconds())
                waitSpec.pointee = __kernel_timespec(tv_sec: wait / 1_000_000_000, tv_nsec: wait % 1_000_000_000)
                var cqe: UnsafeMutablePointer<io_uring_cqe>?
                r = io_uring_submit_and_wait_timeout(ring.raw, &cqe, 1, waitSpec, nil)
            } else {
                r = io_uring_submit_and_wait(ring.raw, 1)
            }
            if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME {
                fatalError("io_uring_submit_and_wait: \(Errno(rawValue: -r))")
            }
            while true {
                let n = Int(io_uring_peek_batch_cqe(ring.raw, batch, 256))
                if n == 0 { break }
                reaped.removeAll(keepingCapacity: true)
                for i in 0..<n {
                    let cqe = batch[i]!.pointee
                    reaped.append((cqe.user_data, cqe.res, cqe.flags))
                }
                io_uring_cq_advance(ring.raw, UInt32(n))
                for (userData, res, flags) in reaped where userData != 0 { complete(userData, res, flags) }
            }
            // Handlers may schedule timers: take each out of the heap before it runs.
            let now = SystemCalls.monotonicNanoseconds()
            while let due = timers.popDue(now: now) { due() }
        }
    }

    private func complete(_ userData: UInt64, _ res: Int32, _ flags: UInt32) {
        let slot = Self.slot(userData)
        guard slot >= 0, slot < completions.count, generations[slot] == UInt32(truncatingIfNeeded: userData),
              let completion = completions[slot] else { return }
        let more = flags & UInt32(IORING_CQE_F_MORE) != 0
        if zeroCopySlots.contains(slot) {
            if flags & UInt32(IORING_CQE_F_NOTIF) != 0 {
                let result = zeroCopyResults.removeValue(forKey: slot) ?? res
                zeroCopySlots.remove(slot)
                release(slot)
                completion(result, 0)
            } else if more {
                zeroCopyResults[slot] = res  // the buffer is still the kernel's
            } else {
                zeroCopySlots.remove(slot)
                release(slot)
                completion(res, 0)
            }
            return
        }
        if !more { release(slot) }
        completion(res, flags)
    }

    private func release(_ slot: Int) {
        completions[slot] = nil
        freeSlots.append(slot)
    }

    private func postWakeRead() {
        let fd = wakeFD, word = wakeWord
        submit({ [self] _, _ in
            let work = inbox.withLock { q in defer { q.removeAll(keepingCapacity: true) }; return q }
            for w in work { w() }
            if running { postWakeRead() }
        }) { io_uring_prep_read($0, fd, word, 8, 0) }
    }
}

/// Timers of one loop: a binary min-heap on deadline; a cancelled timer's entry is skipped when
/// it reaches the top.
struct TimerHeap {
    private var heap: [(deadline: Int64, id: UInt64)] = []
    private var handlers: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 0

    var count: Int { handlers.count }

    mutating func add(deadline: Int64, _ handler: @escaping () -> Void) -> TimerID {
        nextID += 1
        handlers[nextID] = handler
        heap.append((deadline, nextID))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent].deadline <= heap[i].deadline { break }
            heap.swapAt(parent, i)
            i = parent
        }
        return TimerID(value: nextID)
    }

    mutating func remove(_ timer: TimerID) {
        handlers[timer.value] = nil
        if handlers.isEmpty { heap.removeAll(keepingCapacity: true) }
    }

    /// The earliest live deadline (cancelled entries at the top are dropped on the way).
    var nextDeadline: Int64? {
        mutating get {
            while let top = heap.first, handlers[top.id] == nil { popTop() }
            return heap.first?.deadline
        }
    }

    /// The earliest timer due by `now`, removed (nil when none is due).
    mutating func popDue(now: Int64) -> (() -> Void)? {
        while let top = heap.first, top.deadline <= now {
            popTop()
            if let h = handlers.removeValue(forKey: top.id) { return h }
        }
        return nil
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && heap[l].deadline < heap[m].deadline { m = l }
            if r < heap.count && heap[r].deadline < heap[m].deadline { m = r }
            if m == i { break }
            heap.swapAt(i, m)
            i = m
        }
    }
}

/// A value that belongs to one event loop: reading or writing it off that loop's thread fails
/// in debug builds (as swift-nio's `NIOLoopBound`), so confinement is checked, not only promised.
public struct LoopBound<Value>: @unchecked Sendable {
    public let loop: EventLoop
    private let box: Box
    private final class Box { var value: Value; init(_ v: Value) { value = v } }

    /// Must be made on `loop`'s thread (or before the loop runs, by its owner).
    public init(_ value: Value, loop: EventLoop) {
        self.loop = loop
        box = Box(value)
    }

    public var value: Value {
        get { loop.assertInLoop(); return box.value }
        nonmutating set { loop.assertInLoop(); box.value = newValue }
    }
}

/// Event loops, one thread each, started together: the server's and the client's connections
/// share them. ``next()`` hands them out in turn.
public final class EventLoopGroup: Sendable {
    public let loops: [EventLoop]
    private let turn = Atomic<Int>(0)

    /// Starts `count` loops, each with `fixedBuffersPerLoop` registered buffers of `fixedBufferSize`.
    public init(count: Int, entries: UInt32 = 1024, fixedBuffersPerLoop: Int = 0, fixedBufferSize: Int = 256 << 10) throws(Errno) {
        var loops: [EventLoop] = []
        for i in 0..<max(1, count) {
            loops.append(try EventLoop(index: i, entries: entries, fixedBuffers: fixedBuffersPerLoop, fixedBufferSize: fixedBufferSize))
        }
        self.loops = loops
        for l in loops { l.start() }
    }

    /// The next loop in turn.
    public func next() -> EventLoop {
        loops[turn.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// The loop whose thread this is, if any.
    public var current: EventLoop? { loops.first { $0.inLoopThread } }

    /// Stops every loop and waits for its thread. Operations still in flight are abandoned.
    public func shutdown() {
        for l in loops { l.stop() }
        for l in loops { l.join() }
    }
}

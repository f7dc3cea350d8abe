#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// One thread that runs background jobs only when the CPUs would otherwise idle: it runs under
/// `SCHED_IDLE` (sched_setscheduler(2) on the thread itself), so hashing a just-completed
/// download never takes CPU from serving clients. Jobs run one at a time, in order, and may
/// block (they are not on Swift's cooperative pool).
public final class IdleWorker: Sendable {
    private let jobs = Mutex<(queue: [@Sendable () -> Void], started: Bool)>(([], false))
    private let wake = DispatchSemaphore(value: 0)

    public init() {}

    /// Queues `job`; starts the thread on first use.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        let start = jobs.withLock { s -> Bool in
            s.queue.append(job)
            defer { s.started = true }
            return !s.started
        }
        if start { startThread() }
        wake.signal()
    }

    private func startThread() {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let r = pthread_create(&thread, &attributes, { arg in
            let worker = Unmanaged<IdleWorker>.fromOpaque(arg!).takeRetainedValue()
            worker.run()
            return nil
        }, context)
        pthread_attr_destroy(&attributes)
        if r != 0 {
            // No thread: run what is queued now rather than never.
            Unmanaged<IdleWorker>.fromOpaque(context).release()
            while let job = jobs.withLock({ $0.queue.isEmpty ? nil : $0.queue.removeFirst() }) { job() }
        }
    }

    private func run() {
        var parameters = sched_param()
        _ = sched_setscheduler(0, schedIdle, &parameters)  // best effort: else normal priority
        while true {
            wake.wait()
            while let job = jobs.withLock({ $0.queue.isEmpty ? nil : $0.queue.removeFirst() }) { job() }
        }
    }
}

/// SCHED_IDLE from <sched.h> (a GNU extension Glibc's Swift module does not export).
private let schedIdle: Int32 = 5

extension SystemCalls {
    /// pread(2) until `range` of `buffer` is full or the file ends; returns the bytes read.
    /// Blocking: for threads of their own (see ``IdleWorker``), never Swift's cooperative pool.
    public static func readFully(_ fd: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) throws(Errno) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        var done = 0
        while done < range.count {
            let base = buffer.base + range.lowerBound + done, want = range.count - done, at = off_t(offset) + off_t(done)
            let n = try retryingOnInterrupt { pread(fd.rawValue, base, want, at) }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import CDarterShim

/// The fallback backend: blocking syscalls (pread, pwrite, fdatasync, ...) on a Dispatch
/// thread pool, never on Swift's cooperative pool. Chosen when io_uring is unavailable
/// (Docker's default seccomp profile blocks it) or forced with `DARTER_IO_BACKEND=threads`.
public final class ThreadPoolBackend: IOBackend, @unchecked Sendable {
    public let name = "thread-pool"
    private let queue = DispatchQueue(label: "darter.io", qos: .userInitiated, attributes: .concurrent)

    public init() {}

    /// Runs `body` (returning -1/errno style) on the pool, retrying EINTR there.
    private func blocking<R: BinaryInteger & Sendable>(_ body: @escaping @Sendable () -> R) async throws(Errno) -> R {
        let result: Result<R, Errno> = await withUnsafeContinuation { c in
            queue.async {
                do throws(Errno) { c.resume(returning: .success(try retryingOnInterrupt(body))) }
                catch { c.resume(returning: .failure(error)) }
            }
        }
        return try result.get()
    }

    public func makeBuffer(capacity: Int) -> IOBuffer { IOBuffer(capacity: capacity) }

    public func open(_ path: String, _ options: OpenOptions, mode: UInt32) async throws(Errno) -> FileDescriptor {
        let flags = options.kernelFlags
        return FileDescriptor(rawValue: try await blocking { Glibc.open(path, flags, mode) })
    }

    public func close(_ fd: FileDescriptor) async throws(Errno) {
        try SystemCalls.close(fd)
    }

    public func read(_ fd: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        // The buffer outlives this call, which waits for the read to finish.
        nonisolated(unsafe) let address = buffer.base + range.lowerBound
        let count = range.count
        return try await blocking { pread(fd.rawValue, address, count, off_t(offset)) }
    }

    public func write(_ fd: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        nonisolated(unsafe) let address = UnsafeRawPointer(buffer.base + range.lowerBound)
        let count = range.count
        return try await blocking { pwrite(fd.rawValue, address, count, off_t(offset)) }
    }

    public func dataSync(_ fds: [FileDescriptor]) async throws(Errno) {
        for fd in fds { _ = try await blocking { fdatasync(fd.rawValue) } }
    }

    public func sync(_ fd: FileDescriptor) async throws(Errno) {
        _ = try await blocking { fsync(fd.rawValue) }
    }

    public func allocate(_ fd: FileDescriptor, offset: Int64, length: Int64, keepingSize: Bool) async throws(Errno) {
        _ = try await blocking { () -> Int32 in
            let r = darter_fallocate(fd.rawValue, keepingSize ? fallocateKeepSize : 0, offset, length)
            if r < 0 { errno = -r; return -1 }
            return 0
        }
    }

    public func truncate(_ fd: FileDescriptor, length: Int64) async throws(Errno) {
        _ = try await blocking { ftruncate(fd.rawValue, off_t(length)) }
    }

    public func rename(_ from: String, to: String) async throws(Errno) {
        _ = try await blocking { Glibc.rename(from, to) }
    }

    public func unlink(_ path: String) async throws(Errno) {
        _ = try await blocking { Glibc.unlink(path) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number, as returned by a syscall or an io_uring completion.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public var description: String {
        guard let s = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: s) + " (errno \(rawValue))"
    }

    public static let interrupted = Errno(rawValue: EINTR)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let ioError = Errno(rawValue: EIO)
    public static let noEntry = Errno(rawValue: ENOENT)
    public static let exists = Errno(rawValue: EEXIST)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let canceled = Errno(rawValue: ECANCELED)
    public static let timedOut = Errno(rawValue: ETIME)
    public static let again = Errno(rawValue: EAGAIN)
    public static let busy = Errno(rawValue: EBUSY)
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    public static let permissionDenied = Errno(rawValue: EPERM)
    public static let accessDenied = Errno(rawValue: EACCES)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    public static let brokenPipe = Errno(rawValue: EPIPE)
}

/// Calls `body` until it stops failing with EINTR: the one place that retries on interrupt.
/// `body` returns -1 and sets errno on failure, like libc.
@inline(__always)
func retryingOnInterrupt<R: BinaryInteger>(_ body: () -> R) throws(Errno) -> R {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = errno
        if e == EINTR { continue }
        throw Errno(rawValue: e)
    }
}

/// Converts a kernel-style result (negative errno on failure) into a typed result.
@inline(__always)
func checkKernelResult(_ r: Int32) throws(Errno) -> Int32 {
    if r < 0 { throw Errno(rawValue: -r) }
    return r
}

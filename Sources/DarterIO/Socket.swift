#if canImport(Glibc)
import Glibc
#endif
import CDarterShim
import CURing

/// Socket syscalls the server makes outside the ring (setup, and sendfile mode).
public enum Socket {
    /// socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen on an IPv4 or IPv6 literal.
    public static func listen(host: String, port: UInt16, reusePort: Bool, backlog: Int32 = 4096) throws(Errno) -> FileDescriptor {
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let isV6: Bool
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            isV6 = false
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            isV6 = true
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
        } else {
            throw Errno.invalidArgument
        }
        let fd = try retryingOnInterrupt { socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bound: Int32 = isV6
            ? withUnsafePointer(to: &v6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            : withUnsafePointer(to: &v4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if bound < 0 || Glibc.listen(fd, backlog) < 0 {
            let e = Errno.current
            Glibc.close(fd)
            throw e
        }
        return FileDescriptor(rawValue: fd)
    }

    /// The local port a socket is bound to.
    public static func localPort(_ fd: FileDescriptor) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd.rawValue, $0, &length) } }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { p in
            family == sa_family_t(AF_INET6)
                ? p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                : p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// TCP_NODELAY: responses go out without waiting for more.
    public static func setNoDelay(_ fd: FileDescriptor) {
        var one: Int32 = 1
        setsockopt(fd.rawValue, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// shutdown(2) both directions: operations pending on the socket finish promptly.
    public static func shutdown(_ fd: FileDescriptor) {
        _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR))
    }

    /// close(2).
    public static func close(_ fd: FileDescriptor) {
        _ = Glibc.close(fd.rawValue)
    }

    /// sendfile(2) on a non-blocking socket: bytes sent, 0 when the socket is full (EAGAIN).
    public static func sendFile(to socket: FileDescriptor, from file: FileDescriptor, offset: Int64, count: Int) throws(Errno) -> Int {
        var off = offset
        let r = darter_sendfile(socket.rawValue, file.rawValue, &off, count)
        if r == -Int64(EAGAIN) { return 0 }
        if r < 0 { throw Errno(rawValue: Int32(-r)) }
        return Int(r)
    }

    /// pipe(2), close-on-exec, enlarged to `capacity` bytes (F_SETPIPE_SZ) for splicing.
    public static func makePipe(capacity: Int) throws(Errno) -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [0, 0]
        _ = try retryingOnInterrupt { pipe(&fds) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, Int32(capacity))
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// Raises the open-file limit to its hard maximum (servers hold many sockets).
    @discardableResult
    public static func raiseOpenFileLimit() -> Int { darter_raise_fd_limit() }

    /// 4 or 16 bytes for an IPv4 or IPv6 literal (inet_pton), else nil.
    public static func parseIPAddress(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// The number of online CPUs.
    public static var processorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

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

/// An IPv4 or IPv6 socket address (host and port), as connect(2) and bind(2) take it.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family's bytes: 4 (IPv4) or 16 (IPv6) address bytes.
    public let addressBytes: [UInt8]
    public let port: UInt16

    public var isIPv6: Bool { addressBytes.count == 16 }

    /// From an IPv4 or IPv6 literal (no brackets); nil for anything else.
    public init?(ipLiteral host: String, port: UInt16) {
        guard let bytes = Socket.parseIPAddress(host) else { return nil }
        addressBytes = bytes
        self.port = port
    }

    init(addressBytes: [UInt8], port: UInt16) {
        self.addressBytes = addressBytes
        self.port = port
    }

    /// The address alone, as a literal: `1.2.3.4` or `::1` (no brackets, no port).
    public var hostLiteral: String {
        var text = [CChar](repeating: 0, count: 64)
        var bytes = addressBytes
        _ = inet_ntop(isIPv6 ? AF_INET6 : AF_INET, &bytes, &text, socklen_t(text.count))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `1.2.3.4:80` or `[::1]:80`.
    public var description: String {
        isIPv6 ? "[\(hostLiteral)]:\(port)" : "\(hostLiteral):\(port)"
    }

    var length: socklen_t { socklen_t(isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size) }

    /// Writes the sockaddr_in / sockaddr_in6 to `storage` (sockaddr_storage-sized).
    func copy(to storage: UnsafeMutableRawPointer) {
        memset(storage, 0, MemoryLayout<sockaddr_storage>.size)
        if isIPv6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &a.sin6_addr) { $0.copyBytes(from: addressBytes) }
            storage.storeBytes(of: a, as: sockaddr_in6.self)
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &a.sin_addr) { $0.copyBytes(from: addressBytes) }
            storage.storeBytes(of: a, as: sockaddr_in.self)
        }
    }
}

extension Socket {
    /// A non-blocking, close-on-exec TCP socket of `address`'s family, with TCP_NODELAY, to
    /// connect from.
    public static func makeStreamSocket(for address: SocketAddress) throws(Errno) -> FileDescriptor {
        let fd = try retryingOnInterrupt {
            Glibc.socket(address.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        let s = FileDescriptor(rawValue: fd)
        setNoDelay(s)
        return s
    }

    /// getaddrinfo(3) for a TCP host and port: IP literals without a lookup, names through the
    /// resolver (which blocks: call it off an event loop). Addresses in the resolver's order.
    public static func resolve(host: String, port: UInt16) throws(ResolveError) -> [SocketAddress] {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if let literal = SocketAddress(ipLiteral: bare, port: port) { return [literal] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let r = getaddrinfo(bare, nil, &hints, &list)
        guard r == 0 else { throw ResolveError(host: host, reason: String(cString: gai_strerror(r))) }
        defer { freeaddrinfo(list) }
        var out: [SocketAddress] = []
        var p = list
        while let ai = p {
            if ai.pointee.ai_family == AF_INET, let sa = ai.pointee.ai_addr {
                let a = UnsafeRawPointer(sa).load(as: sockaddr_in.self)
                out.append(SocketAddress(addressBytes: withUnsafeBytes(of: a.sin_addr) { Array($0) }, port: port))
            } else if ai.pointee.ai_family == AF_INET6, let sa = ai.pointee.ai_addr {
                let a = UnsafeRawPointer(sa).load(as: sockaddr_in6.self)
                out.append(SocketAddress(addressBytes: withUnsafeBytes(of: a.sin6_addr) { Array($0) }, port: port))
            }
            p = ai.pointee.ai_next
        }
        var seen = Set<SocketAddress>()
        out = out.filter { seen.insert($0).inserted }
        guard !out.isEmpty else { throw ResolveError(host: host, reason: "no IPv4 or IPv6 address") }
        return out
    }

    /// The local address a connected socket got (getsockname(2)), for logs and tests.
    public static func localAddress(_ fd: FileDescriptor) -> SocketAddress? { address(fd, peer: false) }

    /// The address of a connected socket's other end (getpeername(2)).
    public static func peerAddress(_ fd: FileDescriptor) -> SocketAddress? { address(fd, peer: true) }

    /// Whether a connected socket's other end is on this host: a loopback address, or the
    /// same address as this end (a client that dialled this host's own interface address).
    public static func peerIsLocal(_ fd: FileDescriptor) -> Bool {
        guard let peer = peerAddress(fd) else { return false }
        return peer.isLoopback || peer.addressBytes == localAddress(fd)?.addressBytes
    }

    private static func address(_ fd: FileDescriptor, peer: Bool) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd.rawValue, $0, &length) : getsockname(fd.rawValue, $0, &length) }
        }
        guard r == 0 else { return nil }
        let family = storage.ss_family
        return withUnsafeBytes(of: &storage) { raw -> SocketAddress? in
            if family == sa_family_t(AF_INET) {
                let a = raw.load(as: sockaddr_in.self)
                return SocketAddress(addressBytes: withUnsafeBytes(of: a.sin_addr) { Array($0) }, port: UInt16(bigEndian: a.sin_port))
            }
            if family == sa_family_t(AF_INET6) {
                let a = raw.load(as: sockaddr_in6.self)
                return SocketAddress(addressBytes: withUnsafeBytes(of: a.sin6_addr) { Array($0) }, port: UInt16(bigEndian: a.sin6_port))
            }
            return nil
        }
    }
}

extension SocketAddress {
    /// 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6: a client on this host.
    public var isLoopback: Bool {
        if !isIPv6 { return addressBytes.first == 127 }
        if addressBytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
        return addressBytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][...] && addressBytes[12] == 127
    }
}

/// A host name that did not resolve.
public struct ResolveError: Error, Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let reason: String
    public var description: String { "cannot resolve \(host): \(reason)" }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterIO

// Clients for tests that talk to a server: free ports, raw HTTP/1.1 over a blocking socket (run
// it inside `offPool`, never on Swift's cooperative pool) and curl.

// MARK: - Ports

/// A port nobody listens on right now (bind port 0, read it, close).
public func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = loopback(port: 0)
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0 else { throw TestError("bind: errno \(errno)") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

/// 127.0.0.1:`port` as a socket address.
public func loopback(port: UInt16) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return addr
}

/// An IPv4 address of this host that is not loopback (an interface's own address), or nil:
/// a client that dials it from this host arrives from that address, not from loopback.
public func nonLoopbackIPv4Address() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return nil }
    defer { freeifaddrs(list) }
    var p = list
    while let ifa = p {
        defer { p = ifa.pointee.ifa_next }
        guard let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET),
              ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, ifa.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 else { continue }
        let a = UnsafeRawPointer(sa).load(as: sockaddr_in.self)
        let b = withUnsafeBytes(of: a.sin_addr) { Array($0) }
        if b[0] == 127 { continue }
        return b.map(String.init).joined(separator: ".")
    }
    return nil
}

/// A port nothing listens on, for connection-refused tests: `freePort`'s probe (port 1 in the
/// unlikely case that no socket could be made).
public func closedPort() -> UInt16 { (try? freePort()) ?? 1 }

// MARK: - Raw HTTP/1.1 client sockets (blocking; use inside `offPool`)

/// Runs blocking work on a thread of its own (``detachThread(_:)``). Not on Dispatch's global
/// queue: on Linux Swift's tasks run on that queue's threads too, and it adds a thread for a
/// blocked one only after a while, so blocking there held up the test tasks of a parallel run
/// for seconds (seen as 1 to 4 s gaps in a heartbeat task).
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        detachThread { continuation.resume(with: Result { try body() }) }
    }
}

/// A response read off a raw connection; header names lowercased.
public struct RawResponse: Sendable {
    public var statusLine: String
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A blocking HTTP/1.1 client connection to 127.0.0.1:`port` (send and receive timeouts set).
public final class RawConnection {
    public let fd: Int32
    public private(set) var buffer: [UInt8] = []
    private var isClosed = false

    public init(port: UInt16, timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket: errno \(errno)") }
        var addr = loopback(port: port)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TestError("connect to port \(port): errno \(e)")
        }
        setTimeout(timeout)
    }

    deinit { close() }

    public func close() {
        if !isClosed { isClosed = true; Glibc.close(fd) }
    }

    public func setTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TestError("send: errno \(errno)")
            }
            off += n
        }
    }

    /// One recv into the buffer: >0 bytes read, 0 at EOF (or ECONNRESET); throws on timeout.
    @discardableResult
    public func receiveSome() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer += chunk[0..<n]; return n }
            if n == 0 { return 0 }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return 0 }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw TestError("recv: timed out") }
            throw TestError("recv: errno \(errno)")
        }
    }

    /// Reads one response (after a HEAD, pass `head: true`: no body is read).
    public func readResponse(head: Bool = false) throws -> RawResponse {
        while true {
            if let (response, used) = parseResponse(buffer, head: head, complete: false) {
                buffer.removeFirst(used)
                return response
            }
            if try receiveSome() == 0 {
                // A body delimited by the connection's end (HTTP/1.0 without Content-Length).
                if let (response, used) = parseResponse(buffer, head: head, complete: true) {
                    buffer.removeFirst(used)
                    return response
                }
                throw TestError("connection closed before a complete response (\(buffer.count) bytes buffered)")
            }
        }
    }

    /// Reads until the peer closes or `timeout` passes; returns whether it closed.
    public func readUntilClosed(timeout: Double) -> Bool {
        let deadline = now() + timeout
        setTimeout(0.2)
        while now() < deadline {
            do {
                if try receiveSome() == 0 { return true }
            } catch {
                continue  // a receive timeout: look at the clock again
            }
        }
        return false
    }
}

/// Parses one response from the front of `bytes`; nil if incomplete.
public func parseResponse(_ bytes: [UInt8], head: Bool, complete: Bool) -> (RawResponse, Int)? {
    let sep: [UInt8] = [13, 10, 13, 10]
    guard bytes.count >= 4, let end = (0...(bytes.count - 4)).first(where: { bytes[$0..<($0 + 4)].elementsEqual(sep) }) else { return nil }
    let headText = String(decoding: bytes[0..<end], as: UTF8.self)
    let lines = headText.pieces(splitBy: "\r\n")
    let statusLine = lines[0]
    let parts = statusLine.split(separator: " ")
    let status = parts.count >= 2 ? Int(parts[1]) ?? -1 : -1
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmedBlanks()
    }
    let bodyStart = end + 4
    let length: Int
    if head || status == 304 || status == 204 || (100..<200).contains(status) {
        length = 0
    } else if let cl = headers["content-length"].flatMap({ Int($0) }) {
        length = cl
    } else if complete {
        length = bytes.count - bodyStart
    } else {
        return nil
    }
    guard bytes.count - bodyStart >= length else { return nil }
    let body = Array(bytes[bodyStart..<(bodyStart + length)])
    return (RawResponse(statusLine: statusLine, status: status, headers: headers, body: body), bodyStart + length)
}

/// Opens `count` connections at once, then sends one GET on each, then reads all responses
/// with poll(2). Returns one (status, body) per connection, or an error description.
public func concurrentGets(port: UInt16, path: String, count: Int, timeout: Double) throws -> [Result<RawResponse, TestError>] {
    var connections: [RawConnection] = []
    for _ in 0..<count { connections.append(try RawConnection(port: port, timeout: timeout)) }
    for c in connections { try c.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
    for c in connections { _ = fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) }
    var results = [Result<RawResponse, TestError>?](repeating: nil, count: count)
    let deadline = now() + timeout
    while results.contains(where: { $0 == nil }) && now() < deadline {
        let pending = results.indices.filter { results[$0] == nil }
        var fds = pending.map { pollfd(fd: connections[$0].fd, events: Int16(POLLIN), revents: 0) }
        let n = poll(&fds, nfds_t(fds.count), 200)
        if n <= 0 { continue }
        for (k, i) in pending.enumerated() where fds[k].revents != 0 {
            do {
                if try connections[i].receiveSome() == 0 {
                    results[i] = .failure(TestError("connection \(i) closed early"))
                    continue
                }
            } catch {
                continue  // EAGAIN after a spurious wakeup
            }
            if let (r, _) = parseResponse(connections[i].buffer, head: false, complete: false) { results[i] = .success(r) }
        }
    }
    return results.map { $0 ?? .failure(TestError("timed out")) }
}

// MARK: - curl

public struct CurlResponse: Sendable {
    public var exitCode: Int32
    public var status: Int
    /// The last header block, names lowercased.
    public var headers: [String: String]
    public var body: [UInt8]
    public var writeOut: String
    public var stderr: String
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// `curl -sS -D <headers> -o <body> -w '%{http_code}' <args> <url>`; a non-zero exit is returned,
/// not thrown. No proxy from the environment unless `args` names one (`-x`).
public func curlResult(_ url: String, _ args: [String] = [], scratch: String, maxTime: Int = 60) async throws -> CurlResponse {
    let tag = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let headerFile = scratch + "/h-" + tag, bodyFile = scratch + "/b-" + tag
    defer { unlink(headerFile); unlink(bodyFile) }
    let proxy = args.contains("-x") ? ["--noproxy", ""] : ["--noproxy", "*"]
    let r = try await runProcess("curl", ["-sS", "--max-time", "\(maxTime)", "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"]
                                 + proxy + args + [url], scratch: scratch, timeout: Double(maxTime) + 10)
    let blocks = readText(headerFile).pieces(splitBy: "\r\n\r\n").filter { !$0.isEmpty }
    var headers: [String: String] = [:]
    for line in (blocks.last ?? "").pieces(splitBy: "\r\n").dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmedBlanks()
    }
    let body = SystemCalls.exists(bodyFile) ? try readFile(bodyFile) : []
    return CurlResponse(exitCode: r.exitCode, status: Int(r.stdoutText) ?? -1, headers: headers, body: body,
                        writeOut: r.stdoutText, stderr: r.stderr)
}

/// As `curlResult`, but a non-zero curl exit throws.
public func curl(_ url: String, _ args: [String] = [], scratch: String, maxTime: Int = 60) async throws -> CurlResponse {
    let r = try await curlResult(url, args, scratch: scratch, maxTime: maxTime)
    guard r.exitCode == 0 else { throw TestError("curl \(args) \(url) exited with \(r.exitCode): \(r.stderr)") }
    return r
}

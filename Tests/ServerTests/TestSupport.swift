#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import DarterIO
import Foundation

// Support for the end-to-end tests (the seed over HTTP, the origin shield, the registry mirror):
// spawning `darter seed`, the Python origin fixture and `curl`, raw client sockets, files.
// Blocking socket work runs on Dispatch threads (`offPool`), never on Swift's cooperative pool.

@_exported import DarterTestSupport

/// A fresh directory on a disk filesystem (the store uses O_DIRECT; tmpfs has none).
func makeServerTestDirectory(_ name: String) -> String { makeTestDirectory(name, area: "shield-tests") }

/// Raises the soft open-file limit to the hard limit (children inherit it).
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}


/// 8 lowercase hex digits.
func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

func readText(_ path: String) -> String {
    (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

// MARK: - Processes

struct ProcessResult {
    var exitCode: Int32
    var stdout: [UInt8]
    var stderr: String
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a command to completion (killed after `timeout` seconds), capturing its output in files.
func runProcess(_ path: String, _ args: [String], scratch: String, timeout: Double = 60) async throws -> ProcessResult {
    let tag = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let out = scratch + "/out-" + tag, err = scratch + "/err-" + tag
    defer { unlink(out); unlink(err) }
    let pid = try spawnProcess(path, args, stdout: out, stderr: err)
    guard let code = await waitForExit(pid, timeout: timeout) else {
        kill(pid, SIGKILL)
        _ = await waitForExit(pid, timeout: 5)
        throw TestError("\(path) \(args.joined(separator: " ")) did not finish in \(timeout)s")
    }
    return ProcessResult(exitCode: code, stdout: try readFile(out), stderr: readText(err))
}

// MARK: - The seed process

/// A running `darter seed` on a port of its own. Killed (SIGKILL) on deinit if not stopped.
final class SeedProcess: Sendable {
    let pid: pid_t
    let port: UInt16
    let dataDir: String
    let logPath: String
    private let reaped = Mutex<Int32?>(nil)

    private init(pid: pid_t, port: UInt16, dataDir: String, logPath: String) {
        self.pid = pid
        self.port = port
        self.dataDir = dataDir
        self.logPath = logPath
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var log: String { readText(logPath) }

    /// Starts `darter seed --listen 127.0.0.1:<free port> --data-dir <dataDir> <extra>` and waits
    /// for its `seed: listening on` line.
    /// Starts `darter seed` on a free port; a port another process took between the probe and
    /// the seed's bind (suites run in parallel) is retried with a new one.
    static func start(dataDir: String, extra: [String] = [], timeout: Double = 30) async throws -> SeedProcess {
        var attempt = 0
        while true {
            do {
                return try await startOnce(dataDir: dataDir, extra: extra, timeout: timeout)
            } catch let e as TestError where e.description.contains("Address already in use") && attempt < 5 {
                attempt += 1
            }
        }
    }

    private static func startOnce(dataDir: String, extra: [String], timeout: Double) async throws -> SeedProcess {
        let port = try freePort()
        let logPath = dataDir + ".seed.log"
        let pid = try spawnProcess(ShieldBinaries.darter, ["seed", "--listen", "127.0.0.1:\(port)", "--data-dir", dataDir] + extra,
                                   stdout: logPath, stderr: logPath)
        let seed = SeedProcess(pid: pid, port: port, dataDir: dataDir, logPath: logPath)
        let deadline = now() + timeout
        while !readText(logPath).contains("seed: listening on") {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                seed.reaped.withLock { $0 = exitCode(status) }
                throw TestError("darter seed exited with \(exitCode(status)) before listening:\n\(readText(logPath))")
            }
            if now() > deadline { throw TestError("darter seed printed no 'seed: listening on' in \(timeout)s:\n\(readText(logPath))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return seed
    }

    /// Sends `signal` and waits for the exit; returns the exit code (nil: did not exit in time,
    /// then it is killed).
    func stop(signal: Int32 = SIGTERM, timeout: Double = 10) async -> Int32? {
        if let code = reaped.withLock({ $0 }) { return code }
        kill(pid, signal)
        if let code = await waitForExit(pid, timeout: timeout) {
            reaped.withLock { $0 = code }
            return code
        }
        kill(pid, SIGKILL)
        _ = await waitForExit(pid, timeout: 5)
        reaped.withLock { $0 = 128 + SIGKILL }
        return nil
    }

    var isRunning: Bool {
        reaped.withLock { $0 == nil } && kill(pid, 0) == 0 && !readText("/proc/\(pid)/status").contains("State:\tZ")
    }

    /// VmRSS from /proc/PID/status, in MiB.
    func residentMiB() -> Double? {
        for line in readText("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kib = Double(parts[1].trimmedBlanks()) { return kib / 1024 }
        }
        return nil
    }

    deinit {
        if reaped.withLock({ $0 }) == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    func trimmedBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// A port nobody listens on right now (bind port 0, read it, close).
func freePort() throws -> UInt16 {
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

func loopback(port: UInt16) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return addr
}

extension String {
    /// Splits on a multi-character separator (keeps empty pieces).
    func pieces(splitBy separator: String) -> [String] {
        let hay = Array(utf8), sep = Array(separator.utf8)
        var out: [String] = [], start = 0, i = 0
        while i + sep.count <= hay.count {
            if hay[i..<(i + sep.count)].elementsEqual(sep) {
                out.append(String(decoding: hay[start..<i], as: UTF8.self))
                i += sep.count
                start = i
            } else {
                i += 1
            }
        }
        out.append(String(decoding: hay[start...], as: UTF8.self))
        return out
    }
}

// MARK: - Raw HTTP/1.1 client sockets (blocking; use inside `offPool`)

/// Runs blocking work on a Dispatch thread.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try body() })
        }
    }
}

struct RawResponse {
    var statusLine: String
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

final class RawConnection {
    let fd: Int32
    private(set) var buffer: [UInt8] = []
    private var isClosed = false

    init(port: UInt16, timeout: Double = 10) throws {
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

    func close() {
        if !isClosed { isClosed = true; Glibc.close(fd) }
    }

    func setTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
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
    func receiveSome() throws -> Int {
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
    func readResponse(head: Bool = false) throws -> RawResponse {
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
    func readUntilClosed(timeout: Double) -> Bool {
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
func parseResponse(_ bytes: [UInt8], head: Bool, complete: Bool) -> (RawResponse, Int)? {
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
func concurrentGets(port: UInt16, path: String, count: Int, timeout: Double) throws -> [Result<RawResponse, TestError>] {
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

// MARK: - Binaries and the gate

/// The darter binary under test (`DARTER_BIN`, else the debug build).
enum SeedBinary {
    static var path: String {
        if let p = getenv("DARTER_BIN") { return String(cString: p) }
        return currentDirectory() + "/.build/debug/darter"
    }

    /// The binary exists and has a `seed` command (`darter seed --help` exits 0).
    static let available: Bool = {
        guard SystemCalls.exists(path), let pid = try? spawnProcess(path, ["seed", "--help"], stdout: "/dev/null", stderr: "/dev/null") else {
            return false
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return exitCode(status) == 0
    }()
}

enum ShieldBinaries {
    static var darter: String { SeedBinary.path }

    /// The origin fixture (another engineer's; contract in the suite's doc comment).
    static var origin: String {
        if let p = getenv("DARTER_ORIGIN_FIXTURE") { return String(cString: p) }
        return currentDirectory() + "/Tests/Fixtures/origin.py"
    }

    /// `darter seed --help` exits 0 and lists `--origin-allow` (the origin shield has landed),
    /// and the origin fixture and python3 exist.
    static let available: Bool = {
        guard SystemCalls.exists(darter), SystemCalls.exists(origin), pythonAvailable else { return false }
        let out = "/tmp/darter-shield-help-\(getpid())"
        defer { unlink(out) }
        guard let pid = try? spawnProcess(darter, ["seed", "--help"], stdout: out, stderr: out) else { return false }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return exitCode(status) == 0 && readText(out).contains("--origin-allow")
    }()

    static var pythonAvailable: Bool {
        guard let pid = try? spawnProcess("python3", ["-c", "pass"], stdout: "/dev/null", stderr: "/dev/null") else { return false }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return exitCode(status) == 0
    }
}

// MARK: - The origin fixture

/// `python3 Tests/Fixtures/origin.py --port P --dir DIR`: serves DIR's files as `/files/<name>`
/// (GET/HEAD, Range, ETag, Last-Modified) with misbehaviours chosen by query parameters, and
/// counts requests and body bytes (`GET /__stats`, `POST /__reset`). Killed on deinit.
final class OriginProcess: Sendable {
    let pid: pid_t
    let port: UInt16
    let dir: String
    let logPath: String
    private let reaped = Mutex<Int32?>(nil)

    private init(pid: pid_t, port: UInt16, dir: String, logPath: String) {
        self.pid = pid
        self.port = port
        self.dir = dir
        self.logPath = logPath
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var log: String { readText(logPath) }

    /// The URL of a file, with an optional query (`drop=1000&x=1`).
    func url(_ name: String, _ query: String = "") -> String {
        base + "/files/" + name + (query.isEmpty ? "" : "?" + query)
    }

    static func start(dir: String, timeout: Double = 30) async throws -> OriginProcess {
        let port = try freePort()
        let logPath = dir + ".origin.log"
        let pid = try spawnProcess("python3", [ShieldBinaries.origin, "--port", "\(port)", "--dir", dir], stdout: logPath, stderr: logPath)
        let origin = OriginProcess(pid: pid, port: port, dir: dir, logPath: logPath)
        let deadline = now() + timeout
        while !readText(logPath).contains("origin: listening on 127.0.0.1:\(port)") {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                origin.reaped.withLock { $0 = exitCode(status) }
                throw TestError("origin.py exited with \(exitCode(status)) before listening:\n\(readText(logPath))")
            }
            if now() > deadline { throw TestError("origin.py printed no 'origin: listening on' in \(timeout)s:\n\(readText(logPath))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return origin
    }

    func stop() async {
        if reaped.withLock({ $0 }) != nil { return }
        kill(pid, SIGTERM)
        if await waitForExit(pid, timeout: 5) == nil {
            kill(pid, SIGKILL)
            _ = await waitForExit(pid, timeout: 5)
        }
        reaped.withLock { $0 = 0 }
    }

    deinit {
        if reaped.withLock({ $0 }) == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }

    /// `GET /__stats`.
    func stats(scratch: String) async throws -> OriginStats {
        let r = try await curl(base + "/__stats", scratch: scratch)
        guard r.status == 200, let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            throw TestError("GET /__stats: \(r.status) \(r.text)")
        }
        func counts(_ key: String) -> [String: Int] {
            var out: [String: Int] = [:]
            for (k, v) in (json[key] as? [String: Any]) ?? [:] { out[k] = (v as? NSNumber)?.intValue ?? (v as? Int) ?? 0 }
            return out
        }
        return OriginStats(requests: counts("requests"), bodyBytes: counts("body_bytes"))
    }

    func reset(scratch: String) async throws {
        let r = try await curl(base + "/__reset", ["-X", "POST"], scratch: scratch)
        guard (200..<300).contains(r.status) else { throw TestError("POST /__reset: \(r.status) \(r.text)") }
    }
}

struct OriginStats {
    /// path with query → requests
    var requests: [String: Int]
    /// path (possibly with query) → body bytes sent
    var bodyBytes: [String: Int]

    /// Requests for exactly this path and query (`/files/a.bin?drop=5`).
    func requests(_ pathWithQuery: String) -> Int { requests[pathWithQuery] ?? 0 }

    /// Requests for a path, whatever the query.
    func requests(path: String) -> Int {
        requests.filter { $0.key == path || $0.key.hasPrefix(path + "?") }.values.reduce(0, +)
    }

    /// Body bytes for a path, whatever the query (the fixture may key them with or without it).
    func bodyBytes(path: String) -> Int {
        bodyBytes.filter { $0.key == path || $0.key.hasPrefix(path + "?") }.values.reduce(0, +)
    }
}

// MARK: - URLs

/// Percent-encodes everything but RFC 3986 unreserved characters (for `?url=`).
func percentEncode(_ s: String) -> String {
    var out = ""
    let hex = Array("0123456789ABCDEF")
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.append(Character(UnicodeScalar(b)))
        default:
            out.append("%"); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
        }
    }
    return out
}

extension SeedProcess {
    /// `/download?url=<encoded>[&digest=…]`
    func downloadPath(_ url: String, digest: String? = nil) -> String {
        "/download?url=" + percentEncode(url) + (digest.map { "&digest=" + percentEncode($0) } ?? "")
    }

    func download(_ url: String, digest: String? = nil) -> String { base + downloadPath(url, digest: digest) }
}

// MARK: - curl

struct CurlResponse {
    var exitCode: Int32
    var status: Int
    /// The last header block, names lowercased.
    var headers: [String: String]
    var body: [UInt8]
    var writeOut: String
    var stderr: String
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// `curl -sS -D <headers> -o <body> -w '%{http_code}' <args> <url>`; a non-zero exit is returned,
/// not thrown. No proxy from the environment unless `args` names one (`-x`).
func curlResult(_ url: String, _ args: [String] = [], scratch: String, maxTime: Int = 60) async throws -> CurlResponse {
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
func curl(_ url: String, _ args: [String] = [], scratch: String, maxTime: Int = 60) async throws -> CurlResponse {
    let r = try await curlResult(url, args, scratch: scratch, maxTime: maxTime)
    guard r.exitCode == 0 else { throw TestError("curl \(args) \(url) exited with \(r.exitCode): \(r.stderr)") }
    return r
}

// MARK: - Bodies

/// nil when `got` is exactly `want`, else a short description of the difference. Compare bodies
/// with this, never with `#expect(a == b)`: Swift Testing diffs two unequal arrays (Myers), which
/// takes minutes for megabytes.
func bodyDiff(_ got: [UInt8], _ want: [UInt8]) -> String? {
    if got == want { return nil }
    let common = min(got.count, want.count)
    var i = 0
    while i < common && got[i] == want[i] { i += 1 }
    return "\(got.count) bytes, expected \(want.count)" + (i < common ? ", first difference at byte \(i)" : ", equal up to the shorter")
}

/// A body for a failure message: its text when short and printable, else its size.
func printable(_ bytes: [UInt8]) -> String {
    let ok = bytes.count <= 300 && bytes.allSatisfy { $0 == 9 || $0 == 10 || $0 == 13 || (32..<127).contains($0) }
    return ok ? String(decoding: bytes, as: UTF8.self) : "<\(bytes.count) bytes>"
}

/// The value of the first sample of `metric` in a Prometheus text page.
func metricValue(_ metric: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(metric + " ") || line.hasPrefix(metric + "{") {
        return line.split(separator: " ").last.flatMap { Double($0) }
    }
    return nil
}

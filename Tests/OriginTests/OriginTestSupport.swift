#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
import DarterIO
import Origin
import DarterCore

// Support for the origin tests: real local servers (origin.py, moto_server, docker-registry)
// started as child processes, temporary files, and sinks.

@_exported import DarterTestSupport

/// The repository root (from this file's path: Tests/OriginTests/<file>).
let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

let fixturesDirectory = repositoryRoot + "/Tests/Fixtures"

/// The first executable named `name` on PATH (or an absolute path that exists), else nil.
func findExecutable(_ name: String) -> String? {
    if name.hasPrefix("/") { return access(name, X_OK) == 0 ? name : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// A sparse file of `size` zero bytes (no disk blocks, served from the page cache).
func makeSparseFile(_ path: String, size: Int) throws {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TestError("open \(path): errno \(errno)") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(size)) == 0 else { throw TestError("ftruncate: errno \(errno)") }
}

func sha256Hex(_ bytes: [UInt8]) -> String { hexString(SHA256Hasher.hash(bytes)) }

// MARK: - Processes

/// A child process with stdout and stderr in a log file; killed (SIGKILL) and reaped on deinit.
final class ChildProcess: Sendable {
    let pid: pid_t
    let logPath: String
    /// Set once waitpid has collected the child (then deinit leaves the pid alone).
    let reaped = Mutex(false)

    init(_ path: String, _ args: [String], logPath: String, environment: [String: String] = [:]) throws {
        pid = try spawnProcess(path, args, stdout: logPath, stderr: logPath, environment: environment)
        self.logPath = logPath
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log matches `pattern` (a regex with one capture group); returns the capture.
    func waitForLog(_ pattern: String, timeout: Double = 20) async throws -> String {
        let regex = try Regex(pattern)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let m = log.firstMatch(of: regex), let capture = m.output[1].substring { return String(capture) }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                reaped.withLock { $0 = true }
                throw TestError("process exited early; log:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestError("timed out waiting for /\(pattern)/; log:\n\(log)")
    }

    deinit {
        if reaped.withLock({ $0 }) { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}

/// Runs a command to completion; returns (exit code, output).
func runCommand(_ path: String, _ args: [String], scratch: String, timeout: Double = 60) async throws -> (Int32, String) {
    let log = scratch + "/cmd-\(UInt32.random(in: 0...UInt32.max)).log"
    let child = try ChildProcess(path, args, logPath: log)
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        var status: Int32 = 0
        let r = waitpid(child.pid, &status, WNOHANG)
        if r == child.pid {
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            child.reaped.withLock { $0 = true }
            return (code, child.log)
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestError("\(path) \(args.joined(separator: " ")) did not finish in \(timeout)s")
}

/// A port nothing listens on (bound, then closed).
func closedPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

// MARK: - origin.py

/// A running Tests/Fixtures/origin.py serving a directory.
final class OriginServer: Sendable {
    let process: ChildProcess
    let port: Int
    let scheme: String
    var base: String { "\(scheme)://127.0.0.1:\(port)" }

    static func start(dir: String, tls: (cert: String, key: String)? = nil, log: String) async throws -> OriginServer {
        var args = [fixturesDirectory + "/origin.py", "--port", "0", "--dir", dir, "--exit-with-parent"]
        if let tls { args += ["--tls", tls.cert, tls.key] }
        let p = try ChildProcess("python3", args, logPath: log)
        let port = try await p.waitForLog(#"origin: listening on 127\.0\.0\.1:(\d+)"#)
        return OriginServer(process: p, port: Int(port)!, scheme: tls == nil ? "http" : "https")
    }

    private init(process: ChildProcess, port: Int, scheme: String) {
        self.process = process
        self.port = port
        self.scheme = scheme
    }

    func url(_ path: String) -> String { base + path }
}

/// Files every HTTP test shares, and one origin.py serving them.
final class SharedOrigin: Sendable {
    let dir: TempDirectory
    let server: OriginServer
    let small: [UInt8]       // 1 MiB + 123 bytes of random data
    static let bigSize = 512 << 20

    /// Started once, on first use; every test awaits the same start.
    private static let starting = Task { try await SharedOrigin() }

    static func get() async throws -> SharedOrigin { try await starting.value }

    private init() async throws {
        dir = try TempDirectory("http")
        small = SplitMix64.bytes((1 << 20) + 123, seed: 7)
        try writeFile(dir.file("small.bin"), small)
        try writeFile(dir.file("empty.bin"), [])
        try makeSparseFile(dir.file("big.bin"), size: Self.bigSize)
        server = try await OriginServer.start(dir: dir.path, log: dir.file("origin.log"))
    }

    func url(_ path: String) -> String { server.url(path) }
}

// MARK: - Sinks

/// Keeps the head, every byte, and the chunk sizes.
final class CollectingSink: OriginSink, @unchecked Sendable {
    // Called only from the transfer's thread while the test awaits fetch.
    var heads: [OriginResponseHead] = []
    var body: [UInt8] = []
    var chunks = 0
    var bodyBeforeHead = false

    func receive(head: OriginResponseHead) -> Bool {
        heads.append(head)
        return true
    }

    func receive(body chunk: OriginChunk) -> Bool {
        if heads.isEmpty { bodyBeforeHead = true }
        chunks += 1
        body += chunk.bytes
        return true
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Counts bytes and samples the resident set size; keeps nothing.
final class DiscardingSink: OriginSink, @unchecked Sendable {
    var bytes = 0
    var maxResident = 0
    var chunks = 0
    private let scratch = IOBuffer(capacity: 1 << 20)

    func receive(head: OriginResponseHead) -> Bool { true }

    func receive(body chunk: OriginChunk) -> Bool {
        // Copy out like a real consumer would, into a reused buffer.
        chunk.copy(into: scratch, at: 0, count: min(chunk.count, scratch.capacity))
        bytes += chunk.count
        chunks += 1
        if chunks % 64 == 0 { maxResident = max(maxResident, SystemCalls.residentBytes()) }
        return true
    }
}

/// Aborts at the head, or after `afterBytes` body bytes.
final class AbortingSink: OriginSink, @unchecked Sendable {
    let atHead: Bool
    let afterBytes: Int
    var bytes = 0
    init(atHead: Bool, afterBytes: Int = 0) { self.atHead = atHead; self.afterBytes = afterBytes }
    func receive(head: OriginResponseHead) -> Bool { !atHead }
    func receive(body chunk: OriginChunk) -> Bool {
        bytes += chunk.count
        return bytes < afterBytes
    }
}

/// Expects `body` to throw an OriginError and returns it.
func expectOriginError(_ body: () async throws(OriginError) -> OriginResponseHead, sourceLocation: SourceLocation = #_sourceLocation) async -> OriginError? {
    do {
        let head = try await body()
        Issue.record("expected an error, got status \(head.status)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

func jsonObject(_ text: String) throws -> [String: Any] {
    guard let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw TestError("not a JSON object: \(text)") }
    return obj
}

/// Compares bytes without printing them (large arrays make expectation messages huge).
func expectSameBytes(_ got: [UInt8], _ want: some Collection<UInt8>, sourceLocation: SourceLocation = #_sourceLocation) {
    let wanted = Array(want)
    if got != wanted {
        let firstDiff = (0..<min(got.count, wanted.count)).first { got[$0] != wanted[$0] } ?? min(got.count, wanted.count)
        Issue.record("bytes differ: got \(got.count) bytes, expected \(wanted.count); first difference at \(firstDiff); got starts \(String(decoding: got.prefix(120), as: UTF8.self).debugDescription)", sourceLocation: sourceLocation)
    }
}

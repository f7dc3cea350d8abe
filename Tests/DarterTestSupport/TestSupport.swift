#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import DarterCore

// Helpers every test target shares: errors, scratch directories, whole-file I/O with plain
// syscalls (independent of the backend under test), child processes and a monotonic clock.

public struct TestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    return getcwd(&buf, buf.count).map { String(cString: $0) } ?? "/var/tmp"
}

/// A fresh directory on a disk filesystem (the store uses O_DIRECT; tmpfs has none): under
/// `$DARTER_TEST_DIR`, else `.build/<area>` of the current directory.
public func makeTestDirectory(_ name: String, area: String) -> String {
    let base = (getenv("DARTER_TEST_DIR").map { String(cString: $0) }) ?? (currentDirectory() + "/.build/" + area)
    let dir = base + "/" + name.filter { $0.isLetter || $0.isNumber } + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    try! SystemCalls.makeDirectories(dir)
    return dir
}

/// Removes a file or a directory tree (no shell).
public func removeTree(_ path: String) {
    if unlink(path) == 0 { return }
    if let names = try? SystemCalls.listDirectory(path) {
        for n in names { removeTree(path + "/" + n) }
    }
    _ = rmdir(path)
}

/// A fresh directory under /var/tmp (a disk filesystem), removed on deinit.
public final class TempDirectory: Sendable {
    public let path: String

    public init(_ label: String = "t") throws {
        var template = Array("/var/tmp/darter-tests-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw TestError("mkdtemp for \(label): errno \(errno)") }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    deinit { removeTree(path) }
}

/// Reads a whole file with plain syscalls.
public func readFile(_ path: String) throws -> [UInt8] {
    let fd = try SystemCalls.open(path, .readOnly)
    defer { try? SystemCalls.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw Errno.current }
        if n == 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Writes a whole file (created or truncated) with plain syscalls.
public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = try SystemCalls.open(path, [.writeOnly, .create, .truncate])
    defer { try? SystemCalls.close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd.rawValue, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw Errno.current }
        done += n
    }
}

/// Lowercase hex digits of `bytes`.
public func hexString(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

/// Seconds on the monotonic clock.
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

// MARK: - Processes

/// posix_spawnp with stdin from /dev/null and stdout and stderr sent to files (the same file may
/// be given twice); `environment` entries are added to this process's environment.
public func spawnProcess(_ path: String, _ args: [String], stdout: String, stderr: String,
                         environment: [String: String] = [:]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if stderr == stdout {
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    }
    // Swift's concurrency threads are Dispatch threads, which block most signals; a child would
    // inherit that mask (and never see SIGTERM). Start children with no signal blocked and the
    // usual dispositions.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t(), defaults = sigset_t()
    sigemptyset(&empty)
    sigemptyset(&defaults)
    for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var env = SystemCalls.environment()
    for (k, v) in environment { env[k] = v }
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    let argv = ([path] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let r = posix_spawnp(&pid, path, &actions, &attributes, argv, envp)
    if r != 0 { throw TestError("posix_spawnp \(path): error \(r)") }
    return pid
}

/// The exit code of a wait status, or 128 + the signal that ended the process.
public func exitCode(_ status: Int32) -> Int32 {
    (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Waits (polling, without blocking a pool thread) for a child; nil on timeout.
public func waitForExit(_ pid: pid_t, timeout: Double) async -> Int32? {
    let deadline = now() + timeout
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return exitCode(status) }
        if r < 0 && errno != EINTR { return nil }
        if now() > deadline { return nil }
        try? await Task.sleep(for: .milliseconds(5))
    }
}

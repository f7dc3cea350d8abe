#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import DarterIO

// Child processes: the one type every launcher (the seed, origin.py, registry.py, moto_server,
// nginx, docker-registry, curl, skopeo) and `runProcess` are built on, and the darter binary
// under test.

/// A child process started with posix_spawnp: stdin from /dev/null, stdout (and stderr, unless
/// `errorLogPath` names another file) in `logPath`, `environment` added to this process's,
/// optionally in another working `directory`. Its exit is collected (waitpid) by whichever of
/// `exitCode`, `wait`, `stop` or `kill` sees it first; a child still running when the object
/// goes away is killed (SIGKILL) and reaped.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// The command line, for messages.
    public let command: String
    public let logPath: String
    public let errorLogPath: String
    /// The exit code once waitpid has collected the child (then its pid is left alone).
    private let collected = Mutex<Int32?>(nil)

    public init(_ path: String, _ arguments: [String], logPath: String, errorLogPath: String? = nil,
                environment: [String: String] = [:], directory: String? = nil) throws {
        self.logPath = logPath
        self.errorLogPath = errorLogPath ?? logPath
        command = ([path] + arguments).joined(separator: " ")
        pid = try spawnProcess(path, arguments, stdout: logPath, stderr: errorLogPath ?? logPath,
                               environment: environment, directory: directory)
    }

    /// What the child wrote to `logPath` so far.
    public var log: String { readText(logPath) }

    /// Everything it wrote: the log, and the error log when that is a file of its own.
    public var output: String { errorLogPath == logPath ? log : log + readText(errorLogPath) }

    /// The exit code (128 + the signal for a child a signal ended; -1 for one reaped elsewhere)
    /// once the child has ended, else nil. Never blocks.
    public var exitCode: Int32? {
        collected.withLock { code in
            if code == nil {
                var status: Int32 = 0
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid { code = waitStatusExitCode(status) } else if r < 0 && errno == ECHILD { code = -1 }
            }
            return code
        }
    }

    public var isRunning: Bool { exitCode == nil }

    /// Sends `signal`, unless the child has been reaped (its pid may be another process's by then).
    public func signal(_ signal: Int32) {
        collected.withLock { if $0 == nil { _ = Glibc.kill(pid, signal) } }
    }

    /// Waits (polling, without blocking a pool thread) for the exit; nil if `timeout` passes first.
    public func wait(timeout: Double = .infinity) async -> Int32? {
        let deadline = now() + timeout
        while true {
            if let code = exitCode { return code }
            if now() > deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Blocks the calling thread until the child exits (for synchronous contexts only).
    public func waitUntilExit() -> Int32 {
        while true {
            if let code = exitCode { return code }
            usleep(2_000)
        }
    }

    /// Sends `signal` and waits for the exit; returns the exit code (nil: it did not exit within
    /// `timeout`, and was then killed with SIGKILL).
    public func stop(signal: Int32 = SIGTERM, timeout: Double = 10) async -> Int32? {
        if let code = exitCode { return code }
        self.signal(signal)
        if let code = await wait(timeout: timeout) { return code }
        self.signal(SIGKILL)
        _ = await wait(timeout: 5)
        return nil
    }

    /// Sends `signal` (SIGKILL unless told) and blocks until the child is reaped.
    @discardableResult
    public func kill(_ signal: Int32 = SIGKILL) -> Int32 {
        self.signal(signal)
        return waitUntilExit()
    }

    /// Waits until the log matches `pattern` (a regex); returns its first capture group, or the
    /// whole match when it has none. Throws if the child exits first or `timeout` passes.
    @discardableResult
    public func waitForLog(_ pattern: String, timeout: Double = 30) async throws -> String {
        let regex = try Regex(pattern)
        let deadline = now() + timeout
        while true {
            if let m = log.firstMatch(of: regex) {
                let capture = m.output.count > 1 ? m.output[1].substring : m.output[0].substring
                return String(capture ?? "")
            }
            if let code = exitCode {
                throw TestError("\(command) exited with \(code) before printing /\(pattern)/; output:\n\(output)")
            }
            if now() > deadline {
                throw TestError("\(command) printed no /\(pattern)/ in \(timeout)s; output:\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    deinit {
        if collected.withLock({ $0 }) == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}

/// The exit code of a wait status, or 128 + the signal that ended the process.
func waitStatusExitCode(_ status: Int32) -> Int32 {
    (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// posix_spawnp with stdin from /dev/null and stdout and stderr sent to files (the same file may
/// be given twice); `environment` entries are added to this process's environment; `directory`
/// is the child's working directory (the output files are opened before it changes there).
func spawnProcess(_ path: String, _ args: [String], stdout: String, stderr: String,
                  environment: [String: String], directory: String?) throws -> pid_t {
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
    if let directory {
        // glibc's posix_spawn_file_actions_addchdir_np (2.29) is GNU-only: Swift's Glibc does not
        // declare it, so look it up.
        typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addchdir_np") else {
            throw TestError("posix_spawn_file_actions_addchdir_np is missing (glibc older than 2.29)")
        }
        let r = unsafeBitCast(symbol, to: AddChdir.self)(&actions, directory)
        if r != 0 { throw TestError("posix_spawn_file_actions_addchdir_np \(directory): error \(r)") }
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

// MARK: - Running a command to completion

public struct ProcessResult: Sendable {
    public var exitCode: Int32
    public var stdout: [UInt8]
    public var stderr: String
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// stdout, then stderr (for failure messages).
    public var output: String { stdoutText + stderr }
}

/// Runs a command to completion (killed after `timeout` seconds, then this throws), its stdout
/// and stderr captured in files under `scratch` (removed after).
public func runProcess(_ path: String, _ args: [String], scratch: String, timeout: Double = 60,
                       environment: [String: String] = [:], directory: String? = nil) async throws -> ProcessResult {
    let tag = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let out = scratch + "/out-" + tag, err = scratch + "/err-" + tag
    defer { unlink(out); unlink(err) }
    let child = try ChildProcess(path, args, logPath: out, errorLogPath: err, environment: environment, directory: directory)
    guard let code = await child.wait(timeout: timeout) else {
        _ = await child.stop(signal: SIGKILL, timeout: 5)
        throw TestError("\(child.command) did not finish in \(timeout)s")
    }
    return ProcessResult(exitCode: code, stdout: try readFile(out), stderr: readText(err))
}

// MARK: - The darter binary

/// The darter binary under test: `$DARTER_BIN` (tools/test sets it), else this checkout's debug
/// build. Suites that need it gate on `exists`, `hasSeed` or `hasOriginShield`; under tools/test
/// (which builds it first) a suite that skips itself fails the run.
public enum DarterBinary {
    public static var path: String {
        if let p = getenv("DARTER_BIN") { return String(cString: p) }
        return repositoryRoot + "/.build/debug/darter"
    }

    public static var exists: Bool { SystemCalls.exists(path) }

    /// `darter <command> --help` exits 0 and its output contains every one of `words`.
    public static func helps(_ command: String, mentioning words: [String] = []) -> Bool {
        guard exists else { return false }
        let out = "/tmp/darter-help-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(out) }
        guard let child = try? ChildProcess(path, [command, "--help"], logPath: out) else { return false }
        guard child.waitUntilExit() == 0 else { return false }
        let text = child.log
        return words.allSatisfy { text.contains($0) }
    }

    /// The binary has a `seed` command.
    public static let hasSeed: Bool = helps("seed")

    /// `darter seed` has the origin shield (`--origin-allow`).
    public static let hasOriginShield: Bool = helps("seed", mentioning: ["--origin-allow"])
}

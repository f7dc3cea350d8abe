#if canImport(Glibc)
import Glibc
#endif
import DarterIO

// Support for the end-to-end tests (the seed over HTTP, the origin shield, the registry mirror):
// `darter seed` as a child process. Child processes, origin.py, curl, raw client sockets and
// files are DarterTestSupport's.

@_exported import DarterTestSupport

/// A fresh directory on a disk filesystem (the store uses O_DIRECT; tmpfs has none).
func makeServerTestDirectory(_ name: String) -> String { makeTestDirectory(name, area: "shield-tests") }

/// 8 lowercase hex digits.
func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

// MARK: - The scheduler process

/// Starts `darter scheduler --listen 127.0.0.1:<free port>` (log in `dir/scheduler.log`) and waits
/// for its `listening` line; returns it with its base URL.
func startScheduler(dir: String) async throws -> (process: ChildProcess, url: String) {
    let port = try freePort()
    let scheduler = try ChildProcess(DarterBinary.path, ["scheduler", "--listen", "127.0.0.1:\(port)"], logPath: dir + "/scheduler.log")
    try await scheduler.waitForLog("scheduler: listening on")
    return (scheduler, "http://127.0.0.1:\(port)")
}

// MARK: - The seed process

/// A running `darter seed` on a port of its own. Killed (SIGKILL) on deinit if not stopped.
final class SeedProcess: Sendable {
    let process: ChildProcess
    let port: UInt16
    let dataDir: String

    private init(process: ChildProcess, port: UInt16, dataDir: String) {
        self.process = process
        self.port = port
        self.dataDir = dataDir
    }

    var pid: pid_t { process.pid }
    var base: String { "http://127.0.0.1:\(port)" }
    var log: String { process.log }

    /// Starts `darter seed --listen 127.0.0.1:<free port> --data-dir <dataDir> <extra>` and waits
    /// for its `seed: listening on` line. A port another process took between the probe and the
    /// seed's bind (suites run in parallel) is retried with a new one.
    /// `command` "peer" starts `darter peer` the same way.
    static func start(dataDir: String, extra: [String] = [], timeout: Double = 30, command: String = "seed") async throws -> SeedProcess {
        var attempt = 0
        while true {
            do {
                return try await startOnce(dataDir: dataDir, extra: extra, timeout: timeout, command: command)
            } catch let e as TestError where e.description.contains("Address already in use") && attempt < 5 {
                attempt += 1
            }
        }
    }

    private static func startOnce(dataDir: String, extra: [String], timeout: Double, command: String) async throws -> SeedProcess {
        let port = try freePort()
        let process = try ChildProcess(DarterBinary.path, [command, "--listen", "127.0.0.1:\(port)", "--data-dir", dataDir] + extra,
                                       logPath: dataDir + ".\(command).log")
        try await process.waitForLog("\(command): listening on", timeout: timeout)
        return SeedProcess(process: process, port: port, dataDir: dataDir)
    }

    /// Sends `signal` and waits for the exit; returns the exit code (nil: did not exit in time,
    /// then it is killed).
    func stop(signal: Int32 = SIGTERM, timeout: Double = 10) async -> Int32? {
        await process.stop(signal: signal, timeout: timeout)
    }

    var isRunning: Bool { process.isRunning }

    /// VmRSS from /proc/PID/status, in MiB.
    func residentMiB() -> Double? {
        for line in readText("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kib = Double(parts[1].trimmedBlanks()) { return kib / 1024 }
        }
        return nil
    }

    /// `/download?url=<encoded>[&digest=…]`
    func downloadPath(_ url: String, digest: String? = nil) -> String {
        "/download?url=" + percentEncode(url) + (digest.map { "&digest=" + percentEncode($0) } ?? "")
    }

    func download(_ url: String, digest: String? = nil) -> String { base + downloadPath(url, digest: digest) }
}

// MARK: - The gates

extension DarterBinary {
    /// `darter seed` with the origin shield, and origin.py with python3 to run it.
    static var shieldAvailable: Bool { hasOriginShield && OriginServer.available }
}

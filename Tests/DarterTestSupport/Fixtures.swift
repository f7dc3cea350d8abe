#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO
import Foundation

// Launchers for the Python fixtures in Tests/Fixtures that more than one test target starts.

// MARK: - origin.py

/// `python3 Tests/Fixtures/origin.py --port 0 --dir DIR [--tls CERT KEY] --exit-with-parent`:
/// serves DIR's files as `/files/<name>` (GET/HEAD, Range, ETag, Last-Modified; HTTPS with
/// `tls`), echoes requests at `/__echo`, misbehaves as query parameters ask (`?drop=N`,
/// `?fail=K`, `?chunked=1`, `?drip=BYTES_PER_SEC`, `?short=N`, `?norange=1`, `?etag=rotate`,
/// `?status=404`, `?redirect=…`; the contract is in origin.py's doc comment), and counts requests
/// and body bytes (`stats`, `reset`). Killed when the object goes away (and exits with this
/// process). `shared()` is one instance for the whole test process.
public final class OriginServer: Sendable {
    public let process: ChildProcess
    public let port: UInt16
    public let scheme: String
    /// The directory it serves.
    public let dir: String
    /// The shared instance's directory, kept as long as the server.
    private let ownedDirectory: TempDirectory?

    private init(process: ChildProcess, port: UInt16, scheme: String, dir: String, ownedDirectory: TempDirectory?) {
        self.process = process
        self.port = port
        self.scheme = scheme
        self.dir = dir
        self.ownedDirectory = ownedDirectory
    }

    /// The fixture: `$DARTER_ORIGIN_FIXTURE`, else Tests/Fixtures/origin.py.
    public static var fixture: String {
        if let p = getenv("DARTER_ORIGIN_FIXTURE") { return String(cString: p) }
        return fixturesDirectory + "/origin.py"
    }

    /// The fixture exists and python3 runs.
    public static let available: Bool = {
        guard SystemCalls.exists(fixture), let python = try? ChildProcess("python3", ["-c", "pass"], logPath: "/dev/null") else { return false }
        return python.waitUntilExit() == 0
    }()

    /// Starts origin.py on a port the kernel picks and waits for its `origin: listening on` line.
    /// Its output goes to `log` (default: `<dir>.origin.log`).
    public static func start(dir: String, tls: (cert: String, key: String)? = nil, log: String? = nil,
                             timeout: Double = 30) async throws -> OriginServer {
        try await start(dir: dir, tls: tls, log: log, timeout: timeout, owning: nil)
    }

    private static func start(dir: String, tls: (cert: String, key: String)?, log: String?, timeout: Double,
                              owning: TempDirectory?) async throws -> OriginServer {
        var args = [fixture, "--port", "0", "--dir", dir, "--exit-with-parent"]
        if let tls { args += ["--tls", tls.cert, tls.key] }
        let process = try ChildProcess("python3", args, logPath: log ?? dir + ".origin.log")
        let port = try await process.waitForLog(#"origin: listening on 127\.0\.0\.1:(\d+)"#, timeout: timeout)
        return OriginServer(process: process, port: UInt16(port)!, scheme: tls == nil ? "http" : "https", dir: dir, ownedDirectory: owning)
    }

    public var base: String { "\(scheme)://127.0.0.1:\(port)" }
    public var log: String { process.log }

    /// The URL of a path on the server (`/files/a.bin?drop=5`, `/__echo`).
    public func url(_ path: String) -> String { base + path }

    /// The URL of a served file, with an optional query (`drop=1000&x=1`).
    public func url(file name: String, _ query: String = "") -> String {
        base + "/files/" + name + (query.isEmpty ? "" : "?" + query)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    public func stop() async {
        _ = await process.stop(timeout: 5)
    }

    /// `GET /__stats`.
    public func stats(scratch: String) async throws -> OriginStats {
        let r = try await curl(base + "/__stats", scratch: scratch)
        guard r.status == 200 else { throw TestError("GET /__stats: \(r.status) \(r.text)") }
        let json = try jsonObject(r.text)
        func counts(_ key: String) -> [String: Int] {
            var out: [String: Int] = [:]
            for (k, v) in (json[key] as? [String: Any]) ?? [:] { out[k] = (v as? NSNumber)?.intValue ?? (v as? Int) ?? 0 }
            return out
        }
        return OriginStats(requests: counts("requests"), bodyBytes: counts("body_bytes"))
    }

    /// `POST /__reset`: the counters start again from zero.
    public func reset(scratch: String) async throws {
        let r = try await curl(base + "/__reset", ["-X", "POST"], scratch: scratch)
        guard (200..<300).contains(r.status) else { throw TestError("POST /__reset: \(r.status) \(r.text)") }
    }

    // MARK: The shared instance

    /// The shared instance's `small.bin`: 1 MiB + 123 bytes of random data.
    public static let sharedSmall = SplitMix64.bytes((1 << 20) + 123, seed: 7)
    /// The size of the shared instance's `big.bin` (zeros, a sparse file).
    public static let sharedBigSize = 512 << 20

    /// Started once, on first use; every caller awaits the same start.
    private static let sharedStart = Task { () throws -> OriginServer in
        let dir = try TempDirectory("http")
        try writeFile(dir.file("small.bin"), sharedSmall)
        try writeFile(dir.file("empty.bin"), [])
        try makeSparseFile(dir.file("big.bin"), size: sharedBigSize)
        return try await start(dir: dir.path, tls: nil, log: dir.file("origin.log"), timeout: 30, owning: dir)
    }

    /// One origin.py for the whole test process, serving `small.bin` (`sharedSmall`), `empty.bin`
    /// and `big.bin` (`sharedBigSize` zero bytes).
    public static func shared() async throws -> OriginServer { try await sharedStart.value }
}

/// origin.py's counters (`GET /__stats`).
public struct OriginStats: Sendable {
    /// path with query → requests
    public var requests: [String: Int]
    /// path (possibly with query) → body bytes sent
    public var bodyBytes: [String: Int]

    /// Requests for exactly this path and query (`/files/a.bin?drop=5`).
    public func requests(_ pathWithQuery: String) -> Int { requests[pathWithQuery] ?? 0 }

    /// Requests for a path, whatever the query.
    public func requests(path: String) -> Int {
        requests.filter { $0.key == path || $0.key.hasPrefix(path + "?") }.values.reduce(0, +)
    }

    /// Body bytes for a path, whatever the query (the fixture may key them with or without it).
    public func bodyBytes(path: String) -> Int {
        bodyBytes.filter { $0.key == path || $0.key.hasPrefix(path + "?") }.values.reduce(0, +)
    }
}

// MARK: - registry.py

/// `python3 Tests/Fixtures/registry.py`: a real docker-registry (distribution) with token auth,
/// holding one image whose layer is `blob`, and its token server; with `user` (USER:PASS) the
/// token server wants those credentials. Killed when the object goes away (its registry with it).
public struct TestRegistry {
    public let process: ChildProcess
    /// The JSON line registry.py prints when ready: registry, token_server, repository, tag,
    /// blob_digest, manifest_digest, manifest_size.
    public let info: [String: Any]
    public var registry: String { info["registry"] as! String }
    public var tokenServer: String { info["token_server"] as! String }
    public var repository: String { info["repository"] as! String }
    /// host:port of the registry.
    public var host: String { String(registry.dropFirst("http://".count)) }
    public func string(_ key: String) -> String { info[key] as? String ?? "" }

    public static let binary = "/usr/bin/docker-registry"

    /// Starts registry.py with its state in `dir` and its output in `log`; nil when
    /// docker-registry is not installed.
    public static func start(dir: String, blob: String, user: String?, log: String) async throws -> TestRegistry? {
        guard findExecutable(binary) != nil else { return nil }
        var args = [fixturesDirectory + "/registry.py", "--dir", dir, "--blob", blob, "--exit-with-parent"]
        if let user { args += ["--user", user] }
        let p = try ChildProcess("python3", args, logPath: log)
        let line = try await p.waitForLog(#"(\{"registry".*\})"#, timeout: 30)
        return TestRegistry(process: p, info: try jsonObject(line))
    }

    /// Sets the lifetime of the tokens the token server hands out.
    public func setTokenLifetime(_ seconds: Int) async throws {
        _ = try await runProcess("curl", ["-sf", "-X", "POST", "--data", "\(seconds)", tokenServer + "/__config"], scratch: "/tmp")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import DarterCore
import Foundation

// Helpers every test target shares: errors, scratch directories, whole-file I/O with plain
// syscalls (independent of the backend under test), hex and digests, body comparison, a
// monotonic clock, the repository's fixtures and PATH lookups. Child processes are in
// Processes.swift, sockets and HTTP clients in HTTPClients.swift, the Python fixtures'
// launchers in Fixtures.swift.

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

/// Reads a whole file with plain syscalls (independent of the backend under test).
public func readFile(_ path: String) throws -> [UInt8] {
    try SystemCalls.readSmallFile(path, limit: .max)
}

/// Byte arrays compared with memcmp(3). `[UInt8] == [UInt8]` in a debug build is the standard
/// library's unspecialised generic, 8 ns a byte (0.27 s for 32 MiB, measured), run on one of the
/// two cooperative threads the whole parallel suite shares; every test target imports this
/// module, so `#expect(got == want)` on bodies and files resolves here (a concrete overload wins
/// over the generic one).
public func == (lhs: [UInt8], rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    return lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
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

/// A whole file as text ("" when it cannot be read: a log not written yet).
public func readText(_ path: String) -> String {
    (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

/// A sparse file of `size` zero bytes (no disk blocks, served from the page cache).
public func makeSparseFile(_ path: String, size: Int) throws {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TestError("open \(path): errno \(errno)") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(size)) == 0 else { throw TestError("ftruncate: errno \(errno)") }
}

/// Raises the soft open-file limit to the hard limit (children inherit it).
public func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

// MARK: - Repository and PATH

/// The repository root (from this file's path: Tests/DarterTestSupport/<file>).
public let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

/// Tests/Fixtures: origin.py, registry.py, mkimage.py, s3_setup.py.
public let fixturesDirectory = repositoryRoot + "/Tests/Fixtures"

/// The first executable named `name` on PATH (or an absolute path that exists), else nil.
public func findExecutable(_ name: String) -> String? {
    if name.hasPrefix("/") { return access(name, X_OK) == 0 ? name : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

// MARK: - Hex, digests, bodies

/// Lowercase hex digits of `bytes`.
public func hexString(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

/// The SHA-256 of `bytes` in lowercase hex (no `sha256:` prefix).
public func sha256Hex(_ bytes: [UInt8]) -> String { hexString(SHA256Hasher.hash(bytes)) }

/// nil when `got` is exactly `want`, else a short description of the difference. Compare bodies
/// with this, never with `#expect(a == b)`: Swift Testing diffs two unequal arrays (Myers), which
/// takes minutes for megabytes.
public func bodyDiff(_ got: [UInt8], _ want: [UInt8]) -> String? {
    if got == want { return nil }
    let common = min(got.count, want.count)
    var i = 0
    while i < common && got[i] == want[i] { i += 1 }
    return "\(got.count) bytes, expected \(want.count)" + (i < common ? ", first difference at byte \(i)" : ", equal up to the shorter")
}

/// A body for a failure message: its text when short and printable, else its size.
public func printable(_ bytes: [UInt8]) -> String {
    let ok = bytes.count <= 300 && bytes.allSatisfy { $0 == 9 || $0 == 10 || $0 == 13 || (32..<127).contains($0) }
    return ok ? String(decoding: bytes, as: UTF8.self) : "<\(bytes.count) bytes>"
}

// MARK: - Text

/// The JSON object in `text` (Foundation's reading: numbers as NSNumber, castable to Int).
public func jsonObject(_ text: String) throws -> [String: Any] {
    guard let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw TestError("not a JSON object: \(text)") }
    return obj
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for `?url=`).
public func percentEncode(_ s: String) -> String {
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

/// The value of the first sample of `metric` in a Prometheus text page.
public func metricValue(_ metric: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(metric + " ") || line.hasPrefix(metric + "{") {
        return line.split(separator: " ").last.flatMap { Double($0) }
    }
    return nil
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    public func trimmedBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    /// Splits on a multi-character separator (keeps empty pieces).
    public func pieces(splitBy separator: String) -> [String] {
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

/// Seconds on the monotonic clock.
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `body` on a new detached thread: for a caller that must be neither an event loop nor the
/// cooperative pool (a producer that blocks, as libcurl's does; a raw server's accept(2), which
/// would hold one of the pool's two threads for as long as it waits).
public func detachThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var t = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let r = pthread_create(&t, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, context)
    precondition(r == 0, "pthread_create: \(r)")
    pthread_detach(t)
}

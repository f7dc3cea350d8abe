#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import DarterIO



/// A fresh directory on a disk filesystem (ext4 here; tmpfs has no O_DIRECT), removed on deinit.
final class TempDirectory: Sendable {
    let path: String

    init(_ label: String = "t") throws {
        let base = "/var/tmp/darter-io-tests"
        try SystemCalls.makeDirectories(base)
        var template = Array("\(base)/\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw Errno.current }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { Self.removeTree(path) }

    static func removeTree(_ path: String) {
        if Glibc.unlink(path) == 0 { return }
        if let names = try? SystemCalls.listDirectory(path) {
            for n in names { removeTree(path + "/" + n) }
        }
        _ = Glibc.rmdir(path)
    }
}

/// Which backend a parameterized test runs against.
enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case uring, threads, faultInjectingUring

    var testDescription: String { rawValue }

    /// Registered slots used by the io_uring backends in tests (small, so tests can exhaust them).
    static let slotSize = 256 << 10
    static let slotCount = 16

    func make() throws -> any IOBackend {
        switch self {
        case .uring: return try UringBackend(entries: 256, fixedBuffers: Self.slotCount, fixedBufferSize: Self.slotSize)
        case .threads: return ThreadPoolBackend()
        case .faultInjectingUring:
            return FaultInjectingBackend(wrapping: try UringBackend(entries: 256, fixedBuffers: Self.slotCount, fixedBufferSize: Self.slotSize))
        }
    }

    /// Whether makeBuffer hands out registered slots.
    var registersBuffers: Bool { self != .threads }
}

/// Reads a whole file with plain syscalls (independent of the backend under test).
func readFileSync(_ path: String) throws -> [UInt8] {
    let fd = try SystemCalls.open(path, .readOnly)
    defer { try? SystemCalls.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw Errno.current }
        if n == 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Writes a whole file with plain syscalls.
func writeFileSync(_ path: String, _ bytes: [UInt8]) throws {
    let fd = try SystemCalls.open(path, [.writeOnly, .create, .truncate])
    defer { try? SystemCalls.close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw Errno.current }
        done += n
    }
}

/// Milliseconds elapsed while running `body`.
func measure<R>(_ body: () async throws -> R) async rethrows -> (R, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let r = try await body()
    return (r, clock.now - start)
}

extension Duration {
    var milliseconds: Double {
        let (s, a) = components
        return Double(s) * 1000 + Double(a) / 1e15
    }
}

/// `#expect` decomposes a top-level call on its receiver, which needs a copyable receiver;
/// wrapping the call keeps the IOBuffer borrowed.
@inline(__always) func holds(_ value: Bool) -> Bool { value }

/// A descriptor number this process never has open (tests run in parallel, so a descriptor
/// one test just closed may be reused by another at once).
let unusedDescriptor: FileDescriptor = {
    let fd: Int32 = 900_000
    precondition(fcntl(fd, F_GETFD) == -1)
    return FileDescriptor(rawValue: fd)
}()

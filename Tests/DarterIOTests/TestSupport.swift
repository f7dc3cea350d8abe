#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import DarterIO
@_exported import DarterTestSupport



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

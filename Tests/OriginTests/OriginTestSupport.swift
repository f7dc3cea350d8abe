#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterIO
import Origin
import DarterCore

// Support for the origin tests: sinks over OriginClient and expectations. The local servers
// (origin.py, registry.py) and child processes are DarterTestSupport's.

@_exported import DarterTestSupport

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

/// Compares bytes without printing them (large arrays make expectation messages huge).
func expectSameBytes(_ got: [UInt8], _ want: some Collection<UInt8>, sourceLocation: SourceLocation = #_sourceLocation) {
    if let diff = bodyDiff(got, Array(want)) {
        Issue.record("bytes differ: got \(diff); got starts \(String(decoding: got.prefix(120), as: UTF8.self).debugDescription)", sourceLocation: sourceLocation)
    }
}

/// The two ways a plain-http origin is fetched: libcurl, or the event loops' own client (what
/// the seed uses by default), both behind ``OriginBackends`` as the seed builds them.
enum HTTPBackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case curl, loop
    static let group = try! EventLoopGroup(count: 1)
    var testDescription: String { rawValue }

    func make(_ configuration: OriginConfiguration = OriginConfiguration()) -> OriginBackends {
        let curl = OriginClient(configuration: configuration)
        return OriginBackends(curl: curl, http: self == .loop ? HTTPOriginBackend(group: Self.group, configuration: configuration, fallback: curl) : nil)
    }
}

import DarterIO

/// One ranged origin response (one piece: darter get after its daemon is lost, a peer whose
/// swarm cannot serve) into a piece buffer: copied in from libcurl's thread, or received
/// straight into it by the HTTP client. A response that is not a 206 is read and dropped (its
/// status decides).
public final class OriginRangeSink: OriginDirectSink, @unchecked Sendable {
    public let buffer: SharedIOBuffer
    public let length: Int
    public private(set) var filled = 0
    private var partial = false
    private var scratch: SharedIOBuffer?
    public init(buffer: SharedIOBuffer, length: Int) { self.buffer = buffer; self.length = length }
    public func reset() { filled = 0; partial = false }
    public func receive(head: OriginResponseHead) -> Bool {
        partial = head.status == 206
        return true
    }
    public func receive(body chunk: OriginChunk) -> Bool {
        guard partial else { return true }
        guard filled + chunk.count <= length else { return false }
        chunk.copy(into: buffer.buffer, at: filled, count: chunk.count)
        filled += chunk.count
        return true
    }
    public func bodySpace(orWake wake: @escaping @Sendable () -> Void) -> OriginBodySpace {
        guard partial else {
            if scratch == nil { scratch = SharedIOBuffer(IOBuffer(capacity: 64 << 10)) }
            return .space(BufferSpace(buffer: scratch!, range: 0..<scratch!.buffer.capacity))
        }
        return filled < length ? .space(BufferSpace(buffer: buffer, range: filled..<length)) : .abort
    }
    public func bodyReceived(_ count: Int) -> Bool {
        if partial { filled += count }
        return true
    }
}


/// Why a ranged piece did not come from the origin.
public enum OriginPieceFailure: Error, Sendable, CustomStringConvertible {
    /// The origin answered an error status (4xx/5xx) for the range.
    case status(Int)
    /// It answered, but not with the range (a 200 for the whole object, or a short 206).
    case notRanged(status: Int, bytes: Int)
    /// The transfer failed every attempt.
    case transfer(String)
    public var description: String {
        switch self {
        case .status(let s): "the origin answered \(s)"
        case .notRanged(let s, let n): "the origin did not send it as a range (status \(s), \(n) bytes)"
        case .transfer(let why): why
        }
    }
}

extension OriginBackends {
    /// `length` bytes at `offset` of `url` into `buffer` with a ranged GET, retried (with backoff)
    /// `attempts` times on transfer errors.
    public func fetchPiece(url: String, headers: [(String, String)], offset: Int64, length: Int, into buffer: SharedIOBuffer,
                           attempts: Int = 4) async -> Result<Void, OriginPieceFailure> {
        await fetchRangedPiece(offset: offset, length: length, into: buffer, attempts: attempts) { range, sink in
            try await self.fetch(OriginRequest(url: url, headers: headers, range: range), into: sink)
        }
    }
}

extension RegistryClient {
    /// `length` bytes at `offset` of the registry blob at `path` into `buffer` (token
    /// authentication as ``fetch(registry:path:method:headers:range:into:)``), retried like
    /// ``OriginBackends/fetchPiece(url:headers:offset:length:into:attempts:)``.
    public func fetchPiece(registry: String, path: String, headers: [(String, String)], offset: Int64, length: Int,
                           into buffer: SharedIOBuffer, attempts: Int = 4) async -> Result<Void, OriginPieceFailure> {
        await fetchRangedPiece(offset: offset, length: length, into: buffer, attempts: attempts) { range, sink in
            try await self.fetch(registry: registry, path: path, headers: headers, range: range, into: sink)
        }
    }
}

/// One ranged piece through `fetch`, retried with backoff on transfer errors; a status or a
/// response that is not the range is not retried.
func fetchRangedPiece(offset: Int64, length: Int, into buffer: SharedIOBuffer, attempts: Int,
                      _ fetch: (Range<Int64>, OriginRangeSink) async throws -> OriginResponseHead) async -> Result<Void, OriginPieceFailure> {
    let sink = OriginRangeSink(buffer: buffer, length: length)
    var attempt = 0
    while true {
        if Task.isCancelled { return .failure(.transfer("cancelled")) }
        sink.reset()
        let head: OriginResponseHead
        do {
            head = try await fetch(offset..<(offset + Int64(length)), sink)
        } catch {
            attempt += 1
            if attempt >= attempts { return .failure(.transfer("\(error)")) }
            try? await Task.sleep(for: .milliseconds(200 << attempt))
            continue
        }
        if head.status >= 400 { return .failure(.status(head.status)) }
        guard head.status == 206, sink.filled == length else { return .failure(.notRanged(status: head.status, bytes: sink.filled)) }
        return .success(())
    }
}

import DarterIO
import HTTPCore

/// The status and headers of the final response (after redirects).
public struct OriginResponseHead: Sendable {
    public var status: Int
    /// Of the final response; names lowercased, in order.
    public var headers: [(name: String, value: String)]
    /// Of this response's body, if the origin said (nil with Transfer-Encoding).
    public var contentLength: Int64?
    /// Parsed from a 206's Content-Range.
    public var contentRange: HTTPContentRange?
    /// The whole object: the Content-Range total, else the Content-Length of a 200.
    public var totalLength: Int64?
    public var etag: String?
    public var lastModified: String?
    public var contentType: String?
    /// Accept-Ranges: bytes, or the response was a 206.
    public var acceptsRanges: Bool
    public var effectiveURL: String
    /// The protocol the response came over: "1.0", "1.1", "2" or "3" ("" when unknown).
    public var httpVersion = ""

    public init(status: Int, headers: [(name: String, value: String)], effectiveURL: String) {
        self.status = status
        self.headers = headers.map { (name: $0.name.lowercased(), value: $0.value) }
        self.effectiveURL = effectiveURL
        contentLength = nil
        contentRange = nil
        totalLength = nil
        etag = nil
        lastModified = nil
        contentType = nil
        acceptsRanges = false
        let chunked = header("transfer-encoding") != nil
        if !chunked, let cl = header("content-length"), let n = Int64(cl.trimmingSpaces()), n >= 0 { contentLength = n }
        if status == 206, let cr = header("content-range") { contentRange = HTTPContentRange(parsing: cr) }
        if let total = contentRange?.completeLength {
            totalLength = total
        } else if status == 200 {
            totalLength = contentLength
        }
        etag = header("etag")
        lastModified = header("last-modified")
        contentType = header("content-type")
        acceptsRanges = status == 206
            || (header("accept-ranges")?.lowercased().split(separator: ",").contains { $0.trimmingSpaces() == "bytes" } ?? false)
    }

    /// The first value of a header (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }

    /// Every value of a header (case-insensitive), in order.
    public func headerValues(_ name: String) -> [String] {
        let n = name.lowercased()
        return headers.filter { $0.name == n }.map(\.value)
    }
}

/// A piece of the body as libcurl delivered it. Valid only during the sink call.
public struct OriginChunk {
    // libcurl's receive buffer; it is reused after the sink call returns, so this value must not
    // escape the call (copy the bytes out).
    let storage: UnsafeRawBufferPointer

    init(storage: UnsafeRawBufferPointer) { self.storage = storage }

    /// Runs `body` with a chunk over `buffer[range]` (the HTTP backend's staging buffer).
    static func viewing<R>(_ buffer: borrowing IOBuffer, _ range: Range<Int>, _ body: (OriginChunk) -> R) -> R {
        buffer.withUnsafeMutableBytes { raw in body(OriginChunk(storage: UnsafeRawBufferPointer(rebasing: raw[range]))) }
    }

    public var count: Int { storage.count }

    /// Copies chunk[start..<start+count] into buffer[offset..<offset+count].
    public func copy(into buffer: borrowing IOBuffer, at offset: Int, from start: Int = 0, count: Int) {
        precondition(start >= 0 && count >= 0 && start + count <= storage.count, "chunk range \(start)..<\(start + count) outside \(storage.count)")
        buffer.copyBytes(from: UnsafeRawBufferPointer(rebasing: storage[start..<(start + count)]), at: offset)
    }

    /// A copy as an array (tests, small bodies).
    public var bytes: [UInt8] { [UInt8](storage) }

}

/// Receives one transfer, in order, never concurrently: on libcurl's transfer thread, or on an
/// event loop for the HTTP client backend (then it must not block: see ``OriginDirectSink``).
public protocol OriginSink: AnyObject {
    /// The final head (after redirects) before any body byte. Return false to abort.
    func receive(head: OriginResponseHead) -> Bool
    /// Body bytes in order (HTTP error bodies too). Return false to abort. May block
    /// (backpressure) when called by libcurl; the HTTP backend calls it only for sinks that are
    /// not ``OriginDirectSink``s, which must then not block.
    func receive(body: OriginChunk) -> Bool
}

/// What an ``OriginDirectSink`` has room for.
public enum OriginBodySpace: Sendable {
    /// Receive the next body bytes straight into this space.
    case space(BufferSpace)
    /// No room now: the sink calls the wake function it was given once there is.
    case wait
    /// Stop the transfer (the sink has what it needs, or failed).
    case abort
}

/// A sink a backend can receive into directly (the HTTP client's zero-copy path): the body goes
/// from the socket into the sink's own (piece) buffers, never through a staging buffer.
/// Called on an event loop: nothing here may block.
public protocol OriginDirectSink: OriginSink {
    func bodySpace(orWake wake: @escaping @Sendable () -> Void) -> OriginBodySpace
    /// `count` bytes landed at the start of the space last given. False aborts.
    func bodyReceived(_ count: Int) -> Bool
}

public enum OriginError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidURL(String), unsupportedScheme(String), missingCredentials(String)
    case connectFailed(String), tlsFailed(String), timedOut(String), transferFailed(String)
    case tooManyRedirects(String), aborted, registryAuthFailed(String)
    /// The allowlist refused a connection (``OriginConfiguration/allowlist``).
    case refused(String)
    /// A registry's token server refused the credentials (or their absence) with this status
    /// (401 or 403): not transient, so not worth a retry.
    case registryDenied(Int, String)

    public var description: String {
        switch self {
        case .invalidURL(let s): "invalid URL: \(s)"
        case .unsupportedScheme(let s): "unsupported scheme: \(s)"
        case .missingCredentials(let s): "missing credentials: \(s)"
        case .connectFailed(let s): "connect failed: \(s)"
        case .tlsFailed(let s): "TLS failed: \(s)"
        case .timedOut(let s): "timed out: \(s)"
        case .transferFailed(let s): "transfer failed: \(s)"
        case .tooManyRedirects(let s): "too many redirects: \(s)"
        case .aborted: "aborted"
        case .registryAuthFailed(let s): "registry authentication failed: \(s)"
        case .refused(let s): "refused: \(s)"
        case .registryDenied(let status, let s): "registry authentication failed (\(status)): \(s)"
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        // Character comparison would miss "\r\n", one grapheme: test the characters' whitespace.
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

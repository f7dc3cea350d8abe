import DarterIO
import HTTPCore

/// A response a handler gives the server.
public struct Response: Sendable {
    public var head: HTTPResponseHead
    public var body: ResponseBody
    /// The route label for metrics (`darter_http_requests_total{route=...}`).
    public var route: String

    public init(head: HTTPResponseHead, body: ResponseBody = .none, route: String = "other") {
        self.head = head
        self.body = body
        self.route = route
    }

    /// A short text response (errors, health, metrics): the body is `text`, with its length.
    public static func text(_ status: Int, _ text: String, contentType: String = "text/plain; charset=utf-8",
                            route: String = "other") -> Response {
        var head = HTTPResponseHead(status: status)
        head.headers.add(name: "Content-Type", value: contentType)
        let bytes = Array(text.utf8)
        head.setContentLength(bytes.count)
        return Response(head: head, body: .bytes(bytes), route: route)
    }
}

public enum ResponseBody: Sendable {
    case none
    case bytes([UInt8])
    /// Bytes that live in a file (the piece store), possibly still being written.
    case file(any FileBodySource)
    /// Bytes produced over time, of a length not known in advance: sent chunked to HTTP/1.1
    /// clients (each delivery one chunk), ended by closing for HTTP/1.0 ones.
    case stream(any StreamBodySource)
}

/// A body produced over time (a feed of events). The server calls ``next(_:)`` once the bytes
/// it delivered last are sent; the source calls `deliver` exactly once per call, from any
/// thread, with the next bytes or with nil at the end. It must deliver something at least every
/// ``ServerConfiguration/sendTimeout`` seconds (a heartbeat) or the connection is closed.
public protocol StreamBodySource: AnyObject, Sendable {
    func next(_ deliver: @escaping @Sendable ([UInt8]?) -> Void)
    /// The connection closed (or the request was HEAD): produce no more. A `deliver` pending
    /// then must still be called exactly once (nil will do): the connection waits for it
    /// before it lets go of its descriptor.
    func cancel()
}

/// A span of an open file that may be sent now.
public struct FileExtent: Sendable {
    public var fd: FileDescriptor
    public var offset: Int64
    public var length: Int
    /// Kept alive while the extent is being sent (a store lease).
    public var owner: (any Sendable)?
    public init(fd: FileDescriptor, offset: Int64, length: Int, owner: (any Sendable)? = nil) {
        self.fd = fd
        self.offset = offset
        self.length = length
        self.owner = owner
    }
}

/// The next bytes of a body: a span of a file, or bytes already in memory (a piece of a fetch
/// in flight), which are sent from there whatever the serve mode.
public enum BodyExtent: Sendable {
    case file(FileExtent)
    /// `length` bytes at `offset` in `buffer` (kept alive by the send).
    case memory(SharedIOBuffer, offset: Int, length: Int)
}

/// Where a file body comes from, piece by piece. `extent(at:maxLength:)` is called on the event
/// loop and must not block; when it returns nil the server calls `waitForData`, which may
/// suspend off the loop and calls `ready` (from any thread) when bytes are there or never will be.
public protocol FileBodySource: AnyObject, Sendable {
    /// Bytes in the body.
    var length: Int64 { get }
    /// The sendable extent starting at body position `position`, at most `maxLength` bytes.
    func extent(at position: Int64, maxLength: Int) -> BodyExtent?
    func waitForData(at position: Int64, _ ready: @escaping @Sendable ((any Error)?) -> Void)
}

/// Answers requests. Called on an event loop: return quickly; call `respond` exactly once,
/// from any thread.
public protocol HTTPHandler: Sendable {
    /// `body` is the request body (empty for most requests; at most
    /// ``ServerConfiguration/maxBufferedBodyLength`` bytes).
    func handle(_ request: HTTPRequestHead, body: [UInt8], respond: @escaping @Sendable (Response) -> Void)
    /// Called with each request head before its body is read: `.buffer` (the default) collects
    /// the body for ``handle(_:body:respond:)``; `.stream` hands it to a sink as it arrives (an
    /// upload larger than memory), which then answers; `.refuse` answers at once without
    /// reading the body (the connection closes after).
    func bodyDisposition(for request: HTTPRequestHead, client: RequestClient) -> RequestBodyDisposition
}

extension HTTPHandler {
    public func bodyDisposition(for request: HTTPRequestHead, client: RequestClient) -> RequestBodyDisposition { .buffer }
}

/// The client of a request, as its connection knows it (getpeername(2), never a header).
public struct RequestClient: Sendable {
    let fd: FileDescriptor
    /// For tests of a handler: a client at `address`.
    let fixed: SocketAddress?

    init(fd: FileDescriptor) {
        self.fd = fd
        fixed = nil
    }

    public init(address: SocketAddress) {
        fd = FileDescriptor(rawValue: -1)
        fixed = address
    }

    /// The connection's other end (nil if the socket has none any more). A system call: ask
    /// only when it matters.
    public var address: SocketAddress? { fixed ?? Socket.peerAddress(fd) }
}

public enum RequestBodyDisposition: Sendable {
    case buffer
    case stream(any RequestBodySink)
    case refuse(Response)
}

/// Takes a request body as it arrives. The connection calls ``receive(_:next:)`` with each
/// part and reads no more until `next` is called; then ``end(respond:)`` once the body is
/// complete, or ``abort()`` if the connection ends first. Calls are never concurrent.
public protocol RequestBodySink: AnyObject, Sendable {
    /// The next bytes of the body. Call `next` once, from any thread, when they are taken: nil
    /// to go on, or the answer at once (the rest of the body is not read; the connection
    /// closes after it).
    func receive(_ bytes: [UInt8], next: @escaping @Sendable (Response?) -> Void)
    /// The body is complete: call `respond` once with the answer.
    func end(respond: @escaping @Sendable (Response) -> Void)
    /// The connection ended before the body did, or while ``end(respond:)`` was at work.
    func abort()
}

#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CCurl
import CDarterCurl
import DarterIO

/// Fetches from HTTP(S) and S3 origins with libcurl, streaming the body into a sink.
///
/// Each transfer runs `curl_easy_perform` on a thread of its own (never Swift's cooperative
/// pool); the sink is called on that thread. Easy handles are pooled, so connections to an
/// origin are kept alive and reused between transfers. Memory stays bounded: the body is never
/// accumulated; the sink copies out of libcurl's receive buffer.
public final class OriginClient: Sendable {
    public let configuration: OriginConfiguration
    private let idle: Mutex<[CurlHandle]>
    /// Idle handles kept for reuse (each holds its connection cache).
    private static let maxIdleHandles = 32
    /// libcurl's receive buffer per transfer (the size of the chunks a sink sees, at most).
    static let receiveBufferSize = 256 << 10

    public init(configuration: OriginConfiguration = OriginConfiguration()) {
        self.configuration = configuration
        idle = Mutex([])
    }

    /// One transfer with curl_easy_perform on a dedicated thread (never Swift's cooperative pool).
    /// Returns the final head after the body ended. HTTP statuses ≥ 400 are not thrown: the head
    /// says so (and the error body reaches the sink). Transport problems throw. A body shorter than
    /// its Content-Length throws `.transferFailed` (curl error 18). Cancelling the task aborts the
    /// transfer (`.aborted`).
    public func fetch(_ request: OriginRequest, into sink: any OriginSink) async throws(OriginError) -> OriginResponseHead {
        let plan = try TransferPlan(request: request, configuration: configuration)
        if Task.isCancelled { throw .aborted }
        guard let handle = takeHandle() else { throw .transferFailed("\(plan.label): curl_easy_init failed") }
        let transfer = Transfer(handle: handle, plan: plan, sink: SinkBox(sink))
        if let error = plan.apply(to: handle) {
            giveBack(handle)
            throw error
        }
        let result: Result<OriginResponseHead, OriginError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<OriginResponseHead, OriginError>, Never>) in
                transfer.start { result in
                    self.giveBack(handle)
                    continuation.resume(returning: result)
                }
            }
        } onCancel: {
            transfer.cancel()
        }
        return try result.get()
    }

    private func takeHandle() -> CurlHandle? {
        if let h = idle.withLock({ $0.popLast() }) {
            darter_curl_reset(h.raw)
            return h
        }
        return CurlHandle()
    }

    private func giveBack(_ handle: CurlHandle) {
        let kept = idle.withLock { list -> Bool in
            guard list.count < Self.maxIdleHandles else { return false }
            list.append(handle)
            return true
        }
        if !kept { handle.free() }
    }

    deinit {
        for h in idle.withLock({ $0 }) { h.free() }
    }
}

/// A libcurl easy handle (with its C-side state). Used by one transfer at a time.
final class CurlHandle: @unchecked Sendable {
    // Owned; handed between the pool and one transfer at a time, freed exactly once.
    let raw: OpaquePointer

    init?() {
        guard let h = darter_curl_new() else { return nil }
        raw = h
    }

    func free() { darter_curl_free(raw) }
}

/// The sink, handed to the transfer's thread. Only that thread calls it while `fetch` awaits.
final class SinkBox: @unchecked Sendable {
    let sink: any OriginSink
    init(_ sink: any OriginSink) { self.sink = sink }
}

/// What to send: the URL after S3 resolution, headers and curl options.
struct TransferPlan: Sendable {
    var url: String
    var label: String
    var method: String
    var headers: [String]
    var awsSigV4: String?
    var username: String?
    var password: String?
    var configuration: OriginConfiguration

    init(request: OriginRequest, configuration: OriginConfiguration) throws(OriginError) {
        self.configuration = configuration
        let method = request.method.uppercased()
        self.method = method
        label = "\(method) \(request.url)"
        guard let schemeEnd = request.url.firstRange(of: "://") else { throw .invalidURL("\(request.url): no scheme") }
        let scheme = request.url[..<schemeEnd.lowerBound].lowercased()
        // http(s) URLs must be encoded already; an s3 key is literal (encoded here), so spaces pass.
        let lowest: UInt8 = scheme == "s3" ? 0x1f : 0x20
        guard !request.url.unicodeScalars.contains(where: { $0.value <= lowest || $0.value == 0x7f }) else {
            throw .invalidURL("\(request.url): contains spaces or control characters")
        }
        var headers: [String] = []
        for (name, value) in request.headers {
            guard !name.isEmpty, !name.contains(where: { $0 == ":" || $0 == "\r" || $0 == "\n" || $0 == " " }),
                  !value.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                throw .invalidURL("\(request.url): bad request header \(name)")
            }
            // "Name:" with nothing after it makes curl remove the header; "Name;" sends it empty.
            headers.append(value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        if let range = request.range {
            guard range.lowerBound >= 0, !range.isEmpty else { throw .invalidURL("\(request.url): empty range \(range)") }
            headers.append(range.upperBound == Int64.max ? "Range: bytes=\(range.lowerBound)-" : "Range: bytes=\(range.lowerBound)-\(range.upperBound - 1)")
        }
        switch scheme {
        case "http", "https":
            url = request.url
        case "s3":
            let s3 = configuration.s3
            let rest = request.url[schemeEnd.upperBound...]
            guard let slash = rest.firstIndex(of: "/"), slash != rest.startIndex, rest.index(after: slash) != rest.endIndex else {
                throw .invalidURL("\(request.url): expected s3://bucket/key")
            }
            let bucket = String(rest[..<slash])
            let key = String(rest[rest.index(after: slash)...])
            guard let id = s3.accessKeyID, !id.isEmpty, let secret = s3.secretAccessKey, !secret.isEmpty else {
                throw .missingCredentials("\(request.url): no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials)")
            }
            let encodedKey = percentEncode(key, keepingSlash: true)
            if var endpoint = s3.endpoint {
                while endpoint.hasSuffix("/") { endpoint.removeLast() }
                url = "\(endpoint)/\(percentEncode(bucket, keepingSlash: true))/\(encodedKey)"
            } else {
                url = "https://\(bucket).s3.\(s3.region).amazonaws.com/\(encodedKey)"
            }
            awsSigV4 = "aws:amz:\(s3.region):s3"
            username = id
            password = secret
            // libcurl 7.88 signs but does not add the payload hash S3 requires; it signs the
            // header's value as the payload hash, so UNSIGNED-PAYLOAD works for GET and HEAD.
            headers.append("x-amz-content-sha256: UNSIGNED-PAYLOAD")
            if let token = s3.sessionToken, !token.isEmpty { headers.append("x-amz-security-token: \(token)") }
        default:
            throw .unsupportedScheme("\(request.url): \(scheme)")
        }
        self.headers = headers
    }

    /// Sets every option on a freshly reset handle; an error if libcurl refuses one.
    func apply(to handle: CurlHandle) -> OriginError? {
        let h = handle.raw
        let c = configuration
        var failed: String? = nil
        func long(_ option: CURLoption, _ value: Int, _ name: String) {
            if failed == nil, darter_curl_set_long(h, Int32(option.rawValue), value) != 0 { failed = name }
        }
        func string(_ option: CURLoption, _ value: String, _ name: String) {
            if failed == nil, darter_curl_set_string(h, Int32(option.rawValue), value) != 0 { failed = name }
        }
        string(CURLOPT_URL, url, "CURLOPT_URL")
        string(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR")
        string(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "CURLOPT_REDIR_PROTOCOLS_STR")
        switch method {
        case "GET": break
        case "HEAD": long(CURLOPT_NOBODY, 1, "CURLOPT_NOBODY")
        default: string(CURLOPT_CUSTOMREQUEST, method, "CURLOPT_CUSTOMREQUEST")
        }
        long(CURLOPT_FOLLOWLOCATION, 1, "CURLOPT_FOLLOWLOCATION")
        long(CURLOPT_MAXREDIRS, c.maxRedirects, "CURLOPT_MAXREDIRS")
        long(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS), "CURLOPT_HTTP_VERSION")
        long(CURLOPT_SSL_VERIFYPEER, c.verifyTLS ? 1 : 0, "CURLOPT_SSL_VERIFYPEER")
        long(CURLOPT_SSL_VERIFYHOST, c.verifyTLS ? 2 : 0, "CURLOPT_SSL_VERIFYHOST")
        if let ca = c.caFile { string(CURLOPT_CAINFO, ca, "CURLOPT_CAINFO") }
        long(CURLOPT_CONNECTTIMEOUT, c.connectTimeoutSeconds, "CURLOPT_CONNECTTIMEOUT")
        // Under --origin-rate a transfer may be held below the low-speed limit by its share of
        // the rate (many at once): then only a transfer that moves nothing at all is too slow.
        long(CURLOPT_LOW_SPEED_LIMIT, c.rateLimit == nil ? c.lowSpeedLimitBytesPerSecond : 1, "CURLOPT_LOW_SPEED_LIMIT")
        long(CURLOPT_LOW_SPEED_TIME, c.lowSpeedTimeSeconds, "CURLOPT_LOW_SPEED_TIME")
        string(CURLOPT_USERAGENT, c.userAgent, "CURLOPT_USERAGENT")
        // Identity bytes only: no Accept-Encoding is sent, and nothing is decoded.
        long(CURLOPT_HTTP_CONTENT_DECODING, 0, "CURLOPT_HTTP_CONTENT_DECODING")
        long(CURLOPT_BUFFERSIZE, OriginClient.receiveBufferSize, "CURLOPT_BUFFERSIZE")
        long(CURLOPT_TCP_KEEPALIVE, 1, "CURLOPT_TCP_KEEPALIVE")
        if let sig = awsSigV4 { string(CURLOPT_AWS_SIGV4, sig, "CURLOPT_AWS_SIGV4") }
        if let u = username { string(CURLOPT_USERNAME, u, "CURLOPT_USERNAME") }
        if let p = password { string(CURLOPT_PASSWORD, p, "CURLOPT_PASSWORD") }
        for line in headers where failed == nil {
            if darter_curl_add_header(h, line) != 0 { failed = "CURLOPT_HTTPHEADER" }
        }
        return failed.map { .transferFailed("\(label): libcurl refused \($0)") }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` when
/// `keepingSlash`, for paths): S3 keys in URLs, registry token query values.
func percentEncode(_ s: String, keepingSlash: Bool) -> String {
    let hex = Array("0123456789ABCDEF")
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        case UInt8(ascii: "/") where keepingSlash:
            out.append("/")
        default:
            out.append("%"); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
        }
    }
    return out
}

/// One running transfer: header parsing, head delivery, body forwarding, the outcome.
/// Its mutable state is touched only by the transfer's thread (callbacks run inside
/// curl_easy_perform), except `cancel`, which goes through `state`.
final class Transfer: @unchecked Sendable {
    let handle: CurlHandle
    let plan: TransferPlan
    let sinkBox: SinkBox
    private let finished = Mutex(false)

    // Transfer-thread state.
    private var status = 0
    private var headers: [(name: String, value: String)] = []
    private var head: OriginResponseHead? = nil
    private var abortedBySink = false
    private var completion: (@Sendable (Result<OriginResponseHead, OriginError>) -> Void)? = nil

    init(handle: CurlHandle, plan: TransferPlan, sink: SinkBox) {
        self.handle = handle
        self.plan = plan
        self.sinkBox = sink
    }

    /// Starts the thread; `done` runs on it when the transfer has ended.
    func start(_ done: @escaping @Sendable (Result<OriginResponseHead, OriginError>) -> Void) {
        completion = done
        // The thread owns a retain of `self` until it ends (released in `transferThreadMain`).
        let context = Unmanaged.passRetained(self).toOpaque()
        let r = darter_thread_start(transferThreadMain, context, 1 << 20)
        if r != 0 {
            Unmanaged<Transfer>.fromOpaque(context).release()
            finish(.failure(.transferFailed("\(plan.label): cannot start a thread (errno \(r))")))
        }
    }

    /// Makes a running transfer stop soon; a no-op once it has finished.
    func cancel() {
        finished.withLock { done in
            if !done { darter_curl_cancel(handle.raw) }
        }
    }

    private func finish(_ result: Result<OriginResponseHead, OriginError>) {
        finished.withLock { $0 = true }
        let done = completion
        completion = nil
        done?(result)
    }

    /// On the transfer thread.
    func run() {
        let h = handle.raw
        // The callbacks get an unretained pointer to `self`: the thread holds a retain until
        // perform returns.
        darter_curl_set_callbacks(h, headerCallback, bodyCallback, Unmanaged.passUnretained(self).toOpaque())
        darter_curl_set_connect_filter(h, connectCallback)
        let code = darter_curl_perform(h)
        darter_curl_set_connect_filter(h, nil)
        darter_curl_set_callbacks(h, nil, nil, nil)
        if code == Int32(CURLE_OK.rawValue) {
            if head == nil { deliverHead() }
            if abortedBySink { return finish(.failure(.aborted)) }
            guard var final = head else {
                return finish(.failure(.transferFailed("\(plan.label): no response")))
            }
            final.effectiveURL = String(cString: darter_curl_effective_url(h))
            return finish(.success(final))
        }
        if abortedBySink || darter_curl_cancelled(h) != 0 { return finish(.failure(.aborted)) }
        let refused = String(cString: darter_curl_refused_address(h))
        if !refused.isEmpty && code == Int32(CURLE_COULDNT_CONNECT.rawValue) {
            let at = String(cString: darter_curl_effective_url(h))
            return finish(.failure(.refused("\(plan.label): connecting to \(refused) for \(at) is not allowed")))
        }
        let text = String(cString: darter_curl_error_text(h, code))
        finish(.failure(Self.error(code: code, message: "\(plan.label): \(text) (curl error \(code))")))
    }

    static func error(code: Int32, message: String) -> OriginError {
        switch UInt32(bitPattern: code) {
        case CURLE_UNSUPPORTED_PROTOCOL.rawValue: return .unsupportedScheme(message)
        case CURLE_URL_MALFORMAT.rawValue: return .invalidURL(message)
        case CURLE_COULDNT_RESOLVE_PROXY.rawValue, CURLE_COULDNT_RESOLVE_HOST.rawValue, CURLE_COULDNT_CONNECT.rawValue:
            return .connectFailed(message)
        case CURLE_OPERATION_TIMEDOUT.rawValue: return .timedOut(message)
        case CURLE_TOO_MANY_REDIRECTS.rawValue: return .tooManyRedirects(message)
        case CURLE_SSL_CONNECT_ERROR.rawValue, CURLE_PEER_FAILED_VERIFICATION.rawValue, CURLE_SSL_CERTPROBLEM.rawValue,
             CURLE_SSL_CIPHER.rawValue, CURLE_SSL_CACERT_BADFILE.rawValue, CURLE_SSL_ENGINE_NOTFOUND.rawValue,
             CURLE_SSL_ENGINE_SETFAILED.rawValue, CURLE_SSL_ENGINE_INITFAILED.rawValue, CURLE_USE_SSL_FAILED.rawValue,
             CURLE_SSL_SHUTDOWN_FAILED.rawValue, CURLE_SSL_CRL_BADFILE.rawValue, CURLE_SSL_ISSUER_ERROR.rawValue,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH.rawValue, CURLE_SSL_INVALIDCERTSTATUS.rawValue, CURLE_SSL_CLIENTCERT.rawValue:
            return .tlsFailed(message)
        default: return .transferFailed(message)
        }
    }

    /// A header line (status line, field, or the blank line ending a block). Every response of
    /// a redirect chain passes through here; only the last block becomes the head.
    func receiveHeaderLine(_ line: String) -> Bool {
        let text = line.trimmingSpaces()
        if text.hasPrefix("HTTP/") {
            // A new response (redirect, 1xx, or the final one).
            let parts = text.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = []
            return true
        }
        if head != nil || text.isEmpty { return true } // trailers, or the end of a block
        if let first = line.first, first == " " || first == "\t", let last = headers.popLast() {
            headers.append((name: last.name, value: last.value + " " + text)) // obsolete folding
            return true
        }
        guard let colon = text.firstIndex(of: ":") else { return true }
        headers.append((name: text[..<colon].lowercased().trimmingSpaces(), value: text[text.index(after: colon)...].trimmingSpaces()))
        return true
    }

    private func deliverHead() {
        guard status != 0 else { return }
        let url = String(cString: darter_curl_effective_url(handle.raw))
        var h = OriginResponseHead(status: status, headers: headers, effectiveURL: url)
        h.httpVersion = [10: "1.0", 11: "1.1", 20: "2", 30: "3"][darter_curl_http_version(handle.raw)] ?? ""
        head = h
        if !sinkBox.sink.receive(head: h) { abortedBySink = true }
    }

    func receiveBody(_ chunk: OriginChunk) -> Bool {
        if head == nil { deliverHead() }
        if abortedBySink { return false }
        // --origin-rate: this is the transfer's own thread, so it may sleep here (libcurl reads
        // no more meanwhile, and TCP slows the origin down); a cancel ends the wait.
        if let limit = plan.configuration.rateLimit,
           !limit.takeBlocking(chunk.count, stop: { [handle] in darter_curl_cancelled(handle.raw) != 0 }) {
            return false
        }
        if !sinkBox.sink.receive(body: chunk) {
            abortedBySink = true
            return false
        }
        return true
    }
}

// C entry points. They turn libcurl's raw pointers into the safe types above; the pointers are
// valid only for the call (libcurl reuses its buffers).

private let transferThreadMain: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeRetainedValue()
    transfer.run()
}

private let headerCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int) -> Int = { context, data, count in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
    return transfer.receiveHeaderLine(line) ? count : 0
}

private let connectCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<UInt8>?, Int) -> Int32 = { context, host, address, count in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    guard let host, let address else { return 0 }
    return transfer.plan.configuration.allowlist.allowsConnection(host: String(cString: host), address: Array(UnsafeBufferPointer(start: address, count: count))) ? 1 : 0
}

private let bodyCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int) -> Int = { context, data, count in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    return transfer.receiveBody(OriginChunk(storage: UnsafeRawBufferPointer(start: data, count: count))) ? count : 0
}

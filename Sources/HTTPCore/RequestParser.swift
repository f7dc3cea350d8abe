/// What ``HTTPRequestParser/next()`` found.
///
/// Every request yields `.request(head)`, then zero or more `.body(bytes)`, then `.end`
/// (immediately, for a request without a body). Pipelined requests follow one another.
public enum HTTPParseResult: Sendable, Equatable {
    /// A complete request head.
    case request(HTTPRequestHead)
    /// Some bytes of the current request's body (chunked framing already removed).
    case body([UInt8])
    /// The current request is complete; the next call starts on the next request.
    case end
    /// Nothing more can be parsed until more bytes are fed.
    case needMoreData
    /// The input is not acceptable. The parser stays in this state: answer ``HTTPParseError/status`` and close.
    case error(HTTPParseError)
}

/// An incremental HTTP/1.1 request parser: feed it bytes as they arrive, then call
/// ``next()`` until it returns ``HTTPParseResult/needMoreData``.
///
/// ```swift
/// var parser = HTTPRequestParser()
/// parser.feed(bytesFromSocket)
/// loop: while true {
///     switch parser.next() {
///     case .request(let head): start(head)
///     case .body(let bytes): append(bytes)
///     case .end: respond()
///     case .needMoreData: break loop
///     case .error(let error): sendAndClose(error.status, error.reason); break loop
///     }
/// }
/// ```
///
/// Choices, all in the direction of refusing anything a front proxy might read differently
/// (RFC 9112 §11.2, request smuggling):
/// - **Line endings are strictly CRLF.** A bare LF, or a CR not followed by LF, anywhere in the
///   head, a chunk-size line or the trailers is ``HTTPParseError/invalidLineEnding`` (400).
///   Empty lines (CRLF) before a request line are skipped, as RFC 9112 §2.2 suggests.
/// - Obsolete line folding, whitespace before a colon, control bytes in values: 400.
/// - Transfer-Encoding must be exactly one `chunked` (other codings before it: 501), is refused with
///   Content-Length or on HTTP/1.0; Content-Length must be digits, and repeated values must agree.
/// - HTTP/1.1 requests need exactly one Host header.
/// - Chunk extensions are checked for control bytes and skipped; trailer fields are checked like
///   header fields (and count against the same limits) and then dropped.
///
/// Errors are deterministic: the same bytes give the same results however they are split into feeds.
public struct HTTPRequestParser: Sendable {
    /// Size limits. Every one is enforced before the bytes it guards are buffered in full.
    public struct Limits: Sendable, Hashable {
        /// Longest request line, without CRLF (over it: 414).
        public var maxRequestLineLength: Int
        /// Longest header block after the request line, CRLFs and final empty line included (over it: 431).
        public var maxHeaderBlockLength: Int
        /// Most header fields (over it: 431). Also limits trailer fields.
        public var maxHeaderCount: Int
        /// Largest body, Content-Length or the sum of chunk sizes (over it: 413).
        public var maxBodyLength: Int
        /// Longest chunk-size line, extensions and CRLF included (over it: 400).
        public var maxChunkLineLength: Int

        public init(maxRequestLineLength: Int = 8 * 1024, maxHeaderBlockLength: Int = 64 * 1024,
                    maxHeaderCount: Int = 100, maxBodyLength: Int = 1024 * 1024,
                    maxChunkLineLength: Int = 4 * 1024) {
            self.maxRequestLineLength = maxRequestLineLength
            self.maxHeaderBlockLength = maxHeaderBlockLength
            self.maxHeaderCount = maxHeaderCount
            self.maxBodyLength = maxBodyLength
            self.maxChunkLineLength = maxChunkLineLength
        }
    }

    enum State: Sendable {
        case head
        case fixedBody(remaining: Int)
        case chunkSizeLine
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case messageEnd
        case failed(HTTPParseError)
    }

    /// The request line, parsed as soon as its LF arrives.
    struct RequestLine: Sendable {
        var method: HTTPMethod
        var target: String
        var form: HTTPRequestTargetForm
        var version: HTTPVersion
    }

    /// The limits this parser enforces.
    public let limits: Limits

    var state: State = .head
    var buffer: [UInt8] = []
    /// Start of the unconsumed bytes. Scan positions below are offsets from here, so
    /// compacting the buffer never invalidates them.
    var readIndex = 0
    var scanOffset = 0
    var lineStartOffset = 0
    var requestLineEndOffset = -1  // just past the request line's LF; -1 while still in it
    var methodEndOffset = -1
    var fieldCount = 0
    var trailerBytes = 0
    var chunkedBodyLength = 0
    var requestLine: RequestLine? = nil

    /// Bytes passed to ``feed(_:)-(ArraySlice<UInt8>)`` over the parser's life.
    public private(set) var totalBytesFed = 0
    /// Bytes parsed and dropped over the parser's life; never more than ``totalBytesFed``.
    public private(set) var totalBytesConsumed = 0

    /// Creates a parser for one connection.
    public init(limits: Limits = Limits()) {
        self.limits = limits
        buffer.reserveCapacity(4096)
    }

    /// Bytes fed but not yet consumed (the start of the next request, say).
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// The error the parser is stuck in, if any.
    public var error: HTTPParseError? {
        if case .failed(let error) = state { return error }
        return nil
    }

    /// Whether the parser sits between requests with nothing buffered: a clean place to close.
    public var isIdle: Bool {
        if case .head = state { return bufferedByteCount == 0 }
        return false
    }

    /// Appends received bytes. After an error they are counted but dropped.
    public mutating func feed(_ bytes: ArraySlice<UInt8>) {
        totalBytesFed += bytes.count
        if case .failed = state { return }
        if readIndex > 0 {
            if readIndex == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                readIndex = 0
            } else if readIndex >= buffer.count / 2 {
                // Amortised: we only move bytes once at least as many were consumed.
                buffer.removeSubrange(0..<readIndex)
                readIndex = 0
            }
        }
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes.
    public mutating func feed(_ bytes: [UInt8]) {
        feed(bytes[...])
    }

    /// Parses as far as the buffered bytes allow and returns the next event.
    public mutating func next() -> HTTPParseResult {
        while true {
            switch state {
            case .failed(let error):
                return .error(error)
            case .head:
                return parseHead()
            case .messageEnd:
                state = .head
                return .end
            case .fixedBody(let remaining):
                guard let part = takeBody(upTo: remaining) else { return .needMoreData }
                state = part.count == remaining ? .messageEnd : .fixedBody(remaining: remaining - part.count)
                return .body(part)
            case .chunkData(let remaining):
                guard let part = takeBody(upTo: remaining) else { return .needMoreData }
                state = part.count == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - part.count)
                return .body(part)
            case .chunkDataEnd:
                let available = bufferedByteCount
                if available < 1 { return .needMoreData }
                if buffer[readIndex] != asciiCR { return fail(.invalidChunkTerminator) }
                if available < 2 { return .needMoreData }
                if buffer[readIndex + 1] != asciiLF { return fail(.invalidChunkTerminator) }
                consume(2)
                state = .chunkSizeLine
            case .chunkSizeLine:
                if let result = parseChunkSizeLine() { return result }
            case .trailers:
                if let result = parseTrailerLine() { return result }
            }
        }
    }

    // MARK: - Helpers

    private mutating func fail(_ error: HTTPParseError) -> HTTPParseResult {
        state = .failed(error)
        buffer = []
        readIndex = 0
        return .error(error)
    }

    private mutating func consume(_ count: Int) {
        readIndex += count
        totalBytesConsumed += count
        scanOffset = 0
    }

    private mutating func takeBody(upTo remaining: Int) -> [UInt8]? {
        let available = bufferedByteCount
        if available == 0 { return nil }
        let n = min(available, remaining)
        let part = Array(buffer[readIndex..<(readIndex + n)])
        consume(n)
        return part
    }

    // MARK: - Head

    private mutating func parseHead() -> HTTPParseResult {
        // Skip empty lines before a request line (RFC 9112 §2.2).
        if requestLineEndOffset < 0 && scanOffset == 0 {
            while bufferedByteCount > 0 && buffer[readIndex] == asciiCR {
                if bufferedByteCount < 2 { return .needMoreData }
                guard buffer[readIndex + 1] == asciiLF else { return fail(.invalidLineEnding) }
                consume(2)
            }
        }
        let base = readIndex
        let end = buffer.count
        var i = base + scanOffset

        // The request line, byte by byte: the method is checked as it arrives so that
        // binary garbage (TLS, random probes) fails at once instead of at the length limit.
        if requestLineEndOffset < 0 {
            while i < end {
                let b = buffer[i]
                let offset = i - base
                if b == asciiLF {
                    guard offset > 0, buffer[i - 1] == asciiCR else { return fail(.invalidLineEnding) }
                    switch parseRequestLine(lineEnd: i - 1) {
                    case .success(let line): requestLine = line
                    case .failure(let error): return fail(error)
                    }
                    requestLineEndOffset = offset + 1
                    lineStartOffset = offset + 1
                    i += 1
                    break
                }
                if offset > 0 && buffer[i - 1] == asciiCR { return fail(.invalidLineEnding) }
                if b != asciiCR && offset + 1 > limits.maxRequestLineLength { return fail(.requestLineTooLong) }
                if methodEndOffset < 0 {
                    if b == asciiSpace {
                        if offset == 0 { return fail(.invalidMethod) }
                        methodEndOffset = offset
                    } else if offset == 0 && b == 0x16 {
                        return fail(.tlsHandshake)
                    } else if b != asciiCR && !isTokenByte(b) {
                        return fail(.invalidMethod)
                    }
                }
                i += 1
            }
            if requestLineEndOffset < 0 {
                scanOffset = i - base
                return .needMoreData
            }
        }

        // Header lines: find each LF, check limits and the CR before it; parse once complete.
        let headerStart = base + requestLineEndOffset
        while true {
            var j = i
            while j < end && buffer[j] != asciiLF { j += 1 }
            if j == end {
                if end - headerStart > limits.maxHeaderBlockLength { return fail(.headerBlockTooLarge) }
                scanOffset = end - base
                return .needMoreData
            }
            if j + 1 - headerStart > limits.maxHeaderBlockLength { return fail(.headerBlockTooLarge) }
            let lineStart = base + lineStartOffset
            guard j > lineStart, buffer[j - 1] == asciiCR else { return fail(.invalidLineEnding) }
            if j - 1 == lineStart {
                return finishHead(headerStart: headerStart, headEnd: j + 1)
            }
            fieldCount += 1
            if fieldCount > limits.maxHeaderCount { return fail(.tooManyHeaderFields) }
            lineStartOffset = j + 1 - base
            i = j + 1
        }
    }

    private func parseRequestLine(lineEnd: Int) -> Result<RequestLine, HTTPParseError> {
        let lineStart = readIndex
        guard methodEndOffset > 0 else { return .failure(.invalidRequestLine) }
        let methodEnd = lineStart + methodEndOffset
        let targetStart = methodEnd + 1
        var targetEnd = targetStart
        while targetEnd < lineEnd && buffer[targetEnd] != asciiSpace { targetEnd += 1 }
        guard targetEnd < lineEnd, targetEnd > targetStart else { return .failure(.invalidRequestLine) }
        for k in targetStart..<targetEnd where buffer[k] < 0x21 || buffer[k] > 0x7E {
            return .failure(.invalidRequestTarget)
        }
        let versionBytes = buffer[(targetEnd + 1)..<lineEnd]
        guard let (major, minor) = parseVersion(versionBytes) else { return .failure(.invalidVersion) }
        let methodBytes = buffer[lineStart..<methodEnd]
        if major == 2 && minor == 0 && methodBytes.elementsEqual("PRI".utf8) { return .failure(.http2Preface) }
        let version: HTTPVersion
        switch (major, minor) {
        case (1, 1): version = .http1_1
        case (1, 0): version = .http1_0
        default: return .failure(.unsupportedVersion)
        }
        let method = HTTPMethod(rawValue: String(decoding: methodBytes, as: UTF8.self))
        let targetBytes = buffer[targetStart..<targetEnd]
        guard let form = classifyTarget(targetBytes, method: method) else { return .failure(.invalidRequestTarget) }
        return .success(RequestLine(method: method, target: String(decoding: targetBytes, as: UTF8.self),
                                    form: form, version: version))
    }

    private func parseVersion(_ bytes: ArraySlice<UInt8>) -> (Int, Int)? {
        guard bytes.count == 8, bytes.prefix(5).elementsEqual("HTTP/".utf8) else { return nil }
        let s = bytes.startIndex
        guard isDigit(bytes[s + 5]), bytes[s + 6] == UInt8(ascii: "."), isDigit(bytes[s + 7]) else { return nil }
        return (Int(bytes[s + 5] - 48), Int(bytes[s + 7] - 48))
    }

    private func classifyTarget(_ t: ArraySlice<UInt8>, method: HTTPMethod) -> HTTPRequestTargetForm? {
        let first = t[t.startIndex]
        if t.count == 1 && first == UInt8(ascii: "*") {
            return method == .options ? .asterisk : nil
        }
        if method == .connect {
            return isAuthorityForm(t) ? .authority : nil
        }
        if first == UInt8(ascii: "/") { return .origin }
        return isAbsoluteForm(t) ? .absolute : nil
    }

    /// `host:port` with a non-empty host, a decimal port and nothing that belongs to a path or userinfo.
    private func isAuthorityForm(_ t: ArraySlice<UInt8>) -> Bool {
        guard let colon = t.lastIndex(of: asciiColon), colon > t.startIndex else { return false }
        let port = t[(colon + 1)...]
        guard !port.isEmpty, port.count <= 5, port.allSatisfy(isDigit) else { return false }
        return !t[..<colon].contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?")
            || $0 == UInt8(ascii: "#") || $0 == UInt8(ascii: "@") }
    }

    /// `scheme://...` where scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    private func isAbsoluteForm(_ t: ArraySlice<UInt8>) -> Bool {
        var k = t.startIndex
        guard asciiLowercased(t[k]) >= UInt8(ascii: "a") && asciiLowercased(t[k]) <= UInt8(ascii: "z") else { return false }
        while k < t.endIndex {
            let b = t[k]
            if b == asciiColon { break }
            let l = asciiLowercased(b)
            guard (l >= UInt8(ascii: "a") && l <= UInt8(ascii: "z")) || isDigit(b)
                    || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") else { return false }
            k += 1
        }
        return t[k...].starts(with: "://".utf8)
    }

    private mutating func finishHead(headerStart: Int, headEnd: Int) -> HTTPParseResult {
        guard let line = requestLine else { return fail(.invalidRequestLine) }
        // One copy of the header block backs every field of the request.
        let block = Array(buffer[headerStart..<(headEnd - 2)])
        var fields: [HTTPHeaders.Field] = []
        fields.reserveCapacity(fieldCount)
        var lineStart = 0
        var k = 0
        while k < block.count {
            if block[k] == asciiLF {
                switch parseFieldLine(block, start: lineStart, end: k - 1) {
                case .success(let field): fields.append(field)
                case .failure(let error): return fail(error)
                }
                lineStart = k + 1
            }
            k += 1
        }
        let headers = HTTPHeaders(validatedBytes: block, fields: fields)
        let framing: HTTPBodyFraming
        let keepAlive: Bool
        switch interpret(headers, version: line.version) {
        case .success(let (f, k)): framing = f; keepAlive = k
        case .failure(let error): return fail(error)
        }

        consume(headEnd - readIndex)
        requestLineEndOffset = -1
        methodEndOffset = -1
        lineStartOffset = 0
        fieldCount = 0
        requestLine = nil
        switch framing {
        case .none: state = .messageEnd
        case .contentLength(let n): state = .fixedBody(remaining: n)
        case .chunked:
            chunkedBodyLength = 0
            trailerBytes = 0
            state = .chunkSizeLine
        }
        return .request(HTTPRequestHead(method: line.method, target: line.target, targetForm: line.form,
                                        version: line.version, headers: headers, keepAlive: keepAlive,
                                        bodyFraming: framing))
    }

    /// Checks one `name: value` line (without CRLF) and returns its ranges.
    private func parseFieldLine(_ bytes: [UInt8], start: Int, end: Int) -> Result<HTTPHeaders.Field, HTTPParseError> {
        if isOWS(bytes[start]) { return .failure(.obsoleteLineFolding) }
        var k = start
        while k < end && isTokenByte(bytes[k]) { k += 1 }
        guard k < end else { return .failure(.invalidHeaderName) }
        if bytes[k] != asciiColon {
            return .failure(isOWS(bytes[k]) ? .whitespaceBeforeColon : .invalidHeaderName)
        }
        guard k > start else { return .failure(.invalidHeaderName) }
        let nameEnd = k
        var valueStart = k + 1
        var valueEnd = end
        while valueStart < valueEnd && isOWS(bytes[valueStart]) { valueStart += 1 }
        while valueEnd > valueStart && isOWS(bytes[valueEnd - 1]) { valueEnd -= 1 }
        for v in valueStart..<valueEnd where !isFieldValueByte(bytes[v]) {
            return .failure(.invalidHeaderValue)
        }
        return .success(HTTPHeaders.Field(name: start..<nameEnd, value: valueStart..<valueEnd))
    }

    /// Body framing, keep-alive and the smuggling checks of RFC 9112 §6.
    private func interpret(_ headers: HTTPHeaders, version: HTTPVersion)
        -> Result<(HTTPBodyFraming, Bool), HTTPParseError> {
        let bytes = headers.bytes
        var contentLength: Int? = nil
        var transferCodings: [ArraySlice<UInt8>] = []
        var sawTransferEncoding = false
        var hostCount = 0
        var connectionClose = false
        var connectionKeepAlive = false
        for field in headers.fields {
            let name = bytes[field.name]
            let value = bytes[field.value]
            switch name.count {
            case 4 where bytesEqualCaseInsensitive(name, "host"):
                hostCount += 1
                // uri-host [ ":" port ]: reg-name, IPv4 or IP-literal characters only (RFC 9110 §7.2).
                if !value.allSatisfy(isHostByte) { return .failure(.invalidHost) }
            case 10 where bytesEqualCaseInsensitive(name, "connection"):
                for token in splitList(value) {
                    if bytesEqualCaseInsensitive(token, "close") { connectionClose = true }
                    else if bytesEqualCaseInsensitive(token, "keep-alive") { connectionKeepAlive = true }
                }
            case 14 where bytesEqualCaseInsensitive(name, "content-length"):
                // "5, 5" and repeated identical lines are one value (RFC 9110 §8.6); anything else is refused.
                for element in splitList(value) {
                    guard let n = parseDecimal(element) else { return .failure(.invalidContentLength) }
                    if let previous = contentLength, previous != n { return .failure(.conflictingContentLength) }
                    contentLength = n
                }
            case 17 where bytesEqualCaseInsensitive(name, "transfer-encoding"):
                sawTransferEncoding = true
                transferCodings.append(contentsOf: splitList(value))
            default:
                break
            }
        }
        switch version {
        case .http1_1: if hostCount != 1 { return .failure(.invalidHost) }
        case .http1_0: if hostCount > 1 { return .failure(.invalidHost) }
        }
        let keepAlive = version == .http1_1 ? !connectionClose : (connectionKeepAlive && !connectionClose)

        if sawTransferEncoding {
            if version == .http1_0 { return .failure(.transferEncodingOnHTTP10) }
            if contentLength != nil { return .failure(.contentLengthWithTransferEncoding) }
            // Strict: every element a bare token (no empty elements, no parameters), chunked last and once.
            for coding in transferCodings where coding.isEmpty || !coding.allSatisfy(isTokenByte) {
                return .failure(.invalidTransferEncoding)
            }
            guard let last = transferCodings.last, bytesEqualCaseInsensitive(last, "chunked") else {
                return .failure(.invalidTransferEncoding)
            }
            if transferCodings.count > 1 {
                if transferCodings.dropLast().contains(where: { bytesEqualCaseInsensitive($0, "chunked") }) {
                    return .failure(.invalidTransferEncoding)
                }
                return .failure(.unsupportedTransferCoding)
            }
            return .success((.chunked, keepAlive))
        }
        if let contentLength {
            if contentLength > limits.maxBodyLength { return .failure(.bodyTooLarge) }
            return .success((contentLength == 0 ? .none : .contentLength(contentLength), keepAlive))
        }
        return .success((.none, keepAlive))
    }

    // MARK: - Chunked body

    /// Returns nil when it consumed a line and the caller should go on.
    private mutating func parseChunkSizeLine() -> HTTPParseResult? {
        let base = readIndex
        let end = buffer.count
        var j = base + scanOffset
        while j < end && buffer[j] != asciiLF { j += 1 }
        if j == end {
            if end - base > limits.maxChunkLineLength { return fail(.invalidChunkSize) }
            scanOffset = end - base
            return .needMoreData
        }
        if j + 1 - base > limits.maxChunkLineLength { return fail(.invalidChunkSize) }
        guard j > base, buffer[j - 1] == asciiCR else { return fail(.invalidLineEnding) }
        let lineEnd = j - 1
        var size = 0
        var k = base
        while k < lineEnd, let digit = hexValue(buffer[k]) {
            size = size &* 16 &+ digit
            // Checked per digit, so `size` never gets near overflow.
            if size > limits.maxBodyLength - chunkedBodyLength { return fail(.bodyTooLarge) }
            k += 1
        }
        guard k > base else { return fail(.invalidChunkSize) }
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): we check bytes and skip it.
        while k < lineEnd && isOWS(buffer[k]) { k += 1 }
        if k < lineEnd {
            guard buffer[k] == asciiSemicolon else { return fail(.invalidChunkSize) }
            for e in k..<lineEnd where !isFieldValueByte(buffer[e]) { return fail(.invalidChunkSize) }
        }
        consume(j + 1 - base)
        if size == 0 {
            fieldCount = 0
            trailerBytes = 0
            state = .trailers
        } else {
            chunkedBodyLength += size
            state = .chunkData(remaining: size)
        }
        return nil
    }

    /// Trailer fields are validated like header fields, counted against the header limits, and dropped.
    private mutating func parseTrailerLine() -> HTTPParseResult? {
        let base = readIndex
        let end = buffer.count
        var j = base + scanOffset
        while j < end && buffer[j] != asciiLF { j += 1 }
        if j == end {
            if trailerBytes + (end - base) > limits.maxHeaderBlockLength { return fail(.headerBlockTooLarge) }
            scanOffset = end - base
            return .needMoreData
        }
        if trailerBytes + (j + 1 - base) > limits.maxHeaderBlockLength { return fail(.headerBlockTooLarge) }
        guard j > base, buffer[j - 1] == asciiCR else { return fail(.invalidLineEnding) }
        if j - 1 == base {
            consume(2)
            fieldCount = 0
            trailerBytes = 0
            state = .head
            return .end
        }
        fieldCount += 1
        if fieldCount > limits.maxHeaderCount { return fail(.tooManyHeaderFields) }
        if case .failure(let error) = parseFieldLine(buffer, start: base, end: j - 1) { return fail(error) }
        trailerBytes += j + 1 - base
        consume(j + 1 - base)
        return nil
    }
}

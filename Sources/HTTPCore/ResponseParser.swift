/// How the body of a response is delimited (RFC 9112 §6.3), as ``HTTPResponseParser`` found it.
public enum HTTPResponseBodyFraming: Sendable, Hashable {
    /// No body: the response to a HEAD, a 204 or 304, or `Content-Length: 0`.
    case none
    /// Exactly this many bytes follow the head (never zero: zero is ``none``).
    case contentLength(Int64)
    /// A Transfer-Encoding whose final coding is `chunked`.
    case chunked
    /// Neither: the body ends when the server closes, so the connection is never reused.
    case untilClose
}

/// What ``HTTPResponseParser/next(maxBodyBytes:)`` found.
///
/// Every final response yields `.head`, then zero or more `.body`, then `.end`. Pipelined
/// responses follow one another.
public enum HTTPResponseParseResult: Sendable, Equatable {
    /// A final response head (1xx informational responses other than 101 are skipped silently).
    case head(HTTPResponseHead, body: HTTPResponseBodyFraming)
    /// Buffered body bytes (chunk framing removed). A slice of the parser's buffer: copy it
    /// out before the next feed (keeping it makes that feed copy the whole buffer).
    case body(ArraySlice<UInt8>)
    /// The response is complete. keepAlive: the connection may carry the next response.
    case end(keepAlive: Bool)
    /// Nothing more can be parsed until more bytes are fed.
    case needMoreData
    /// The input is not acceptable. Sticky, like the request parser's: close the connection.
    case error(HTTPResponseParseError)
}

/// An incremental HTTP/1.1 response parser, the client's mirror of ``HTTPRequestParser``:
/// feed it bytes as they arrive, then call ``next(maxBodyBytes:)`` until it returns
/// ``HTTPResponseParseResult/needMoreData``.
///
/// ```swift
/// var parser = HTTPResponseParser()
/// parser.nextResponseIsToHEAD = request.method == .head
/// parser.feed(bytesFromSocket)
/// loop: while true {
///     switch parser.next() {
///     case .head(let head, let framing): start(head, framing)
///     case .body(let bytes): append(bytes)
///     case .end(let keepAlive): finish(reuse: keepAlive)
///     case .needMoreData: break loop
///     case .error(let error): fail(error); break loop
///     }
/// }
/// ```
///
/// Where the request parser refuses anything a proxy might read differently, this one follows
/// what user agents must accept (RFC 9112) and no more:
/// - Lines end in CRLF or a bare LF (as curl and browsers accept); a CR not followed by LF is
///   ``HTTPResponseParseError/invalidLineEnding`` everywhere. Empty lines before a status line are skipped.
/// - Obsolete line folding is replaced by one space (RFC 9112 §5.2). Names must be tokens
///   directly followed by the colon; values may hold no control byte but HTAB.
/// - 1xx (not 101), 204, 304 and responses to HEAD end with their head whatever their
///   Content-Length or Transfer-Encoding say, and those headers are not interpreted.
/// - A Transfer-Encoding ending in `chunked` wins over Content-Length, which is then ignored
///   but makes the connection unusable afterwards; any other Transfer-Encoding, or neither
///   header, means the body runs until the server closes.
/// - Chunk extensions are checked for control bytes and skipped; trailer fields are checked
///   like header fields (and count against the same limits) and then dropped.
///
/// Every check runs on the bytes in order and errors are sticky, so the same bytes give the
/// same results however they are split into feeds.
public struct HTTPResponseParser: Sendable {
    /// Size limits. Every one is enforced before the bytes it guards are buffered in full.
    public struct Limits: Sendable, Hashable {
        /// Longest status line, without its line end.
        public var maxStatusLineLength: Int
        /// Longest header block after the status line, line ends and the final empty line
        /// included. Also limits the trailer section.
        public var maxHeaderBlockLength: Int
        /// Most header fields (continuation lines are not fields). Also limits trailer fields.
        public var maxHeaderCount: Int
        /// Longest chunk-size line, extensions and line end included.
        public var maxChunkLineLength: Int
        /// Largest Content-Length or sum of chunk sizes, if set. Until-close bodies are the
        /// caller's to bound: the parser never holds more of them than one feed.
        public var maxBodyLength: Int64?

        public init(maxStatusLineLength: Int = 8 * 1024, maxHeaderBlockLength: Int = 64 * 1024,
                    maxHeaderCount: Int = 100, maxChunkLineLength: Int = 4 * 1024,
                    maxBodyLength: Int64? = nil) {
            self.maxStatusLineLength = maxStatusLineLength
            self.maxHeaderBlockLength = maxHeaderBlockLength
            self.maxHeaderCount = maxHeaderCount
            self.maxChunkLineLength = maxChunkLineLength
            self.maxBodyLength = maxBodyLength
        }
    }

    enum State: Sendable {
        case head
        case fixedBody(remaining: Int64)
        case chunkSizeLine
        case chunkData(remaining: Int64)
        case chunkDataEnd
        case trailers
        case untilClose
        case messageEnd
        case failed(HTTPResponseParseError)
    }

    /// The status line, parsed as soon as its LF arrives.
    struct StatusLine: Sendable {
        var version: HTTPVersion
        var status: Int
        var reason: String
    }

    /// What a scan for the end of a line found.
    enum LineScan {
        /// `lf` is the LF's index; `contentEnd` excludes the CR before it, if any.
        case line(lf: Int, contentEnd: Int)
        case needMoreData
        case failed(HTTPResponseParseError)
    }

    /// The limits this parser enforces.
    public let limits: Limits

    /// Set before the head of the response to a HEAD request is parsed (pipelined clients set it
    /// per response); it applies to one response and is cleared at its end.
    public var nextResponseIsToHEAD = false

    var state: State = .head
    var buffer: [UInt8] = []
    /// Start of the unconsumed bytes. Scan positions below are offsets from here, so
    /// compacting the buffer never invalidates them.
    var readIndex = 0
    var scanOffset = 0
    var lineStartOffset = 0
    var statusLineEndOffset = -1  // just past the status line's LF; -1 while still in it
    var fieldCount = 0
    var trailerBytes = 0
    var chunkedBodyLength: Int64 = 0
    var statusLine: StatusLine? = nil
    var keepAlive = false
    /// A 1xx was skipped: the final response is still owed, so a close now truncates it.
    var awaitingFinal = false
    var closed = false

    /// Bytes passed to ``feed(_:)-(ArraySlice<UInt8>)`` or received directly
    /// (``bodyReceivedDirectly(_:)``) over the parser's life: the connection's bytes.
    public private(set) var totalBytesFed = 0
    /// Bytes parsed and dropped (or received directly) over the parser's life; never more than ``totalBytesFed``.
    public private(set) var totalBytesConsumed = 0

    /// Creates a parser for one connection.
    public init(limits: Limits = Limits()) {
        self.limits = limits
        buffer.reserveCapacity(4096)
    }

    /// Bytes fed but not yet consumed.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// The error the parser is stuck in, if any.
    public var error: HTTPResponseParseError? {
        if case .failed(let error) = state { return error }
        return nil
    }

    /// Whether the parser sits between responses with nothing buffered (after a 1xx it does not:
    /// the final response is still owed).
    public var isIdle: Bool {
        if case .head = state { return bufferedByteCount == 0 && !awaitingFinal }
        return false
    }

    /// Between responses, drops the empty lines (CRLF, or a bare LF) buffered before the next
    /// status line: a server may send a stray CRLF after a body (RFC 9112 §2.2 has recipients of
    /// requests ignore it; robust clients do the same for responses). Returns whether what stays
    /// buffered may still be nothing but that: no bytes, or a CR whose LF has not arrived. False
    /// when a response begins (bytes no request asked for, on an idle connection) or the parser
    /// is inside a response or failed. ``next(maxBodyBytes:)`` skips them by itself.
    public mutating func skipBlankLinesBetweenResponses() -> Bool {
        guard case .head = state, statusLineEndOffset < 0, scanOffset == 0, !awaitingFinal else { return false }
        switch skipEmptyLines() {
        case .none: return bufferedByteCount == 0
        case .partial: return true
        case .failed: return false  // a CR not followed by LF: next() reports it
        }
    }

    private enum EmptyLineSkip { case none, partial, failed(HTTPResponseParseError) }

    /// Consumes whole empty lines at the read position; `.partial` when a CR waits for its LF.
    private mutating func skipEmptyLines() -> EmptyLineSkip {
        while bufferedByteCount > 0 {
            let b = buffer[readIndex]
            if b == asciiLF {
                consume(1)
            } else if b == asciiCR {
                guard bufferedByteCount > 1 else { return .partial }
                guard buffer[readIndex + 1] == asciiLF else { return .failed(.invalidLineEnding) }
                consume(2)
            } else {
                break
            }
        }
        return .none
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

    /// Zero-copy receiving: when the parser is inside a body (Content-Length, a chunk's data, or
    /// until-close) and holds no buffered bytes, how many body bytes of the current framing unit
    /// remain (`Int64.max` for until-close), so the caller can recv(2) them straight into its own
    /// buffer. nil otherwise (not in a body, bytes are buffered: take those with ``next(maxBodyBytes:)``,
    /// or the connection was closed).
    public var directBodyBytes: Int64? {
        guard bufferedByteCount == 0, !closed else { return nil }
        switch state {
        case .fixedBody(let remaining), .chunkData(let remaining): return remaining
        case .untilClose: return .max
        default: return nil
        }
    }

    /// Whether the next bytes of the stream are body data (inside Content-Length, a chunk's
    /// data, or an until-close body), as opposed to framing or a head.
    public var isAtBodyData: Bool {
        switch state {
        case .fixedBody, .chunkData, .untilClose: return true
        default: return false
        }
    }

    /// The caller received `count` (1...``directBodyBytes``) body bytes itself. After it,
    /// ``next(maxBodyBytes:)`` continues (returns `.end`, say, or waits for the chunk's line end).
    /// The bytes count in ``totalBytesFed`` and ``totalBytesConsumed``.
    public mutating func bodyReceivedDirectly(_ count: Int) {
        guard let available = directBodyBytes else {
            preconditionFailure("bodyReceivedDirectly outside a body, or with bytes buffered")
        }
        precondition(count >= 1 && Int64(count) <= available, "received \(count) body bytes directly, \(available) allowed")
        totalBytesFed += count
        totalBytesConsumed += count
        let n = Int64(count)
        switch state {
        case .fixedBody(let remaining): state = remaining == n ? .messageEnd : .fixedBody(remaining: remaining - n)
        case .chunkData(let remaining): state = remaining == n ? .chunkDataEnd : .chunkData(remaining: remaining - n)
        default: break
        }
    }

    /// The server closed the connection: an until-close body then ends (``next(maxBodyBytes:)``
    /// gives `.end(keepAlive: false)` once the buffered bytes are taken); a response left
    /// incomplete is `.error(.truncated)`; between responses nothing happens. Feed nothing after it.
    public mutating func connectionClosed() {
        closed = true
    }

    /// Parses as far as buffered bytes allow. `.body` slices are at most `maxBodyBytes` long
    /// (a caller filling a buffer with only so much room). With 0 it only moves through framing
    /// (chunk lines, the end): reaching buffered body bytes it returns an empty `.body` (ask
    /// again with room), so a caller with no room left still learns that a response has ended.
    public mutating func next(maxBodyBytes: Int = .max) -> HTTPResponseParseResult {
        precondition(maxBodyBytes >= 0, "maxBodyBytes must not be negative")
        while true {
            switch state {
            case .failed(let error):
                return .error(error)
            case .head:
                if let result = parseHead() { return result }
            case .messageEnd:
                state = .head
                nextResponseIsToHEAD = false
                return .end(keepAlive: keepAlive)
            case .fixedBody(let remaining):
                guard let part = takeBody(upTo: remaining, maxBodyBytes) else { return waitForMore() }
                let left = remaining - Int64(part.count)
                state = left == 0 ? .messageEnd : .fixedBody(remaining: left)
                return .body(part)
            case .chunkData(let remaining):
                guard let part = takeBody(upTo: remaining, maxBodyBytes) else { return waitForMore() }
                let left = remaining - Int64(part.count)
                state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
                return .body(part)
            case .untilClose:
                guard let part = takeBody(upTo: .max, maxBodyBytes) else { return waitForMore() }
                return .body(part)
            case .chunkDataEnd:
                guard bufferedByteCount > 0 else { return waitForMore() }
                let b = buffer[readIndex]
                if b == asciiLF {
                    consume(1)
                } else {
                    guard b == asciiCR else { return fail(.invalidChunkTerminator) }
                    guard bufferedByteCount > 1 else { return waitForMore() }
                    guard buffer[readIndex + 1] == asciiLF else { return fail(.invalidLineEnding) }
                    consume(2)
                }
                state = .chunkSizeLine
            case .chunkSizeLine:
                if let result = parseChunkSizeLine() { return result }
            case .trailers:
                if let result = parseTrailerLine() { return result }
            }
        }
    }

    // MARK: - Helpers

    private mutating func fail(_ error: HTTPResponseParseError) -> HTTPResponseParseResult {
        state = .failed(error)
        buffer = []
        readIndex = 0
        return .error(error)
    }

    /// `.needMoreData`, unless the server has closed: then an until-close body ends, the
    /// parser stays quiet between responses, and anything else was cut short.
    private mutating func waitForMore() -> HTTPResponseParseResult {
        guard closed else { return .needMoreData }
        switch state {
        case .head where bufferedByteCount == 0 && !awaitingFinal:
            return .needMoreData
        case .untilClose:
            state = .head
            nextResponseIsToHEAD = false
            return .end(keepAlive: false)
        default:
            return fail(.truncated)
        }
    }

    private mutating func consume(_ count: Int) {
        readIndex += count
        totalBytesConsumed += count
        scanOffset = 0
    }

    private mutating func takeBody(upTo remaining: Int64, _ maxBodyBytes: Int) -> ArraySlice<UInt8>? {
        let available = bufferedByteCount
        if available == 0 { return nil }
        let n = min(available, maxBodyBytes, Int(clamping: remaining))
        let part = buffer[readIndex..<(readIndex + n)]
        consume(n)
        return part
    }

    /// Finds the LF ending the line that starts at `lineStart` (an index), resuming at
    /// ``scanOffset``. Each byte is checked in order, so a split never changes which error
    /// comes first: a CR must be followed by LF, and no byte may lie `limit` or more bytes
    /// past `limitBase`.
    private mutating func scanLine(lineStart: Int, limitBase: Int, limit: Int,
                                   tooLong: HTTPResponseParseError) -> LineScan {
        let end = buffer.count
        var j = readIndex + scanOffset
        while j < end {
            let b = buffer[j]
            if j > lineStart && buffer[j - 1] == asciiCR && b != asciiLF { return .failed(.invalidLineEnding) }
            if j + 1 - limitBase > limit { return .failed(tooLong) }
            if b == asciiLF {
                scanOffset = j + 1 - readIndex
                let contentEnd = j > lineStart && buffer[j - 1] == asciiCR ? j - 1 : j
                return .line(lf: j, contentEnd: contentEnd)
            }
            j += 1
        }
        scanOffset = j - readIndex
        return .needMoreData
    }

    /// Checks one field line (without its line end). Returns whether it continues the
    /// previous field (obsolete folding) rather than starting one.
    private func checkFieldLine(start: Int, end: Int, hasPrevious: Bool) -> Result<Bool, HTTPResponseParseError> {
        if isOWS(buffer[start]) {
            // RFC 9112 §2.2 lets us reject whitespace before the first field; later it is obs-fold.
            guard hasPrevious else { return .failure(.invalidHeaderField) }
            for k in start..<end where !isFieldValueByte(buffer[k]) { return .failure(.invalidHeaderField) }
            return .success(true)
        }
        var k = start
        while k < end && isTokenByte(buffer[k]) { k += 1 }
        guard k > start, k < end, buffer[k] == asciiColon else { return .failure(.invalidHeaderField) }
        for v in (k + 1)..<end where !isFieldValueByte(buffer[v]) { return .failure(.invalidHeaderField) }
        return .success(false)
    }

    // MARK: - Head

    /// Returns nil when it skipped a 1xx response and the caller should go on.
    private mutating func parseHead() -> HTTPResponseParseResult? {
        // Skip empty lines before a status line (a stray CRLF after a body, say).
        if statusLineEndOffset < 0 && scanOffset == 0 {
            switch skipEmptyLines() {
            case .none: break
            case .partial: return waitForMore()
            case .failed(let e): return fail(e)
            }
        }
        let base = readIndex
        let end = buffer.count

        // The status line, byte by byte: "HTTP/" is checked as it arrives so that a server
        // speaking something else fails at once instead of at the length limit.
        if statusLineEndOffset < 0 {
            var i = base + scanOffset
            while i < end {
                let b = buffer[i]
                let offset = i - base
                if offset > 0 && buffer[i - 1] == asciiCR && b != asciiLF { return fail(.invalidLineEnding) }
                if b == asciiLF {
                    let lineEnd = offset > 0 && buffer[i - 1] == asciiCR ? i - 1 : i
                    switch parseStatusLine(start: base, end: lineEnd) {
                    case .success(let line): statusLine = line
                    case .failure(let error): return fail(error)
                    }
                    statusLineEndOffset = offset + 1
                    lineStartOffset = offset + 1
                    scanOffset = offset + 1
                    break
                }
                if offset < 5 && b != httpNameByte(offset) { return fail(.invalidStatusLine) }
                if b != asciiCR && offset + 1 > limits.maxStatusLineLength { return fail(.statusLineTooLong) }
                i += 1
            }
            if statusLineEndOffset < 0 {
                scanOffset = i - base
                return waitForMore()
            }
        }

        // Header lines, each checked as its LF arrives; the headers are built once the block is complete.
        let headerStart = base + statusLineEndOffset
        while true {
            let lineStart = base + lineStartOffset
            switch scanLine(lineStart: lineStart, limitBase: headerStart, limit: limits.maxHeaderBlockLength,
                            tooLong: .headerBlockTooLarge) {
            case .needMoreData:
                return waitForMore()
            case .failed(let error):
                return fail(error)
            case .line(let lf, let contentEnd):
                if contentEnd == lineStart { return finishHead(headerStart: headerStart, headEnd: lf + 1) }
                switch checkFieldLine(start: lineStart, end: contentEnd, hasPrevious: fieldCount > 0) {
                case .failure(let error): return fail(error)
                case .success(let continuation):
                    if !continuation {
                        fieldCount += 1
                        if fieldCount > limits.maxHeaderCount { return fail(.tooManyHeaders) }
                    }
                }
                lineStartOffset = lf + 1 - base
            }
        }
    }

    /// `HTTP/`, the status line's fixed start.
    private func httpNameByte(_ offset: Int) -> UInt8 {
        switch offset {
        case 0: return UInt8(ascii: "H")
        case 1, 2: return UInt8(ascii: "T")
        case 3: return UInt8(ascii: "P")
        default: return UInt8(ascii: "/")
        }
    }

    /// `HTTP/DIGIT.DIGIT SP 3DIGIT [SP reason]`, without the line end; `HTTP/` is already checked.
    private func parseStatusLine(start s: Int, end: Int) -> Result<StatusLine, HTTPResponseParseError> {
        guard end - s >= 12, isDigit(buffer[s + 5]), buffer[s + 6] == UInt8(ascii: "."), isDigit(buffer[s + 7]),
              buffer[s + 8] == asciiSpace, isDigit(buffer[s + 9]), isDigit(buffer[s + 10]), isDigit(buffer[s + 11]),
              end - s == 12 || buffer[s + 12] == asciiSpace else { return .failure(.invalidStatusLine) }
        let reasonStart = min(s + 13, end)
        for k in reasonStart..<end where !isFieldValueByte(buffer[k]) { return .failure(.invalidStatusLine) }
        let version: HTTPVersion
        switch (buffer[s + 5], buffer[s + 7]) {
        case (UInt8(ascii: "1"), UInt8(ascii: "1")): version = .http1_1
        case (UInt8(ascii: "1"), UInt8(ascii: "0")): version = .http1_0
        default: return .failure(.unsupportedVersion)
        }
        let status = Int(buffer[s + 9] &- 48) * 100 + Int(buffer[s + 10] &- 48) * 10 + Int(buffer[s + 11] &- 48)
        guard status >= 100 else { return .failure(.invalidStatusLine) }
        if status == 101 { return .failure(.switchingProtocols) }
        return .success(StatusLine(version: version, status: status,
                                   reason: String(decoding: buffer[reasonStart..<end], as: UTF8.self)))
    }

    private mutating func finishHead(headerStart: Int, headEnd: Int) -> HTTPResponseParseResult? {
        guard let line = statusLine else { return fail(.invalidStatusLine) }
        let headers = buildHeaders(from: headerStart, to: headEnd)
        consume(headEnd - readIndex)
        statusLineEndOffset = -1
        lineStartOffset = 0
        fieldCount = 0
        statusLine = nil
        if line.status < 200 {
            // 1xx (101 was refused with the status line): informational, skipped.
            awaitingFinal = true
            return nil
        }
        awaitingFinal = false
        let framing: HTTPResponseBodyFraming
        switch interpret(headers, line: line) {
        case .success(let (f, k)): framing = f; keepAlive = k
        case .failure(let error): return fail(error)
        }
        switch framing {
        case .none: state = .messageEnd
        case .contentLength(let n): state = .fixedBody(remaining: n)
        case .untilClose: state = .untilClose
        case .chunked:
            chunkedBodyLength = 0
            trailerBytes = 0
            state = .chunkSizeLine
        }
        return .head(HTTPResponseHead(status: line.status, reason: line.reason, version: line.version, headers: headers),
                     body: framing)
    }

    /// The checked field lines as headers: names and trimmed values, each folded continuation
    /// appended to its field's value after one space.
    private func buildHeaders(from start: Int, to end: Int) -> HTTPHeaders {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(end - start)
        var fields: [HTTPHeaders.Field] = []
        fields.reserveCapacity(fieldCount)
        var lineStart = start
        var k = start
        while k < end {
            if buffer[k] == asciiLF {
                let contentEnd = k > lineStart && buffer[k - 1] == asciiCR ? k - 1 : k
                if contentEnd == lineStart { break }
                let content = buffer[lineStart..<contentEnd]
                if isOWS(content[lineStart]) {
                    let more = trimOWS(content)
                    if !more.isEmpty {
                        var field = fields[fields.count - 1]
                        if !field.value.isEmpty { bytes.append(asciiSpace) }
                        bytes.append(contentsOf: more)
                        field.value = field.value.lowerBound..<bytes.count
                        fields[fields.count - 1] = field
                    }
                } else {
                    let colon = content.firstIndex(of: asciiColon)!
                    let nameStart = bytes.count
                    bytes.append(contentsOf: content[lineStart..<colon])
                    let nameEnd = bytes.count
                    bytes.append(contentsOf: trimOWS(content[(colon + 1)...]))
                    fields.append(HTTPHeaders.Field(name: nameStart..<nameEnd, value: nameEnd..<bytes.count))
                }
                lineStart = k + 1
            }
            k += 1
        }
        return HTTPHeaders(validatedBytes: bytes, fields: fields)
    }

    /// Body framing and keep-alive (RFC 9112 §6.3, §9.3).
    private func interpret(_ headers: HTTPHeaders, line: StatusLine)
        -> Result<(HTTPResponseBodyFraming, Bool), HTTPResponseParseError> {
        let bytes = headers.bytes
        var connectionClose = false
        var connectionKeepAlive = false
        var contentLengthValues: [ArraySlice<UInt8>] = []
        var sawTransferEncoding = false
        var finalCoding: ArraySlice<UInt8>? = nil
        for field in headers.fields {
            let name = bytes[field.name]
            let value = bytes[field.value]
            switch name.count {
            case 10 where bytesEqualCaseInsensitive(name, "connection"):
                for token in splitList(value) {
                    if bytesEqualCaseInsensitive(token, "close") { connectionClose = true }
                    else if bytesEqualCaseInsensitive(token, "keep-alive") { connectionKeepAlive = true }
                }
            case 14 where bytesEqualCaseInsensitive(name, "content-length"):
                contentLengthValues.append(value)
            case 17 where bytesEqualCaseInsensitive(name, "transfer-encoding"):
                sawTransferEncoding = true
                for coding in splitList(value) where !coding.isEmpty { finalCoding = coding }
            default:
                break
            }
        }
        let keepAlive = line.version == .http1_1 ? !connectionClose : (connectionKeepAlive && !connectionClose)

        // Always ended by the empty line, "regardless of the header fields present" (RFC 9112 §6.3).
        if nextResponseIsToHEAD || line.status == 204 || line.status == 304 {
            return .success((.none, keepAlive))
        }
        if sawTransferEncoding {
            guard let finalCoding, bytesEqualCaseInsensitive(finalCoding, "chunked") else {
                return .success((.untilClose, false))
            }
            // With Content-Length too, or on HTTP/1.0, the framing is suspect: this message is read, then close (§6.1).
            return .success((.chunked, keepAlive && contentLengthValues.isEmpty && line.version == .http1_1))
        }
        guard !contentLengthValues.isEmpty else { return .success((.untilClose, false)) }
        // "5, 5" and repeated identical lines are one value (RFC 9110 §8.6); anything else is refused.
        var contentLength: Int? = nil
        for value in contentLengthValues {
            for element in splitList(value) {
                guard let n = parseDecimal(element) else { return .failure(.invalidContentLength) }
                if let previous = contentLength, previous != n { return .failure(.conflictingContentLength) }
                contentLength = n
            }
        }
        let length = Int64(contentLength!)
        if let max = limits.maxBodyLength, length > max { return .failure(.bodyTooLarge) }
        return .success((length == 0 ? .none : .contentLength(length), keepAlive))
    }

    // MARK: - Chunked body

    /// Returns nil when it consumed a line and the caller should go on.
    private mutating func parseChunkSizeLine() -> HTTPResponseParseResult? {
        let base = readIndex
        let lf: Int, lineEnd: Int
        switch scanLine(lineStart: base, limitBase: base, limit: limits.maxChunkLineLength, tooLong: .chunkLineTooLong) {
        case .needMoreData: return waitForMore()
        case .failed(let error): return fail(error)
        case .line(let l, let contentEnd): lf = l; lineEnd = contentEnd
        }
        let allowance = (limits.maxBodyLength ?? .max) - chunkedBodyLength
        var size: Int64 = 0
        var k = base
        while k < lineEnd, let digit = hexValue(buffer[k]) {
            let (shifted, o1) = size.multipliedReportingOverflow(by: 16)
            let (sum, o2) = shifted.addingReportingOverflow(Int64(digit))
            if o1 || o2 || sum > allowance { return fail(.bodyTooLarge) }
            size = sum
            k += 1
        }
        guard k > base else { return fail(.invalidChunkSize) }
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): we check bytes and skip it.
        while k < lineEnd && isOWS(buffer[k]) { k += 1 }
        if k < lineEnd {
            guard buffer[k] == asciiSemicolon else { return fail(.invalidChunkSize) }
            for e in k..<lineEnd where !isFieldValueByte(buffer[e]) { return fail(.invalidChunkSize) }
        }
        consume(lf + 1 - base)
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

    /// Trailer fields are checked like header fields, counted against the header limits, and dropped.
    private mutating func parseTrailerLine() -> HTTPResponseParseResult? {
        let base = readIndex
        switch scanLine(lineStart: base, limitBase: base - trailerBytes, limit: limits.maxHeaderBlockLength,
                        tooLong: .headerBlockTooLarge) {
        case .needMoreData:
            return waitForMore()
        case .failed(let error):
            return fail(error)
        case .line(let lf, let contentEnd):
            if contentEnd == base {
                consume(lf + 1 - base)
                fieldCount = 0
                trailerBytes = 0
                state = .messageEnd
                return nil
            }
            switch checkFieldLine(start: base, end: contentEnd, hasPrevious: fieldCount > 0) {
            case .failure(let error): return fail(error)
            case .success(let continuation):
                if !continuation {
                    fieldCount += 1
                    if fieldCount > limits.maxHeaderCount { return fail(.tooManyHeaders) }
                }
            }
            trailerBytes += lf + 1 - base
            consume(lf + 1 - base)
            return nil
        }
    }
}

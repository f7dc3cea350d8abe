// libFuzzer entry point for HTTPCore's response parser, the client's half. Not main.swift:
// libFuzzer supplies main(), and top-level code (which would initialise globals) never runs.
//
// Each input is parsed as a stream of responses five ways: whole, split at a point the input
// picks, in small chunks taking small body slices, receiving bodies directly the way a client
// recv(2)s into its own buffer (directBodyBytes / bodyReceivedDirectly), and as the HTTP client
// does (ClientConnection.process): inside a body, next(maxBodyBytes: 0) moves through framing
// only, and room (a small buffer) is given only where isAtBodyData and bytes are buffered or can
// be received directly. The event streams must agree (the client's empty .body, at buffered body
// bytes only, aside), and every run checks the parser's invariants as it goes: body bytes never
// exceed a Content-Length (nor maxBodyLength) and add up to it at the end, bodiless responses
// have none, events come in head-body-end order, errors are sticky. Every parsed head must
// serialize and parse back the same, and a request head made from the input must serialize to
// exactly one request.
import HTTPCore

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// An event with body parts merged, so streams from different splits compare equal.
enum Event: Equatable {
    case head(HTTPResponseHead, HTTPResponseBodyFraming)
    case body([UInt8])
    case end(keepAlive: Bool)
    case error(HTTPResponseParseError)
}

/// What the input chose besides its bytes: which responses answer HEAD, whether the server
/// closes after the last byte, the limits.
struct Options {
    var limits: HTTPResponseParser.Limits
    var headMask: UInt64
    var close: Bool

    func isHEAD(_ response: Int) -> Bool { response < 64 && headMask & (1 << UInt64(response)) != 0 }
}

/// Drives one parser and checks each result against what came before it.
struct Run {
    let options: Options
    let maxBodyBytes: Int
    /// Imitate the HTTP client with this much room per body take.
    let clientRoom: Int?
    var parser: HTTPResponseParser
    var events: [Event] = []
    var calls = 0
    var budget = 16
    var responses = 0
    /// The framing of the response in progress (nil between responses) and its body bytes so far.
    var framing: HTTPResponseBodyFraming? = nil
    var bodyBytes: Int64 = 0
    var failed = false

    init(_ options: Options, maxBodyBytes: Int = .max, clientRoom: Int? = nil) {
        self.options = options
        self.maxBodyBytes = maxBodyBytes
        self.clientRoom = clientRoom
        parser = HTTPResponseParser(limits: options.limits)
    }

    mutating func feed(_ bytes: ArraySlice<UInt8>) {
        if failed { return }
        // Every event but .end and .needMoreData consumes a byte, and .end follows a head.
        budget += 3 * bytes.count + 2
        parser.feed(bytes)
        drain()
    }

    mutating func close() {
        if failed { return }
        budget += 4
        parser.connectionClosed()
        check(parser.directBodyBytes == nil, "direct receiving offered after close")
        drain()
    }

    /// Body bytes, from a `.body` slice or received directly.
    mutating func body(_ part: ArraySlice<UInt8>) {
        check(!part.isEmpty, "empty body part")
        guard let framing, framing != .none else { fatalError("invariant violated: body bytes outside a body (\(String(describing: self.framing)))") }
        bodyBytes += Int64(part.count)
        if case .contentLength(let n) = framing { check(bodyBytes <= n, "\(bodyBytes) body bytes for Content-Length \(n)") }
        if framing == .chunked, let max = options.limits.maxBodyLength { check(bodyBytes <= max, "chunked body over maxBodyLength") }
        if case .body(let previous)? = events.last {
            events[events.count - 1] = .body(previous + part)
        } else {
            events.append(.body(Array(part)))
        }
    }

    /// Takes up to `count` body bytes straight from `input` at `offset` if the parser offers it.
    mutating func receiveDirectly(_ input: [UInt8], _ offset: inout Int, upTo count: Int) -> Bool {
        guard !failed, offset < input.count, let direct = parser.directBodyBytes else { return false }
        check(direct > 0, "directBodyBytes is \(direct)")
        if case .contentLength(let n)? = framing { check(direct <= n - bodyBytes, "direct \(direct) past Content-Length \(n)") }
        let n = Int(min(direct, Int64(min(count, input.count - offset))))
        body(input[offset..<(offset + n)])
        parser.bodyReceivedDirectly(n)
        offset += n
        budget += 3
        drain()
        return true
    }

    /// Inside a response whose head promised a body (the client's `inBody`).
    var inBody: Bool { framing != nil && framing != HTTPResponseBodyFraming.none }

    /// What the next call may take: the client asks for room only where body bytes come next.
    var limit: Int {
        guard let clientRoom else { return maxBodyBytes }
        guard inBody else { return .max }
        return parser.isAtBodyData && (parser.bufferedByteCount > 0 || parser.directBodyBytes != nil) ? clientRoom : 0
    }

    mutating func drain() {
        while !failed {
            calls += 1
            check(calls <= budget, "next() called \(calls) times, budget \(budget)")
            parser.nextResponseIsToHEAD = options.isHEAD(responses)
            // The client drops blank lines on a connection with no request outstanding: doing
            // it between responses must change no event (the runs are compared).
            if clientRoom != nil && framing == nil { _ = parser.skipBlankLinesBetweenResponses() }
            let before = parser.totalBytesConsumed
            let limit = self.limit
            let result = parser.next(maxBodyBytes: limit)
            check(parser.directBodyBytes == nil || parser.isAtBodyData, "directBodyBytes outside body data")
            check(parser.totalBytesConsumed >= before, "consumed count went backwards")
            check(parser.totalBytesConsumed <= parser.totalBytesFed, "consumed more than fed")
            switch result {
            case .head(let head, let f):
                check(framing == nil, "head inside a response")
                check((200...999).contains(head.status), "final status \(head.status)")
                if options.isHEAD(responses) || head.status == 204 || head.status == 304 {
                    check(f == .none, "\(head.status) to \(options.isHEAD(responses) ? "HEAD" : "GET") framed \(f)")
                }
                if case .contentLength(let n) = f {
                    check(n > 0 && n <= (options.limits.maxBodyLength ?? .max), "Content-Length \(n)")
                }
                exercise(head)
                switch f {
                case .contentLength, .untilClose: check(parser.isAtBodyData, "not at body data after a \(f) head")
                case .none, .chunked: check(!parser.isAtBodyData, "at body data after a \(f) head")
                }
                framing = f
                bodyBytes = 0
                events.append(.head(head, f))
            case .body(let part) where part.isEmpty:
                // Framing only (no room) reached buffered body bytes: ask again with room.
                check(limit == 0 && parser.isAtBodyData && parser.bufferedByteCount > 0,
                      "empty body with room \(limit), at body data \(parser.isAtBodyData), \(parser.bufferedByteCount) buffered")
                budget += 1
            case .body(let part):
                check(part.count <= limit, "body slice of \(part.count) > \(limit)")
                body(part)
            case .end(let keepAlive):
                guard let f = framing else { fatalError("invariant violated: end outside a response") }
                switch f {
                case .none: check(bodyBytes == 0, "bodiless response with \(bodyBytes) body bytes")
                case .contentLength(let n): check(bodyBytes == n, "ended after \(bodyBytes) of \(n) bytes")
                case .untilClose: check(!keepAlive && options.close, "until-close body ended without a close")
                case .chunked: break
                }
                check(!parser.nextResponseIsToHEAD, "HEAD flag not cleared")
                check(!parser.isAtBodyData, "at body data after the end")
                framing = nil
                responses += 1
                events.append(.end(keepAlive: keepAlive))
            case .needMoreData:
                check(parser.totalBytesConsumed + parser.bufferedByteCount == parser.totalBytesFed,
                      "bytes lost while waiting for more")
                check(!parser.isIdle || (framing == nil && parser.bufferedByteCount == 0), "idle inside a response")
                return
            case .error(let error):
                check(!error.description.isEmpty, "no reason for \(error)")
                if error == .truncated { check(options.close, "truncated without a close") }
                events.append(.error(error))
                failed = true
                check(parser.next() == .error(error), "error not sticky")
                check(parser.error == error, "error property differs")
                parser.feed(Array("HTTP/1.1 204 No Content\r\n\r\n".utf8))
                check(parser.next() == .error(error), "error not sticky after feed")
                check(parser.directBodyBytes == nil, "direct receiving offered after an error")
            }
        }
    }
}

/// A parsed head serializes and parses back the same (as the answer to a HEAD, so bodiless).
func exercise(_ head: HTTPResponseHead) {
    var parser = HTTPResponseParser()
    parser.nextResponseIsToHEAD = true
    parser.feed(head.serialized())
    let again = parser.next()
    check(again == .head(head, body: .none), "head does not read back: \(head) vs \(again)")
    let close = head.headers.containsToken("close", in: "Connection")
    let keepAlive = head.version == .http1_1 ? !close : head.headers.containsToken("keep-alive", in: "Connection") && !close
    check(parser.next() == .end(keepAlive: keepAlive), "keep-alive of a bodiless response differs")
    check(parser.isIdle, "bytes left after a serialized head")
    for value in head.headers.values(for: "Content-Range") {
        guard let range = HTTPContentRange(parsing: value) else { continue }
        check(range.first <= range.last && (range.completeLength.map { $0 > range.last } ?? true), "range \(range)")
        check(HTTPContentRange(parsing: range.description) == range, "\(range) does not read back")
    }
}

/// A client's request made from arbitrary text serializes to exactly one well-formed request.
func requests(_ input: [UInt8]) {
    let text = String(decoding: input.prefix(512), as: UTF8.self)
    let head = HTTPRequestHead(method: HTTPMethod(rawValue: "GET" + text.prefix(3)), target: "/" + text,
                               headers: ["Host": "a", "X": text])
    var parser = HTTPRequestParser(limits: .init(maxRequestLineLength: 16 * 1024))
    parser.feed(head.serialized())
    guard case .request(let parsed) = parser.next() else { fatalError("invariant violated: serialized request does not parse") }
    check(parsed.headers.count == 2 && parsed.version == .http1_1, "serialized request has \(parsed.headers)")
    check(parsed.target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "target \(parsed.target)")
    check(parser.next() == .end && parser.next() == .needMoreData && parser.isIdle, "more than one request")
}

/// FNV-1a, so every choice below depends on the whole input.
func hash(_ input: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in input { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// Tight limits, so that short inputs reach every limit check.
let smallLimits = HTTPResponseParser.Limits(maxStatusLineLength: 64, maxHeaderBlockLength: 256, maxHeaderCount: 8,
                                            maxChunkLineLength: 32, maxBodyLength: 512)

func events(_ input: [UInt8], _ options: Options, chunks: [Range<Int>], maxBodyBytes: Int = .max) -> [Event] {
    var run = Run(options, maxBodyBytes: maxBodyBytes)
    for chunk in chunks { run.feed(input[chunk]) }
    if options.close { run.close() }
    check(run.failed || run.parser.totalBytesFed == input.count, "fed \(run.parser.totalBytesFed) of \(input.count)")
    return run.events
}

/// Receiving bodies directly in `chunkSize`s; as the client, directly into its room only.
func directEvents(_ input: [UInt8], _ options: Options, chunkSize: Int, clientRoom: Int? = nil) -> [Event] {
    var run = Run(options, clientRoom: clientRoom)
    var offset = 0
    while offset < input.count && !run.failed {
        if run.receiveDirectly(input, &offset, upTo: min(chunkSize, clientRoom ?? .max)) { continue }
        let end = min(input.count, offset + chunkSize)
        run.feed(input[offset..<end])
        offset = end
    }
    if options.close { run.close() }
    return run.events
}

func chunks(_ count: Int, size: Int) -> [Range<Int>] {
    stride(from: 0, to: count, by: size).map { $0..<min(count, $0 + size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = Array(UnsafeRawBufferPointer(start: start, count: count))
    let h = hash(input)
    let split = Int(h % UInt64(count + 1))
    let chunkSize = Int((h >> 16) % 13) + 1
    let directChunk = [1, 3, 7, 64, max(1, count)][Int((h >> 24) % 5)]
    let maxBodyBytes = Int((h >> 32) % 9) + 1
    let clientChunk = [1, 2, 5, 64, max(1, count)][Int((h >> 48) % 5)]
    let clientRoom = Int((h >> 52) % 7) + 1
    for limits in [HTTPResponseParser.Limits(), smallLimits] {
        let options = Options(limits: limits, headMask: (h >> 40) & (h >> 44), close: (h >> 36) & 1 == 1)
        let whole = events(input, options, chunks: [0..<count])
        check(events(input, options, chunks: [0..<split, split..<count]) == whole, "split at \(split) differs")
        check(events(input, options, chunks: chunks(count, size: chunkSize), maxBodyBytes: maxBodyBytes) == whole,
              "chunks of \(chunkSize), slices of \(maxBodyBytes) differ")
        check(directEvents(input, options, chunkSize: directChunk) == whole, "direct receiving in \(directChunk)s differs")
        check(directEvents(input, options, chunkSize: clientChunk, clientRoom: clientRoom) == whole,
              "as the client (receives of \(clientChunk), room \(clientRoom)) differs")
        // Closing only ever adds the last events: an until-close end, or truncated.
        var other = options
        other.close.toggle()
        let (open, closed) = options.close ? (events(input, other, chunks: [0..<count]), whole)
                                           : (whole, events(input, other, chunks: [0..<count]))
        check(closed.starts(with: open) && closed.count <= open.count + 1, "closing changed earlier events")
    }
    requests(input)
    return 0
}

import Testing
@testable import HTTPCore

/// A response parse event with body parts merged, so results compare equal however input was split.
enum ResponseEvent: Equatable, CustomStringConvertible {
    case head(HTTPResponseHead, HTTPResponseBodyFraming)
    case body([UInt8])
    case end(keepAlive: Bool)
    case error(HTTPResponseParseError)

    var description: String {
        switch self {
        case .head(let h, let f): return "head(\(h.status) \(f))"
        case .body(let b): return "body(\(String(decoding: b, as: UTF8.self)))"
        case .end(let k): return "end(keepAlive: \(k))"
        case .error(let e): return "error(\(e))"
        }
    }
}

/// How a test drives the parser: which responses answer HEAD (by position), whether the
/// server closes after the last byte, and the most body bytes taken per call.
struct ResponseRunOptions {
    var limits = HTTPResponseParser.Limits()
    var headResponses: Set<Int> = []
    var close = false
    var maxBodyBytes = Int.max
}

extension Array where Element == ResponseEvent {
    mutating func appendMerging(_ event: ResponseEvent) {
        if case .body(let part) = event, case .body(let previous)? = last {
            self[count - 1] = .body(previous + part)
        } else {
            append(event)
        }
    }

    var endCount: Int { reduce(0) { if case .end = $1 { return $0 + 1 } else { return $0 } } }
}

/// Takes every event the parser can give now; true when it stopped at an error.
func drainResponses(_ parser: inout HTTPResponseParser, into events: inout [ResponseEvent],
                    options: ResponseRunOptions) -> Bool {
    while true {
        parser.nextResponseIsToHEAD = options.headResponses.contains(events.endCount)
        let before = parser.totalBytesConsumed
        let result = parser.next(maxBodyBytes: options.maxBodyBytes)
        #expect(parser.totalBytesConsumed >= before)
        #expect(parser.totalBytesConsumed <= parser.totalBytesFed)
        switch result {
        case .head(let head, let framing): events.append(.head(head, framing))
        case .body(let part):
            #expect(!part.isEmpty && part.count <= options.maxBodyBytes)
            events.appendMerging(.body(Array(part)))
        case .end(let keepAlive): events.append(.end(keepAlive: keepAlive))
        case .needMoreData:
            #expect(parser.totalBytesConsumed + parser.bufferedByteCount == parser.totalBytesFed)
            return false
        case .error(let error):
            events.append(.error(error))
            // Sticky, whatever comes next.
            #expect(parser.next() == .error(error))
            parser.feed(bytes("HTTP/1.1 204 No Content\r\n\r\n"))
            #expect(parser.next() == .error(error))
            #expect(parser.error == error)
            return true
        }
    }
}

/// Feeds the chunks in order, draining the parser after each, and records events.
func runResponses(_ chunks: [ArraySlice<UInt8>], _ options: ResponseRunOptions) -> [ResponseEvent] {
    var parser = HTTPResponseParser(limits: options.limits)
    var events: [ResponseEvent] = []
    for chunk in chunks {
        parser.feed(chunk)
        if drainResponses(&parser, into: &events, options: options) { return events }
    }
    if options.close {
        parser.connectionClosed()
        _ = drainResponses(&parser, into: &events, options: options)
    }
    return events
}

/// Like a client receiving bodies with recv(2) into its own buffer: whenever the parser offers
/// ``HTTPResponseParser/directBodyBytes`` the bytes are taken straight from `input` (at most
/// `chunkSize` at a time), otherwise the next `chunkSize` bytes are fed.
func runResponsesDirect(_ input: [UInt8], chunkSize: Int, _ options: ResponseRunOptions) -> [ResponseEvent] {
    var parser = HTTPResponseParser(limits: options.limits)
    var events: [ResponseEvent] = []
    var offset = 0
    while true {
        if drainResponses(&parser, into: &events, options: options) { return events }
        if offset == input.count { break }
        if let direct = parser.directBodyBytes {
            let n = Int(min(direct, Int64(min(chunkSize, input.count - offset))))
            events.appendMerging(.body(Array(input[offset..<(offset + n)])))
            parser.bodyReceivedDirectly(n)
            offset += n
        } else {
            let end = min(input.count, offset + chunkSize)
            parser.feed(input[offset..<end])
            offset = end
        }
    }
    #expect(parser.totalBytesFed == input.count)
    if options.close {
        parser.connectionClosed()
        #expect(parser.directBodyBytes == nil)
        _ = drainResponses(&parser, into: &events, options: options)
    }
    return events
}

/// Parses the input whole, split at every boundary, one byte at a time, with small body
/// takes, and receiving bodies directly; all must agree.
@discardableResult
func parseResponses(_ input: [UInt8], _ options: ResponseRunOptions = .init(),
                    sourceLocation: SourceLocation = #_sourceLocation) -> [ResponseEvent] {
    let whole = runResponses([input[...]], options)
    let boundaries = (1..<max(1, input.count)).filter { k in
        input.count <= 2048 || k < 512 || k > input.count - 512 || k % 61 == 0
    }
    for k in boundaries {
        let split = runResponses([input[..<k], input[k...]], options)
        #expect(split == whole, "split at \(k)", sourceLocation: sourceLocation)
        if split != whole { break }
    }
    let byteAtATime = runResponses(input.indices.map { input[$0...$0] }, options)
    #expect(byteAtATime == whole, "byte at a time", sourceLocation: sourceLocation)
    var small = options
    small.maxBodyBytes = 3
    #expect(runResponses([input[...]], small) == whole, "maxBodyBytes 3", sourceLocation: sourceLocation)
    for chunkSize in [1, 2, 5, 64, max(1, input.count)] {
        #expect(runResponsesDirect(input, chunkSize: chunkSize, options) == whole,
                "direct receive, chunks of \(chunkSize)", sourceLocation: sourceLocation)
    }
    return whole
}

@discardableResult
func parseResponses(_ input: String, _ options: ResponseRunOptions = .init(),
                    sourceLocation: SourceLocation = #_sourceLocation) -> [ResponseEvent] {
    parseResponses(bytes(input), options, sourceLocation: sourceLocation)
}

/// The first head of an input expected to parse cleanly.
func responseHead(_ input: String, _ options: ResponseRunOptions = .init(),
                  sourceLocation: SourceLocation = #_sourceLocation) -> (HTTPResponseHead, HTTPResponseBodyFraming)? {
    let events = parseResponses(input, options, sourceLocation: sourceLocation)
    guard case .head(let h, let f)? = events.first else {
        Issue.record("expected a head, got \(events)", sourceLocation: sourceLocation)
        return nil
    }
    return (h, f)
}

/// The error an input produces (nil if none).
func responseError(_ input: String, _ options: ResponseRunOptions = .init(),
                   sourceLocation: SourceLocation = #_sourceLocation) -> HTTPResponseParseError? {
    responseError(bytes(input), options, sourceLocation: sourceLocation)
}

func responseError(_ input: [UInt8], _ options: ResponseRunOptions = .init(),
                   sourceLocation: SourceLocation = #_sourceLocation) -> HTTPResponseParseError? {
    for event in parseResponses(input, options, sourceLocation: sourceLocation) {
        if case .error(let e) = event { return e }
    }
    return nil
}

/// A head as the parser builds it, for comparisons.
func responseHead(_ status: Int, _ reason: String, version: HTTPVersion = .http1_1,
                  _ headers: [(String, String)] = []) -> HTTPResponseHead {
    HTTPResponseHead(status: status, reason: reason, version: version, headers: HTTPHeaders(headers))
}

import Testing
@testable import HTTPCore

/// A parse event with body parts merged, so results compare equal however input was split.
enum Event: Equatable, CustomStringConvertible {
    case request(HTTPRequestHead)
    case body([UInt8])
    case end
    case error(HTTPParseError)

    var description: String {
        switch self {
        case .request(let h): return "request(\(h.method) \(h.target))"
        case .body(let b): return "body(\(String(decoding: b, as: UTF8.self)))"
        case .end: return "end"
        case .error(let e): return "error(\(e))"
        }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Feeds the chunks in order, draining the parser after each, and records events.
func run(_ chunks: [ArraySlice<UInt8>], limits: HTTPRequestParser.Limits = .init()) -> [Event] {
    var parser = HTTPRequestParser(limits: limits)
    var events: [Event] = []
    for chunk in chunks {
        parser.feed(chunk)
        drain: while true {
            switch parser.next() {
            case .request(let head): events.append(.request(head))
            case .body(let part):
                if case .body(let previous)? = events.last {
                    events[events.count - 1] = .body(previous + part)
                } else {
                    events.append(.body(part))
                }
            case .end: events.append(.end)
            case .needMoreData: break drain
            case .error(let error):
                events.append(.error(error))
                // The error is sticky, whatever comes next.
                #expect(parser.next() == .error(error))
                parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
                #expect(parser.next() == .error(error))
                #expect(parser.error == error)
                return events
            }
        }
        #expect(parser.totalBytesConsumed <= parser.totalBytesFed)
    }
    return events
}

/// Parses the input whole, split at every boundary, and one byte at a time; all must agree.
func parse(_ input: [UInt8], limits: HTTPRequestParser.Limits = .init(),
           sourceLocation: SourceLocation = #_sourceLocation) -> [Event] {
    let whole = run([input[...]], limits: limits)
    // Every boundary for normal inputs; for the multi-kilobyte limit tests, every boundary
    // near the ends and a stride through the middle keeps the debug-build suite quick.
    let boundaries = (1..<max(1, input.count)).filter { k in
        input.count <= 2048 || k < 512 || k > input.count - 512 || k % 61 == 0
    }
    for k in boundaries {
        let split = run([input[..<k], input[k...]], limits: limits)
        #expect(split == whole, "split at \(k)", sourceLocation: sourceLocation)
        if split != whole { break }
    }
    let byteAtATime = run(input.indices.map { input[$0...$0] }, limits: limits)
    #expect(byteAtATime == whole, "byte at a time", sourceLocation: sourceLocation)
    return whole
}

func parse(_ input: String, limits: HTTPRequestParser.Limits = .init(),
           sourceLocation: SourceLocation = #_sourceLocation) -> [Event] {
    parse(bytes(input), limits: limits, sourceLocation: sourceLocation)
}

/// The single request head of an input expected to parse cleanly.
func parseHead(_ input: String, sourceLocation: SourceLocation = #_sourceLocation) -> HTTPRequestHead? {
    let events = parse(input, sourceLocation: sourceLocation)
    guard case .request(let h)? = events.first else {
        Issue.record("expected a request, got \(events)", sourceLocation: sourceLocation)
        return nil
    }
    return h
}

/// The error an input produces (nil if none).
func parseError(_ input: String, limits: HTTPRequestParser.Limits = .init(),
                sourceLocation: SourceLocation = #_sourceLocation) -> HTTPParseError? {
    parseError(bytes(input), limits: limits, sourceLocation: sourceLocation)
}

func parseError(_ input: [UInt8], limits: HTTPRequestParser.Limits = .init(),
                sourceLocation: SourceLocation = #_sourceLocation) -> HTTPParseError? {
    for event in parse(input, limits: limits, sourceLocation: sourceLocation) {
        if case .error(let e) = event { return e }
    }
    return nil
}

// libFuzzer entry point for HTTPCore's request parser. The file is deliberately not main.swift:
// libFuzzer supplies main(), and top-level code (which would initialise globals) never runs.
//
// Each input is parsed whole, one byte at a time, and in chunks whose size comes from the
// input itself; the three event streams must agree. Along the way we check the parser's
// invariants and run every parsed head through the helpers a server would call.
import HTTPCore

/// An event with body parts merged, so streams from different splits compare equal.
enum Event: Equatable {
    case request(HTTPRequestHead)
    case body([UInt8])
    case end
    case error(HTTPParseError)
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

func run(_ input: [UInt8], chunkSize: Int, limits: HTTPRequestParser.Limits) -> [Event] {
    var parser = HTTPRequestParser(limits: limits)
    var events: [Event] = []
    var offset = 0
    // Every event but .end consumes at least one byte, and .end follows a request or body:
    // more calls than this means the parser is spinning.
    let callBudget = 3 * input.count + 8
    var calls = 0
    while offset < input.count {
        let end = min(input.count, offset + chunkSize)
        parser.feed(input[offset..<end])
        offset = end
        drain: while true {
            calls += 1
            check(calls <= callBudget, "next() called \(calls) times for \(input.count) bytes")
            let before = parser.totalBytesConsumed
            let result = parser.next()
            check(parser.totalBytesConsumed >= before, "consumed count went backwards")
            check(parser.totalBytesConsumed <= parser.totalBytesFed, "consumed more than fed")
            switch result {
            case .request(let head):
                exercise(head)
                events.append(.request(head))
            case .body(let part):
                check(!part.isEmpty, "empty body part")
                if case .body(let previous)? = events.last {
                    events[events.count - 1] = .body(previous + part)
                } else {
                    events.append(.body(part))
                }
            case .end:
                events.append(.end)
            case .needMoreData:
                check(parser.totalBytesConsumed + parser.bufferedByteCount == parser.totalBytesFed,
                      "bytes lost while waiting for more")
                break drain
            case .error(let error):
                check((400...599).contains(error.status) && !error.reason.isEmpty, "bad status for \(error)")
                events.append(.error(error))
                // Once failed, always failed.
                check(parser.next() == .error(error), "error not sticky")
                parser.feed(Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
                check(parser.next() == .error(error), "error not sticky after feed")
                check(parser.totalBytesConsumed <= parser.totalBytesFed, "consumed more than fed after error")
                return events
            }
        }
    }
    return events
}

/// What a server does with a head: split and decode the target, evaluate conditionals, answer.
func exercise(_ head: HTTPRequestHead) {
    _ = try? PercentDecoding.decode(head.path)
    if let query = head.query { _ = try? HTTPQueryParameters(parsing: query) }
    let etag = HTTPETag(opaqueTag: "fuzz")
    for length in [0, 1, 100] {
        let decision = HTTPResponseDecision.evaluate(request: head, etag: etag, lastModified: 784_111_777,
                                                     contentLength: length)
        if case .partial(let range) = decision {
            check(range.lowerBound >= 0 && range.upperBound < length, "range \(range) outside 0..<\(length)")
        }
        if let value = head.headers["Range"] {
            switch HTTPByteRanges.select(rangeHeader: value, contentLength: length) {
            case .partial(let r): check(r.lowerBound >= 0 && r.upperBound < length, "partial out of bounds")
            case .multiple(let rs): check(rs.allSatisfy { $0.lowerBound >= 0 && $0.upperBound < length }, "multiple out of bounds")
            case .full, .unsatisfiable: break
            }
        }
    }
    for (name, value) in head.headers {
        _ = HTTPDate.parse(value)
        _ = HTTPETagCondition(parsing: value)
        check(head.headers.contains(name), "header \(name) not found by name")
    }
    var response = HTTPResponseHead(status: 200)
    response.setConnection(keepAlive: head.keepAlive, requestVersion: head.version)
    for (name, value) in head.headers { response.headers.add(name: name, value: value) }
    // A serialized head must parse back as a well-formed block: every line ends in CRLF.
    let bytes = response.serialized()
    check(bytes.suffix(4).elementsEqual([13, 10, 13, 10]), "serialized head not terminated")
    for i in bytes.indices where bytes[i] == 10 { check(i > 0 && bytes[i - 1] == 13, "bare LF in serialized head") }
}

/// Tight limits, so that short inputs reach every limit check.
let smallLimits = HTTPRequestParser.Limits(maxRequestLineLength: 64, maxHeaderBlockLength: 256, maxHeaderCount: 8,
                                           maxBodyLength: 512, maxChunkLineLength: 32)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = Array(UnsafeRawBufferPointer(start: start, count: count))
    for limits in [HTTPRequestParser.Limits(), smallLimits] {
        let whole = run(input, chunkSize: max(1, input.count), limits: limits)
        let bytewise = run(input, chunkSize: 1, limits: limits)
        check(whole == bytewise, "byte-at-a-time differs from whole input")
        let chunk = Int(input.last ?? 0) % 13 + 2
        check(run(input, chunkSize: chunk, limits: limits) == whole, "chunks of \(chunk) differ from whole input")
    }
    return 0
}

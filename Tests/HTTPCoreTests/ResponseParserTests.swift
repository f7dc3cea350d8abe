import Testing
@testable import HTTPCore

@Suite struct ResponseFramingTests {
    @Test func contentLength() {
        #expect(parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == [
            .head(responseHead(200, "OK", [("Content-Length", "5")]), .contentLength(5)),
            .body(bytes("hello")), .end(keepAlive: true),
        ])
    }

    @Test func zeroContentLengthIsNoBody() {
        #expect(parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == [
            .head(responseHead(200, "OK", [("Content-Length", "0")]), .none), .end(keepAlive: true),
        ])
    }

    @Test func chunked() {
        let events = parseResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        #expect(events.dropFirst() == [.body(bytes("hello world")), .end(keepAlive: true)])
        guard case .head(_, let framing)? = events.first else { Issue.record("\(events)"); return }
        #expect(framing == .chunked)
    }

    @Test func untilCloseEndsWhenTheServerCloses() {
        let input = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length"
        let open = parseResponses(input)
        #expect(open == [.head(responseHead(200, "OK", [("Content-Type", "text/plain")]), .untilClose),
                         .body(bytes("no length"))])
        #expect(parseResponses(input, .init(close: true)) == open + [.end(keepAlive: false)])
        // Even an empty until-close body, and even when the server asked for keep-alive.
        #expect(parseResponses("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", .init(close: true)).dropFirst()
                == [.end(keepAlive: false)])
    }

    @Test func untilCloseWithBytesStillBuffered() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.0 200 OK\r\n\r\nabcdef"))
        parser.connectionClosed()
        guard case .head(_, .untilClose) = parser.next() else { Issue.record("no head"); return }
        #expect(parser.next(maxBodyBytes: 4) == .body(bytes("abcd")[...]))
        #expect(parser.next() == .body(bytes("ef")[...]))
        #expect(parser.next() == .end(keepAlive: false))
        #expect(parser.next() == .needMoreData)
        #expect(parser.isIdle)
    }

    @Test(arguments: [
        ("Transfer-Encoding: gzip", HTTPResponseBodyFraming.untilClose, false),
        ("Transfer-Encoding: chunked, gzip", .untilClose, false),
        ("Transfer-Encoding: gzip, chunked", .chunked, true),
        ("Transfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED", .chunked, true),
        ("Transfer-Encoding: chunked, ", .chunked, true),
        ("Transfer-Encoding:", .untilClose, false),
        // Transfer-Encoding wins over Content-Length, which then spoils the connection.
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", .chunked, false),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked", .chunked, false),
        ("Content-Length: nonsense\r\nTransfer-Encoding: chunked", .chunked, false),
        ("Transfer-Encoding: identity\r\nContent-Length: 5", .untilClose, false),
    ])
    func transferEncoding(_ header: String, _ framing: HTTPResponseBodyFraming, _ keepAlive: Bool) {
        let body = framing == .chunked ? "3\r\nabc\r\n0\r\n\r\n" : "abc"
        let events = parseResponses("HTTP/1.1 200 OK\r\n\(header)\r\n\r\n\(body)", .init(close: true))
        guard case .head(_, let f)? = events.first else { Issue.record("\(events)"); return }
        #expect(f == framing)
        #expect(events.dropFirst() == [.body(bytes("abc")), .end(keepAlive: keepAlive)])
    }

    @Test func chunkedOnHTTP10IsReadThenClosed() {
        #expect(parseResponses("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
                .dropFirst() == [.body(bytes("x")), .end(keepAlive: false)])
    }

    @Test(arguments: [204, 304])
    func noBodyStatusesIgnoreFramingHeaders(_ status: Int) {
        for header in ["Content-Length: 10", "Transfer-Encoding: chunked", "Content-Length: 1, 2", "Content-Length: x", ""] {
            let events = parseResponses("HTTP/1.1 \(status) X\r\n\(header.isEmpty ? "" : header + "\r\n")\r\n")
            #expect(events.count == 2, "\(header)")
            guard case .head(let head, .none)? = events.first else { Issue.record("\(events)"); continue }
            #expect(head.status == status)
            #expect(events.last == .end(keepAlive: true))
        }
    }

    @Test func responseToHEAD() {
        let input = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        let events = parseResponses(input, .init(headResponses: [0], close: true))
        #expect(events == [
            .head(responseHead(200, "OK", [("Content-Length", "1000000")]), .none), .end(keepAlive: true),
            .head(responseHead(200, "OK", [("Content-Length", "2")]), .contentLength(2)), .body(bytes("hi")),
            .end(keepAlive: true),
        ])
        // A HEAD response may announce more than maxBodyLength: it has no body.
        #expect(responseError(input, .init(limits: .init(maxBodyLength: 10), headResponses: [0])) == nil)
        #expect(parseResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                               .init(limits: .init(maxBodyLength: 10), headResponses: [0]))
                == [.head(responseHead(200, "OK", [("Transfer-Encoding", "chunked")]), .none), .end(keepAlive: true)])
    }

    @Test func headFlagIsClearedAtTheEndOfItsResponse() {
        var parser = HTTPResponseParser()
        parser.nextResponseIsToHEAD = true
        parser.feed(bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
        guard case .head(_, .none) = parser.next() else { Issue.record("HEAD response with a body"); return }
        #expect(parser.nextResponseIsToHEAD)
        #expect(parser.next() == .end(keepAlive: true))
        #expect(!parser.nextResponseIsToHEAD)
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!"))
        guard case .head(_, .contentLength(1)) = parser.next() else { Issue.record("flag stayed"); return }
    }

    @Test func informationalResponsesAreSkipped() {
        let input = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
                    "HTTP/1.1 102 Processing\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        #expect(parseResponses(input) == [
            .head(responseHead(200, "OK", [("Content-Length", "2")]), .contentLength(2)), .body(bytes("hi")),
            .end(keepAlive: true),
        ])
    }

    @Test func closeAfterAnInformationalResponseTruncates() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 100 Continue\r\n\r\n"))
        #expect(parser.next() == .needMoreData)
        #expect(!parser.isIdle)
        #expect(parser.bufferedByteCount == 0)
        parser.connectionClosed()
        #expect(parser.next() == .error(.truncated))
    }

    @Test func switchingProtocolsIsAnError() {
        #expect(responseError("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") == .switchingProtocols)
        // Known from the status line alone.
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 101 Switching Protocols\r\n"))
        #expect(parser.next() == .error(.switchingProtocols))
    }
}

@Suite struct ResponseKeepAliveTests {
    @Test(arguments: [
        ("HTTP/1.1", "", true),
        ("HTTP/1.1", "Connection: close\r\n", false),
        ("HTTP/1.1", "Connection: Upgrade, CLOSE\r\n", false),
        ("HTTP/1.1", "Connection: keep-alive\r\nConnection: close\r\n", false),
        ("HTTP/1.1", "Connection: keep-alive\r\n", true),
        ("HTTP/1.0", "", false),
        ("HTTP/1.0", "Connection: keep-alive\r\n", true),
        ("HTTP/1.0", "Connection: Keep-Alive\r\n", true),
        ("HTTP/1.0", "Connection: keep-alive, close\r\n", false),
        ("HTTP/1.0", "Connection: close\r\n", false),
    ])
    func keepAlive(_ version: String, _ connection: String, _ expected: Bool) {
        for framing in ["Content-Length: 1\r\n\r\nx", "Content-Length: 0\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"] {
            let events = parseResponses("\(version) 200 OK\r\n\(connection)\(framing)")
            let chunkedOn10 = version == "HTTP/1.0" && framing.hasPrefix("Transfer")
            #expect(events.last == .end(keepAlive: expected && !chunkedOn10), "\(framing)")
        }
        let noBody = parseResponses("\(version) 304 Not Modified\r\n\(connection)\r\n")
        #expect(noBody.last == .end(keepAlive: expected))
    }
}

@Suite struct ResponseStatusLineTests {
    @Test(arguments: [
        ("HTTP/1.1 200 OK", 200, "OK", HTTPVersion.http1_1),
        ("HTTP/1.1 404 Not Found", 404, "Not Found", .http1_1),
        ("HTTP/1.0 200 OK", 200, "OK", .http1_0),
        ("HTTP/1.1 200", 200, "", .http1_1),
        ("HTTP/1.1 200 ", 200, "", .http1_1),
        ("HTTP/1.1 599 custom\treason  ", 599, "custom\treason  ", .http1_1),
        ("HTTP/1.1 200 Très bien", 200, "Très bien", .http1_1),
        ("HTTP/1.1 999 X", 999, "X", .http1_1),
        ("HTTP/1.1 100  Continue", 100, " Continue", .http1_1),
    ])
    func statusLines(_ line: String, _ status: Int, _ reason: String, _ version: HTTPVersion) {
        // A 100 is skipped, so each case is followed by a final 204 and only the first head is compared.
        let events = parseResponses("\(line)\r\nContent-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        guard case .head(let head, _)? = events.first else { Issue.record("\(events)"); return }
        if status == 100 {
            #expect(head.status == 204)
        } else {
            #expect(head.status == status)
            #expect(head.reason == reason)
            #expect(head.version == version)
        }
    }

    @Test(arguments: [
        ("ICY 200 OK", HTTPResponseParseError.invalidStatusLine),
        ("http/1.1 200 OK", .invalidStatusLine),
        ("HTTP/1.1 20 OK", .invalidStatusLine),
        ("HTTP/1.1 2000 OK", .invalidStatusLine),
        ("HTTP/1.1  200 OK", .invalidStatusLine),
        ("HTTP/1.1 200OK", .invalidStatusLine),
        ("HTTP/1.1\t200 OK", .invalidStatusLine),
        ("HTTP/1.1 20x OK", .invalidStatusLine),
        ("HTTP/1.1 099 Low", .invalidStatusLine),
        ("HTTP/1.1 000", .invalidStatusLine),
        ("HTTP/11 200 OK", .invalidStatusLine),
        ("HTTP/1 200 OK", .invalidStatusLine),
        ("HTTP/1.1", .invalidStatusLine),
        ("HTTP/", .invalidStatusLine),
        ("", .invalidStatusLine),
        (" HTTP/1.1 200 OK", .invalidStatusLine),
        ("HTTP/1.1 200 O\u{0}K", .invalidStatusLine),
        ("HTTP/1.1 200 OK\u{7F}", .invalidStatusLine),
        ("HTTP/2.0 200 OK", .unsupportedVersion),
        ("HTTP/1.2 200 OK", .unsupportedVersion),
        ("HTTP/0.9 200 OK", .unsupportedVersion),
        ("HTTP/1.1 200 O\rK", .invalidLineEnding),
    ])
    func badStatusLines(_ line: String, _ error: HTTPResponseParseError) {
        #expect(responseError("\(line)\r\nContent-Length: 0\r\n\r\n") == error)
    }

    @Test func garbageFailsBeforeAnyLineEnds() {
        for garbage in ["X", "HTTQ", "HTTP1", "\u{16}\u{3}\u{1}"] {
            var parser = HTTPResponseParser()
            parser.feed(bytes(garbage))
            #expect(parser.next() == .error(.invalidStatusLine), "\(garbage)")
        }
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/"))
        #expect(parser.next() == .needMoreData)
    }

    @Test func emptyLinesBeforeAStatusLineAreSkipped() {
        #expect(parseResponses("\r\n\n\r\nHTTP/1.1 204 No Content\r\n\r\n") == [
            .head(responseHead(204, "No Content"), .none), .end(keepAlive: true),
        ])
        #expect(responseError("\r\rHTTP/1.1 204 No Content\r\n\r\n") == .invalidLineEnding)
    }

    @Test func bareLineFeeds() {
        #expect(parseResponses("HTTP/1.1 200 OK\nContent-Length: 3\nX: y\r\n\nabc") == [
            .head(responseHead(200, "OK", [("Content-Length", "3"), ("X", "y")]), .contentLength(3)),
            .body(bytes("abc")), .end(keepAlive: true),
        ])
        #expect(parseResponses("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n2;x=y\r\nde\r\n0\nT: 1\n\n").dropFirst()
                == [.body(bytes("abcde")), .end(keepAlive: true)])
    }
}

@Suite struct ResponseHeaderTests {
    @Test func valuesAreTrimmedAndRepeatsKept() {
        guard let (head, _) = responseHead("HTTP/1.1 204 No Content\r\nSet-Cookie:  a=1 \r\nset-cookie:\tb=2\r\nEmpty:\r\n\r\n")
        else { return }
        #expect(head.headers.values(for: "Set-Cookie") == ["a=1", "b=2"])
        #expect(head.headers["empty"] == "")
        #expect(head.headers.count == 3)
    }

    @Test func obsoleteFoldingBecomesOneSpace() {
        guard let (head, _) = responseHead(
            "HTTP/1.1 204 No Content\r\nX-Long: one  \r\n   two\r\n\tthree\r\nX-Empty:\r\n  later\r\nX-Blank: v\r\n \t \r\nY: z\r\n\r\n")
        else { return }
        #expect(head.headers["X-Long"] == "one two three")
        #expect(head.headers["X-Empty"] == "later")
        #expect(head.headers["X-Blank"] == "v")
        #expect(head.headers["Y"] == "z")
        #expect(head.headers.count == 4)
    }

    @Test func foldedContentLengthIsRead() {
        #expect(parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 2,\r\n 2\r\n\r\nhi").dropFirst()
                == [.body(bytes("hi")), .end(keepAlive: true)])
    }

    @Test func continuationLinesAreNotCountedAsFields() {
        let limits = HTTPResponseParser.Limits(maxHeaderCount: 1)
        #expect(responseError("HTTP/1.1 204 No Content\r\nA: 1\r\n 2\r\n 3\r\n\r\n", .init(limits: limits)) == nil)
        #expect(responseError("HTTP/1.1 204 No Content\r\nA: 1\r\nB: 2\r\n\r\n", .init(limits: limits)) == .tooManyHeaders)
    }

    @Test(arguments: [
        ("Bad Name: x", HTTPResponseParseError.invalidHeaderField),
        ("X : y", .invalidHeaderField),
        ("X\t: y", .invalidHeaderField),
        (": x", .invalidHeaderField),
        ("NoColon", .invalidHeaderField),
        ("X\u{1}: y", .invalidHeaderField),
        ("(X): y", .invalidHeaderField),
        ("X: a\u{0}b", .invalidHeaderField),
        ("X: a\u{7F}", .invalidHeaderField),
        ("X: a\u{B}", .invalidHeaderField),
        ("X: a\rb", .invalidLineEnding),
        ("X: a\r\r", .invalidLineEnding),
        ("X: a\r\n \u{1}", .invalidHeaderField),
    ])
    func badFields(_ line: String, _ error: HTTPResponseParseError) {
        #expect(responseError("HTTP/1.1 204 No Content\r\n\(line)\r\n\r\n") == error)
    }

    @Test func whitespaceBeforeTheFirstFieldIsRefused() {
        #expect(responseError("HTTP/1.1 204 No Content\r\n X: y\r\n\r\n") == .invalidHeaderField)
    }
}

@Suite struct ResponseContentLengthTests {
    @Test(arguments: ["Content-Length: 3, 3", "Content-Length: 3\r\nContent-Length: 3", "content-length: 003",
                      "Content-Length:3", "Content-Length: 3 , 3\r\ncontent-LENGTH: 3"])
    func equalValuesAgree(_ header: String) {
        #expect(parseResponses("HTTP/1.1 200 OK\r\n\(header)\r\n\r\nabc").dropFirst()
                == [.body(bytes("abc")), .end(keepAlive: true)])
    }

    @Test(arguments: [
        ("Content-Length: 5, 6", HTTPResponseParseError.conflictingContentLength),
        ("Content-Length: 5\r\nContent-Length: 6", .conflictingContentLength),
        ("Content-Length: +5", .invalidContentLength),
        ("Content-Length: -5", .invalidContentLength),
        ("Content-Length: 5a", .invalidContentLength),
        ("Content-Length: 0x5", .invalidContentLength),
        ("Content-Length: 5 5", .invalidContentLength),
        ("Content-Length:", .invalidContentLength),
        ("Content-Length: 5,", .invalidContentLength),
        ("Content-Length: 99999999999999999999999", .invalidContentLength),
    ])
    func badValues(_ header: String, _ error: HTTPResponseParseError) {
        #expect(responseError("HTTP/1.1 200 OK\r\n\(header)\r\n\r\nhello") == error)
    }

    @Test func largestLength() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n"))
        guard case .head(_, .contentLength(Int64.max)) = parser.next() else { Issue.record("not Int64.max"); return }
        #expect(parser.directBodyBytes == Int64.max)
    }
}

@Suite struct ResponseChunkedTests {
    let prefix = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    func body(_ chunked: String, _ options: ResponseRunOptions = .init(),
              sourceLocation: SourceLocation = #_sourceLocation) -> [ResponseEvent] {
        Array(parseResponses(prefix + chunked, options, sourceLocation: sourceLocation).dropFirst())
    }

    @Test func emptyBody() {
        #expect(body("0\r\n\r\n") == [.end(keepAlive: true)])
    }

    @Test func hexSizesAnyCaseAndLeadingZeros() {
        let data = String(repeating: "z", count: 26)
        #expect(body("1a\r\n\(data)\r\n0\r\n\r\n") == [.body(bytes(data)), .end(keepAlive: true)])
        #expect(body("1A\r\n\(data)\r\n0\r\n\r\n") == [.body(bytes(data)), .end(keepAlive: true)])
        #expect(body("0000000000000000000000001A\r\n\(data)\r\n000\r\n\r\n") == [.body(bytes(data)), .end(keepAlive: true)])
    }

    @Test func extensionsAreSkipped() {
        #expect(body("5;name=value\r\nhello\r\n5 ; a ; b=\"q s\"\r\nworld\r\n0;last\r\n\r\n")
                == [.body(bytes("helloworld")), .end(keepAlive: true)])
    }

    @Test func trailersAreCheckedAndDropped() {
        #expect(body("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n folded\r\n\r\n") == [.body(bytes("hello")), .end(keepAlive: true)])
    }

    @Test(arguments: [
        ("x\r\nhello\r\n0\r\n\r\n", HTTPResponseParseError.invalidChunkSize),
        ("\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("-5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("+5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        (" 5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("0x5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5 x\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;a\u{0}b\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\rX\nhello\r\n0\r\n\r\n", .invalidLineEnding),
        ("5\r\nhelloXX0\r\n\r\n", .invalidChunkTerminator),
        ("5\r\nhello\rX0\r\n\r\n", .invalidLineEnding),
        ("3\r\nhello\r\n0\r\n\r\n", .invalidChunkTerminator),
        ("8000000000000000\r\n", .bodyTooLarge),
        ("0\r\nBad Trailer: 1\r\n\r\n", .invalidHeaderField),
        ("0\r\n folded\r\n\r\n", .invalidHeaderField),
        ("0\r\nX: a\u{0}\r\n\r\n", .invalidHeaderField),
        ("0\r\nX: a\rb\r\n\r\n", .invalidLineEnding),
    ])
    func badChunks(_ chunked: String, _ error: HTTPResponseParseError) {
        #expect(body(chunked).last == .error(error))
    }

    @Test func chunkLineLimit() {
        let limits = HTTPResponseParser.Limits(maxChunkLineLength: 10)
        // "5;abcdef\r\n" is exactly 10 bytes.
        #expect(body("5;abcdef\r\nhello\r\n0\r\n\r\n", .init(limits: limits)) == [.body(bytes("hello")), .end(keepAlive: true)])
        #expect(body("5;abcdefg\r\nhello\r\n0\r\n\r\n", .init(limits: limits)).last == .error(.chunkLineTooLong))
        // Enforced before the line ends.
        var parser = HTTPResponseParser(limits: limits)
        parser.feed(bytes(prefix + "5;abcdefg"))
        _ = parser.next()
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes("h"))
        #expect(parser.next() == .needMoreData)  // 10 bytes and no LF yet: the 11th decides
        parser.feed(bytes("i"))
        #expect(parser.next() == .error(.chunkLineTooLong))
    }

    @Test func trailerLimits() {
        let limits = HTTPResponseParser.Limits(maxHeaderBlockLength: 40, maxHeaderCount: 2)
        // "A: 1\r\nB: " + value + "\r\n\r\n" is 13 bytes and the value.
        let fits = String(repeating: "v", count: 27)
        #expect(body("0\r\nA: 1\r\nB: 2\r\n\r\n", .init(limits: limits)) == [.end(keepAlive: true)])
        #expect(body("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", .init(limits: limits)).last == .error(.tooManyHeaders))
        #expect(body("0\r\nA: 1\r\nB: \(fits)\r\n\r\n", .init(limits: limits)).last == .end(keepAlive: true))
        #expect(body("0\r\nA: 1\r\nB: \(fits)v\r\n\r\n", .init(limits: limits)).last == .error(.headerBlockTooLarge))
    }

    @Test func maxBodyLengthBoundsTheSumOfChunks() {
        let limits = HTTPResponseParser.Limits(maxBodyLength: 10)
        #expect(body("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", .init(limits: limits)).last == .end(keepAlive: true))
        #expect(body("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", .init(limits: limits)) == [.body(bytes("hello")), .error(.bodyTooLarge)])
        #expect(body("b\r\n", .init(limits: limits)) == [.error(.bodyTooLarge)])
    }

    @Test func responseAfterAChunkedBody() {
        let events = parseResponses(prefix + "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        #expect(events.count == 5)
        #expect(events.last == .end(keepAlive: true))
        guard case .head(let next, .none) = events[3] else { Issue.record("\(events)"); return }
        #expect(next.status == 204)
    }
}

@Suite struct ResponseLimitTests {
    @Test func statusLineLimit() {
        let limits = HTTPResponseParser.Limits(maxStatusLineLength: 20)
        // "HTTP/1.1 200 " + 7 = 20 bytes, not counting CRLF.
        #expect(responseError("HTTP/1.1 200 abcdefg\r\n\r\n", .init(limits: limits, close: true)) == nil)
        #expect(responseError("HTTP/1.1 200 abcdefgh\r\n\r\n", .init(limits: limits)) == .statusLineTooLong)
        var parser = HTTPResponseParser(limits: limits)
        parser.feed(bytes("HTTP/1.1 200 abcdefg"))
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes("h"))
        #expect(parser.next() == .error(.statusLineTooLong))
    }

    @Test func defaultStatusLineLimitIs8KiB() {
        let fits = "HTTP/1.1 200 " + String(repeating: "r", count: 8192 - 13) + "\r\nContent-Length: 0\r\n\r\n"
        #expect(responseError(fits) == nil)
        let over = "HTTP/1.1 200 " + String(repeating: "r", count: 8192 - 12) + "\r\nContent-Length: 0\r\n\r\n"
        var parser = HTTPResponseParser()
        parser.feed(bytes(over))
        #expect(parser.next() == .error(.statusLineTooLong))
    }

    @Test func headerBlockLimit() {
        // "X: " + value + "\r\n" + "\r\n".
        let limits = HTTPResponseParser.Limits(maxHeaderBlockLength: 100)
        #expect(responseError("HTTP/1.1 204 No Content\r\nX: " + String(repeating: "v", count: 93) + "\r\n\r\n",
                              .init(limits: limits)) == nil)
        #expect(responseError("HTTP/1.1 204 No Content\r\nX: " + String(repeating: "v", count: 94) + "\r\n\r\n",
                              .init(limits: limits)) == .headerBlockTooLarge)
        // Bare LFs count as one byte each.
        #expect(responseError("HTTP/1.1 204 No Content\nX: " + String(repeating: "v", count: 95) + "\n\n",
                              .init(limits: limits)) == nil)
        var parser = HTTPResponseParser(limits: limits)
        parser.feed(bytes("HTTP/1.1 204 No Content\r\nX: " + String(repeating: "v", count: 97)))
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes("v"))
        #expect(parser.next() == .error(.headerBlockTooLarge))
    }

    @Test func defaultHeaderLimits() {
        var many = "HTTP/1.1 204 No Content\r\n"
        for i in 0..<100 { many += "X-\(i): v\r\n" }
        #expect(responseError(many + "\r\n") == nil)
        #expect(responseError(many + "X-100: v\r\n\r\n") == .tooManyHeaders)
        var large = "HTTP/1.1 204 No Content\r\n"
        for i in 0..<40 { large += "X-\(i): " + String(repeating: "v", count: 2000) + "\r\n" }
        var parser = HTTPResponseParser()
        parser.feed(bytes(large + "\r\n"))
        #expect(parser.next() == .error(.headerBlockTooLarge))
    }

    @Test func maxBodyLengthBoundsContentLength() {
        let limits = HTTPResponseParser.Limits(maxBodyLength: 5)
        #expect(responseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", .init(limits: limits)) == nil)
        #expect(responseError("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello!", .init(limits: limits)) == .bodyTooLarge)
        // Until-close bodies are the caller's to bound.
        #expect(responseError("HTTP/1.1 200 OK\r\n\r\nhello, world", .init(limits: limits, close: true)) == nil)
    }
}

@Suite struct ResponsePipelineTests {
    static let pipelined = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
        "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes 0-2/10\r\n\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n" +
        "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n" +
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" +
        "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnah"

    @Test func responsesParseOneAfterAnother() {
        let events = parseResponses(Self.pipelined, .init(headResponses: [2]))
        #expect(events == [
            .head(responseHead(200, "OK", [("Content-Length", "5")]), .contentLength(5)), .body(bytes("hello")),
            .end(keepAlive: true),
            .head(responseHead(206, "Partial Content", [("Transfer-Encoding", "chunked"), ("Content-Range", "bytes 0-2/10")]),
                  .chunked),
            .body(bytes("abc")), .end(keepAlive: true),
            .head(responseHead(200, "OK", [("Content-Length", "42")]), .none), .end(keepAlive: true),
            .head(responseHead(304, "Not Modified", [("ETag", "\"x\"")]), .none), .end(keepAlive: true),
            .head(responseHead(404, "Not Found", [("Content-Length", "3"), ("Connection", "close")]), .contentLength(3)),
            .body(bytes("nah")), .end(keepAlive: false),
        ])
        #expect(parseResponses(Self.pipelined, .init(headResponses: [2], close: true)) == events)
    }

    @Test func strayLineEndsBetweenResponses() {
        #expect(parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n",
                               .init(close: true)).count == 5)
    }

    @Test("an idle connection's stray CRLF (or LF, or a CR whose LF is still coming) is dropped; other bytes are a response nobody asked for")
    func blankLinesOnAnIdleConnection() {
        var parser = HTTPResponseParser()
        let skipped1 = parser.skipBlankLinesBetweenResponses()
        #expect(skipped1)
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))
        guard case .head = parser.next() else { Issue.record("no head"); return }
        let skipped2 = parser.skipBlankLinesBetweenResponses()
        #expect(!skipped2, "inside a response")
        #expect(parser.next() == .body(bytes("x")[...]))
        #expect(parser.next() == .end(keepAlive: true))
        parser.feed(bytes("\r\n\n\r"))
        let skipped3 = parser.skipBlankLinesBetweenResponses()
        #expect(skipped3)
        #expect(parser.bufferedByteCount == 1, "the CR waits for its LF")
        parser.feed(bytes("\n"))
        let skipped4 = parser.skipBlankLinesBetweenResponses()
        #expect(skipped4)
        #expect(parser.bufferedByteCount == 0 && parser.isIdle)
        #expect(parser.totalBytesConsumed == parser.totalBytesFed)
        // The next response parses as usual.
        parser.feed(bytes("HTTP/1.1 204 No Content\r\n\r\n"))
        let skipped5 = parser.skipBlankLinesBetweenResponses()
        #expect(!skipped5, "a response begins")
        guard case .head(let h, .none) = parser.next() else { Issue.record("no 204"); return }
        #expect(h.status == 204)
        #expect(parser.next() == .end(keepAlive: true))
        // A CR followed by something else is not a line end.
        parser.feed(bytes("\rX"))
        let skipped6 = parser.skipBlankLinesBetweenResponses()
        #expect(!skipped6)
        #expect(parser.next() == .error(.invalidLineEnding))
    }

    @Test func idleOnlyBetweenResponses() {
        var parser = HTTPResponseParser()
        #expect(parser.isIdle)
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh"))
        #expect(!parser.isIdle)
        guard case .head = parser.next() else { Issue.record("no head"); return }
        #expect(parser.next() == .body(bytes("h")[...]))
        #expect(!parser.isIdle)
        parser.feed(bytes("iHT"))
        #expect(parser.next() == .body(bytes("i")[...]))
        #expect(parser.next() == .end(keepAlive: true))
        #expect(!parser.isIdle)
        #expect(parser.bufferedByteCount == 2)
        #expect(parser.next() == .needMoreData)
        #expect(parser.totalBytesFed == 42 && parser.totalBytesConsumed == 40)
    }
}

@Suite struct ResponseTruncationTests {
    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Le",
        "HTTP/1.1 200",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n\r",
    ])
    func closeInTheMiddleTruncates(_ input: String) {
        #expect(parseResponses(input, .init(close: true)).last == .error(.truncated))
        #expect(parseResponses(input).last != .error(.truncated))
    }

    @Test func closeBetweenResponsesIsQuiet() {
        var parser = HTTPResponseParser()
        parser.connectionClosed()
        #expect(parser.next() == .needMoreData)
        #expect(parser.isIdle)
        #expect(parseResponses("HTTP/1.1 204 No Content\r\n\r\n\r\n", .init(close: true)).last == .end(keepAlive: true))
    }

    @Test func closeWithACompleteResponseStillBuffered() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        parser.connectionClosed()
        guard case .head = parser.next() else { Issue.record("no head"); return }
        #expect(parser.next() == .body(bytes("hi")[...]))
        #expect(parser.next() == .end(keepAlive: true))
        #expect(parser.next() == .needMoreData)
    }
}

@Suite struct ResponseDirectReceiveTests {
    @Test func contentLengthBody() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
        #expect(parser.directBodyBytes == nil)
        guard case .head = parser.next() else { Issue.record("no head"); return }
        #expect(parser.directBodyBytes == 10)
        parser.bodyReceivedDirectly(4)
        #expect(parser.directBodyBytes == 6)
        parser.feed(bytes("567"))
        #expect(parser.directBodyBytes == nil)
        #expect(parser.next() == .body(bytes("567")[...]))
        #expect(parser.directBodyBytes == 3)
        parser.bodyReceivedDirectly(3)
        #expect(parser.directBodyBytes == nil)
        #expect(parser.next() == .end(keepAlive: true))
        #expect(parser.isIdle)
        #expect(parser.totalBytesFed == parser.totalBytesConsumed)
    }

    @Test func chunkData() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"))
        guard case .head = parser.next() else { Issue.record("no head"); return }
        #expect(parser.directBodyBytes == nil)  // the size line is buffered
        #expect(parser.next() == .needMoreData)
        #expect(parser.directBodyBytes == 5)
        parser.bodyReceivedDirectly(5)
        #expect(parser.directBodyBytes == nil)
        #expect(parser.next() == .needMoreData)  // the chunk's line end
        parser.feed(bytes("\r\n0\r\n\r\n"))
        #expect(parser.next() == .end(keepAlive: true))
    }

    @Test func untilClose() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\n\r\n"))
        guard case .head(_, .untilClose) = parser.next() else { Issue.record("no head"); return }
        #expect(parser.directBodyBytes == Int64.max)
        parser.bodyReceivedDirectly(1 << 20)
        #expect(parser.directBodyBytes == Int64.max)
        parser.connectionClosed()
        #expect(parser.directBodyBytes == nil)
        #expect(parser.next() == .end(keepAlive: false))
    }
}

/// Inputs covering every state, each checked whole, at every split, byte by byte, with small
/// body takes, and with bodies received directly (``parseResponses``); with and without a close.
@Suite struct ResponseSplitTests {
    static let inputs: [String] = [
        ResponsePipelineTests.pipelined,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX: a\r\n b\r\n\r\n" +
            "1a;ext=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3\nxyz\n0\r\nTrailer: 1\r\n\r\n\r\n" +
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nbody",
        "HTTP/1.0 200 OK\nServer: old\n\nuntil the server closes\r\nHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
    ]

    @Test(arguments: inputs.indices)
    func everySplitAgrees(_ index: Int) {
        let open = parseResponses(Self.inputs[index], .init(headResponses: [2]))
        let closed = parseResponses(Self.inputs[index], .init(headResponses: [2], close: true))
        #expect(closed.starts(with: open))
        #expect(!open.isEmpty)
    }

    @Test func eventsOfTheMixedInput() {
        #expect(parseResponses(Self.inputs[3], .init(close: true)) == [
            .head(responseHead(200, "OK", version: .http1_0, [("Server", "old")]), .untilClose),
            .body(bytes("until the server closes\r\nHTTP/1.1 200 OK\r\n\r\n")), .end(keepAlive: false),
        ])
        #expect(parseResponses(Self.inputs[4]).last == .error(.conflictingContentLength))
        #expect(parseResponses(Self.inputs[5]).last == .error(.invalidChunkSize))
        #expect(parseResponses(Self.inputs[6]).last == .error(.invalidLineEnding))
    }

    @Test func aLargeBodyInSmallTakes() {
        let body = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let input = bytes("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n") + body + bytes("HTTP/1.1 204 No Content\r\n\r\n")
        let events = parseResponses(input)
        #expect(events.count == 5)
        #expect(events[1] == .body(body))
    }
}

/// `next(maxBodyBytes: 0)`, as the HTTP client calls it inside a body when it has no room (or
/// not yet asked for any): it moves through framing only, returns an empty `.body` where body
/// bytes are buffered, and still reaches a response's end.
@Suite struct ResponseFramingOnlyTests {
    /// Responses as framing and body segments, so each byte's role is known.
    static let segments: [(String, Bool)] = [
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", false), ("hello", true),
        ("\r\n3;x=y\r\n", false), ("abc", true), ("\r\n0\r\nT: 1\r\n\r\n", false),
        ("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", false), ("body", true),
        ("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", false),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\n", false), ("z", true), ("\n0\n\n", false),
    ]
    static let input = segments.flatMap { Array($0.0.utf8) }
    static let isBody: [Bool] = segments.flatMap { Array(repeating: $0.1, count: $0.0.utf8.count) } + [false]

    /// Feeds `chunkSize`s; inside a body takes with `room` only where body bytes are buffered,
    /// else framing-only steps, checking `isAtBodyData` against each byte's role at every step.
    func runAsClient(chunkSize: Int, room: Int) -> [ResponseEvent] {
        var parser = HTTPResponseParser()
        var events: [ResponseEvent] = []
        var inBody = false
        var offset = 0
        while true {
            #expect(parser.isAtBodyData == Self.isBody[parser.totalBytesConsumed], "at byte \(parser.totalBytesConsumed)")
            let limit = !inBody ? Int.max : parser.isAtBodyData && parser.bufferedByteCount > 0 ? room : 0
            switch parser.next(maxBodyBytes: limit) {
            case .head(let head, let framing):
                events.append(.head(head, framing))
                inBody = framing != .none
            case .body(let part) where part.isEmpty:
                #expect(limit == 0 && parser.isAtBodyData && parser.bufferedByteCount > 0, "empty body at byte \(parser.totalBytesConsumed)")
            case .body(let part):
                #expect(part.count <= limit)
                events.appendMerging(.body(Array(part)))
            case .end(let keepAlive):
                events.append(.end(keepAlive: keepAlive))
                inBody = false
            case .needMoreData:
                if offset == Self.input.count { return events }
                let end = min(Self.input.count, offset + chunkSize)
                parser.feed(Self.input[offset..<end])
                offset = end
            case .error(let e):
                Issue.record("error \(e)")
                return events
            }
        }
    }

    @Test func sameEventsAsANormalParse() {
        let normal = parseResponses(Self.input)
        #expect(normal.endCount == 4)
        for chunkSize in [1, 2, 7, Self.input.count] {
            for room in [1, 3, Int.max] {
                #expect(runAsClient(chunkSize: chunkSize, room: room) == normal, "chunks of \(chunkSize), room \(room)")
            }
        }
    }

    @Test func framingStepsStopAtBufferedBodyBytes() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe"))
        guard case .head(_, .chunked) = parser.next(maxBodyBytes: 0) else { Issue.record("no head"); return }
        #expect(!parser.isAtBodyData)  // the size line is next
        #expect(parser.next(maxBodyBytes: 0) == .body([]))  // through the size line, to "he"
        #expect(parser.isAtBodyData && parser.bufferedByteCount == 2)
        #expect(parser.next(maxBodyBytes: 0) == .body([]))  // again: nothing consumed
        #expect(parser.bufferedByteCount == 2)
        #expect(parser.next(maxBodyBytes: 2) == .body(bytes("he")[...]))
        #expect(parser.isAtBodyData && parser.directBodyBytes == 3)
        #expect(parser.next(maxBodyBytes: 0) == .needMoreData)  // body data next, none buffered
        parser.feed(bytes("llo\r\n0\r\n\r\n"))
        #expect(parser.next(maxBodyBytes: 3) == .body(bytes("llo")[...]))
        #expect(!parser.isAtBodyData)
        // No room left, yet the end is reached through the framing.
        #expect(parser.next(maxBodyBytes: 0) == .end(keepAlive: true))
        #expect(!parser.isAtBodyData && parser.isIdle)
    }

    @Test func contentLengthAndUntilClose() {
        var parser = HTTPResponseParser()
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        guard case .head(_, .contentLength(2)) = parser.next() else { Issue.record("no head"); return }
        #expect(parser.isAtBodyData)
        #expect(parser.next(maxBodyBytes: 0) == .body([]))
        #expect(parser.next(maxBodyBytes: 5) == .body(bytes("ok")[...]))
        #expect(!parser.isAtBodyData)
        #expect(parser.next(maxBodyBytes: 0) == .end(keepAlive: true))
        parser.feed(bytes("HTTP/1.0 200 OK\r\n\r\nrest"))
        guard case .head(_, .untilClose) = parser.next() else { Issue.record("no head"); return }
        #expect(parser.isAtBodyData && parser.next(maxBodyBytes: 0) == .body([]))
        #expect(parser.next(maxBodyBytes: 4) == .body(bytes("rest")[...]))
        parser.connectionClosed()
        #expect(parser.next(maxBodyBytes: 0) == .end(keepAlive: false))
        #expect(!parser.isAtBodyData)
    }
}

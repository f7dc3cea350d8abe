import Testing
@testable import HTTPCore

@Suite struct ChunkedBodyTests {
    let prefix = "POST /preheat HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

    func body(_ chunked: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Event] {
        Array(parse(prefix + chunked, sourceLocation: sourceLocation).dropFirst())
    }

    @Test func simpleChunks() {
        #expect(body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == [.body(bytes("hello world")), .end])
    }

    @Test func emptyBody() {
        #expect(body("0\r\n\r\n") == [.end])
    }

    @Test func hexSizesAnyCase() {
        let data = String(repeating: "z", count: 26)
        #expect(body("1a\r\n\(data)\r\n0\r\n\r\n") == [.body(bytes(data)), .end])
        #expect(body("1A\r\n\(data)\r\n0\r\n\r\n") == [.body(bytes(data)), .end])
        #expect(body("0001A\r\n\(data)\r\n000\r\n\r\n") == [.body(bytes(data)), .end])
    }

    @Test func chunkExtensionsAreSkipped() {
        #expect(body("5;name=value\r\nhello\r\n5 ; a ; b=\"q s\"\r\nworld\r\n0;last\r\n\r\n")
                == [.body(bytes("helloworld")), .end])
    }

    @Test func trailersAreValidatedAndDropped() {
        #expect(body("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n") == [.body(bytes("hello")), .end])
    }

    @Test(arguments: [
        ("x\r\nhello\r\n0\r\n\r\n", HTTPParseError.invalidChunkSize),
        ("\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("-5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("+5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        (" 5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("0x5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5 x\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;a\u{0}b\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\r\nhelloXX0\r\n\r\n", .invalidChunkTerminator),
        ("5\r\nhello\rX0\r\n\r\n", .invalidChunkTerminator),
        ("5\r\nhello\n0\r\n\r\n", .invalidChunkTerminator),
        ("3\r\nhello\r\n0\r\n\r\n", .invalidChunkTerminator),
        ("0\r\nBad Trailer: 1\r\n\r\n", .whitespaceBeforeColon),
        ("0\r\n folded\r\n\r\n", .obsoleteLineFolding),
        ("0\r\nX: a\u{0}\r\n\r\n", .invalidHeaderValue),
    ])
    func badChunks(_ chunked: String, _ error: HTTPParseError) {
        #expect(body(chunked).last == .error(error))
    }

    @Test func requestAfterChunkedBody() {
        let events = parse(prefix + "3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(events.count == 5)
        #expect(events[1] == .body(bytes("abc")))
        guard case .request(let next) = events[3] else { Issue.record("\(events)"); return }
        #expect(next.target == "/next")
    }
}

@Suite struct ContentLengthBodyTests {
    @Test func bodyDelivered() {
        let events = parse("POST /preheat HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n{\"url\":\"x\"}\r\n")
        #expect(events.dropFirst() == [.body(bytes("{\"url\":\"x\"}\r\n")), .end])
    }

    @Test func bodyArrivesInPieces() {
        var parser = HTTPRequestParser()
        parser.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab"))
        guard case .request = parser.next() else { Issue.record("no head"); return }
        #expect(parser.next() == .body(bytes("ab")))
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes("cdefGET"))
        #expect(parser.next() == .body(bytes("cdef")))
        #expect(parser.next() == .end)
        #expect(parser.next() == .needMoreData)
        #expect(parser.bufferedByteCount == 3)
    }
}

@Suite struct PipelineTests {
    static let pipeline = """
        GET /one HTTP/1.1\r
        Host: a\r
        \r
        HEAD /two HTTP/1.1\r
        Host: a\r
        \r
        POST /three HTTP/1.1\r
        Host: a\r
        Content-Length: 5\r
        \r
        helloPOST /four HTTP/1.1\r
        Host: a\r
        Transfer-Encoding: chunked\r
        \r
        2;x=y\r
        ab\r
        1\r
        c\r
        0\r
        T: 1\r
        \r
        GET /five HTTP/1.0\r
        Connection: keep-alive\r
        \r
        OPTIONS * HTTP/1.1\r
        Host: a\r
        Connection: close\r
        \r

        """

    @Test func pipelinedRequestsInOneFeed() {
        // parse() also checks every two-way split and byte-at-a-time feeding give the same events.
        let events = parse(Self.pipeline)
        let heads = events.compactMap { if case .request(let h) = $0 { return h } else { return nil } }
        #expect(heads.map(\.target) == ["/one", "/two", "/three", "/four", "/five", "*"])
        #expect(heads.map(\.method) == [.get, .head, .post, .post, .get, .options])
        #expect(heads.map(\.keepAlive) == [true, true, true, true, true, false])
        #expect(events.filter { $0 == .end }.count == 6)
        #expect(events.contains(.body(bytes("hello"))))
        #expect(events.contains(.body(bytes("abc"))))
        #expect(!events.contains { if case .error = $0 { return true } else { return false } })
    }

    @Test func leftoverBytesAreRetained() {
        var parser = HTTPRequestParser()
        parser.feed(bytes("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HT"))
        guard case .request(let a) = parser.next() else { Issue.record("no head"); return }
        #expect(a.target == "/a")
        #expect(parser.next() == .end)
        #expect(parser.next() == .needMoreData)
        #expect(parser.bufferedByteCount == 9)
        #expect(parser.totalBytesConsumed + parser.bufferedByteCount == parser.totalBytesFed)
        parser.feed(bytes("TP/1.1\r\nHost: a\r\n\r\n"))
        guard case .request(let b) = parser.next() else { Issue.record("no head"); return }
        #expect(b.target == "/b")
        #expect(parser.next() == .end)
        #expect(parser.isIdle)
    }

    @Test func errorAfterGoodRequestsInPipeline() {
        let events = parse("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost : a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(events.count == 3)
        #expect(events.last == .error(.whitespaceBeforeColon))
    }

    @Test func manyRequestsWithCompaction() {
        var parser = HTTPRequestParser()
        let one = bytes("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        var count = 0
        for round in 0..<2000 {
            // Feed 1.5 requests at a time so leftovers straddle feeds.
            let start = (round * one.count / 2) % one.count
            let piece = Array((one + one)[start..<(start + one.count + one.count / 2 > one.count * 2 ? one.count * 2 : start + one.count + one.count / 2)])
            parser.feed(piece)
            while true {
                let r = parser.next()
                if case .request = r { count += 1 } else if r == .needMoreData { break } else if case .error = r {
                    Issue.record("\(r)"); return
                }
            }
        }
        #expect(count == 3000)  // every two feeds (42 bytes each) carry exactly three requests
        #expect(parser.totalBytesConsumed + parser.bufferedByteCount == parser.totalBytesFed)
    }
}

import Testing
@testable import HTTPCore

@Suite struct DateTests {
    @Test(arguments: [
        (Int64(0), "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
        (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
    ])
    func formatAndParse(_ seconds: Int64, _ text: String) {
        #expect(HTTPDate.format(epochSeconds: seconds) == text)
        #expect(HTTPDate.parse(text) == seconds)
    }

    @Test func obsoleteFormats() {
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == 784_111_777)
        #expect(HTTPDate.parse("Tuesday, 14-Nov-23 22:13:20 GMT") == 1_700_000_000)
    }

    @Test(arguments: [
        "", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 29 Feb 1900 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z",
    ])
    func invalidDates(_ text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }
}

@Suite struct ResponseHeadTests {
    @Test func serialize() {
        var head = HTTPResponseHead(status: 200)
        head.setDate(epochSeconds: 784_111_777)
        head.setContentLength(1234)
        head.setAcceptRanges()
        head.setETag(HTTPETag(opaqueTag: "abc")!)
        head.setConnection(keepAlive: true)
        #expect(String(decoding: head.serialized(), as: UTF8.self) ==
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 1234\r\n" +
            "Accept-Ranges: bytes\r\nETag: \"abc\"\r\n\r\n")
    }

    @Test func partialAndUnsatisfiable() {
        var partial = HTTPResponseHead(status: 206)
        partial.setContentRange(10...19, completeLength: 100)
        partial.setContentLength(10)
        #expect(String(decoding: partial.serialized(), as: UTF8.self) ==
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/100\r\nContent-Length: 10\r\n\r\n")
        var unsatisfiable = HTTPResponseHead(status: 416)
        unsatisfiable.setUnsatisfiedContentRange(completeLength: 100)
        #expect(String(decoding: unsatisfiable.serialized(), as: UTF8.self) ==
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */100\r\n\r\n")
    }

    @Test func connectionHeaderPerVersion() {
        var h11 = HTTPResponseHead(status: 200)
        h11.setConnection(keepAlive: true)
        #expect(h11.headers["Connection"] == nil)
        h11.setConnection(keepAlive: false)
        #expect(h11.headers["Connection"] == "close")
        var h10 = HTTPResponseHead(status: 200, version: .http1_0)
        h10.setConnection(keepAlive: true, requestVersion: .http1_0)
        #expect(h10.headers.values(for: "Connection") == ["keep-alive"])
        #expect(String(decoding: h10.serialized(), as: UTF8.self) == "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
        // An HTTP/1.1 response to an HTTP/1.0 client still has to spell out keep-alive.
        var to10 = HTTPResponseHead(status: 200)
        to10.setConnection(keepAlive: true, requestVersion: .http1_0)
        #expect(String(decoding: to10.serialized(), as: UTF8.self) == "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n")
        to10.setConnection(keepAlive: false, requestVersion: .http1_0)
        #expect(to10.headers.values(for: "Connection") == ["close"])
    }

    @Test func settersReplace() {
        var head = HTTPResponseHead(status: 200)
        head.setContentLength(1)
        head.setContentLength(2)
        #expect(head.headers.values(for: "content-length") == ["2"])
    }

    @Test func serializeAppends() {
        var out = Array("prefix".utf8)
        HTTPResponseHead(status: 404).serialize(into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "prefixHTTP/1.1 404 Not Found\r\n\r\n")
    }

    @Test func customAndUnknownReasons() {
        #expect(String(decoding: HTTPResponseHead(status: 599).serialized(), as: UTF8.self) == "HTTP/1.1 599 \r\n\r\n")
        #expect(String(decoding: HTTPResponseHead(status: 200, reason: "Fine").serialized(), as: UTF8.self) == "HTTP/1.1 200 Fine\r\n\r\n")
        // Injection attempts are neutralised.
        #expect(String(decoding: HTTPResponseHead(status: 200, reason: "A\r\nX: y").serialized(), as: UTF8.self) == "HTTP/1.1 200 A  X: y\r\n\r\n")
        var head = HTTPResponseHead(status: 200)
        head.headers.add(name: "X-A", value: "v\r\nSet-Cookie: evil")
        head.headers.add(name: "Bad Name:", value: "1")
        #expect(String(decoding: head.serialized(), as: UTF8.self) == "HTTP/1.1 200 OK\r\nX-A: v  Set-Cookie: evil\r\nBad-Name-: 1\r\n\r\n")
    }

    @Test func reasonPhrases() {
        #expect(HTTPStatus.reasonPhrase(for: 206) == "Partial Content")
        #expect(HTTPStatus.reasonPhrase(for: 304) == "Not Modified")
        #expect(HTTPStatus.reasonPhrase(for: 416) == "Range Not Satisfiable")
        #expect(HTTPStatus.reasonPhrase(for: 431) == "Request Header Fields Too Large")
        #expect(HTTPStatus.reasonPhrase(for: 505) == "HTTP Version Not Supported")
        for e in [HTTPParseError.requestLineTooLong, .headerBlockTooLarge, .bodyTooLarge, .unsupportedVersion, .invalidMethod] {
            #expect(!HTTPStatus.reasonPhrase(for: e.status).isEmpty)
        }
    }

    @Test func statusCodeDigits() {
        for code in [100, 200, 206, 304, 999] {
            let line = String(decoding: HTTPResponseHead(status: code).serialized(), as: UTF8.self)
            #expect(line.hasPrefix("HTTP/1.1 \(code) "))
        }
    }
}

@Suite struct HeadersAPITests {
    @Test func buildAndQuery() {
        var h: HTTPHeaders = ["Content-Type": "text/plain", "Vary": "Accept"]
        h.add(name: "vary", value: "Range")
        #expect(h["VARY"] == "Accept, Range")
        #expect(h.values(for: "Vary") == ["Accept", "Range"])
        #expect(h.contains("content-type"))
        h.remove(name: "VARY")
        #expect(!h.contains("vary"))
        #expect(h.count == 1)
        h.replaceOrAdd(name: "Content-Type", value: "application/json")
        #expect(h.map { "\($0.name)=\($0.value)" } == ["Content-Type=application/json"])
    }

    @Test func tokens() {
        let h: HTTPHeaders = ["Connection": "keep-alive, Upgrade", "Upgrade": "websocket"]
        #expect(h.containsToken("upgrade", in: "connection"))
        #expect(!h.containsToken("close", in: "connection"))
        #expect(h.listElements(for: "Connection") == ["keep-alive", "Upgrade"])
    }

    @Test func equality() {
        let a: HTTPHeaders = ["A": "1", "b": "2"]
        let b: HTTPHeaders = ["a": "1", "B": "2"]
        let c: HTTPHeaders = ["b": "2", "a": "1"]
        #expect(a == b)
        #expect(a != c)
    }
}

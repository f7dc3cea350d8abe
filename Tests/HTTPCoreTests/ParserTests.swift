import Testing
@testable import HTTPCore

@Suite struct RequestLineTests {
    @Test func simpleGet() throws {
        let h = try #require(parseHead("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"))
        #expect(h.method == .get)
        #expect(h.target == "/index.html?x=1")
        #expect(h.targetForm == .origin)
        #expect(h.version == .http1_1)
        #expect(h.keepAlive)
        #expect(h.bodyFraming == .none)
        #expect(h.headers["host"] == "example.com")
        #expect(h.headers["ACCEPT"] == "*/*")
        #expect(h.path == "/index.html")
        #expect(h.query == "x=1")
    }

    @Test func eventsForBodilessRequest() {
        let events = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(events.count == 2)
        #expect(events.last == .end)
    }

    @Test func headRequest() throws {
        let h = try #require(parseHead("HEAD /blob HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(h.method == .head)
        #expect(h.bodyFraming == .none)
    }

    @Test func unknownMethodIsAToken() throws {
        let h = try #require(parseHead("PURGE-ALL /x HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(h.method.rawValue == "PURGE-ALL")
    }

    @Test func methodsAreCaseSensitive() throws {
        let h = try #require(parseHead("get / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(h.method != .get)
    }

    @Test func absoluteForm() throws {
        let h = try #require(parseHead("GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"))
        #expect(h.targetForm == .absolute)
        #expect(h.path == "/a/b")
        #expect(h.query == "c=d")
        let bare = try #require(parseHead("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(bare.path == "/")
        #expect(bare.query == nil)
    }

    @Test func authorityFormForConnect() throws {
        let h = try #require(parseHead("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
        #expect(h.targetForm == .authority)
        #expect(h.target == "example.com:443")
        #expect(h.path == "")
        let v6 = try #require(parseHead("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"))
        #expect(v6.targetForm == .authority)
    }

    @Test(arguments: [
        "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n",         // no port
        "CONNECT /path HTTP/1.1\r\nHost: a\r\n\r\n",               // origin-form
        "CONNECT user@host:80 HTTP/1.1\r\nHost: a\r\n\r\n",        // userinfo
        "CONNECT host:http HTTP/1.1\r\nHost: a\r\n\r\n",           // port not digits
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",                       // * only for OPTIONS
        "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",          // authority-form only for CONNECT
        "GET noslash HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\u{7F}b HTTP/1.1\r\nHost: a\r\n\r\n",               // DEL
        "GET /caf\u{E9} HTTP/1.1\r\nHost: a\r\n\r\n",              // non-ASCII
        "GET 1http://x/ HTTP/1.1\r\nHost: a\r\n\r\n",              // scheme must start with ALPHA
    ])
    func invalidTargets(_ input: String) {
        #expect(parseError(input) == .invalidRequestTarget)
    }

    @Test func asteriskFormForOptions() throws {
        let h = try #require(parseHead("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(h.targetForm == .asterisk)
        #expect(h.path == "")
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTPVersion.http1_1),
        ("GET / HTTP/1.0\r\n\r\n", HTTPVersion.http1_0),
    ])
    func versions(_ input: String, _ version: HTTPVersion) throws {
        #expect(try #require(parseHead(input)).version == version)
    }

    @Test(arguments: [
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HTTPParseError.unsupportedVersion),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", .unsupportedVersion),
        ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", .unsupportedVersion),
        ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", .invalidVersion),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", .invalidVersion),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .invalidVersion),
        ("GET / HTTP/1\r\nHost: a\r\n\r\n", .invalidVersion),
        ("GET / XTTP/1.1\r\nHost: a\r\n\r\n", .invalidVersion),
        ("GET /\r\n\r\n", .invalidRequestLine),                   // HTTP/0.9
        ("GET\r\n\r\n", .invalidRequestLine),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidRequestLine),   // two spaces
        (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod),
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod),
        ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod),
    ])
    func badRequestLines(_ input: String, _ error: HTTPParseError) {
        #expect(parseError(input) == error)
    }

    @Test func leadingEmptyLinesAreSkipped() throws {
        let h = try #require(parseHead("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(h.target == "/")
    }
}

@Suite struct KeepAliveTests {
    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nConnection: close\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
        ("HEAD / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true),
    ])
    func keepAlive(_ input: String, _ expected: Bool) throws {
        #expect(try #require(parseHead(input)).keepAlive == expected)
    }

    @Test func http10PipelineKeepsGoing() {
        let events = parse("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        let heads = events.compactMap { if case .request(let h) = $0 { return h } else { return nil } }
        #expect(heads.map(\.target) == ["/a", "/b"])
        #expect(heads.map(\.keepAlive) == [true, false])
    }
}

@Suite struct HeaderTests {
    @Test func repeatedHeadersCombinedAndKept() throws {
        let h = try #require(parseHead("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\naccept: text/plain\r\nX-Empty:\r\n\r\n"))
        #expect(h.headers["Accept"] == "text/html, text/plain")
        #expect(h.headers.values(for: "ACCEPT") == ["text/html", "text/plain"])
        #expect(h.headers.first("accept") == "text/html")
        #expect(h.headers["X-Empty"] == "")
        #expect(h.headers["Missing"] == nil)
        #expect(h.headers.count == 4)
        #expect(h.headers.listElements(for: "accept") == ["text/html", "text/plain"])
    }

    @Test func valueWhitespaceTrimmedAndObsTextKept() throws {
        let h = try #require(parseHead("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t spaced  value \t\r\nX-B: caf\u{E9}\r\n\r\n"))
        #expect(h.headers["x-a"] == "spaced  value")
        #expect(h.headers["x-b"] == "caf\u{E9}")
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", HTTPParseError.obsoleteLineFolding),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", .obsoleteLineFolding),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", .obsoleteLineFolding),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .whitespaceBeforeColon),
        ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", .whitespaceBeforeColon),
        ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", .whitespaceBeforeColon),
        ("GET / HTTP/1.1\r\nHost: a\r\n: novalue\r\n\r\n", .invalidHeaderName),
        ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", .invalidHeaderName),
        ("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", .invalidHeaderName),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{0}b\r\n\r\n", .invalidHeaderValue),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{7F}b\r\n\r\n", .invalidHeaderValue),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{B}b\r\n\r\n", .invalidHeaderValue),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", .invalidHeaderValue),
    ])
    func malformedFields(_ input: String, _ error: HTTPParseError) {
        #expect(parseError(input) == error)
        #expect(error.status == 400)
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\u{E9}\r\n\r\n",
    ])
    func hostRules(_ input: String) {
        #expect(parseError(input) == .invalidHost)
    }

    @Test(arguments: ["example.com", "example.com:8080", "[::1]:80", "10.0.0.1", "", "xn--bcher-kva.example"])
    func validHosts(_ host: String) throws {
        #expect(try #require(parseHead("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")).headers["host"] == host)
    }

    @Test func http10WithoutHostIsFine() throws {
        #expect(try #require(parseHead("GET / HTTP/1.0\r\n\r\n")).headers.isEmpty)
    }
}

@Suite struct LineEndingTests {
    /// Our choice: strict CRLF. Bare LF and bare CR are rejected everywhere.
    @Test(arguments: [
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\n",
        "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\rHost: a\r\n\r\n",
        "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
    ])
    func bareLineEndingsRejected(_ input: String) {
        #expect(parseError(input) == .invalidLineEnding)
    }
}

@Suite struct ProtocolMismatchTests {
    @Test func tlsClientHello() {
        // The start of a real ClientHello record: handshake(22), TLS 1.0 record version, length, ClientHello(1).
        let hello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + Array(repeating: 0xAB, count: 32)
        #expect(parseError(hello) == .tlsHandshake)
        #expect(parseError([0x16]) == .tlsHandshake)
        #expect(HTTPParseError.tlsHandshake.status == 400)
    }

    @Test func http2Preface() {
        #expect(parseError("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == .http2Preface)
        // The error comes as soon as the request line is complete.
        #expect(parseError("PRI * HTTP/2.0\r\n") == .http2Preface)
        #expect(HTTPParseError.http2Preface.status == 505)
    }

    @Test func binaryGarbageFailsFast() {
        #expect(parseError([0x00, 0x01, 0x02]) == .invalidMethod)
        #expect(parseError([0x47, 0x45, 0xFF]) == .invalidMethod)
    }

    @Test func everyErrorHasStatusAndReason() {
        let all: [HTTPParseError] = [
            .requestLineTooLong, .headerBlockTooLarge, .tooManyHeaderFields, .invalidLineEnding,
            .invalidRequestLine, .invalidMethod, .invalidRequestTarget, .invalidVersion, .unsupportedVersion,
            .invalidHeaderName, .whitespaceBeforeColon, .invalidHeaderValue, .obsoleteLineFolding, .invalidHost,
            .invalidContentLength, .conflictingContentLength, .contentLengthWithTransferEncoding,
            .invalidTransferEncoding, .transferEncodingOnHTTP10, .unsupportedTransferCoding, .invalidChunkSize,
            .invalidChunkTerminator, .bodyTooLarge, .tlsHandshake, .http2Preface,
        ]
        for e in all {
            #expect([400, 413, 414, 431, 501, 505].contains(e.status))
            #expect(!e.reason.isEmpty && !e.reason.contains("\n"))
        }
        #expect(HTTPParseError.requestLineTooLong.status == 414)
        #expect(HTTPParseError.headerBlockTooLarge.status == 431)
        #expect(HTTPParseError.tooManyHeaderFields.status == 431)
        #expect(HTTPParseError.unsupportedVersion.status == 505)
        #expect(HTTPParseError.bodyTooLarge.status == 413)
        #expect(HTTPParseError.unsupportedTransferCoding.status == 501)
    }
}

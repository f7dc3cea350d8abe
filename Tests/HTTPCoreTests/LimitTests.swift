import Testing
@testable import HTTPCore

@Suite struct LimitTests {
    func requestLine(targetLength: Int) -> String {
        // "GET " + target + " HTTP/1.1" = targetLength + 13 bytes.
        "GET /" + String(repeating: "a", count: targetLength - 1) + " HTTP/1.1\r\nHost: a\r\n\r\n"
    }

    @Test func requestLineAtTheDefaultLimitIsAccepted() {
        let input = requestLine(targetLength: 8192 - 13)
        #expect(parseError(input) == nil)
    }

    @Test func requestLineOverTheDefaultLimitIs414() {
        let input = requestLine(targetLength: 8192 - 12)
        #expect(parseError(input) == .requestLineTooLong)
        #expect(HTTPParseError.requestLineTooLong.status == 414)
    }

    @Test func requestLineLimitIsEnforcedBeforeTheLineEnds() {
        // No LF ever arrives: the parser must not buffer forever.
        var parser = HTTPRequestParser(limits: .init(maxRequestLineLength: 100))
        parser.feed(bytes("GET /" + String(repeating: "a", count: 95)))
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes("a"))
        #expect(parser.next() == .error(.requestLineTooLong))
    }

    @Test func configurableRequestLineLimit() {
        let limits = HTTPRequestParser.Limits(maxRequestLineLength: 20)
        #expect(parseError("GET /123456 HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits) == nil)  // 20 bytes
        #expect(parseError("GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits) == .requestLineTooLong)
    }

    @Test func headerBlockLimit() {
        // Header block = "Host: a\r\n" (9) + "X: " + value + "\r\n" + "\r\n".
        let limits = HTTPRequestParser.Limits(maxHeaderBlockLength: 100)
        let fits = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 84) + "\r\n\r\n"
        let over = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 85) + "\r\n\r\n"
        #expect(parseError(fits, limits: limits) == nil)
        #expect(parseError(over, limits: limits) == .headerBlockTooLarge)
    }

    @Test func defaultHeaderBlockLimitIs64KiB() {
        var input = "GET / HTTP/1.1\r\nHost: a\r\n"
        for i in 0..<40 { input += "X-\(i): " + String(repeating: "v", count: 2000) + "\r\n" }
        input += "\r\n"
        var parser = HTTPRequestParser()
        parser.feed(bytes(input))
        #expect(parser.next() == .error(.headerBlockTooLarge))
        #expect(HTTPParseError.headerBlockTooLarge.status == 431)
    }

    @Test func headerBlockLimitIsEnforcedWithoutTerminator() {
        var parser = HTTPRequestParser(limits: .init(maxHeaderBlockLength: 1000))
        parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n"))
        for _ in 0..<9 { parser.feed(bytes("X-Long: " + String(repeating: "v", count: 90) + "\r\n")) }
        #expect(parser.next() == .needMoreData)
        parser.feed(bytes(String(repeating: "v", count: 200)))
        #expect(parser.next() == .error(.headerBlockTooLarge))
    }

    @Test func headerCountLimit() {
        func request(fields: Int) -> String {
            "GET / HTTP/1.1\r\nHost: a\r\n" + (1..<fields).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        }
        #expect(parseError(request(fields: 100)) == nil)
        #expect(parseError(request(fields: 101)) == .tooManyHeaderFields)
        let limits = HTTPRequestParser.Limits(maxHeaderCount: 3)
        #expect(parseError(request(fields: 3), limits: limits) == nil)
        #expect(parseError(request(fields: 4), limits: limits) == .tooManyHeaderFields)
    }

    @Test func bodyLimitForContentLength() {
        let limits = HTTPRequestParser.Limits(maxBodyLength: 10)
        #expect(parseError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits) == nil)
        #expect(parseError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits: limits) == .bodyTooLarge)
    }

    @Test func bodyLimitForChunked() {
        let limits = HTTPRequestParser.Limits(maxBodyLength: 10)
        let ok = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
        let over = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n567890\r\n0\r\n\r\n"
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n"
        #expect(parseError(ok, limits: limits) == nil)
        #expect(parseError(over, limits: limits) == .bodyTooLarge)
        #expect(parseError(huge) == .bodyTooLarge)
    }

    @Test func chunkLineLimit() {
        let limits = HTTPRequestParser.Limits(maxChunkLineLength: 16)
        let ok = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;abcdefghijkl\r\nx\r\n0\r\n\r\n"
        let over = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;abcdefghijklm\r\nx\r\n0\r\n\r\n"
        #expect(parseError(ok, limits: limits) == nil)
        #expect(parseError(over, limits: limits) == .invalidChunkSize)
    }

    @Test func trailerLimits() {
        let limits = HTTPRequestParser.Limits(maxHeaderBlockLength: 40, maxHeaderCount: 2)
        let prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        #expect(parseError(prefix + "A: 1\r\nB: 2\r\n\r\n", limits: limits) == nil)
        #expect(parseError(prefix + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: limits) == .tooManyHeaderFields)
        #expect(parseError(prefix + "A: " + String(repeating: "x", count: 40) + "\r\n\r\n", limits: limits) == .headerBlockTooLarge)
    }
}

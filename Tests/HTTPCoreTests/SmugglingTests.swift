import Testing
@testable import HTTPCore

/// Request smuggling vectors (RFC 9112 §6.3, §11.2): each must be refused, never guessed at.
@Suite struct SmugglingTests {
    static let vectors: [(String, HTTPParseError)] = [
        // Both framings at once.
        ("Content-Length: 5\r\nTransfer-Encoding: chunked", .contentLengthWithTransferEncoding),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", .contentLengthWithTransferEncoding),
        ("Transfer-Encoding: chunked\r\nContent-Length: 0", .contentLengthWithTransferEncoding),
        // Bad Content-Length values.
        ("Content-Length: +5", .invalidContentLength),
        ("Content-Length: -5", .invalidContentLength),
        ("Content-Length: 5a", .invalidContentLength),
        ("Content-Length: 0x5", .invalidContentLength),
        ("Content-Length: 5 5", .invalidContentLength),
        ("Content-Length: 5.0", .invalidContentLength),
        ("Content-Length:", .invalidContentLength),
        ("Content-Length: 5,", .invalidContentLength),
        ("Content-Length: 99999999999999999999999", .invalidContentLength),
        ("Content-Length: 5\r\nContent-Length: 6", .conflictingContentLength),
        ("Content-Length: 5, 6", .conflictingContentLength),
        // Obfuscated Transfer-Encoding.
        ("Transfer-Encoding: xchunked", .invalidTransferEncoding),
        ("Transfer-Encoding: chunkedx", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked, identity", .invalidTransferEncoding),
        ("Transfer-Encoding: identity", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked, chunked", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", .invalidTransferEncoding),
        ("Transfer-Encoding: chun ked", .invalidTransferEncoding),
        ("Transfer-Encoding: \"chunked\"", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked;q=1", .invalidTransferEncoding),
        ("Transfer-Encoding: , chunked", .invalidTransferEncoding),
        ("Transfer-Encoding:", .invalidTransferEncoding),
        ("Transfer-Encoding: chunked\u{B}", .invalidHeaderValue),
        ("Transfer-Encoding: chunked\u{C}", .invalidHeaderValue),
        ("Transfer-Encoding: \u{B}chunked", .invalidHeaderValue),
        ("Transfer-Encoding : chunked", .whitespaceBeforeColon),
        ("Transfer-Encoding\t: chunked", .whitespaceBeforeColon),
        ("Transfer-Encoding:\r\n chunked", .obsoleteLineFolding),
        ("X: y\r\nTransfer-Encoding: chunked\n", .invalidLineEnding),
        // Codings we do not implement, properly ending in chunked.
        ("Transfer-Encoding: gzip, chunked", .unsupportedTransferCoding),
    ]

    @Test(arguments: vectors)
    func refused(_ fields: String, _ error: HTTPParseError) {
        let input = "POST / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n\r\n0\r\n\r\n"
        #expect(parseError(input) == error)
    }

    @Test func transferEncodingOnHTTP10() {
        #expect(parseError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == .transferEncodingOnHTTP10)
    }

    @Test(arguments: [
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 5, 5",
        "Content-Length: 005",
    ])
    func identicalContentLengthsAccepted(_ fields: String) throws {
        let events = parse("POST / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n\r\nhello")
        guard case .request(let h)? = events.first else { Issue.record("\(events)"); return }
        #expect(h.bodyFraming == .contentLength(5))
        #expect(events.dropFirst() == [.body(bytes("hello")), .end])
    }

    @Test(arguments: ["chunked", "Chunked", "CHUNKED", " chunked ", "\tchunked"])
    func chunkedSpellingsAccepted(_ value: String) throws {
        let events = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \(value)\r\n\r\n0\r\n\r\n")
        guard case .request(let h)? = events.first else { Issue.record("\(events)"); return }
        #expect(h.bodyFraming == .chunked)
    }

    @Test func contentLengthZeroMeansNoBody() throws {
        let h = try #require(parseHead("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"))
        #expect(h.bodyFraming == .none)
    }

    @Test func bodyIsNotParsedAsARequest() {
        // The classic CL.TE payload, sent to us without TE: the "smuggled" request is just body bytes.
        let smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
        let input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(smuggled.utf8.count)\r\n\r\n" + smuggled
        let events = parse(input)
        #expect(events.count == 3)
        #expect(events[1] == .body(bytes(smuggled)))
    }
}

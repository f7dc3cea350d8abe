import Testing
@testable import HTTPCore

@Suite struct ETagTests {
    @Test func parsing() throws {
        let strong = try #require(HTTPETag(parsing: "\"abc\""))
        #expect(!strong.isWeak && strong.opaqueTag == "abc")
        let weak = try #require(HTTPETag(parsing: " W/\"abc\" "))
        #expect(weak.isWeak && weak.opaqueTag == "abc")
        #expect(try #require(HTTPETag(parsing: "\"\"")).opaqueTag == "")
        #expect(weak.headerValue == "W/\"abc\"")
        #expect(strong.headerValue == "\"abc\"")
    }

    @Test(arguments: ["abc", "\"abc", "abc\"", "w/\"abc\"", "W/abc", "\"a\"b\"", "\"a b\"", "\"a\"x", ""])
    func malformed(_ text: String) {
        #expect(HTTPETag(parsing: text) == nil)
    }

    @Test func validatedConstruction() {
        #expect(HTTPETag(opaqueTag: "sha256-abc") != nil)
        #expect(HTTPETag(opaqueTag: "a\"b") == nil)
        #expect(HTTPETag(opaqueTag: "a b") == nil)
    }

    @Test func comparison() throws {
        let s1 = try #require(HTTPETag(parsing: "\"1\""))
        let w1 = try #require(HTTPETag(parsing: "W/\"1\""))
        let s2 = try #require(HTTPETag(parsing: "\"2\""))
        // RFC 9110 §8.8.3.2 table.
        #expect(!w1.strongMatches(w1) && w1.weakMatches(w1))
        #expect(!w1.strongMatches(try #require(HTTPETag(parsing: "W/\"2\""))))
        #expect(!w1.strongMatches(s1) && w1.weakMatches(s1))
        #expect(s1.strongMatches(s1) && s1.weakMatches(s1))
        #expect(!s1.weakMatches(s2))
    }

    @Test func conditionLists() throws {
        #expect(HTTPETagCondition(parsing: "*") == .any)
        #expect(HTTPETagCondition(parsing: " * ") == .any)
        let list = try #require(HTTPETagCondition(parsing: "\"a\", W/\"b\" ,\"c,d\""))
        guard case .tags(let tags) = list else { Issue.record("not a list"); return }
        #expect(tags.map(\.opaqueTag) == ["a", "b", "c,d"])
        #expect(tags.map(\.isWeak) == [false, true, false])
        #expect(HTTPETagCondition(parsing: "\"a\" \"b\"") == nil)
        #expect(HTTPETagCondition(parsing: "a") == nil)
        #expect(HTTPETagCondition(parsing: "") == nil)
        #expect(HTTPETagCondition(parsing: "*, \"a\"") == nil)
    }
}

@Suite struct DecisionTests {
    static let etag = HTTPETag(opaqueTag: "v1")!
    static let lastModified: Int64 = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
    static let length = 100

    func decide(_ pairs: [(String, String)],
                etag: HTTPETag? = etag, lastModified: Int64? = lastModified) -> HTTPResponseDecision {
        decide(.get, pairs, etag: etag, lastModified: lastModified)
    }

    func decide(_ method: HTTPMethod, _ pairs: [(String, String)],
                etag: HTTPETag? = etag, lastModified: Int64? = lastModified) -> HTTPResponseDecision {
        let request = HTTPRequestHead(method: method, target: "/x", headers: HTTPHeaders([("Host", "a")] + pairs))
        return HTTPResponseDecision.evaluate(request: request, etag: etag, lastModified: lastModified,
                                             contentLength: Self.length)
    }

    @Test func plain() {
        #expect(decide([]) == .full)
        #expect(decide([]).status == 200)
    }

    @Test func ifNoneMatch() {
        #expect(decide([("If-None-Match", "\"v1\"")]) == .notModified)
        #expect(decide([("If-None-Match", "W/\"v1\"")]) == .notModified)          // weak comparison
        #expect(decide([("If-None-Match", "\"v0\", \"v1\"")]) == .notModified)
        #expect(decide([("If-None-Match", "\"v0\""), ("If-None-Match", "\"v1\"")]) == .notModified)
        #expect(decide([("If-None-Match", "*")]) == .notModified)
        #expect(decide([("If-None-Match", "\"v0\"")]) == .full)
        #expect(decide([("If-None-Match", "\"v1\"")], etag: nil) == .full)
        #expect(decide(.head, [("If-None-Match", "\"v1\"")]) == .notModified)
        #expect(decide(.post, [("If-None-Match", "\"v1\"")]) == .full)
        #expect(decide([("If-None-Match", "garbage")]) == .full)
        #expect(decide([("If-None-Match", "\"v1\"")]).status == 304)
    }

    @Test func ifModifiedSince() {
        #expect(decide([("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]) == .notModified)
        #expect(decide([("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT")]) == .notModified)
        #expect(decide([("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")]) == .full)
        #expect(decide([("If-Modified-Since", "not a date")]) == .full)
        #expect(decide([("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")], lastModified: nil) == .full)
        // If-None-Match takes precedence: a non-matching tag means send it, whatever the date.
        #expect(decide([("If-None-Match", "\"v0\""), ("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT")]) == .full)
    }

    @Test func range() {
        #expect(decide([("Range", "bytes=0-9")]) == .partial(0...9))
        #expect(decide([("Range", "bytes=0-9")]).status == 206)
        #expect(decide([("Range", "bytes=100-")]) == .rangeNotSatisfiable)
        #expect(decide([("Range", "bytes=100-")]).status == 416)
        #expect(decide([("Range", "bytes=0-1,4-5")]) == .full)      // multiple ranges: documented 200
        #expect(decide([("Range", "bytes=x")]) == .full)
        #expect(decide(.head, [("Range", "bytes=0-9")]) == .full)   // Range is defined for GET only
        #expect(decide([("Range", "bytes=0-9"), ("If-None-Match", "\"v1\"")]) == .notModified)
    }

    @Test func ifRange() {
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "\"v1\"")]) == .partial(0...9))
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "\"v0\"")]) == .full)
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "W/\"v1\"")]) == .full)   // strong comparison only
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "\"v1\"")], etag: HTTPETag(opaqueTag: "v1", isWeak: true)) == .full)
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "\"v1\"")], etag: nil) == .full)
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "Sun, 06 Nov 1994 08:49:37 GMT")]) == .partial(0...9))
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "Sun, 06 Nov 1994 08:49:38 GMT")]) == .full)  // exact match only
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "Sun, 06 Nov 1994 08:49:37 GMT")], lastModified: nil) == .full)
        #expect(decide([("Range", "bytes=0-9"), ("If-Range", "yesterday")]) == .full)
        #expect(decide([("Range", "bytes=100-"), ("If-Range", "\"v0\"")]) == .full)     // no 416 when If-Range fails
        #expect(decide([("If-Range", "\"v1\"")]) == .full)                               // If-Range without Range
    }

    @Test func fromParsedRequest() throws {
        let h = try #require(parseHead("GET /blob HTTP/1.1\r\nHost: a\r\nRange: bytes=-10\r\nIf-Range: \"v1\"\r\n\r\n"))
        #expect(HTTPResponseDecision.evaluate(request: h, etag: Self.etag, lastModified: nil, contentLength: 100) == .partial(90...99))
    }
}

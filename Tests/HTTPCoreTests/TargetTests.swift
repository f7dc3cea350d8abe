import Testing
@testable import HTTPCore

@Suite struct TargetTests {
    @Test(arguments: [
        ("/", HTTPRequestTargetForm.origin, "/", nil as String?),
        ("/a/b", .origin, "/a/b", nil),
        ("/a?b=c&d", .origin, "/a", "b=c&d"),
        ("/a?", .origin, "/a", ""),
        ("/a?b?c", .origin, "/a", "b?c"),
        ("/a#frag", .origin, "/a", nil),
        ("/a?q#frag", .origin, "/a", "q"),
        ("http://h/p?q", .absolute, "/p", "q"),
        ("http://h:80", .absolute, "/", nil),
        ("http://h?q", .absolute, "/", "q"),
        ("HTTPS://h/x/y", .absolute, "/x/y", nil),
        ("h:443", .authority, "", nil),
        ("*", .asterisk, "", nil),
    ])
    func split(_ target: String, _ form: HTTPRequestTargetForm, _ path: String, _ query: String?) {
        let parts = HTTPTarget.split(target, form: form)
        #expect(parts.path == path[...])
        #expect(parts.query.map(String.init) == query)
    }

    @Test func percentDecoding() throws {
        #expect(try PercentDecoding.decode("/a%20b%2Fc") == "/a b/c")
        #expect(try PercentDecoding.decode("%e2%82%AC") == "€")
        #expect(try PercentDecoding.decode("a+b") == "a+b")
        #expect(try PercentDecoding.decode("a+b", plusAsSpace: true) == "a b")
        #expect(try PercentDecoding.decodeBytes("%00%ff") == [0, 255])
        #expect(try PercentDecoding.decode("") == "")
    }

    @Test(arguments: ["%", "%2", "%zz", "a%g0", "%%", "abc%4"])
    func invalidEscapes(_ text: String) {
        #expect(throws: PercentDecodingError.invalidEscape) { try PercentDecoding.decode(text) }
    }

    @Test func invalidUTF8() {
        #expect(throws: PercentDecodingError.invalidUTF8) { try PercentDecoding.decode("%ff%fe") }
        #expect(throws: Never.self) { try PercentDecoding.decodeBytes("%ff%fe") }
    }

    @Test func queryParameters() throws {
        let q = try HTTPQueryParameters(parsing: "url=http%3A%2F%2Fx%2Fa%3Fb&tag=a+b&tag=c&flag&&empty=")
        #expect(q["url"] == "http://x/a?b")
        #expect(q.values(for: "tag") == ["a b", "c"])
        #expect(q["flag"] == "")
        #expect(q["empty"] == "")
        #expect(q["missing"] == nil)
        #expect(q.pairs.count == 5)
        #expect(q.map(\.name) == ["url", "tag", "tag", "flag", "empty"])
        #expect(try HTTPQueryParameters(parsing: "").pairs.isEmpty)
        #expect(try HTTPQueryParameters(parsing: "a=1=2")["a"] == "1=2")
        #expect(throws: PercentDecodingError.invalidEscape) { try HTTPQueryParameters(parsing: "a=%zz") }
    }

    @Test func requestHeadHelpers() throws {
        let h = try #require(parseHead("GET /files/a%20b?x=1+2 HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(try PercentDecoding.decode(h.path) == "/files/a b")
        #expect(try HTTPQueryParameters(parsing: h.query ?? "")["x"] == "1 2")
    }
}

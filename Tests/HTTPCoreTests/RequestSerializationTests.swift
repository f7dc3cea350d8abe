import Testing
@testable import HTTPCore

@Suite struct RequestSerializationTests {
    @Test func serialize() {
        let head = HTTPRequestHead(method: .get, target: "/v2/library/alpine/blobs/sha256:abc?x=1",
                                   headers: ["Host": "registry.example:5000", "Range": "bytes=0-99"])
        #expect(String(decoding: head.serialized(), as: UTF8.self) ==
            "GET /v2/library/alpine/blobs/sha256:abc?x=1 HTTP/1.1\r\nHost: registry.example:5000\r\nRange: bytes=0-99\r\n\r\n")
        var out = bytes("prefix|")
        HTTPRequestHead(method: .head, target: "/", version: .http1_0).serialize(into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "prefix|HEAD / HTTP/1.0\r\n\r\n")
    }

    @Test(arguments: [
        HTTPRequestHead(method: .get, target: "/a/b%20c?q=1", headers: ["Host": "a", "Accept": "*/*"]),
        HTTPRequestHead(method: .post, target: "/preheat", headers: ["Host": "a", "Content-Length": "2", "X-Empty": ""]),
        HTTPRequestHead(method: .head, target: "http://origin.example/x", targetForm: .absolute, version: .http1_0,
                        headers: ["Host": "origin.example"]),
        HTTPRequestHead(method: .options, target: "*", targetForm: .asterisk, headers: ["Host": "a"]),
        HTTPRequestHead(method: .connect, target: "origin.example:443", targetForm: .authority, headers: ["Host": "origin.example:443"]),
        HTTPRequestHead(method: HTTPMethod(rawValue: "PURGE"), target: "/cache", headers: ["Host": "a", "Connection": "close"]),
    ])
    func roundTripThroughTheRequestParser(_ head: HTTPRequestHead) {
        let events = parse(head.serialized())
        guard case .request(let parsed)? = events.first else { Issue.record("\(events)"); return }
        #expect(parsed.method == head.method)
        #expect(parsed.target == head.target)
        #expect(parsed.targetForm == head.targetForm)
        #expect(parsed.version == head.version)
        #expect(parsed.headers == head.headers)
    }

    @Test func nothingBreaksTheRequestLine() {
        let head = HTTPRequestHead(method: HTTPMethod(rawValue: "GET X"), target: "/a b\r\nInjected: 1\r\n\r\n/é",
                                   headers: ["Host": "a", "X": "v\r\nInjected: 2"])
        let wire = String(decoding: head.serialized(), as: UTF8.self)
        #expect(wire == "GET-X /a%20b%0D%0AInjected:%201%0D%0A%0D%0A/%C3%A9 HTTP/1.1\r\nHost: a\r\nX: v  Injected: 2\r\n\r\n")
        let events = parse(head.serialized())
        #expect(events.count == 2)
        guard case .request(let parsed)? = events.first else { Issue.record("\(events)"); return }
        #expect(parsed.target == "/a%20b%0D%0AInjected:%201%0D%0A%0D%0A/%C3%A9")
        #expect(parsed.headers.count == 2)
    }
}

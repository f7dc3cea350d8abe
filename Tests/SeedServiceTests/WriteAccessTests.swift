import Testing
import DarterIO
@testable import SeedService

/// Who may import into a daemon: the policy, on addresses as a connection reports them.
@Suite("WriteAccess and POST /import's body")
struct WriteAccessTests {
    let loopback = SocketAddress(ipLiteral: "127.0.0.1", port: 40000)!
    let otherLoopback = SocketAddress(ipLiteral: "127.8.9.10", port: 40000)!
    let v6Loopback = SocketAddress(ipLiteral: "::1", port: 40000)!
    let lan = SocketAddress(ipLiteral: "10.1.2.3", port: 40000)!
    let v6 = SocketAddress(ipLiteral: "2001:db8::5", port: 40000)!

    func status(_ d: WriteAccess.Decision) -> Int? {
        if case .refused(let status, _) = d { return status }
        return nil
    }

    @Test("loopback (any 127/8, ::1) may write with or without a token configured, and without a header")
    func loopbackAllowed() {
        for access in [WriteAccess(), WriteAccess(token: "t")] {
            for a in [loopback, otherLoopback, v6Loopback] {
                #expect(access.decide(client: a, authorization: nil, localOnly: false) == .allowed)
                #expect(access.decide(client: a, authorization: nil, localOnly: true) == .allowed)
            }
        }
    }

    @Test("another address: 403 with no token configured; 401 without the header or with a wrong one; allowed with it; the path form never")
    func remote() {
        for a in [lan, v6] {
            #expect(status(WriteAccess().decide(client: a, authorization: "Bearer t", localOnly: false)) == 403)
            #expect(status(WriteAccess(token: "").decide(client: a, authorization: nil, localOnly: false)) == 403, "an empty token is none")
            let guarded = WriteAccess(token: "t0ken")
            #expect(status(guarded.decide(client: a, authorization: nil, localOnly: false)) == 401)
            #expect(status(guarded.decide(client: a, authorization: "Bearer t0ke", localOnly: false)) == 401)
            #expect(status(guarded.decide(client: a, authorization: "Bearer t0ken2", localOnly: false)) == 401)
            #expect(status(guarded.decide(client: a, authorization: "Basic t0ken", localOnly: false)) == 401)
            #expect(guarded.decide(client: a, authorization: "Bearer t0ken", localOnly: false) == .allowed)
            #expect(status(guarded.decide(client: a, authorization: "Bearer t0ken", localOnly: true)) == 403)
        }
        #expect(status(WriteAccess(token: "t").decide(client: nil, authorization: nil, localOnly: false)) == 401, "an unknown address is not loopback")
    }

    @Test("the refusal names the client and the flag")
    func reasons() {
        guard case .refused(_, let reason) = WriteAccess().decide(client: lan, authorization: nil, localOnly: false) else { Issue.record("allowed"); return }
        #expect(reason.contains("10.1.2.3") && reason.contains("--admin-token"))
    }

    @Test("POST /import's body: an absolute path, an optional valid pieceLength")
    func importRequest() throws {
        let r = try ImportPathRequest(parsing: Array(#"{"path": "/a/b c", "pieceLength": 65536}"#.utf8))
        #expect(r.path == "/a/b c" && r.pieceLength == 65536)
        #expect(try ImportPathRequest(parsing: Array(#"{"path": "/x", "pieceLength": null}"#.utf8)).pieceLength == nil)
        for bad in [#"{"path": "rel"}"#, #"{"path": 3}"#, #"{}"#, "[]", "", #"{"path": "/x", "pieceLength": 1000}"#, #"{"path": "/x\u0000y"}"#] {
            #expect(throws: ImportPathRequest.ParseError.self, "\(bad)") { try ImportPathRequest(parsing: Array(bad.utf8)) }
        }
    }
}

import Testing
@testable import Origin
import HTTPCore

@Suite("Origin parsing")
struct ParsingTests {
    @Test func bearerChallenge() {
        let c = AuthChallenge.parse([#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#])
        #expect(c == AuthChallenge(scheme: "bearer", parameters: ["realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                                                  "scope": "repository:library/alpine:pull,push"]))
        let both = AuthChallenge.parse([#"Basic realm="x", Bearer realm="https://a/t", error="invalid_token""#])
        #expect(both?.scheme == "bearer")
        #expect(both?.parameters["realm"] == "https://a/t")
        #expect(AuthChallenge.parse([#"Basic realm="Registry Realm""#])?.scheme == "basic")
        #expect(AuthChallenge.parse(["Negotiate"]) == nil)
    }

    @Test func repositoryFromPath() {
        #expect(RegistryClient.repository(inPath: "/v2/library/alpine/manifests/latest") == "library/alpine")
        #expect(RegistryClient.repository(inPath: "/v2/a/b/c/blobs/sha256:00") == "a/b/c")
        #expect(RegistryClient.repository(inPath: "/v2/") == nil)
        #expect(RegistryClient.host(of: "https://registry-1.docker.io") == "registry-1.docker.io")
        #expect(RegistryClient.host(of: "http://127.0.0.1:5000/") == "127.0.0.1:5000")
    }

    @Test func base64AndContentRange() {
        #expect(base64("alice:s3cret") == "YWxpY2U6czNjcmV0")
        #expect(base64("a") == "YQ==")
        #expect(base64("ab") == "YWI=")
        #expect(HTTPContentRange(parsing: "bytes 0-9/100") == HTTPContentRange(first: 0, last: 9, completeLength: 100))
        #expect(HTTPContentRange(parsing: "bytes 5-9/*") == HTTPContentRange(first: 5, last: 9, completeLength: nil))
        #expect(HTTPContentRange(parsing: "bytes 9-5/100") == nil)
        #expect(HTTPContentRange(parsing: "bytes */100") == nil)
        #expect(percentEncode("a b/c+d~", keepingSlash: true) == "a%20b/c%2Bd~")
        #expect(percentEncode("repository:a/b:pull", keepingSlash: false) == "repository%3Aa%2Fb%3Apull")
    }
}

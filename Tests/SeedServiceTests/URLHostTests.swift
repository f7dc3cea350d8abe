import Testing
@testable import SeedService

/// The host a client's URL names (a URL without one is a 400 before any fetch).
@Suite("urlHost")
struct URLHostTests {
    @Test("userinfo, port and IPv6 brackets are dropped; no host is nil")
    func hosts() {
        #expect(urlHost("http://user:pw@[::1]:80/p") == "::1")
        #expect(urlHost("https://user@Example.com:8443/x?y") == "Example.com")
        #expect(urlHost("s3://bucket/key") == "bucket")
        #expect(urlHost("nonsense") == nil && urlHost("http://") == nil && urlHost("http:///path") == nil)
    }
}

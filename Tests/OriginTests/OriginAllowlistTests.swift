import Testing
@testable import Origin

@Suite("OriginAllowlist")
struct OriginAllowlistTests {
    func ip(_ s: String) -> [UInt8] { parseIP(s)! }

    @Test("by default everything is allowed but link-local and cloud metadata addresses")
    func defaults() {
        let a = OriginAllowlist()
        #expect(a.allowsConnection(host: "127.0.0.1", address: ip("127.0.0.1")))
        #expect(a.allowsConnection(host: "example.com", address: ip("93.184.216.34")))
        #expect(!a.allowsConnection(host: "169.254.169.254", address: ip("169.254.169.254")))
        #expect(!a.allowsConnection(host: "metadata", address: ip("169.254.1.1")))
        #expect(!a.allowsConnection(host: "fd00:ec2::254", address: ip("fd00:ec2::254")))
        #expect(!a.allowsConnection(host: "fe80::1", address: ip("fe80::1")))
        // A name that resolves to a denied address among others: only that address is refused.
        #expect(a.allowsConnection(host: "sneaky.example", address: ip("10.0.0.1")))
        #expect(!a.allowsConnection(host: "sneaky.example", address: ip("169.254.169.254")))
    }

    @Test("a connection is judged by the host of the URL the transfer is at and the address it connects to")
    func connections() throws {
        let open = OriginAllowlist()
        #expect(open.allowsConnection(host: "origin.example", address: ip("10.1.2.3")))
        #expect(!open.allowsConnection(host: "origin.example", address: ip("169.254.169.254")), "a name that turns into metadata at connect time")
        #expect(!open.allowsConnection(host: "[fd00:ec2::254]", address: ip("fd00:ec2::254")))
        let listed = try OriginAllowlist.parse("*.example.com, 10.0.0.0/8").get()
        #expect(listed.allowsConnection(host: "cdn.example.com", address: ip("203.0.113.9")))
        #expect(!listed.allowsConnection(host: "cdn.other.net", address: ip("203.0.113.9")), "a redirect to an unlisted host")
        #expect(listed.allowsConnection(host: "cdn.other.net", address: ip("10.9.9.9")), "an address in a listed block")
    }

    @Test("entries restrict origins to listed hosts and blocks; an explicit entry can allow a denied block")
    func entries() throws {
        let a = try OriginAllowlist.parse("registry.local, *.example.com, 10.0.0.0/8, ::1, 169.254.10.0/24").get()
        #expect(a.allowsConnection(host: "registry.local", address: ip("192.168.1.5")))
        #expect(a.allowsConnection(host: "cdn.example.com", address: ip("1.2.3.4")))
        #expect(!a.allowsConnection(host: "example.com.evil", address: ip("1.2.3.4")))
        #expect(a.allowsConnection(host: "anything", address: ip("10.1.2.3")))
        #expect(!a.allowsConnection(host: "anything", address: ip("11.1.2.3")))
        #expect(a.allowsConnection(host: "::1", address: ip("::1")))
        #expect(a.allowsConnection(host: "x", address: ip("169.254.10.9")))
        #expect(!a.allowsConnection(host: "x", address: ip("169.254.11.9")))
        #expect(!a.allowsConnection(host: "unknown.name", address: ip("11.1.2.3")))
    }

    @Test("bad entries are reported by name")
    func errors() {
        #expect(throws: AllowlistError(entry: "10.0.0.0/33")) { try OriginAllowlist.parse("10.0.0.0/33").get() }
        #expect(throws: AllowlistError(entry: "bad host!")) { try OriginAllowlist.parse("ok.host, bad host!").get() }
    }

    @Test("CIDR matching at prefix boundaries")
    func cidr() throws {
        let c = try #require(parseCIDR("192.168.4.0/22"))
        #expect(c.contains(ip("192.168.7.255")))
        #expect(!c.contains(ip("192.168.8.0")))
        #expect(!c.contains(ip("::1")))
        let all = try #require(parseCIDR("0.0.0.0/0"))
        #expect(all.contains(ip("8.8.8.8")))
    }
}

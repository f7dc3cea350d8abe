import Testing
import DarterIO

@Suite("SocketAddress")
struct SocketAddressTests {
    @Test("loopback: 127.0.0.0/8, ::1 and IPv4-mapped 127/8; nothing else")
    func loopback() throws {
        func address(_ text: String) throws -> SocketAddress {
            try #require(SocketAddress(ipLiteral: text, port: 1), "\(text)")
        }
        for text in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.9"] { #expect(try address(text).isLoopback, "\(text)") }
        for text in ["10.77.0.2", "128.0.0.1", "::", "::2", "::ffff:10.0.0.1", "fe80::1"] { #expect(try !address(text).isLoopback, "\(text)") }
    }
}

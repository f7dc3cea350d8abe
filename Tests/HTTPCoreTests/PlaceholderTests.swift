import Testing
@testable import HTTPCore
@Test func placeholder() { #expect(HTTPCoreVersion.version == "0") }

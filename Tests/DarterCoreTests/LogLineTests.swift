import Testing
@testable import DarterCore

@Suite("Log lines: levels, text and JSON")
struct LogLineTests {
    @Test("levels by name, ordered")
    func levels() {
        #expect(LogLevel(name: "DEBUG") == .debug)
        #expect(LogLevel(name: "warn") == .warning)
        #expect(LogLevel(name: "loud") == nil)
        #expect(LogLevel.debug < .info && LogLevel.info < .warning && LogLevel.warning < .error)
        #expect(LogLevel.allCases.allSatisfy { LogLevel(name: $0.name) == $0 })
    }

    @Test("text: the message unchanged, then key=value fields, quoted when they hold spaces, quotes or =")
    func text() {
        #expect(LogLine.format(.info, "seed: listening on 127.0.0.1:1", format: .text, epochNanoseconds: 0) == "seed: listening on 127.0.0.1:1")
        let line = LogLine.format(.info, "task", fields: [("id", .string("ab")), ("bytes", .int(42)), ("seconds", .seconds(0.0001514)),
                                                          ("result", .string("failed: origin answered 500")), ("empty", .string("")), ("eq", .string("a=b"))],
                                  format: .text, epochNanoseconds: 0)
        #expect(line == #"task id=ab bytes=42 seconds=0.000151 result="failed: origin answered 500" empty="" eq="a=b""#)
    }

    @Test("json: one valid object with time, level, msg and the fields, typed")
    func json() throws {
        let line = LogLine.format(.warning, "shield: \"x\"\n retry", fields: [("bytes", .int(7)), ("seconds", .seconds(1.25)), ("path", .string("/a b"))],
                                  format: .json, epochNanoseconds: 1_796_236_344_123_456_789)
        #expect(!line.contains("\n"))
        let v = try JSONValue.parse(Array(line.utf8))
        #expect(v["level"]?.string == "warning")
        #expect(v["msg"]?.string == "shield: \"x\"\n retry")
        #expect(v["bytes"]?.integer == 7)
        #expect(v["seconds"]?.number == 1.25)
        #expect(v["path"]?.string == "/a b")
        #expect(v["time"]?.string == "2026-12-02T18:32:24.123Z")
    }

    @Test("RFC 3339 times in UTC, milliseconds, across leap days and before 1970")
    func times() {
        #expect(LogLine.rfc3339(epochNanoseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(LogLine.rfc3339(epochNanoseconds: 951_782_400_000_000_000) == "2000-02-29T00:00:00.000Z")
        #expect(LogLine.rfc3339(epochNanoseconds: 1_709_251_199_999_000_000) == "2024-02-29T23:59:59.999Z")
        #expect(LogLine.rfc3339(epochNanoseconds: -1_000_000) == "1969-12-31T23:59:59.999Z")
    }

    @Test("seconds with microsecond resolution and no trailing zeros")
    func seconds() {
        #expect(LogLine.formatSeconds(2.5) == "2.5")
        #expect(LogLine.formatSeconds(3) == "3")
        #expect(LogLine.formatSeconds(0.000001) == "0.000001")
        #expect(LogLine.formatSeconds(12.3456789) == "12.345679")
    }
}

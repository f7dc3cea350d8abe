import Testing
@testable import HTTPCore

@Suite struct RangeTests {
    static let length = 1000

    static let table: [(String?, HTTPRangeSelection)] = [
        (nil, .full),
        ("bytes=0-499", .partial(0...499)),
        ("bytes=500-999", .partial(500...999)),
        ("bytes=0-0", .partial(0...0)),
        ("bytes=999-999", .partial(999...999)),
        ("bytes=500-", .partial(500...999)),
        ("bytes=0-", .partial(0...999)),
        ("bytes=-1", .partial(999...999)),
        ("bytes=-500", .partial(500...999)),
        ("bytes=-1000", .partial(0...999)),
        ("bytes=-5000", .partial(0...999)),                 // suffix larger than the length: all of it
        ("bytes=900-5000", .partial(900...999)),            // last clamped to length - 1
        ("bytes=0-99999999999999999999999", .partial(0...999)),  // huge last: clamped
        ("BYTES=1-2", .partial(1...2)),                     // unit is case-insensitive
        ("bytes= 1-2", .partial(1...2)),                    // whitespace around specs tolerated
        ("bytes=1-2 ", .partial(1...2)),
        ("bytes=1-2, ", .partial(1...2)),                   // empty list elements
        ("bytes=,1-2", .partial(1...2)),
        ("bytes=1000-", .unsatisfiable),                    // start == length
        ("bytes=1000-2000", .unsatisfiable),                // start beyond length
        ("bytes=5000-", .unsatisfiable),
        ("bytes=99999999999999999999999-", .unsatisfiable),
        ("bytes=-0", .unsatisfiable),
        ("bytes=1000-1001, -0", .unsatisfiable),
        ("bytes=0-1,5-6", .multiple([0...1, 5...6])),       // documented: served as 200 full
        ("bytes=0-1, 2000-3000", .partial(0...1)),          // only one satisfiable range
        ("bytes=-1,0-0", .multiple([999...999, 0...0])),
        ("bytes=5-4", .full),                               // last < first: malformed, ignored
        ("bytes=1 - 2", .full),                             // whitespace inside a spec
        ("bytes=+1-2", .full),
        ("bytes=1-+2", .full),
        ("bytes=--1", .full),
        ("bytes=a-b", .full),
        ("bytes=1", .full),
        ("bytes=", .full),
        ("bytes=,", .full),
        ("bytes", .full),
        ("bytes =1-2", .full),
        ("items=1-2", .full),                               // other unit
        ("1-2", .full),
        ("", .full),
        ("bytes=0-1,x", .full),                             // one bad spec spoils the set
    ]

    @Test(arguments: table)
    func selection(_ header: String?, _ expected: HTTPRangeSelection) {
        #expect(HTTPByteRanges.select(rangeHeader: header, contentLength: Self.length) == expected)
    }

    /// Documented choice: with zero-length content, Range is ignored (200, empty body).
    @Test(arguments: ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=5-"])
    func zeroLengthContentIsServedFull(_ header: String) {
        #expect(HTTPByteRanges.select(rangeHeader: header, contentLength: 0) == .full)
    }

    @Test func oneByteContent() {
        #expect(HTTPByteRanges.select(rangeHeader: "bytes=0-0", contentLength: 1) == .partial(0...0))
        #expect(HTTPByteRanges.select(rangeHeader: "bytes=-1", contentLength: 1) == .partial(0...0))
        #expect(HTTPByteRanges.select(rangeHeader: "bytes=1-", contentLength: 1) == .unsatisfiable)
    }

    @Test func contentRangeValues() {
        #expect(HTTPContentRange.value(for: 0...499, completeLength: 1000) == "bytes 0-499/1000")
        #expect(HTTPContentRange.unsatisfiedValue(completeLength: 1000) == "bytes */1000")
    }

    @Test(arguments: [
        ("bytes 0-9/100", HTTPContentRange(first: 0, last: 9, completeLength: 100)),
        ("bytes 5-9/*", HTTPContentRange(first: 5, last: 9, completeLength: nil)),
        ("BYTES 0-0/1", HTTPContentRange(first: 0, last: 0, completeLength: 1)),
        ("  bytes   10-19/20\t", HTTPContentRange(first: 10, last: 19, completeLength: 20)),
        ("bytes 0-9223372036854775806/9223372036854775807",
         HTTPContentRange(first: 0, last: 9_223_372_036_854_775_806, completeLength: .max)),
        ("bytes 007-008/010", HTTPContentRange(first: 7, last: 8, completeLength: 10)),
    ])
    func parseContentRange(_ text: String, _ expected: HTTPContentRange) {
        #expect(HTTPContentRange(parsing: text) == expected)
        #expect(HTTPContentRange(parsing: text[...]) == expected)
        #expect(HTTPContentRange(parsing: expected.description) == expected)
    }

    @Test(arguments: [
        "", "bytes", "bytes ", "bytes */100", "bytes 9-5/100", "bytes 0-9/9", "bytes 0-9/5", "bytes 0-9", "bytes 0-/10",
        "bytes -9/10", "bytes 0--9/10", "bytes +0-9/10", "bytes 0-+9/10", "bytes 0-9/+10", "bytes 0 - 9/10", "bytes 0-9/ 10",
        "bytes=0-9/10", "bytes\t0-9/10", "items 0-9/10", "bytes 0-9/**", "bytes 0-9/10/10", "bytes 0x0-9/10",
        "bytes 0-99999999999999999999/*", "bytes 0-9223372036854775807/9223372036854775807",
    ])
    func malformedContentRange(_ text: String) {
        #expect(HTTPContentRange(parsing: text) == nil)
    }

    @Test func contentRangeCountAndDescription() {
        let range = HTTPContentRange(first: 100, last: 1099, completeLength: nil)
        #expect(range.count == 1000)
        #expect(range.description == "bytes 100-1099/*")
        #expect(HTTPContentRange(first: 0, last: 0, completeLength: 1).description == "bytes 0-0/1")
    }
}

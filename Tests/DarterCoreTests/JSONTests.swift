import Testing
import DarterCore

@Suite("JSONValue")
struct JSONTests {
    @Test func parses() throws {
        let v = try JSONValue.parse(Array(#"{"token":"a\"b\u00e9","expires_in":300,"x":[1,true,null,{"y":-1.5e2}]}"#.utf8))
        #expect(v["token"]?.string == "a\"bé")
        #expect(v["expires_in"]?.integer == 300)
        #expect(v["x"]?.array?.count == 4)
        #expect(v["x"]?.array?[3]["y"]?.number == -150)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(Array("{\"a\":}".utf8)) }
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(Array("{} x".utf8)) }
    }

    @Test("serialized text parses back to the same value; keys are sorted")
    func roundTrip() throws {
        let v: JSONValue = ["b": [1, "two\n\"q\"\u{01}", true, nil], "a": ["n": .number(-2.5), "big": JSONValue(Int64(1) << 40)], "é": ""]
        let text = v.serialized
        #expect(text.hasPrefix(#"{"a":"#))
        #expect(text.contains(#""two\n\"q\"\u0001""#))
        #expect(text.contains(#""big":1099511627776"#))
        #expect(try JSONValue.parse(Array(text.utf8)) == v)
    }

    @Test("numbers out of Double's range are refused, so every parsed value serializes back to itself")
    func outOfRange() throws {
        // Found by tools/fuzz protocol: 1e400 parsed as infinity and serialized as null.
        for text in ["1e400", "-1e400", "[1,1e309]", #"{"contentLength":1E999}"#] {
            #expect(throws: JSONValue.ParseError.self, "\(text)") { try JSONValue.parse(Array(text.utf8)) }
        }
        for text in ["1.7976931348623157e308", "-5e-324", "1e-400", "1e15", "123456789012345.6"] {
            let v = try JSONValue.parse(Array(text.utf8))
            #expect(try JSONValue.parse(v.serializedBytes) == v, "\(text)")
        }
    }

    @Test func integerAccessor() {
        #expect(JSONValue.number(3).integer == 3)
        #expect(JSONValue.number(3.5).integer == nil)
        #expect(JSONValue.string("3").integer == nil)
        #expect(JSONValue.number(.infinity).serialized == "null")
    }
}

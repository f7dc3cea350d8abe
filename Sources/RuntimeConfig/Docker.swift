import DarterCore

/// Docker Engine: the daemon first in `registry-mirrors` (Docker Hub only) in `daemon.json`; the
/// rest of the file as it was.
public enum DaemonJSON {
    public static func addMirror(_ config: String?, mirror: String) throws(RuntimeConfigError) -> String {
        guard let config, !config.allSatisfy({ $0.isWhitespace }) else {
            return "{\n  \"registry-mirrors\": [\(JSONValue.quoted(mirror))]\n}\n"
        }
        guard let value = try? JSONValue.parse(Array(config.utf8)), let object = value.object else {
            throw RuntimeConfigError("not a JSON object")
        }
        let key = "registry-mirrors"
        let bytes = Array(config.utf8)
        if let existing = object[key] {
            guard let items = existing.array, items.allSatisfy({ $0.string != nil }) else { throw RuntimeConfigError("\(key) is not an array of strings") }
            let urls = items.compactMap(\.string)
            if urls.contains(mirror) || urls.contains(mirror + "/") { return config }
            guard let range = topLevelValue(bytes, key: key) else { throw RuntimeConfigError("cannot find \(key)") }
            let replacement = "[" + ([mirror] + urls).map(JSONValue.quoted).joined(separator: ", ") + "]"
            return String(decoding: bytes[..<range.lowerBound] + Array(replacement.utf8) + bytes[range.upperBound...], as: UTF8.self)
        }
        // A new first member, indented like the others.
        let open = bytes.firstIndex(of: UInt8(ascii: "{"))!
        let next = bytes[(open + 1)...].firstIndex { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d) }!
        let member = "\(JSONValue.quoted(key)): [\(JSONValue.quoted(mirror))]"
        if bytes[next] == UInt8(ascii: "}") {
            return String(decoding: bytes[...open] + Array("\n  \(member)\n".utf8) + bytes[next...], as: UTF8.self)
        }
        let lineStart = bytes[..<next].lastIndex(of: 0x0a).map { $0 + 1 }
        let indent = lineStart.map { String(decoding: bytes[$0..<next], as: UTF8.self) } ?? " "
        let separator = lineStart == nil ? " " : "\n" + indent
        return String(decoding: bytes[..<next] + Array("\(member),\(separator)".utf8) + bytes[next...], as: UTF8.self)
    }

    /// Where the value of a top-level member is in a JSON object's text.
    static func topLevelValue(_ b: [UInt8], key: String) -> Range<Int>? {
        var i = 0, depth = 0
        var lastString: (String, Int)? = nil  // a depth-1 string and the index after it
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                let start = i
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i += 1
                if depth == 1 { lastString = ((try? JSONValue.parse(Array(b[start..<min(i, b.count)])))?.string ?? "", i) }
                continue
            }
            if c == UInt8(ascii: ":"), depth == 1, let (name, _) = lastString, name == key {
                var s = i + 1
                while s < b.count, b[s] == 0x20 || b[s] == 0x09 || b[s] == 0x0a || b[s] == 0x0d { s += 1 }
                var e = s, d = 0
                while e < b.count {
                    let x = b[e]
                    if x == UInt8(ascii: "\"") {
                        e += 1
                        while e < b.count, b[e] != UInt8(ascii: "\"") { e += b[e] == UInt8(ascii: "\\") ? 2 : 1 }
                    } else if x == UInt8(ascii: "[") || x == UInt8(ascii: "{") { d += 1 }
                    else if x == UInt8(ascii: "]") || x == UInt8(ascii: "}") { d -= 1; if d == 0 { return s..<(e + 1) } }
                    else if d == 0 && (x == UInt8(ascii: ",") || x == 0x20 || x == 0x0a) { return s..<e }
                    e += 1
                }
                return nil
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
            if c == UInt8(ascii: ",") { lastString = nil }
            i += 1
        }
        return nil
    }
}

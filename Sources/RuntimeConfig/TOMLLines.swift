/// A TOML document seen line by line, as much as a minimal edit needs: which lines are table
/// headers, which are `key = value` (with the table they belong to), and which are anything
/// else (blank, comments, the continuation of a multi-line string or array). The text is kept
/// byte for byte; edits replace or insert whole lines, so everything else stays as it was.
struct TOMLLines {
    enum Kind: Equatable {
        /// `[a."b.c"]` (`isArray`: `[[a.b]]`).
        case header(path: [String], isArray: Bool)
        /// `a.b = value`: the dotted key as written (relative to the table) and where the value
        /// is in the line when it ends on it (nil: it goes on over later lines).
        case key(path: [String], value: Range<String.Index>?)
        case other
    }

    struct Line {
        /// The line with its terminator (`\n`, `\r\n`), if it has one.
        var text: String
        var kind: Kind
        /// The table the line is in (the last header above it; `[]` before any).
        var table: [String]
        /// A key line: `table + key`.
        var fullKey: [String]? { if case .key(let path, _) = kind { return table + path } else { return nil } }
        var value: Substring? { if case .key(_, let r?) = kind { return text[r] } else { return nil } }
        var indentation: Substring { text.prefix { $0 == " " || $0 == "\t" } }
    }

    var lines: [Line]

    /// The document's text again.
    var text: String { lines.map(\.text).joined() }

    init(_ text: String) throws(RuntimeConfigError) {
        lines = []
        var table: [String] = []
        var scanner = ValueScanner()
        var number = 0
        for raw in TOMLLines.split(text) {
            number += 1
            if scanner.open {
                scanner.scan(Substring(raw))
                lines.append(Line(text: raw, kind: .other, table: table))
                continue
            }
            let body = raw.drop { $0 == " " || $0 == "\t" }
            if body.isEmpty || body.first == "#" || body.first == "\n" || body.first == "\r\n" {
                lines.append(Line(text: raw, kind: .other, table: table))
                continue
            }
            if body.first == "[" {
                let isArray = body.hasPrefix("[[")
                var rest = body.dropFirst(isArray ? 2 : 1)
                guard let path = TOMLLines.parseKey(&rest) else { throw RuntimeConfigError("line \(number): cannot read the table header \(raw.trimmed)") }
                let close = isArray ? "]]" : "]"
                guard rest.hasPrefix(close) else { throw RuntimeConfigError("line \(number): cannot read the table header \(raw.trimmed)") }
                rest = rest.dropFirst(close.count).drop { $0 == " " || $0 == "\t" }
                guard rest.isEmpty || rest.first == "#" || rest.first == "\n" || rest.first == "\r\n" else {
                    throw RuntimeConfigError("line \(number): unexpected text after the table header \(raw.trimmed)")
                }
                table = path
                lines.append(Line(text: raw, kind: .header(path: path, isArray: isArray), table: path))
                continue
            }
            var rest = body
            guard let key = TOMLLines.parseKey(&rest), rest.first == "=" else {
                throw RuntimeConfigError("line \(number): expected `key = value`, a [table] or a comment, got \(raw.trimmed)")
            }
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" }
            let start = rest.startIndex
            let end = scanner.scan(rest)
            let value: Range<String.Index>? = scanner.open ? nil : start..<end
            lines.append(Line(text: raw, kind: .key(path: key, value: value), table: table))
        }
    }

    /// The lines of `text`, each with its terminator (the last may have none).
    static func split(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        for c in text {
            current.append(c)
            if c == "\n" || c == "\r\n" { out.append(current); current = "" }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// A dotted key (`a."b.c".d`, `'lit'`), leaving `s` after it and the blanks that follow.
    static func parseKey(_ s: inout Substring) -> [String]? {
        var parts: [String] = []
        while true {
            s = s.drop { $0 == " " || $0 == "\t" }
            guard let first = s.first else { return nil }
            if first == "\"" || first == "'" {
                guard let (value, rest) = readString(s) else { return nil }
                parts.append(value)
                s = rest
            } else {
                let bare = s.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
                guard !bare.isEmpty else { return nil }
                parts.append(String(bare))
                s = s[bare.endIndex...]
            }
            s = s.drop { $0 == " " || $0 == "\t" }
            if s.first == "." { s = s.dropFirst(); continue }
            return parts
        }
    }

    /// A one-line basic (`"…"`, with escapes) or literal (`'…'`) string at the start of `s`:
    /// its value and what follows it.
    static func readString(_ s: Substring) -> (String, Substring)? {
        guard let quote = s.first, quote == "\"" || quote == "'" else { return nil }
        var out = ""
        var i = s.index(after: s.startIndex)
        while i < s.endIndex {
            let c = s[i]
            if c == quote { return (out, s[s.index(after: i)...]) }
            if c == "\n" || c == "\r\n" { return nil }
            if c == "\\" && quote == "\"" {
                i = s.index(after: i)
                guard i < s.endIndex else { return nil }
                switch s[i] {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "\"": out.append("\"")
                case "b": out.append("\u{8}")
                case "f": out.append("\u{c}")
                case "u", "U":
                    let n = s[i] == "u" ? 4 : 8
                    let hex = s[s.index(after: i)...].prefix(n)
                    guard hex.count == n, let v = UInt32(hex, radix: 16), let u = Unicode.Scalar(v) else { return nil }
                    out.unicodeScalars.append(u)
                    i = s.index(i, offsetBy: n)
                default: return nil
                }
            } else {
                out.append(c)
            }
            i = s.index(after: i)
        }
        return nil
    }

    /// The string a value is, when it is a one-line string (nil for anything else).
    static func stringValue(_ value: Substring?) -> String? {
        guard let value, let (s, rest) = readString(value), rest.isEmpty else { return nil }
        return s
    }

    /// `s` as a TOML basic string. Not JSONValue.writeString: TOML also requires DEL (0x7f) escaped.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where u.value < 0x20 || u.value == 0x7f:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// A key component bare when it can be, else quoted.
    static func keyComponent(_ s: String) -> String {
        !s.isEmpty && s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) ? s : quote(s)
    }

    /// `[a."b.c"]`
    static func header(_ path: [String], array: Bool = false) -> String {
        let key = path.map(keyComponent).joined(separator: ".")
        return array ? "[[\(key)]]" : "[\(key)]"
    }

    /// The line's newline style (the document's first line ending; `\n` if none).
    var newline: String { lines.first { $0.text.hasSuffix("\r\n") } != nil ? "\r\n" : "\n" }

    /// Makes the last line end with a newline, so lines can follow it.
    mutating func terminateLastLine() {
        guard let last = lines.indices.last, !(lines[last].text.hasSuffix("\n") || lines[last].text.hasSuffix("\r\n")) else { return }
        lines[last].text += newline
    }

    /// Replaces the value of key line `index` with `value` (the rest of the line kept).
    mutating func replaceValue(at index: Int, with value: String) {
        guard case .key(let path, let range?) = lines[index].kind else { return }
        var text = lines[index].text
        let offset = text.distance(from: text.startIndex, to: range.lowerBound)
        text.replaceSubrange(range, with: value)
        let start = text.index(text.startIndex, offsetBy: offset)
        lines[index] = Line(text: text, kind: .key(path: path, value: start..<text.index(start, offsetBy: value.count)), table: lines[index].table)
    }

    /// Inserts raw lines (each ending in a newline) before line `index`, re-reading the result.
    mutating func insert(_ newLines: [String], at index: Int) throws(RuntimeConfigError) {
        if index > 0 && index == lines.count { terminateLastLine() }
        var texts = lines.map(\.text)
        texts.insert(contentsOf: newLines, at: index)
        self = try TOMLLines(texts.joined())
    }
}

/// Follows a TOML value over lines: strings (one- and multi-line, basic and literal), arrays and
/// inline tables, comments. `open` while the value goes on past the line.
struct ValueScanner {
    private enum State { case none, basic, literal, multiBasic, multiLiteral }
    private var state = State.none
    private var depth = 0
    var open: Bool { state != .none || depth > 0 }

    /// Scans one line (or its rest); returns where the value ends on it: before a comment and
    /// the blanks and newline at the end.
    @discardableResult
    mutating func scan(_ s: Substring) -> String.Index {
        var i = s.startIndex
        var lastContent = s.startIndex
        func at(_ j: String.Index, _ lit: String) -> Bool { s[j...].hasPrefix(lit) }
        while i < s.endIndex {
            let c = s[i]
            switch state {
            case .none:
                if c == "#" { return lastContent }
                if at(i, "\"\"\"") { state = .multiBasic; i = s.index(i, offsetBy: 3); lastContent = i; continue }
                if at(i, "'''") { state = .multiLiteral; i = s.index(i, offsetBy: 3); lastContent = i; continue }
                if c == "\"" { state = .basic } else if c == "'" { state = .literal }
                else if c == "[" || c == "{" { depth += 1 } else if c == "]" || c == "}" { depth = max(0, depth - 1) }
                if !(c == " " || c == "\t" || c == "\n" || c == "\r\n" || c == "\r") { lastContent = s.index(after: i) }
            case .basic:
                if c == "\\" { i = s.index(after: i); if i < s.endIndex { i = s.index(after: i) }; lastContent = i; continue }
                if c == "\"" { state = .none }
                if c == "\n" || c == "\r\n" { state = .none }  // malformed; do not run on
                lastContent = s.index(after: i)
            case .literal:
                if c == "'" || c == "\n" || c == "\r\n" { state = .none }
                lastContent = s.index(after: i)
            case .multiBasic:
                if c == "\\" { i = s.index(after: i); if i < s.endIndex { i = s.index(after: i) }; continue }
                if at(i, "\"\"\"") {
                    i = s.index(i, offsetBy: 3)
                    while i < s.endIndex, s[i] == "\"" { i = s.index(after: i) }
                    state = .none; lastContent = i; continue
                }
            case .multiLiteral:
                if at(i, "'''") {
                    i = s.index(i, offsetBy: 3)
                    while i < s.endIndex, s[i] == "'" { i = s.index(after: i) }
                    state = .none; lastContent = i; continue
                }
            }
            i = s.index(after: i)
        }
        return lastContent
    }
}

extension String {
    var trimmed: String { String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r\n" || $0 == "\r" }.reversed()) }
}

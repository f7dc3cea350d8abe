/// A small `--flag value` parser: every flag is declared with a default and a help line, so
/// `--help` can list them and a bad value names its flag.
struct Arguments {
    struct Flag {
        enum Kind { case value, repeated, toggle }
        let name: String
        let defaultValue: String
        let help: String
        /// A one-letter alias (`-O` for `--output`).
        var short: Character? = nil
        /// A value once, a value each time (`-H` …), or a switch that takes no value.
        var kind = Kind.value

        init(name: String, defaultValue: String, help: String, short: Character? = nil, kind: Kind = .value) {
            self.name = name
            self.defaultValue = defaultValue
            self.help = help
            self.short = short
            self.kind = kind
        }
    }

    let command: String
    let flags: [Flag]
    private(set) var values: [String: String] = [:]
    private(set) var repeated: [String: [String]] = [:]
    private(set) var toggles: Set<String> = []
    private(set) var positional: [String] = []
    private(set) var wantsHelp = false

    init(command: String, flags: [Flag], arguments: [String]) throws(UsageError) {
        self.command = command
        self.flags = flags
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--help" || a == "-h" { wantsHelp = true; i += 1; continue }
            if a.hasPrefix("-") && a.count > 1 && a != "-" {
                var name: String
                var value: String?
                if a.hasPrefix("--") {
                    name = String(a.dropFirst(2))
                    if let eq = name.firstIndex(of: "=") {
                        value = String(name[name.index(after: eq)...])
                        name = String(name[..<eq])
                    }
                } else {
                    guard a.count == 2, let flag = flags.first(where: { $0.short == a.last }) else {
                        throw UsageError("\(command): unknown flag \(a) (see darter \(command) --help)")
                    }
                    name = flag.name
                }
                guard let flag = flags.first(where: { $0.name == name }) else { throw UsageError("\(command): unknown flag --\(name) (see darter \(command) --help)") }
                if flag.kind == .toggle {
                    guard value == nil else { throw UsageError("\(command): flag --\(name) takes no value") }
                    toggles.insert(name)
                    i += 1
                    continue
                }
                if value == nil {
                    guard i + 1 < arguments.count else { throw UsageError("\(command): flag \(a) needs a value") }
                    value = arguments[i + 1]
                    i += 1
                }
                if flag.kind == .repeated { repeated[name, default: []].append(value!) } else { values[name] = value }
            } else {
                positional.append(a)
            }
            i += 1
        }
    }

    func isSet(_ name: String) -> Bool { toggles.contains(name) }
    func all(_ name: String) -> [String] { repeated[name] ?? [] }
    /// Whether a value flag was given (not defaulted).
    func given(_ name: String) -> Bool { values[name] != nil }

    func string(_ name: String) -> String {
        values[name] ?? flags.first { $0.name == name }!.defaultValue
    }

    func int(_ name: String) throws(UsageError) -> Int {
        let s = string(name)
        guard let v = parseSize(s) else { throw UsageError("\(command): --\(name) must be a whole number (k/m/g suffixes allowed), got '\(s)'") }
        return v
    }

    /// `true`/`false` (also `yes`/`no`, `1`/`0`).
    func bool(_ name: String) throws(UsageError) -> Bool {
        switch string(name).lowercased() {
        case "true", "yes", "1": return true
        case "false", "no", "0": return false
        default: throw UsageError("\(command): --\(name) must be true or false, got '\(string(name))'")
        }
    }

    func optionalInt(_ name: String) throws(UsageError) -> Int? {
        string(name).isEmpty ? nil : try int(name)
    }

    var usage: String {
        var out = "usage: darter \(command) [flags]\n\nflags:\n"
        for f in flags {
            let d = f.defaultValue.isEmpty ? "" : " (default: \(f.defaultValue))"
            let value = f.kind == .toggle ? "" : " V"
            let names = (f.short.map { "-\($0), " } ?? "    ") + "--\(f.name)" + value
            out += "  \(names)".padding(30) + f.help + d + "\n"
        }
        return out
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// "4096", "4k", "64m", "2g" → bytes; nil for anything else, a negative number, or one too
/// large for 64 bits.
func parseSize(_ s: String) -> Int? {
    let lower = s.lowercased()
    let units: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
    if let last = lower.last, let unit = units[last] {
        guard let n = Int(lower.dropLast()), n >= 0 else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : v
    }
    return Int(lower).flatMap { $0 >= 0 ? $0 : nil }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}

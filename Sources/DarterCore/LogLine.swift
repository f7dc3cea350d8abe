/// How much a daemon logs (`--log-level`): a line is written when its level is at least this.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// `--log-format`: `text` (the message, then `key=value` fields: what people and the tests read)
/// or `json` (one object a line, for log collectors).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// A field value of a structured line.
public enum LogValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case seconds(Double)

    var text: String {
        switch self {
        case .string(let s): s
        case .int(let n): String(n)
        case .seconds(let s): LogLine.formatSeconds(s)
        }
    }
}

/// One log line, formatted (pure: the caller gives the time).
public enum LogLine {
    /// - Parameters:
    ///   - fields: structured fields after the message, in this order (text) or as keys (json).
    ///   - epochNanoseconds: wall-clock time of the line (json only: journald and kubelet stamp text lines).
    /// - Returns: the line, without its newline. Text: `message key=value …`, a value with spaces,
    ///   quotes or `=` quoted; json: `{"fields…","level":…,"msg":…,"time":"2026-12-02T18:32:24.123Z"}`.
    public static func format(_ level: LogLevel, _ message: String, fields: [(String, LogValue)] = [],
                              format: LogFormat, epochNanoseconds: Int64) -> String {
        switch format {
        case .text:
            var out = message
            for (key, value) in fields {
                out += " " + key + "=" + quoteIfNeeded(value.text)
            }
            return out
        case .json:
            var object: [String: JSONValue] = [:]
            for (key, value) in fields {
                switch value {
                case .string(let s): object[key] = .string(s)
                case .int(let n): object[key] = .number(Double(n))
                case .seconds(let s): object[key] = .number(s)
                }
            }
            object["time"] = .string(rfc3339(epochNanoseconds: epochNanoseconds))
            object["level"] = .string(level.name)
            object["msg"] = .string(message)
            return JSONValue.object(object).serialized
        }
    }

    /// Seconds with microsecond resolution, no trailing zeros (`0.000151`, `2.5`).
    public static func formatSeconds(_ s: Double) -> String {
        let micros = Int64((s * 1e6).rounded())
        let whole = micros / 1_000_000, frac = micros % 1_000_000
        guard frac != 0 else { return String(whole) }
        var digits = String(frac)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.last == "0" { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    static func quoteIfNeeded(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" || $0 == "\t" }) else { return s }
        return JSONValue.quoted(s)
    }

    /// `2026-12-02T18:32:24.123Z` (UTC, milliseconds).
    public static func rfc3339(epochNanoseconds ns: Int64) -> String {
        let millis = ns >= 0 ? ns / 1_000_000 : (ns - 999_999) / 1_000_000
        let seconds = millis >= 0 ? millis / 1000 : (millis - 999) / 1000
        let ms = millis - seconds * 1000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Days since 1970-01-01 → civil date (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ n: Int64, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(ms, 3))Z"
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import Synchronization

/// The process's log: lines at or above a level (`--log-level`, default info) go to standard
/// error as text or JSON (`--log-format`), one write(2) each. Formatting is `LogLine`'s
/// (DarterCore, pure). Lines below the level cost one atomic load (``isEnabled(_:)``); callers
/// that build fields for a debug line check it first.
public enum Log {
    private static let level = Atomic<Int>(LogLevel.info.rawValue)
    private static let settings = Mutex<(format: LogFormat, sink: (@Sendable (String) -> Void)?)>((.text, nil))

    /// Sets the level and format; `sink` receives each line (with its newline) instead of
    /// standard error (tests).
    public static func configure(level: LogLevel, format: LogFormat, sink: (@Sendable (String) -> Void)? = nil) {
        self.level.store(level.rawValue, ordering: .relaxed)
        settings.withLock { $0 = (format, sink) }
    }

    public static var currentLevel: LogLevel { LogLevel(rawValue: level.load(ordering: .relaxed)) ?? .info }

    public static func isEnabled(_ l: LogLevel) -> Bool { l.rawValue >= level.load(ordering: .relaxed) }

    public static func write(_ l: LogLevel, _ message: String, fields: [(String, LogValue)] = []) {
        guard isEnabled(l) else { return }
        let (format, sink) = settings.withLock { $0 }
        let line = LogLine.format(l, message, fields: fields, format: format, epochNanoseconds: wallClockNanoseconds()) + "\n"
        if let sink { sink(line) } else { SystemCalls.writeStandardError(line) }
    }

    public static func debug(_ message: String, fields: [(String, LogValue)] = []) { write(.debug, message, fields: fields) }
    public static func info(_ message: String, fields: [(String, LogValue)] = []) { write(.info, message, fields: fields) }
    public static func warning(_ message: String, fields: [(String, LogValue)] = []) { write(.warning, message, fields: fields) }
    public static func error(_ message: String, fields: [(String, LogValue)] = []) { write(.error, message, fields: fields) }

    static func wallClockNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import DarterCore
import DarterIO

/// What `darter seed`, `peer` and `scheduler` share on the command line and at exit.
enum DaemonSupport {
    /// `--check-config`: every daemon's switch to validate its flags and stop before the store,
    /// the sockets or the network.
    static let checkConfigFlag = Arguments.Flag(name: "check-config", defaultValue: "",
                                                help: "parse and validate every flag, print a one-line summary and exit (0: ok; 2: a bad flag, named) without opening the store, binding or contacting anyone",
                                                kind: .toggle)

    /// `--log-level` and `--log-format`, on every daemon.
    static let logFlags: [Arguments.Flag] = [
        .init(name: "log-level", defaultValue: "info", help: "debug | info | warning | error: the least a line must be to be logged (debug: one line per request)"),
        .init(name: "log-format", defaultValue: "text", help: "text | json: log lines to standard error as text, or one JSON object each"),
    ]

    /// Applies `--log-level` and `--log-format` (before anything is logged); a bad value names its flag.
    static func configureLogging(_ args: Arguments, command: String) throws(UsageError) {
        guard let level = LogLevel(name: args.string("log-level")) else {
            throw UsageError("\(command): --log-level must be debug, info, warning or error, got '\(args.string("log-level"))'")
        }
        guard let format = LogFormat(rawValue: args.string("log-format")) else {
            throw UsageError("\(command): --log-format must be text or json, got '\(args.string("log-format"))'")
        }
        Log.configure(level: level, format: format)
    }

    /// `--listen HOST:PORT` (`[v6]:PORT`) → host (brackets removed) and port. The host must be
    /// an IP address (the listener binds literals only: 0.0.0.0 or :: for all).
    static func parseListen(_ listen: String, command: String, example: String) throws(UsageError) -> (host: String, port: UInt16) {
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            throw UsageError("\(command): --listen must be HOST:PORT (e.g. \(example)), got '\(listen)'")
        }
        let host = String(listen[..<colon]).trimmingBrackets()
        guard SocketAddress(ipLiteral: host, port: port) != nil else {
            throw UsageError("\(command): --listen needs an IP address to bind (e.g. \(example), 0.0.0.0:PORT or [::]:PORT for all), got '\(listen)'")
        }
        return (host, port)
    }

    /// On SIGTERM or SIGINT: logs it, runs `stop` (a graceful shutdown), exits 0. Keep the
    /// returned sources alive as long as the process runs.
    static func onTermination(_ command: String, _ stop: @escaping @Sendable () async -> Void) -> [any DispatchSourceSignal] {
        for sig in [SIGTERM, SIGINT] { signal(sig, SIG_IGN) }
        return [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                log("\(command): signal \(sig), shutting down")
                Task {
                    await stop()
                    exit(0)
                }
            }
            source.resume()
            return source
        }
    }
}

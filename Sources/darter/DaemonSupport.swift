#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// What `darter seed`, `peer` and `scheduler` share on the command line and at exit.
enum DaemonSupport {
    /// `--listen HOST:PORT` (`[v6]:PORT`) → host (brackets removed) and port.
    static func parseListen(_ listen: String, command: String, example: String) throws(UsageError) -> (host: String, port: UInt16) {
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            throw UsageError("\(command): --listen must be HOST:PORT (e.g. \(example)), got '\(listen)'")
        }
        return (String(listen[..<colon]).trimmingBrackets(), port)
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

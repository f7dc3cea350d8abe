#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterGet
import DarterIO
import Origin

/// `darter get URL|sha256:HEX -O FILE`: a download through the local daemon (docs/PROTOCOL.md),
/// or straight from the origin when none answers.
enum GetCommand {
    static let exitCodes = """
    exit codes:
      0  done
      2  usage error (a flag or argument)
      3  network: neither the daemon nor the origin answered, or the transfer broke or timed out
      4  the daemon or the origin answered an error status
      5  verification: a piece failed its CRC32C repeatedly, or the content failed --digest
      6  local I/O: the output could not be written
      1  anything else
    """

    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "get", flags: [
            .init(name: "output", defaultValue: "", help: "where to write: a FILE (atomically: FILE.darter-part until verified), or - for standard output (in order)", short: "O"),
            .init(name: "daemon", defaultValue: "http://127.0.0.1:65001", help: "the local Darter daemon (its piece protocol)"),
            .init(name: "digest", defaultValue: "", help: "sha256:HEX the content must match (a mismatch leaves no file; exit 5)"),
            .init(name: "header", defaultValue: "", help: "'Name: value' sent to the origin (repeatable)", short: "H", kind: .repeated),
            .init(name: "timeout", defaultValue: "0", help: "seconds the whole download may take (0: no limit)"),
            .init(name: "continue", defaultValue: "", help: "keep what an interrupted run left in FILE.darter-part (pieces checked)", short: "c", kind: .toggle),
            .init(name: "no-fallback", defaultValue: "", help: "fail (exit 3) instead of going straight to the origin when no daemon answers", kind: .toggle),
            .init(name: "no-progress", defaultValue: "", help: "no progress line (there is none unless standard error is a terminal)", kind: .toggle),
            .init(name: "quiet", defaultValue: "", help: "no progress, no notices: errors only", short: "q", kind: .toggle),
            .init(name: "pieces-in-flight", defaultValue: "8", help: "pieces asked of the daemon at once"),
        ], arguments: argv)
        if args.wantsHelp {
            print("usage: darter get URL|sha256:HEX -O FILE [flags]\n\n" + args.usage.split(separator: "\n", maxSplits: 1).dropFirst().joined() + "\n" + exitCodes)
            return
        }
        let options = try parse(args)  // a UsageError exits 2 (Darter.main)
        signal(SIGPIPE, SIG_IGN)
        let group = try EventLoopGroup(count: 1)
        let curl = OriginClient(configuration: OriginConfiguration())
        let origins = OriginBackends(curl: curl, http: HTTPOriginBackend(group: group, configuration: OriginConfiguration(), fallback: curl))
        let progress = Progress(enabled: options.progress && !options.quiet && SystemCalls.isTerminal(FileDescriptor(rawValue: 2)))
        let download = Download(options: options, group: group, origins: origins, progress: progress) { writeError($0 + "\n") }
        progress.start()
        do {
            _ = try await download.run()
            progress.stop(success: true)
        } catch {
            progress.stop(success: false)
            writeError("darter get: \(error.message)\n")
            exit(error.exit.rawValue)
        }
    }

    static func parse(_ args: Arguments) throws(UsageError) -> GetOptions {
        guard args.positional.count == 1 else {
            throw UsageError(args.positional.isEmpty ? "get: name a URL or sha256:HEX to download (see darter get --help)"
                                                     : "get: one URL at a time, got \(args.positional.count): \(args.positional.joined(separator: " "))")
        }
        let output = args.string("output")
        guard !output.isEmpty else { throw UsageError("get: -O/--output FILE (or - for standard output) is required") }
        var options = GetOptions(source: args.positional[0], output: output)
        options.daemon = args.string("daemon")
        let digest = args.string("digest")
        if !digest.isEmpty {
            guard digest.hasPrefix("sha256:"), let d = SHA256Digest(hex: digest.dropFirst(7)) else {
                throw UsageError("get: --digest must be sha256:<64 lowercase hex>, got '\(digest.prefix(80))'")
            }
            options.digest = d
        }
        for h in args.all("header") {
            guard let colon = h.firstIndex(of: ":"), colon != h.startIndex else { throw UsageError("get: -H must be 'Name: value', got '\(h.prefix(80))'") }
            let name = String(h[..<colon]), value = String(h[h.index(after: colon)...]).drop { $0 == " " }
            guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { throw UsageError("get: -H name '\(name.prefix(40))' is not a header name") }
            options.headers.append((name, String(value)))
        }
        let timeout = try args.int("timeout")
        options.timeout = timeout > 0 ? .seconds(timeout) : nil
        options.resume = args.isSet("continue")
        options.fallback = !args.isSet("no-fallback")
        options.progress = !args.isSet("no-progress")
        options.quiet = args.isSet("quiet")
        options.piecesInFlight = try args.int("pieces-in-flight")
        guard (1...64).contains(options.piecesInFlight) else { throw UsageError("get: --pieces-in-flight must be from 1 to 64, got \(options.piecesInFlight)") }
        if options.output == "-" && options.resume { throw UsageError("get: -c/--continue needs -O FILE, not -O -") }
        return options
    }
}

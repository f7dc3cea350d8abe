import DarterCore

/// What `darter get` was asked to do.
public struct GetOptions: Sendable {
    /// An `http(s)://` or `s3://` URL, or a content digest `sha256:<hex>` (only a daemon can
    /// serve that: there is no origin to fall back to).
    public var source: String
    /// A path, or `-` for standard output (in order).
    public var output: String
    public var daemon = "http://127.0.0.1:65001"
    /// The content must have this SHA-256 (a `sha256:` source implies it).
    public var digest: SHA256Digest?
    public var headers: [(String, String)] = []
    /// The whole download's deadline (nil: none).
    public var timeout: Duration?
    /// `-c`: keep what an earlier, interrupted run of the same download left (checked).
    public var resume = false
    /// When no daemon answers, go straight to the origin (saying so); false makes that an error.
    public var fallback = true
    /// A progress line on standard error (only where that is a terminal).
    public var progress = true
    /// No notices, only errors.
    public var quiet = false
    /// Pieces requested from the daemon at once.
    public var piecesInFlight = 8

    public init(source: String, output: String) {
        self.source = source
        self.output = output
    }

    /// The task id when the source names content by digest.
    var digestSource: TaskID? { source.hasPrefix("sha256:") ? TaskID(source) : nil }

    /// The digest the output must match.
    var expectedDigest: SHA256Digest? { digest ?? digestSource?.hash }

    var toStandardOutput: Bool { output == "-" }
}

/// How `darter get` ends; distinct exit codes a script can tell apart (docs/API.md).
public enum GetExit: Int32, Sendable, CaseIterable {
    case ok = 0
    /// Anything else (a bug).
    case failure = 1
    /// A flag or argument is wrong.
    case usage = 2
    /// Neither the daemon nor the origin could be reached, or the transfer broke or timed out.
    case network = 3
    /// The daemon or the origin answered an error status (404, 403, …).
    case httpError = 4
    /// A piece failed its CRC32C again and again, or the whole failed its SHA-256.
    case verification = 5
    /// The output could not be written.
    case localIO = 6
}

public struct GetError: Error, Sendable, CustomStringConvertible {
    public let exit: GetExit
    public let message: String
    public init(_ exit: GetExit, _ message: String) {
        self.exit = exit
        self.message = message
    }
    public var description: String { message }
}

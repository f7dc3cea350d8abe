import DarterIO

/// `--upload-rate`, `--download-rate` and `--origin-rate` (`darter seed` and `darter peer`):
/// bytes per second, with the size suffixes (`100m`); `0` or `unlimited` (the default): none.
enum RateFlags {
    static let flags: [Arguments.Flag] = [
        .init(name: "upload-rate", defaultValue: "unlimited",
              help: "bytes/s of content and pieces this daemon sends to other hosts, at most, over all clients (e.g. 100m; 0: unlimited); also told to the scheduler as this host's capacity for parent scoring (unlimited: unknown). Clients on this host (loopback or this host's own address: its darter get, containerd) are not limited unless --upload-rate-local"),
        .init(name: "upload-rate-local", defaultValue: "", help: "let --upload-rate pace clients on this host too", kind: .toggle),
        .init(name: "download-rate", defaultValue: "unlimited",
              help: "bytes/s of pieces this daemon takes from parents in the swarm, at most, over all tasks (e.g. 50m; 0: unlimited; a seed takes none: see --origin-rate)"),
        .init(name: "origin-rate", defaultValue: "unlimited",
              help: "bytes/s this daemon takes from origins, at most, over all fetches and both http backends (e.g. 20m; 0: unlimited)"),
    ]

    /// A rate flag's bytes per second; 0 for unlimited.
    static func bytesPerSecond(_ args: Arguments, _ name: String) throws(UsageError) -> Int64 {
        let s = args.string(name)
        if s.lowercased() == "unlimited" { return 0 }
        guard let v = parseSize(s) else {
            throw UsageError("\(args.command): --\(name) must be bytes per second (a whole number, k/m/g suffixes allowed, e.g. 100m; 0 or unlimited: no limit), got '\(s)'")
        }
        return Int64(v)
    }

    static func limits(_ args: Arguments) throws(UsageError) -> RateLimits {
        func limiter(_ name: String) throws(UsageError) -> RateLimiter? {
            let rate = try bytesPerSecond(args, name)
            return rate > 0 ? RateLimiter(bytesPerSecond: rate) : nil
        }
        return RateLimits(upload: try limiter("upload-rate"), download: try limiter("download-rate"), origin: try limiter("origin-rate"))
    }
}

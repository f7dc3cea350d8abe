#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import HTTPClient
import PieceProtocol
import PieceStore
import PieceTransfer
import SchedulerClient
import SchedulerProtocol
import SwarmDownload

/// The flags a daemon joins a swarm with (`darter seed`, and the peer), and what they build:
/// a `SchedulerClient` that registers this host with what its store holds.
enum SwarmFlags {
    static func flags(role: HostRole) -> [Arguments.Flag] {
        let peerOnly: [Arguments.Flag] = role == .seed ? [] : [
            .init(name: "no-back-to-source", defaultValue: "", help: "never fetch from the origin: fail a task no parent can serve", kind: .toggle),
            .init(name: "requests-per-parent", defaultValue: String(SwarmConfiguration().requestsPerParent), help: "piece requests kept open per parent (pipelined)"),
            .init(name: "requests-per-seed", defaultValue: String(SwarmConfiguration().requestsPerSeed), help: "piece requests kept open per seed parent"),
            .init(name: "window", defaultValue: String(SwarmConfiguration().window),
                  help: "pieces from the first one this host lacks that are fetched first, in order (a reader streams them); the rest rarest first"),
            .init(name: "piece-timeout", defaultValue: String(SwarmConfiguration().minimumPieceDeadline.components.seconds),
                  help: "seconds a parent has at least to send a piece (more when its measured rate needs it, plus the parent's wait for a piece still arriving); a parent that misses it twice is dropped"),
        ]
        return [
            .init(name: "scheduler", defaultValue: "", help: (role == .seed
                  ? "schedulers to register with, comma-separated (http://HOST:PORT; empty: none, no swarm)"
                  : "schedulers to register with and ask for parents, comma-separated (http://HOST:PORT; required)")
                  + "; a HOST that is a name stands for every address it resolves to (a headless Service), looked up again every --resolve-interval"),
            .init(name: "resolve-interval", defaultValue: "30",
                  help: "seconds between lookups of --scheduler names: schedulers that appear are registered with, those that vanish leave (1 to 3600)"),
            .init(name: "advertise", defaultValue: "", help: "HOST:PORT other daemons reach this one at (default: --listen, unless it binds a wildcard address)"),
            .init(name: "host-id", defaultValue: "", help: "this host's name in the swarm (default: the hostname)"),
            .init(name: "idc", defaultValue: "", help: "data centre label: parents in the same one are preferred"),
            .init(name: "location", defaultValue: "", help: "location labels, most general first: region|zone|rack"),
            .init(name: "cluster-token", defaultValue: SystemCalls.environment()["DARTER_CLUSTER_TOKEN"] ?? "",
                  help: "the cluster's secret for the scheduler (default: $DARTER_CLUSTER_TOKEN)"),
        ] + peerOnly
    }

    /// The peer's download settings from its flags.
    static func swarmConfiguration(_ args: Arguments) throws(UsageError) -> SwarmConfiguration {
        var c = SwarmConfiguration()
        c.backToSource = !args.isSet("no-back-to-source")
        c.requestsPerParent = try args.int("requests-per-parent")
        guard (1...64).contains(c.requestsPerParent) else {
            throw UsageError("peer: --requests-per-parent must be from 1 to 64, got '\(args.string("requests-per-parent"))'")
        }
        c.requestsPerSeed = try args.int("requests-per-seed")
        guard (1...64).contains(c.requestsPerSeed) else {
            throw UsageError("peer: --requests-per-seed must be from 1 to 64, got '\(args.string("requests-per-seed"))'")
        }
        let timeout = try args.int("piece-timeout")
        guard (1...3600).contains(timeout) else {
            throw UsageError("peer: --piece-timeout must be from 1 to 3600 seconds, got '\(args.string("piece-timeout"))'")
        }
        c.minimumPieceDeadline = .seconds(timeout)
        c.window = try args.int("window")
        guard (0...4096).contains(c.window) else { throw UsageError("peer: --window must be from 0 to 4096 pieces, got '\(args.string("window"))'") }
        c.tracePieces = SystemCalls.environment()["DARTER_SWARM_TRACE"] == "1"
        return c
    }

    /// The scheduler client's configuration from the flags, every check made (the same ones
    /// the scheduler makes), before anything opens: `--check-config` stops after this. nil when
    /// no `--scheduler` was given (a seed outside a swarm).
    static func schedulerConfiguration(_ args: Arguments, role: HostRole, listenHost: String, port: UInt16) throws(UsageError) -> SchedulerClient.Configuration? {
        let command = role == .seed ? "seed" : "peer"
        let list = args.string("scheduler").split(separator: ",").map { $0.filter { !$0.isWhitespace } }.filter { !$0.isEmpty }
        guard !list.isEmpty else {
            if role == .peer { throw UsageError("peer: --scheduler URL is required (a peer finds parents through a scheduler; a standalone cache is darter seed)") }
            return nil
        }
        var urls: [HTTPClientURL] = []
        for s in list {
            do { urls.append(try HTTPClientURL(parsing: s.contains("://") ? s : "http://" + s)) } catch {
                throw UsageError("\(command): --scheduler '\(s)': \(error)")
            }
        }
        var advertise = args.string("advertise")
        if advertise.isEmpty {
            guard !["0.0.0.0", "::", ""].contains(listenHost) else {
                throw UsageError("\(command): --advertise HOST:PORT is needed with --scheduler when --listen binds a wildcard address (others must know where to reach this host)")
            }
            guard port != 0 else { throw UsageError("\(command): --advertise HOST:PORT is needed with --scheduler when --listen has port 0") }
            advertise = listenHost.contains(":") ? "[\(listenHost)]:\(port)" : "\(listenHost):\(port)"
        }
        var id = args.string("host-id")
        if id.isEmpty { id = hostname() }
        guard SchedulerProtocol.isValidHostID(id) else {
            throw UsageError("\(command): --host-id '\(id)' may hold only letters, digits and -._ (at most \(SchedulerProtocol.maxHostIDLength))")
        }
        // --upload-rate (RateFlags) is both this host's limit and what it tells the scheduler it can give.
        let rate = try RateFlags.bytesPerSecond(args, "upload-rate")
        let identity = HostRegistration(id: id, address: advertise, role: role, uploadRate: rate,
                                        idc: args.string("idc").isEmpty ? nil : args.string("idc"),
                                        location: args.string("location").isEmpty ? nil : args.string("location"))
        // The same checks the scheduler makes, so a mistake shows here and not as a 400 there.
        do { _ = try HostRegistration(json: identity.json) } catch { throw UsageError("\(command): \(error)") }
        let interval = try args.int("resolve-interval")
        guard (1...3600).contains(interval) else {
            throw UsageError("\(command): --resolve-interval must be from 1 to 3600 seconds, got '\(args.string("resolve-interval"))'")
        }
        var configuration = SchedulerClient.Configuration(schedulers: urls, token: args.string("cluster-token"), identity: identity)
        configuration.resolveInterval = .seconds(interval)
        return configuration
    }

    /// The client for a configuration from `schedulerConfiguration`: it registers this host
    /// with what `store` holds.
    static func schedulerClient(_ configuration: SchedulerClient.Configuration, role: HostRole, store: PieceStore, client: HTTPClient) -> SchedulerClient {
        let command = role == .seed ? "seed" : "peer"
        return SchedulerClient(configuration: configuration, client: client, inventory: { inventory(store) }, log: { log("\(command): " + $0) })
    }

    /// What the store holds, as registrations carry it.
    static func inventory(_ store: PieceStore) -> [HeldTask] {
        store.taskIDs.compactMap { id in
            guard let info = store.info(id, pieces: true) else { return nil }
            let m = TaskMetadata(info)
            guard m.complete || !m.pieces.isEmpty else { return nil }
            return HeldTask(task: id, contentLength: m.contentLength, pieceLength: m.pieceLength, pieces: m.pieces, complete: m.complete)
        }
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "darter" }
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "darter" : name
    }
}

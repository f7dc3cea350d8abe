#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import HTTPClient
import SchedulerClient
import SchedulerProtocol
import SwarmDownload
import HTTPServer
import Origin
import PieceStore
import SeedService

/// `darter seed`: the seed peer's server over the piece store.
enum SeedCommand {
    /// `darter seed` (role seed: tasks come from origins) and `darter peer` (role peer: tasks
    /// come through the swarm first; `--scheduler` required). The same front doors on both.
    static func run(_ argv: [String], role: HostRole = .seed) async throws {
        let command = role == .seed ? "seed" : "peer"
        let defaults = ServerConfiguration(), shieldDefaults = ShieldConfiguration()
        let args = try Arguments(command: command, flags: storeFlags + [
            .init(name: "listen", defaultValue: "127.0.0.1:65001", help: "address to serve on (HOST:PORT; [v6]:PORT)"),
            .init(name: "serve-mode", defaultValue: "auto", help: "auto | copy | sendfile | splice | zerocopy | mixed (auto: \(ServeMode.measuredDefault.rawValue), measured; mixed: sendfile up to \(defaults.smallBodyLimit >> 10) KiB, copy above)"),
            .init(name: "loops", defaultValue: String(defaults.loops), help: "event loops (threads)"),
            .init(name: "max-connections", defaultValue: String(defaults.maxConnections), help: "open connections before accepting pauses"),
            .init(name: "header-timeout", defaultValue: String(defaults.headerTimeout), help: "seconds to receive a request head"),
            .init(name: "idle-timeout", defaultValue: String(defaults.idleTimeout), help: "seconds an idle keep-alive connection stays"),
            .init(name: "send-timeout", defaultValue: String(defaults.sendTimeout), help: "seconds a response may make no progress"),
            .init(name: "origin-allow", defaultValue: "", help: "origins the shield may fetch: hosts and CIDRs, comma-separated (empty: any but link-local and cloud metadata)"),
            .init(name: "origin-connections", defaultValue: String(shieldDefaults.connections), help: "parallel ranged connections for one object of --origin-split-size or more"),
            .init(name: "origin-split-size", defaultValue: "\(shieldDefaults.segmentThreshold >> 20)m", help: "objects at least this large are fetched over --origin-connections connections"),
            .init(name: "follow-memory", defaultValue: role == .peer ? "64m" : "\(shieldDefaults.followMemory >> 20)m", help: "memory for fresh pieces: clients following a fetch, and hits before the object is in the page cache, get them without a disk read (seed: 1/16 of RAM, 256m-4g; peer: 64m, it runs beside the node's workloads; 0: none)"),
            .init(name: "page-cache-on-ingest", defaultValue: String(shieldDefaults.pageCacheOnIngest), help: "read pieces that leave --follow-memory before their object is in the page cache into it (false: hits read them from disk)"),
            .init(name: "origin-retries", defaultValue: String(shieldDefaults.retries), help: "origin retries per fetch, each resuming with Range"),
            .init(name: "registry-mirror", defaultValue: "", help: "upstream registry for /v2/ requests without ?ns= (e.g. https://registry-1.docker.io)"),
            .init(name: "registry-auth-file", defaultValue: SystemCalls.environment()["REGISTRY_AUTH_FILE"] ?? "",
                  help: "registry credentials, in podman/skopeo auth.json or Docker config.json format (default: $REGISTRY_AUTH_FILE; empty: anonymous)"),
            .init(name: "ca-file", defaultValue: "", help: "CA bundle for verifying origin TLS certificates (default: the system's)"),
            .init(name: "s3-endpoint", defaultValue: "", help: "S3-compatible endpoint for s3:// URLs, path-style (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the AWS profile's endpoint_url, else AWS)"),
            .init(name: "http-origin-backend", defaultValue: "loop", help: "how plain http:// origins are fetched: loop (the event loops' own HTTP client, bodies straight into piece buffers) | curl (libcurl, as https and s3 are)"),
            .init(name: "chunk-size", defaultValue: "\(defaults.chunkSize >> 10)k", help: "bytes per read/send (or splice) of a file body"),
            .init(name: "admin-token", defaultValue: SystemCalls.environment()["DARTER_ADMIN_TOKEN"] ?? "",
                  help: "accept imports (PUT /tasks/sha256:…) from other hosts with Authorization: Bearer <token> (default: $DARTER_ADMIN_TOKEN; empty: imports from loopback only)"),
        ] + RateFlags.flags + SwarmFlags.flags(role: role) + DaemonSupport.logFlags + [DaemonSupport.checkConfigFlag], arguments: argv)
        if args.wantsHelp { print(args.usage); return }
        try DaemonSupport.configureLogging(args, command: command)

        var config = ServerConfiguration()
        let listen = args.string("listen")
        (config.host, config.port) = try DaemonSupport.parseListen(listen, command: command, example: "127.0.0.1:65001")
        let mode = args.string("serve-mode")
        if mode != "auto" {
            guard let m = ServeMode(rawValue: mode) else {
                throw UsageError("\(command): --serve-mode must be auto, copy, sendfile, splice, zerocopy or mixed, got '\(mode)'")
            }
            config.serveMode = m
        }
        config.loops = max(1, try args.int("loops"))
        config.maxConnections = max(1, try args.int("max-connections"))
        config.headerTimeout = Int64(try args.int("header-timeout"))
        config.idleTimeout = Int64(try args.int("idle-timeout"))
        config.sendTimeout = Int64(try args.int("send-timeout"))
        config.chunkSize = try args.int("chunk-size")
        guard config.chunkSize >= 16 << 10 && config.chunkSize <= 16 << 20 && config.chunkSize % 4096 == 0 else {
            throw UsageError("\(command): --chunk-size must be a multiple of 4k from 16k to 16m, got '\(args.string("chunk-size"))'")
        }

        // One bucket per direction for the whole daemon: every loop, task and transfer shares it.
        let limits = try RateFlags.limits(args)
        config.uploadLimit = limits.upload
        config.uploadLimitCoversLoopback = args.isSet("upload-rate-local")
        var shield = ShieldConfiguration()
        var originConfig = OriginConfiguration()
        originConfig.rateLimit = limits.origin
        // Enforced by the origin client on every connection a fetch opens.
        switch OriginAllowlist.parse(args.string("origin-allow")) {
        case .success(let a): originConfig.allowlist = a
        case .failure(let e): throw UsageError("\(command): \(e)")
        }
        shield.retries = max(0, try args.int("origin-retries"))
        shield.connections = max(1, try args.int("origin-connections"))
        shield.segmentThreshold = Int64(try args.int("origin-split-size"))
        guard shield.segmentThreshold >= 4 << 20 else {
            throw UsageError("\(command): --origin-split-size must be at least 4m (one piece), got '\(args.string("origin-split-size"))'")
        }
        shield.pageCacheOnIngest = try args.bool("page-cache-on-ingest")
        shield.followMemory = try args.int("follow-memory")
        guard shield.followMemory >= 0 else {
            throw UsageError("\(command): --follow-memory must be a size of 0 or more (e.g. 256m), got '\(args.string("follow-memory"))'")
        }
        let mirror = args.string("registry-mirror")
        if !mirror.isEmpty {
            guard mirror.hasPrefix("http://") || mirror.hasPrefix("https://") else {
                throw UsageError("\(command): --registry-mirror must be an http:// or https:// URL, got '\(mirror)'")
            }
            shield.registryMirror = mirror.hasSuffix("/") ? String(mirror.dropLast()) : mirror
        }
        if !args.string("ca-file").isEmpty {
            guard SystemCalls.exists(args.string("ca-file")) else { throw UsageError("\(command): --ca-file \(args.string("ca-file")) does not exist") }
            originConfig.caFile = args.string("ca-file")
        }
        if !args.string("s3-endpoint").isEmpty {
            originConfig.s3.endpoint = args.string("s3-endpoint")
        }
        if let source = originConfig.s3.credentialSource {
            log("\(command): s3 credentials from \(source), region \(originConfig.s3.region)")
        }
        let origin = OriginClient(configuration: originConfig)
        let httpBackend = args.string("http-origin-backend")
        guard httpBackend == "loop" || httpBackend == "curl" else {
            throw UsageError("\(command): --http-origin-backend must be loop or curl, got '\(httpBackend)'")
        }
        var registryCredentials: [String: (username: String, password: String)] = [:]
        let path = args.string("registry-auth-file")
        if !path.isEmpty {
            let auth: RegistryAuthFile
            do { auth = try RegistryAuthFile(parsing: try SystemCalls.readSmallFile(path)) } catch {
                throw UsageError("\(command): --registry-auth-file \(path): \(error)")
            }
            registryCredentials = auth.credentials
            log("\(command): registry credentials for \(auth.credentials.keys.sorted().joined(separator: ", ")) from \(path)"
                + (auth.skipped.isEmpty ? "" : " (skipped, no user and password: \(auth.skipped.joined(separator: ", ")))"))
        }

        var swarmConfig = role == .peer ? try SwarmFlags.swarmConfiguration(args) : SwarmConfiguration()
        swarmConfig.downloadLimit = limits.download
        let storeSetup = try storeSettings(args)
        // Everything checked that does not need the store or the sockets: the swarm identity too
        // (--advertise is required here with a wildcard --listen), so --check-config sees it.
        let schedulerConfig = try SwarmFlags.schedulerConfiguration(args, role: role, listenHost: config.host, port: config.port)
        if args.isSet("check-config") {
            let swarmSummary = schedulerConfig.map {
                "advertise \($0.identity.address), host-id \($0.identity.id), scheduler \($0.schedulers.map { "http://" + $0.hostHeader }.joined(separator: ","))"
            } ?? "no scheduler"
            print("\(command): config ok (listen \(listen), \(swarmSummary), data-dir \(args.string("data-dir")), io-backend \(storeSetup.backend.rawValue))")
            return
        }
        signal(SIGPIPE, SIG_IGN)
        SystemCalls.returnLargeAllocationsToKernel()
        let store = try await openStore(storeSetup)
        let metrics = ServerMetrics()
        let server: HTTPServer
        let group: EventLoopGroup
        let swarm: SchedulerClient?
        do {
            // One set of event loops for the server's connections, the origin fetches and the swarm.
            group = try HTTPServer.makeGroup(config)
            swarm = schedulerConfig.map { SwarmFlags.schedulerClient($0, role: role, store: store, client: HTTPClient(group: group)) }
            let origins = OriginBackends(curl: origin, http: httpBackend == "loop" ? HTTPOriginBackend(group: group, configuration: originConfig, fallback: origin) : nil)
            // A seed asks the swarm too: what peers hold of a task (its seed died) comes from
            // them, and only the rest from the origin; with nobody holding any, the usual fetch.
            if role == .seed { swarmConfig.originForUnheldPieces = true }
            let source = swarm.map { SwarmSource(scheduler: $0, group: group, configuration: swarmConfig, log: { log($0) }) }
            // A seed in a swarm is where children's piece digests come from.
            shield.pieceDigests = role == .seed && swarm != nil
            let service = SeedService(store: store, metrics: metrics, origins: origins, registry: RegistryClient(origin: origin, credentials: registryCredentials),
                                      shield: shield, swarm: source, scheduler: swarm, rateLimits: limits,
                                      writeAccess: WriteAccess(token: args.string("admin-token")))
            server = try HTTPServer(configuration: config, handler: service, metrics: metrics, group: group)
        } catch {
            await store.close()
            throw UsageError("\(command): cannot listen on \(listen): \(error)")
        }
        // SIGTERM / SIGINT: stop accepting, finish in-flight responses, flush the store, exit 0.
        // Set before "listening" is logged: whoever waits for that line may signal at once.
        let sources = DaemonSupport.onTermination(command) {
            await swarm?.stop()
            await server.shutdown()
            await store.close()
            log("\(command): stopped")
        }
        server.start()
        let limited = limits.byDirection.compactMap { d in d.limiter.map { "\(d.direction) \($0.bytesPerSecond) bytes/s" } }
        if !limited.isEmpty { log("\(command): rate limits: \(limited.joined(separator: ", "))") }
        log("\(command): listening on \(config.host):\(server.port) (\(config.loops) loops, serve mode \(config.serveMode.rawValue), data \(args.string("data-dir")), \(store.usage.taskCount) tasks)")
        swarm?.start()

        while true {
            try await Task.sleep(for: .seconds(30))
            await store.maintain()
            withExtendedLifetime(sources) {}
        }
    }
}

extension String {
    func trimmingBrackets() -> String {
        hasPrefix("[") && hasSuffix("]") ? String(dropFirst().dropLast()) : self
    }
}

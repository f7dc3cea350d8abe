#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import HTTPClient
import HTTPServer
import Scheduler
import SchedulerService

/// `darter scheduler`: the swarm's thin control plane (docs/PROTOCOL.md, "Scheduler"). It holds
/// no store and no durable state: after a restart the daemons register again with what they hold.
enum SchedulerCommand {
    static func run(_ argv: [String]) async throws {
        let defaults = Scheduler.Config()
        let args = try Arguments(command: "scheduler", flags: [
            .init(name: "listen", defaultValue: "127.0.0.1:65002", help: "address to serve on (HOST:PORT; [v6]:PORT)"),
            .init(name: "cluster-token", defaultValue: SystemCalls.environment()["DARTER_CLUSTER_TOKEN"] ?? "",
                  help: "a secret every daemon of the cluster sends (Authorization: Bearer); writes without it are refused (default: $DARTER_CLUSTER_TOKEN; empty: none)"),
            .init(name: "host-ttl", defaultValue: String(defaults.hostTTLMilliseconds / 1000), help: "seconds a host stays registered without a keep-alive"),
            .init(name: "keepalive", defaultValue: String(defaults.keepAliveMilliseconds / 1000), help: "seconds between keep-alives the scheduler asks of daemons"),
            .init(name: "max-parents", defaultValue: String(defaults.maxParents), help: "parents handed out per announce"),
            .init(name: "children-per-parent", defaultValue: String(defaults.childrenPerParent), help: "children at which a parent counts as fully loaded"),
            .init(name: "loops", defaultValue: "1", help: "event loops (threads)"),
            DaemonSupport.checkConfigFlag,
        ] + DaemonSupport.logFlags, arguments: argv)
        if args.wantsHelp { print(args.usage); return }
        try DaemonSupport.configureLogging(args, command: "scheduler")
        var config = ServerConfiguration()
        let listen = args.string("listen")
        (config.host, config.port) = try DaemonSupport.parseListen(listen, command: "scheduler", example: "127.0.0.1:65002")
        config.loops = max(1, try args.int("loops"))
        var policy = Scheduler.Config()
        policy.hostTTLMilliseconds = try positive(args, "host-ttl") * 1000
        policy.keepAliveMilliseconds = try positive(args, "keepalive") * 1000
        guard policy.keepAliveMilliseconds < policy.hostTTLMilliseconds else {
            throw UsageError("scheduler: --keepalive (\(policy.keepAliveMilliseconds / 1000)) must be shorter than --host-ttl (\(policy.hostTTLMilliseconds / 1000))")
        }
        policy.maxParents = try positive(args, "max-parents")
        policy.childrenPerParent = try positive(args, "children-per-parent")
        if args.isSet("check-config") {
            print("scheduler: config ok (listen \(listen), host-ttl \(policy.hostTTLMilliseconds / 1000)s, keepalive \(policy.keepAliveMilliseconds / 1000)s, "
                  + "max-parents \(policy.maxParents), cluster token \(args.string("cluster-token").isEmpty ? "none" : "set"))")
            return
        }

        signal(SIGPIPE, SIG_IGN)
        let metrics = ServerMetrics()
        let server: HTTPServer
        let service: SchedulerService
        do {
            let group = try HTTPServer.makeGroup(config)
            service = SchedulerService(scheduler: Scheduler(config: policy), metrics: metrics, token: args.string("cluster-token"),
                                       client: HTTPClient(group: group), now: { SystemCalls.monotonicMilliseconds() }, log: { log($0) })
            server = try HTTPServer(configuration: config, handler: service, metrics: metrics, group: group)
        } catch {
            throw UsageError("scheduler: cannot listen on \(listen): \(error)")
        }
        // Before "listening" is logged: whoever waits for that line may signal at once.
        let sources = DaemonSupport.onTermination("scheduler") { await server.shutdown(grace: .seconds(2)) }
        server.start()
        log("scheduler: listening on \(config.host):\(server.port)" + (args.string("cluster-token").isEmpty ? " (no cluster token: anyone may register)" : ""))
        while true {
            try await Task.sleep(for: .seconds(1))
            service.expire()
            withExtendedLifetime(sources) {}
        }
    }

    static func positive(_ args: Arguments, _ name: String) throws -> Int {
        let n = try args.int(name)
        guard n > 0 else { throw UsageError("scheduler: --\(name) must be at least 1, got '\(args.string(name))'") }
        return n
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterIO

// What deployments lean on: `--check-config` (systemd's ExecStartPre, the manifest test) and
// `/readyz` (Kubernetes' readiness probe), and the offline check of deploy/.

private func darter(_ args: [String], scratch: String, environment: [String: String] = [:]) async throws -> ProcessResult {
    try await runProcess(DarterBinary.path, args, scratch: scratch, timeout: 30, environment: environment)
}

@Suite("--check-config: flags validated as a start would, nothing opened", .enabled(if: DarterBinary.helps("seed", mentioning: ["--check-config"])))
struct CheckConfigTests {
    @Test("seed: ok prints the summary and creates no data directory; a bad flag is named, exit 2")
    func seed() async throws {
        let dir = try TempDirectory("check-config-seed")
        let data = dir.file("never-created")
        let ok = try await darter(["seed", "--check-config", "--listen", "0.0.0.0:65001", "--advertise", "10.0.0.7:65001",
                                   "--scheduler", "http://scheduler-0.scheduler.darter.svc:65002,scheduler-1.scheduler.darter.svc:65002",
                                   "--data-dir", data, "--host-id", "seed-0"], scratch: dir.path)
        #expect(ok.exitCode == 0, "\(ok.output)")
        #expect(ok.stdoutText.hasPrefix("seed: config ok (listen 0.0.0.0:65001, advertise 10.0.0.7:65001, host-id seed-0, "), "\(ok.output)")
        #expect(ok.stdoutText.contains("scheduler-1.scheduler.darter.svc:65002"), "\(ok.output)")
        #expect(!SystemCalls.exists(data), "--check-config opened the store")

        let bad = try await darter(["seed", "--check-config", "--data-dir", data, "--chunk-size", "3"], scratch: dir.path)
        #expect(bad.exitCode == 2 && bad.stderr.contains("--chunk-size"), "\(bad.output)")
        let quota = try await darter(["seed", "--check-config", "--data-dir", data, "--quota", "lots"], scratch: dir.path)
        #expect(quota.exitCode == 2 && quota.stderr.contains("--quota"), "\(quota.output)")
        let name = try await darter(["seed", "--check-config", "--data-dir", data, "--listen", "localhost:65001"], scratch: dir.path)
        #expect(name.exitCode == 2 && name.stderr.contains("--listen"), "\(name.output)")
    }

    @Test("seed and peer: --advertise is required with a wildcard --listen and a scheduler (a check made after the store opened before)")
    func advertise() async throws {
        let dir = try TempDirectory("check-config-advertise")
        for command in ["seed", "peer"] {
            let r = try await darter([command, "--check-config", "--listen", "0.0.0.0:65001", "--scheduler", "http://127.0.0.1:65002",
                                      "--data-dir", dir.file("d")], scratch: dir.path)
            #expect(r.exitCode == 2 && r.stderr.contains("--advertise"), "\(command): \(r.output)")
        }
        let host = try await darter(["peer", "--check-config", "--scheduler", "http://127.0.0.1:65002", "--host-id", "bad id"], scratch: dir.path)
        #expect(host.exitCode == 2 && host.stderr.contains("--host-id"), "\(host.output)")
    }

    @Test("peer: ok with a scheduler; without one, or with a bad --window, exit 2 naming the flag; a port in use is never bound")
    func peer() async throws {
        let dir = try TempDirectory("check-config-peer")
        // A port something listens on: --check-config must not try to bind it.
        let busy = try await SeedProcess.start(dataDir: dir.file("seed"))
        defer { Task { _ = await busy.stop() } }
        let ok = try await darter(["peer", "--check-config", "--listen", "127.0.0.1:\(busy.port)", "--scheduler", "http://127.0.0.1:65002",
                                   "--data-dir", dir.file("peer")], scratch: dir.path, environment: ["DARTER_CLUSTER_TOKEN": "s3cret"])
        #expect(ok.exitCode == 0, "\(ok.output)")
        #expect(ok.stdoutText.hasPrefix("peer: config ok (listen 127.0.0.1:\(busy.port), advertise 127.0.0.1:\(busy.port), "), "\(ok.output)")
        #expect(!ok.output.contains("s3cret"), "the token must not be printed")
        let none = try await darter(["peer", "--check-config", "--data-dir", dir.file("peer")], scratch: dir.path)
        #expect(none.exitCode == 2 && none.stderr.contains("--scheduler"), "\(none.output)")
        let window = try await darter(["peer", "--check-config", "--scheduler", "http://127.0.0.1:65002", "--window", "99999"], scratch: dir.path)
        #expect(window.exitCode == 2 && window.stderr.contains("--window"), "\(window.output)")
        let seedRequests = try await darter(["peer", "--check-config", "--scheduler", "http://127.0.0.1:65002", "--requests-per-seed", "0"], scratch: dir.path)
        #expect(seedRequests.exitCode == 2 && seedRequests.stderr.contains("--requests-per-seed"), "\(seedRequests.output)")
        let interval = try await darter(["peer", "--check-config", "--scheduler", "http://127.0.0.1:65002", "--resolve-interval", "0"], scratch: dir.path)
        #expect(interval.exitCode == 2 && interval.stderr.contains("--resolve-interval"), "\(interval.output)")
        let url = try await darter(["peer", "--check-config", "--scheduler", "https://127.0.0.1:65002"], scratch: dir.path)
        #expect(url.exitCode == 2 && url.stderr.contains("--scheduler"), "\(url.output)")
    }

    @Test("scheduler: ok prints the summary; --keepalive not shorter than --host-ttl is refused")
    func scheduler() async throws {
        let dir = try TempDirectory("check-config-scheduler")
        let ok = try await darter(["scheduler", "--check-config", "--listen", "0.0.0.0:65002", "--cluster-token", "t"], scratch: dir.path)
        #expect(ok.exitCode == 0 && ok.stdoutText.hasPrefix("scheduler: config ok (listen 0.0.0.0:65002, "), "\(ok.output)")
        #expect(ok.stdoutText.contains("cluster token set") && !ok.stdoutText.contains(" t)"), "\(ok.output)")
        let bad = try await darter(["scheduler", "--check-config", "--keepalive", "20", "--host-ttl", "10"], scratch: dir.path)
        #expect(bad.exitCode == 2 && bad.stderr.contains("--keepalive"), "\(bad.output)")
        let listen = try await darter(["scheduler", "--check-config", "--listen", "65002"], scratch: dir.path)
        #expect(listen.exitCode == 2 && listen.stderr.contains("--listen"), "\(listen.output)")
    }
}

@Suite("/readyz: the store open and a scheduler answered", .serialized, .enabled(if: DarterBinary.helps("peer", mentioning: ["--check-config"])))
struct ReadinessTests {
    @Test("a peer whose scheduler is down: 503 naming it, /healthz 200; the scheduler up: 200; the scheduler's own /readyz 200")
    func peerReadiness() async throws {
        let dir = try TempDirectory("readyz")
        // The scheduler's port is named to the peer before the scheduler binds it: held until
        // then (SO_REUSEPORT, as the scheduler binds) so that no other bind takes it.
        let (holder, schedulerPort) = try reservePort()
        defer { close(holder) }
        let schedulerURL = "http://127.0.0.1:\(schedulerPort)"
        let peer = try await SeedProcess.start(dataDir: dir.file("peer"), extra: ["--scheduler", schedulerURL, "--host-id", "peer-r"], command: "peer")
        defer { Task { _ = await peer.stop() } }
        let down = try await curlResult(peer.base + "/readyz", scratch: dir.path)
        #expect(down.status == 503, "\(down.status) \(down.text)")
        #expect(down.text.contains("127.0.0.1:\(schedulerPort)"), "\(down.text)")
        let health = try await curlResult(peer.base + "/healthz", scratch: dir.path)
        #expect(health.status == 200)

        let scheduler = try ChildProcess(DarterBinary.path, ["scheduler", "--listen", "127.0.0.1:\(schedulerPort)"], logPath: dir.file("scheduler.log"))
        defer { Task { _ = await scheduler.stop() } }
        try await scheduler.waitForLog("scheduler: listening on")
        try await becomesReady(peer: peer, schedulerURL: schedulerURL, since: down, dir: dir)
    }

    /// A loopback port bound (not listening) with SO_REUSEADDR and SO_REUSEPORT: a darter
    /// daemon of this user can still listen on it, nothing else binds it.
    func reservePort() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { close(fd); throw TestError("bind: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }

    func becomesReady(peer: SeedProcess, schedulerURL: String, since down: CurlResponse, dir: TempDirectory) async throws {
        let own = try await curlResult(schedulerURL + "/readyz", scratch: dir.path)
        #expect(own.status == 200, "\(own.status) \(own.text)")
        // The peer retries a scheduler that did not answer within a few seconds (backing off to 5 s).
        var last = down
        for _ in 0..<100 {
            last = try await curlResult(peer.base + "/readyz", scratch: dir.path)
            if last.status == 200 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(last.status == 200, "\(last.status) \(last.text)\n\(peer.log)")
    }

    @Test("a seed given its scheduler by name (localhost, through getaddrinfo) registers with the address it resolves to and is ready")
    func schedulerByName() async throws {
        let dir = try TempDirectory("readyz-name")
        let (holder, schedulerPort) = try reservePort()
        defer { close(holder) }
        let scheduler = try ChildProcess(DarterBinary.path, ["scheduler", "--listen", "127.0.0.1:\(schedulerPort)"], logPath: dir.file("scheduler.log"))
        defer { Task { _ = await scheduler.stop() } }
        try await scheduler.waitForLog("scheduler: listening on")
        let seed = try await SeedProcess.start(dataDir: dir.file("seed"), extra: ["--scheduler", "http://localhost:\(schedulerPort)", "--host-id", "seed-n",
                                                                                   "--resolve-interval", "1"])
        defer { Task { _ = await seed.stop() } }
        var last = try await curlResult(seed.base + "/readyz", scratch: dir.path)
        for _ in 0..<100 where last.status != 200 {
            try await Task.sleep(for: .milliseconds(100))
            last = try await curlResult(seed.base + "/readyz", scratch: dir.path)
        }
        #expect(last.status == 200, "\(last.status) \(last.text)\n\(seed.log)")
        #expect(seed.log.contains("registered with scheduler 127.0.0.1:\(schedulerPort) as seed seed-n"), "\(seed.log)")
        let hosts = try await curlResult("http://127.0.0.1:\(schedulerPort)/debug/hosts", scratch: dir.path)
        #expect(hosts.text.contains("\"seed-n\""), "\(hosts.text)")
    }

    @Test("a seed without --scheduler is ready once listening")
    func standaloneSeed() async throws {
        let dir = try TempDirectory("readyz-seed")
        let seed = try await SeedProcess.start(dataDir: dir.file("seed"))
        defer { Task { _ = await seed.stop() } }
        let r = try await curlResult(seed.base + "/readyz", scratch: dir.path)
        #expect(r.status == 200 && r.text == "ready\n", "\(r.status) \(r.text)")
    }
}

/// deploy/ cannot run here (no Kubernetes, no systemd as init), so tools/check-deploy runs every
/// container's and unit's darter command line with --check-config and checks ports, probes,
/// Services and the --scheduler lists against the flags (PyYAML: tools/bootstrap installs it).
@Suite("deploy/: manifests and units checked offline (tools/check-deploy)", .serialized,
       .enabled(if: DarterBinary.helps("seed", mentioning: ["--check-config"]) && findExecutable("python3") != nil))
struct DeployManifestTests {
    func checkDeploy(_ deploy: String, scratch: String) async throws -> ProcessResult {
        try await runProcess("python3", [repositoryRoot + "/tools/check-deploy", "--darter", DarterBinary.path, "--deploy", deploy, "-v"],
                             scratch: scratch, timeout: 120)
    }

    @Test("every container and ExecStart passes --check-config; ports, probes, Services and scheduler lists agree with the flags")
    func manifests() async throws {
        let dir = try TempDirectory("deploy")
        let r = try await checkDeploy(repositoryRoot + "/deploy", scratch: dir.path)
        #expect(r.exitCode == 0, "\(r.output)")
        for line in ["container scheduler: scheduler: config ok", "container seed: seed: config ok", "container peer: peer: config ok",
                     "darter-scheduler.service: scheduler: config ok", "darter-seed.service: seed: config ok", "darter-peer.service: peer: config ok",
                     "grafana/darter-dashboard.json: 19 panels"] {
            #expect(r.stdoutText.contains(line), "\(line) missing:\n\(r.output)")
        }
    }

    @Test("a copy of deploy/ with mistakes in it fails, each mistake named")
    func mistakes() async throws {
        let dir = try TempDirectory("deploy-broken")
        let copy = dir.file("deploy")
        let cp = try await runProcess("cp", ["-r", repositoryRoot + "/deploy", copy], scratch: dir.path)
        #expect(cp.exitCode == 0, "\(cp.output)")
        func edit(_ file: String, _ old: String, _ new: String) throws {
            let path = copy + "/" + file
            let text = readText(path)
            #expect(text.contains(old), "\(file) has no '\(old)'")
            try writeFile(path, Array(text.replacing(old, with: new).utf8))
        }
        // A flag --check-config refuses; a probe on the wrong port; a scheduler left out (pods
        // named one by one); a Service name that is not there; a Service to the wrong port; an
        // ExecStartPre that is not ExecStart's line.
        try edit("kubernetes/peer.yaml", "- --advertise=$(HOST_IP):65001", "- --window=99999")
        try edit("kubernetes/scheduler.yaml", "path: /readyz\n              port: http", "path: /readyz\n              port: 65001")
        try edit("kubernetes/seed.yaml", "--scheduler=http://darter-scheduler.darter.svc:65002", "--scheduler=http://darter-scheduler-0.darter-scheduler.darter.svc:65002")
        try edit("kubernetes/peer.yaml", "--scheduler=http://darter-scheduler.darter.svc:65002", "--scheduler=http://darter-schedulers.darter.svc:65002")
        try edit("kubernetes/seed.yaml", "targetPort: http", "targetPort: 8080")
        try edit("systemd/darter-peer.service", "$DARTER_PEER_FLAGS --check-config", "--check-config")
        // A dashboard panel on a metric that does not exist.
        try edit("grafana/darter-dashboard.json", "rate(darter_upload_bytes_total", "rate(darter_upload_byte_total")
        let r = try await checkDeploy(copy, scratch: dir.path)
        #expect(r.exitCode == 1, "\(r.output)")
        for problem in ["container peer: darter peer", "--window", "container scheduler: readinessProbe port 65001 is not the --listen port 65002",
                        "container seed: --scheduler leaves out darter-scheduler-1", "container peer: --scheduler http://darter-schedulers.darter.svc:65002: no Service darter-schedulers in namespace darter",
                        "Service/darter-seed: port http: targetPort is 8080",
                        "darter-peer.service: no ExecStartPre= running the ExecStart= line with --check-config",
                        "grafana/darter-dashboard.json: panel 'Bytes sent to clients and children' queries darter_upload_byte_total, which docs/API.md does not document"] {
            #expect(r.stdoutText.contains(problem), "'\(problem)' not reported:\n\(r.output)")
        }
    }
}

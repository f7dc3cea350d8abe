#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import DarterCore
import DarterIO

/// `darter init containerd` with the real containerd (Debian's 1.6): two "nodes", each a
/// containerd of its own (root, state, socket, config.toml) and a `darter peer`, pull one image
/// from a real docker-registry through their local peers after `darter init containerd` wrote
/// their hosts.toml and config_path. Each blob leaves the registry once: the peers' /v2/ blobs go
/// through the swarm.
@Suite("darter init containerd: two containerd nodes pull through their peers (real containerd, docker-registry)", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && DarterBinary.helps("init", mentioning: ["--config-path"])
                    && access("/usr/bin/containerd", X_OK) == 0 && access("/usr/bin/ctr", X_OK) == 0
                    && access("/usr/bin/docker-registry", X_OK) == 0 && access("/usr/bin/skopeo", X_OK) == 0
                    && access("/usr/bin/patch", X_OK) == 0 && getuid() == 0,
                "needs root, containerd and ctr, docker-registry, skopeo and patch (tools/bootstrap installs them)"))
struct ContainerdInitEndToEndTests {
    /// A node's containerd: its own root, state and socket, under `node`.
    static func containerdConfig(_ node: String) -> String {
        """
        # A test node's containerd (darter init adds config_path below).
        version = 2
        root = "\(node)/var/lib/containerd"
        state = "\(node)/run/containerd"

        [grpc]
          address = "\(node)/run/containerd.sock"

        [ttrpc]
          address = "\(node)/run/containerd.sock.ttrpc"

        [plugins]
          [plugins."io.containerd.grpc.v1.cri"]
            sandbox_image = "registry.k8s.io/pause:3.6"   # not used here

        """
    }

    @Test("init writes hosts.toml and config_path (dry run == run; a second run changes nothing); ctr pulls on both nodes through the peers; no node goes to the registry itself")
    func twoNodes() async throws {
        raiseFileLimit()
        let dir = makeServerTestDirectory("containerd-init")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        let registry = try await RegistryMirrorTests().startRegistryWithImage(dir)
        defer { registry.process.kill() }
        let upstream = "127.0.0.1:\(registry.port)"

        // The swarm: a scheduler, a seed, a peer per node.
        let (scheduler, schedulerURL) = try await startScheduler(dir: dir)
        defer { scheduler.kill() }
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--scheduler", schedulerURL, "--host-id", "seed-1"])
        defer { Task { _ = await seed.stop() } }
        var peers: [SeedProcess] = []
        for i in 1...2 {
            peers.append(try await SeedProcess.start(dataDir: dir + "/peer\(i)", extra: ["--scheduler", schedulerURL, "--host-id", "peer-\(i)"], command: "peer"))
        }
        defer { for p in peers { Task { _ = await p.stop() } } }

        // Each node: a containerd config.toml, then darter init containerd against it.
        var containerds: [ChildProcess] = []
        defer { for c in containerds { _ = c.kill() } }
        for (i, peer) in peers.enumerated() {
            let node = dir + "/node\(i + 1)"
            try SystemCalls.makeDirectories(node + "/etc/containerd")
            try SystemCalls.makeDirectories(node + "/run")
            let original = Self.containerdConfig(node)
            try writeFile(node + "/etc/containerd/config.toml", Array(original.utf8))
            let initArgs = ["init", "containerd", "--root", node, "--registry", "http://" + upstream, "--daemon", peer.base]

            // --dry-run: a patch, nothing written.
            let dry = try await runProcess(DarterBinary.path, initArgs + ["--dry-run"], scratch: dir)
            #expect(dry.exitCode == 0, "dry run: \(dry.output)")
            #expect(readText(node + "/etc/containerd/config.toml") == original && !SystemCalls.exists(node + "/etc/containerd/certs.d"), "the dry run wrote nothing")
            // Applied to a copy of the node's /etc, it gives exactly what the run writes.
            let preview = dir + "/preview\(i + 1)"
            try SystemCalls.makeDirectories(preview + "/etc/containerd")
            try writeFile(preview + "/etc/containerd/config.toml", Array(original.utf8))
            try writeFile(dir + "/dry\(i + 1).patch", dry.stdout)
            let patched = try await runProcess("/usr/bin/patch", ["-p1", "-d", preview, "-i", dir + "/dry\(i + 1).patch"], scratch: dir)
            #expect(patched.exitCode == 0, "patch: \(patched.output)\n\(dry.stdoutText)")

            let run = try await runProcess(DarterBinary.path, initArgs, scratch: dir)
            #expect(run.exitCode == 0, "init: \(run.output)")
            let hostsPath = "/etc/containerd/certs.d/\(upstream)/hosts.toml"
            let hosts = readText(node + hostsPath)
            #expect(hosts.contains("server = \"http://\(upstream)\"") && hosts.contains("[host.\"\(peer.base)\"]")
                    && hosts.contains("capabilities = [\"pull\", \"resolve\"]"), "\(hosts)")
            let config = readText(node + "/etc/containerd/config.toml")
            #expect(config == original + "\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n", "\(config)")
            for path in ["/etc/containerd/config.toml", hostsPath] {
                #expect(readText(preview + path) == readText(node + path), "dry run == run: \(path)")
            }
            let backups = try SystemCalls.listDirectory(node + "/etc/containerd").filter { $0.hasPrefix("config.toml.darter-backup-") }
            #expect(backups.count == 1 && backups.first.map { readText(node + "/etc/containerd/" + $0) } == original, "\(backups)")

            // A second run: nothing to change, nothing written.
            let again = try await runProcess(DarterBinary.path, initArgs, scratch: dir)
            #expect(again.exitCode == 0 && again.stdoutText.contains("nothing to change"), "second run: \(again.output)")
            #expect(readText(node + "/etc/containerd/config.toml") == config && readText(node + hostsPath) == hosts)
            #expect(try SystemCalls.listDirectory(node + "/etc/containerd").filter { $0.hasPrefix("config.toml.darter-backup-") }.count == 1)
            let dryAgain = try await runProcess(DarterBinary.path, initArgs + ["--dry-run"], scratch: dir)
            #expect(dryAgain.exitCode == 0 && dryAgain.stdout.isEmpty, "second dry run: \(dryAgain.output)")

            // containerd reads the edited config.toml (its CRI plugin logs the registry config).
            let containerd = try ChildProcess("/usr/bin/containerd", ["--config", node + "/etc/containerd/config.toml"], logPath: node + "/containerd.log")
            containerds.append(containerd)
            var up = false
            for _ in 0..<100 where !up {
                try await Task.sleep(for: .milliseconds(100))
                up = try await runProcess("/usr/bin/ctr", ["--address", node + "/run/containerd.sock", "version"], scratch: dir).exitCode == 0
            }
            #expect(up, "containerd \(i + 1) did not start: \(containerd.log)")
            #expect(containerd.log.contains("Registry:{ConfigPath:/etc/containerd/certs.d "), "containerd's CRI registry config: \(containerd.log.suffix(3000))")
        }

        // Both nodes pull at once: ctr with the hosts directory darter init wrote.
        let image = "\(upstream)/test/app:v1"
        let pulls = try await withThrowingTaskGroup(of: (Int, ProcessResult).self) { group in
            for i in 0..<2 {
                let node = dir + "/node\(i + 1)"
                group.addTask {
                    (i, try await runProcess("/usr/bin/ctr", ["--address", node + "/run/containerd.sock", "images", "pull",
                                                               "--hosts-dir", node + "/etc/containerd/certs.d", "--plain-http", image],
                                             scratch: dir, timeout: 120))
                }
            }
            var out: [Int: ProcessResult] = [:]
            for try await (i, r) in group { out[i] = r }
            return out
        }
        let layer = try readFile(dir + "/image/blobs/sha256/" + registry.layerDigest.dropFirst(7))
        for i in 0..<2 {
            let sock = dir + "/node\(i + 1)/run/containerd.sock"
            #expect(pulls[i]?.exitCode == 0, "node \(i + 1) pull: \(pulls[i]?.output ?? "")\n\(peers[i].log)")
            let list = try await runProcess("/usr/bin/ctr", ["--address", sock, "images", "ls", "-q"], scratch: dir)
            #expect(list.stdoutText.split(separator: "\n").contains(Substring(image)), "node \(i + 1) images: \(list.output)")
            let content = try await runProcess("/usr/bin/ctr", ["--address", sock, "content", "get", registry.layerDigest], scratch: dir)
            #expect(content.exitCode == 0 && content.stdout == layer, "node \(i + 1): the layer in containerd's content store is byte-exact")
            // The peer answered containerd's /v2/ requests.
            let metrics = try await curl(peers[i].base + "/metrics", scratch: dir)
            #expect(metrics.text.contains("darter_http_requests_total{route=\"registry\",status=\"200\"}"), "peer \(i + 1): \(metrics.text)")
        }

        // The registry's access log: each blob GET once, and none from containerd itself (no
        // node fell back to `server`).
        let access = readText(dir + "/registry.log").split(separator: "\n").filter { $0.contains("\"GET /v2/test/app/blobs/") }
        var perBlob: [String: Int] = [:]
        for line in access {
            guard let r = line.range(of: "/v2/test/app/blobs/") else { continue }
            perBlob[String(line[r.upperBound...].prefix { $0 != " " && $0 != "?" }), default: 0] += 1
        }
        // Once in all: a peer's /v2/ blob goes through the swarm (the scheduler asks the seed,
        // which fetches it from the registry; the other node's peer gets it from the seed or
        // the first peer).
        #expect(perBlob.count == 2 && perBlob[registry.layerDigest] != nil, "blob GETs at the registry: \(perBlob)")
        // The daemons' swarm and task lines say who went to the registry and why.
        let why = ([seed] + peers).map { d in d.log.split(separator: "\n").filter { $0.hasPrefix("swarm") || $0.hasPrefix("task ") }.joined(separator: "\n") }
        #expect(perBlob.values.allSatisfy { $0 == 1 },
                "blob GETs at the registry (layer and config): \(perBlob)\n\(access.joined(separator: "\n"))\nseed, peer-1, peer-2:\n\(why.joined(separator: "\n--\n"))")
        #expect(!access.contains { $0.contains("containerd/") }, "containerd went to the registry directly: \(access.joined(separator: "\n"))")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Testing

/// The OCI registry mirror with a real registry (Debian's `docker-registry`) and a real client
/// (`skopeo`, containers/image: the same code podman and CRI-O use), configured through a
/// `registries.conf` mirror entry as a user would.
@Suite("Registry mirror: skopeo pulls through darter seed from docker-registry", .serialized,
       .enabled(if: ShieldBinaries.available && access("/usr/bin/docker-registry", X_OK) == 0 && access("/usr/bin/skopeo", X_OK) == 0,
                "needs darter seed, docker-registry and skopeo (tools/bootstrap installs them)"))
struct RegistryMirrorTests {
    @Test("an image pushed to the registry is pulled through the mirror; blobs come from the seed's cache the second time")
    func pullThroughMirror() async throws {
        let dir = makeServerTestDirectory("registry")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        // An image: one random 3 MiB layer, in an OCI layout.
        let made = try await runProcess("/usr/bin/python3", [currentDirectory() + "/Tests/Fixtures/mkimage.py", dir + "/image", "\(3 << 20)"], scratch: dir)
        #expect(made.exitCode == 0, "mkimage: \(made.stderr)")
        let layerDigest = String(made.stdoutText.filter { !$0.isWhitespace })

        // The registry.
        let regPort = try freePort()
        try writeFile(dir + "/registry.yml", Array("""
        version: 0.1
        log:
          level: warn
        storage:
          filesystem:
            rootdirectory: \(dir)/storage
        http:
          addr: 127.0.0.1:\(regPort)

        """.utf8))
        let regPid = try spawnProcess("/usr/bin/docker-registry", ["serve", dir + "/registry.yml"], stdout: dir + "/registry.log", stderr: dir + "/registry.log")
        defer { kill(regPid, SIGKILL); _ = waitpid(regPid, nil, 0) }
        var pushed = false
        for _ in 0..<50 where !pushed {
            try await Task.sleep(for: .milliseconds(100))
            let push = try await runProcess("/usr/bin/skopeo", ["copy", "--dest-tls-verify=false", "oci:\(dir)/image:v1",
                                                                "docker://127.0.0.1:\(regPort)/test/app:v1"], scratch: dir)
            pushed = push.exitCode == 0
        }
        #expect(pushed, "could not push the test image: \(readText(dir + "/registry.log"))")

        // The seed, mirroring that registry; skopeo told to use it as a mirror.
        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--registry-mirror", "http://127.0.0.1:\(regPort)"])
        defer { Task { _ = await seed.stop() } }
        try writeFile(dir + "/registries.conf", Array("""
        [[registry]]
        location = "127.0.0.1:\(regPort)"
        insecure = true
        [[registry.mirror]]
        location = "127.0.0.1:\(seed.port)"
        insecure = true

        """.utf8))
        for round in 1...2 {
            let out = dir + "/pulled\(round)"
            let pull = try await runProcess("/usr/bin/skopeo", ["--registries-conf", dir + "/registries.conf", "copy", "--src-tls-verify=false",
                                                                "docker://127.0.0.1:\(regPort)/test/app:v1", "oci:\(out):v1"], scratch: dir)
            #expect(pull.exitCode == 0, "skopeo pull \(round): \(pull.stderr)")
            let layer = try readFile(out + "/blobs/sha256/" + layerDigest.dropFirst(7))
            let original = try readFile(dir + "/image/blobs/sha256/" + layerDigest.dropFirst(7))
            #expect(layer == original, "round \(round): the layer is byte-exact")
        }
        // The pulls went through the mirror: its registry route answered, and the layer is in
        // the seed's cache by digest (served the second time without the registry).
        let metrics = try await curl(seed.base + "/metrics", scratch: dir)
        #expect(metrics.text.contains("darter_http_requests_total{route=\"registry\",status=\"200\"}"), "\(metrics.text)")
        let meta = try await curl(seed.base + "/tasks/" + layerDigest + "/meta", scratch: dir)
        #expect(meta.status == 200 && meta.text.contains("\"complete\":true"), "\(meta.text)")
        // GET /v2/ answers as a registry does.
        let v2 = try await curl(seed.base + "/v2/", scratch: dir)
        #expect(v2.status == 200 && v2.headers["docker-distribution-api-version"] == "registry/2.0")
    }
}

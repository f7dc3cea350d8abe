#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Foundation
import Testing
import DarterIO

/// The OCI registry mirror with a real registry (Debian's `docker-registry`) and a real client
/// (`skopeo`, containers/image: the same code podman and CRI-O use), configured through a
/// `registries.conf` mirror entry as a user would.
@Suite("Registry mirror: skopeo pulls through darter seed from docker-registry", .serialized,
       .enabled(if: DarterBinary.shieldAvailable && access("/usr/bin/docker-registry", X_OK) == 0 && access("/usr/bin/skopeo", X_OK) == 0,
                "needs darter seed, docker-registry and skopeo (tools/bootstrap installs them)"))
struct RegistryMirrorTests {
    /// A registry on a free port with one test image (`test/app:v1`: one random 3 MiB layer)
    /// pushed by skopeo; the caller kills `process`.
    /// With `multi`, also `test/app:multi`, an index of a linux/amd64 and a linux/arm64/v8
    /// image (a layer each): `multiDigests` = [amd64 layer, arm64 layer, arm64 config].
    struct Registry { var port: UInt16; var process: ChildProcess; var layerDigest: String; var multiDigests: [String] = [] }

    func startRegistryWithImage(_ dir: String, multi: Bool = false) async throws -> Registry {
        // An image: one random 3 MiB layer, in an OCI layout.
        let made = try await runProcess("/usr/bin/python3", [fixturesDirectory + "/mkimage.py", dir + "/image", "\(3 << 20)"]
                                        + (multi ? ["multi"] : []), scratch: dir)
        #expect(made.exitCode == 0, "mkimage: \(made.stderr)")
        let digests = made.stdoutText.split(whereSeparator: \.isWhitespace).map(String.init)
        let layerDigest = digests.first ?? ""

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
        let registry = try ChildProcess("/usr/bin/docker-registry", ["serve", dir + "/registry.yml"], logPath: dir + "/registry.log")
        var pushed = false
        do {
            for _ in 0..<50 where !pushed {
                try await Task.sleep(for: .milliseconds(100))
                let push = try await runProcess("/usr/bin/skopeo", ["copy", "--dest-tls-verify=false", "oci:\(dir)/image:v1",
                                                                    "docker://127.0.0.1:\(regPort)/test/app:v1"], scratch: dir)
                pushed = push.exitCode == 0
            }
        } catch {
            registry.kill()
            throw error
        }
        #expect(pushed, "could not push the test image: \(registry.log)")
        if multi {
            let push = try await runProcess("/usr/bin/skopeo", ["copy", "--all", "--dest-tls-verify=false", "oci:\(dir)/image:multi",
                                                                "docker://127.0.0.1:\(regPort)/test/app:multi"], scratch: dir)
            #expect(push.exitCode == 0, "could not push the multi-platform index: \(push.stderr)")
        }
        return Registry(port: regPort, process: registry, layerDigest: layerDigest, multiDigests: Array(digests.dropFirst()))
    }

    @Test("an image pushed to the registry is pulled through the mirror; blobs come from the seed's cache the second time")
    func pullThroughMirror() async throws {
        let dir = makeServerTestDirectory("registry")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        let registry = try await startRegistryWithImage(dir)
        defer { registry.process.kill() }
        let (regPort, layerDigest) = (registry.port, registry.layerDigest)

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

    /// containerd with `certs.d/<registry>/hosts.toml` pointing at the seed sends every request
    /// with `?ns=<registry host>` (REFERENCE §4); containerd is not in Debian, so curl sends
    /// exactly those requests here. The seed has no --registry-mirror: `ns` alone names the
    /// upstream.
    @Test("containerd's hosts.toml requests (?ns=): HEAD and GET manifest by tag and digest, GET blob (cached by digest)")
    func containerdMirrorRequests() async throws {
        let dir = makeServerTestDirectory("containerd")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        let registry = try await startRegistryWithImage(dir)
        defer { registry.process.kill() }
        let seed = try await SeedProcess.start(dataDir: dir + "/seed")
        defer { Task { _ = await seed.stop() } }
        let upstream = "http://127.0.0.1:\(registry.port)"
        let ns = "ns=127.0.0.1:\(registry.port)"
        // containerd's resolver Accept list.
        let accept = ["-H", "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, "
                      + "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*"]

        // Resolve: HEAD the tag; the digest must be the registry's own.
        let direct = try await curl(upstream + "/v2/test/app/manifests/v1", accept, scratch: dir)
        #expect(direct.status == 200)
        let digest = try #require(direct.headers["docker-content-digest"])
        let head = try await curl(seed.base + "/v2/test/app/manifests/v1?" + ns, accept + ["-I"], scratch: dir)
        #expect(head.status == 200, "HEAD manifest: \(head.status) \(printable(head.body))")
        #expect(head.headers["docker-content-digest"] == digest)
        #expect(head.headers["content-type"] == direct.headers["content-type"])

        // Fetch the manifest by digest, as containerd does after resolving: immutable, so cached
        // (a miss, then a hit) with the registry's Content-Type; HEAD answers from the cache too.
        for (round, expected) in [(1, "MISS"), (2, "HIT")] {
            let manifest = try await curl(seed.base + "/v2/test/app/manifests/\(digest)?" + ns, accept, scratch: dir)
            #expect(manifest.status == 200 && bodyDiff(manifest.body, direct.body) == nil, "manifest by digest, round \(round)")
            #expect(manifest.headers["x-darter-cache"] == expected, "manifest by digest, round \(round)")
            #expect(manifest.headers["content-type"] == direct.headers["content-type"] && manifest.headers["docker-content-digest"] == digest)
        }
        let headByDigest = try await curl(seed.base + "/v2/test/app/manifests/\(digest)?" + ns, accept + ["-I"], scratch: dir)
        #expect(headByDigest.status == 200 && headByDigest.headers["x-darter-cache"] == "HIT"
                && headByDigest.headers["content-length"] == String(direct.body.count), "HEAD by digest: \(headByDigest.headers)")
        // A digest the registry does not have: its 404, passed through.
        let unknown = try await curl(seed.base + "/v2/test/app/manifests/sha256:\(String(repeating: "0", count: 64))?" + ns, accept, scratch: dir)
        #expect(unknown.status == 404, "unknown manifest digest: \(unknown.status)")

        // The layer, twice: a miss fetched from the registry, then a hit from the cache.
        let original = try readFile(dir + "/image/blobs/sha256/" + registry.layerDigest.dropFirst(7))
        for (round, expected) in [(1, "MISS"), (2, "HIT")] {
            let blob = try await curl(seed.base + "/v2/test/app/blobs/\(registry.layerDigest)?" + ns, scratch: dir)
            #expect(blob.status == 200, "round \(round): \(printable(blob.body))")
            #expect(bodyDiff(blob.body, original) == nil, "round \(round)")
            #expect(blob.headers["x-darter-cache"] == expected, "round \(round)")
        }
        let meta = try await curl(seed.base + "/tasks/" + registry.layerDigest + "/meta", scratch: dir)
        #expect(meta.status == 200 && meta.text.contains("\"complete\":true"), "\(meta.text)")

        // Without ns and without --registry-mirror there is no upstream: a clear 400.
        let none = try await curl(seed.base + "/v2/test/app/manifests/v1", scratch: dir)
        #expect(none.status == 400 && none.text.contains("ns="), "\(none.status) \(none.text)")

        // The registry goes away: the tag still resolves from the last good answer (marked
        // STALE), blobs and manifests by digest come from the cache; a tag never seen is 502.
        let tagBefore = try await curl(seed.base + "/v2/test/app/manifests/v1?" + ns, accept, scratch: dir)
        #expect(tagBefore.status == 200 && tagBefore.headers["x-darter-cache"] == nil, "a live tag is passed through")
        registry.process.kill()
        let stale = try await curl(seed.base + "/v2/test/app/manifests/v1?" + ns, accept, scratch: dir)
        #expect(stale.status == 200 && bodyDiff(stale.body, direct.body) == nil && stale.headers["x-darter-cache"] == "STALE"
                && stale.headers["docker-content-digest"] == digest && stale.headers["content-type"] == direct.headers["content-type"],
                "tag while the registry is down: \(stale.status) \(stale.headers)")
        let staleHead = try await curl(seed.base + "/v2/test/app/manifests/v1?" + ns, accept + ["-I"], scratch: dir)
        #expect(staleHead.status == 200 && staleHead.headers["content-length"] == String(direct.body.count), "\(staleHead.headers)")
        let offlineBlob = try await curl(seed.base + "/v2/test/app/blobs/\(registry.layerDigest)?" + ns, scratch: dir)
        #expect(offlineBlob.status == 200 && bodyDiff(offlineBlob.body, original) == nil)
        let unseen = try await curl(seed.base + "/v2/test/app/manifests/v2?" + ns, accept, scratch: dir)
        #expect(unseen.status == 502, "a tag never fetched while the registry is down: \(unseen.status)")
        let metrics = try await curl(seed.base + "/metrics", scratch: dir).text
        #expect(metricValue("darter_registry_stale_manifests_total", in: metrics) == 2, "GET and HEAD answered stale")
    }

    /// Polls `GET /preheat/{id}` until the job leaves pending/running (30 s at most).
    func preheatResult(_ seed: SeedProcess, _ job: String, scratch: String) async throws -> String {
        var text = ""
        for _ in 0..<300 {
            text = try await curl(seed.base + "/preheat/" + job, scratch: scratch).text
            if !text.contains("\"state\":\"pending\"") && !text.contains("\"state\":\"running\"") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return text
    }

    func startPreheat(_ seed: SeedProcess, _ body: String, scratch: String) async throws -> String {
        let r = try await curl(seed.base + "/preheat", ["-X", "POST", "-H", "Content-Type: application/json", "-d", body], scratch: scratch)
        #expect(r.status == 202, "POST /preheat \(body): \(r.status) \(r.text)")
        let id = r.text.split(separator: "\"").dropFirst(3).first.map(String.init)  // {"id":"<id>",...
        return try #require(id, "no id in \(r.text)")
    }

    @Test("POST /preheat {\"image\"}: the image's config and layers are fetched into the cache (a later pull through the mirror hits); an index is resolved to the asked platform")
    func preheatImage() async throws {
        let dir = makeServerTestDirectory("preheat-image")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        let registry = try await startRegistryWithImage(dir, multi: true)
        defer { registry.process.kill() }
        let seed = try await SeedProcess.start(dataDir: dir + "/seed")
        defer { Task { _ = await seed.stop() } }
        let host = "127.0.0.1:\(registry.port)"

        // By tag: one image manifest, its config and one layer.
        let job = try await startPreheat(seed, "{\"image\": \"\(host)/test/app:v1\"}", scratch: dir)
        let status = try await preheatResult(seed, job, scratch: dir)
        let layer = try readFile(dir + "/image/blobs/sha256/" + registry.layerDigest.dropFirst(7))
        #expect(status.contains("\"state\":\"succeeded\"") && status.contains("\"blobs\":2") && status.contains("\"blobs_done\":2"), "\(status)")
        #expect(status.contains("\"image\":\"\(host)/test/app:v1\""), "\(status)")
        let blob = try await curl(seed.base + "/v2/test/app/blobs/\(registry.layerDigest)?ns=" + host, scratch: dir)
        #expect(blob.status == 200 && blob.headers["x-darter-cache"] == "HIT", "after the preheat: \(blob.status) \(blob.headers["x-darter-cache"] ?? "-")")
        #expect(bodyDiff(blob.body, layer) == nil)

        // An index: only the asked platform's blobs are fetched.
        let (amdLayer, armLayer, armConfig) = (registry.multiDigests[0], registry.multiDigests[1], registry.multiDigests[2])
        let multi = try await startPreheat(seed, "{\"image\": \"\(host)/test/app:multi\", \"platform\": \"linux/arm64\"}", scratch: dir)
        let multiStatus = try await preheatResult(seed, multi, scratch: dir)
        #expect(multiStatus.contains("\"state\":\"succeeded\"") && multiStatus.contains("\"blobs_done\":2"), "\(multiStatus)")
        for (digest, cached) in [(armLayer, true), (armConfig, true), (amdLayer, false)] {
            let meta = try await curl(seed.base + "/tasks/" + digest + "/meta", scratch: dir)
            #expect((meta.status == 200 && meta.text.contains("\"complete\":true")) == cached, "\(digest): \(meta.status) \(meta.text)")
        }

        // A platform the index does not list, and a tag the registry does not have: failed, saying why.
        let none = try await preheatResult(seed, try await startPreheat(seed, "{\"image\": \"\(host)/test/app:multi\", \"platform\": \"linux/s390x\"}", scratch: dir), scratch: dir)
        #expect(none.contains("\"state\":\"failed\"") && none.contains("no manifest for linux/s390x") && none.contains("linux/arm64/v8"), "\(none)")
        let missing = try await preheatResult(seed, try await startPreheat(seed, "{\"image\": \"\(host)/test/app:nope\"}", scratch: dir), scratch: dir)
        #expect(missing.contains("\"state\":\"failed\"") && missing.contains("404"), "\(missing)")
        let metrics = try await curl(seed.base + "/metrics", scratch: dir).text
        #expect(metricValue("darter_preheat_jobs{state=\"succeeded\"}", in: metrics) == 2, "\(metrics)")
        #expect(metricValue("darter_preheat_jobs{state=\"failed\"}", in: metrics) == 2)
        #expect(metricValue("darter_preheat_jobs{state=\"running\"}", in: metrics) == 0)
    }

    @Test("--registry-auth-file: a registry that wants a user (token flow with Basic credentials) is mirrored and preheated; without the file its 401 reaches the client")
    func registryCredentials() async throws {
        let dir = makeServerTestDirectory("registry-auth")
        defer { if getenv("KEEP_TEST_DIR") == nil { removeTree(dir) } }
        let layer = SplitMix64.bytes(300_000, seed: 77)
        try writeFile(dir + "/layer.bin", layer)
        // Tests/Fixtures/registry.py: docker-registry with token auth whose token server wants alice.
        let started = try await TestRegistry.start(dir: dir + "/registry", blob: dir + "/layer.bin", user: "alice:s3cret", log: dir + "/registry.py.log")
        let registry = try #require(started, "\(TestRegistry.binary) is not installed")
        defer { registry.process.kill(SIGTERM) }
        let host = try #require((registry.info["registry"] as? String)?.dropFirst("http://".count)).description
        let repository = try #require(registry.info["repository"] as? String), tag = try #require(registry.info["tag"] as? String)
        let blobDigest = try #require(registry.info["blob_digest"] as? String)
        try writeFile(dir + "/auth.json", Array(#"{"auths": {"http://\#(host)": {"auth": "\#(Data("alice:s3cret".utf8).base64EncodedString())"}}}"#.utf8))

        let seed = try await SeedProcess.start(dataDir: dir + "/seed", extra: ["--registry-auth-file", dir + "/auth.json"])
        defer { Task { _ = await seed.stop() } }
        let blob = try await curl(seed.base + "/v2/\(repository)/blobs/\(blobDigest)?ns=" + host, scratch: dir)
        #expect(blob.status == 200 && bodyDiff(blob.body, layer) == nil, "blob through the mirror: \(blob.status) \(blob.text.prefix(300))")
        let job = try await startPreheat(seed, "{\"image\": \"\(host)/\(repository):\(tag)\"}", scratch: dir)
        let status = try await preheatResult(seed, job, scratch: dir)
        #expect(status.contains("\"state\":\"succeeded\"") && status.contains("\"blobs\":2"), "\(status)")

        let anonymous = try await SeedProcess.start(dataDir: dir + "/anonymous")
        defer { Task { _ = await anonymous.stop() } }
        let denied = try await curl(anonymous.base + "/v2/\(repository)/blobs/\(blobDigest)?ns=" + host, scratch: dir)
        #expect(denied.status == 401 && denied.text.contains("--registry-auth-file"), "without credentials: \(denied.status) \(denied.text.prefix(300))")
    }
}

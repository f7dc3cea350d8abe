#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Foundation
import Testing
import DarterIO
import Origin
import HTTPCore

extension TestRegistry {
    /// Starts registry.py with its state in `dir/<label>` and its log in `dir/<label>.log`.
    static func start(dir: TempDirectory, label: String, blob: String, user: String?) async throws -> TestRegistry? {
        try await start(dir: dir.file(label), blob: blob, user: user, log: dir.file("\(label).log"))
    }

    /// Token requests per scope since the registry was prepared.
    func tokenCounts(client: OriginClient) async throws -> [String: Int] {
        let sink = CollectingSink()
        _ = try await client.fetch(OriginRequest(url: tokenServer + "/__stats"), into: sink)
        return (try jsonObject(sink.text)["tokens"] as? [String: Int]) ?? [:]
    }
}

let manifestAccept = ("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")

@Suite("RegistryClient against docker-registry with token auth")
struct RegistryTests {
    @Test func bearerTokenFlowWithCredentials() async throws {
        let dir = try TempDirectory("registry")
        let layer = SplitMix64.bytes(700_000, seed: 21)
        try writeFile(dir.file("layer.bin"), layer)
        guard let reg = try await TestRegistry.start(dir: dir, label: "auth", blob: dir.file("layer.bin"), user: "alice:s3cret") else {
            Issue.record("\(TestRegistry.binary) is not installed (apt-get install docker-registry)"); return
        }
        let origin = OriginClient()
        let client = RegistryClient(origin: origin, credentials: [reg.host: ("alice", "s3cret")])
        let repo = reg.repository

        // Manifest by tag: 401 → token (with basic credentials) → 200.
        let manifest = CollectingSink()
        let head = try await client.fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", headers: [manifestAccept], into: manifest)
        #expect(head.status == 200, "\(manifest.text.prefix(300))")
        #expect(manifest.heads.count == 1)
        #expect(head.contentType == "application/vnd.oci.image.manifest.v1+json")
        #expect("sha256:" + sha256Hex(manifest.body) == reg.string("manifest_digest"))
        #expect(head.header("docker-content-digest") == reg.string("manifest_digest"))

        // HEAD of the manifest, the blob, and a range of it: the cached token goes out up front.
        let headOnly = try await client.fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", method: "HEAD",
                                              headers: [manifestAccept], into: CollectingSink())
        #expect(headOnly.status == 200)
        #expect(headOnly.contentLength == Int64(reg.info["manifest_size"] as? Int ?? -1))

        let blob = CollectingSink()
        let blobHead = try await client.fetch(registry: reg.registry, path: "/v2/\(repo)/blobs/\(reg.string("blob_digest"))", into: blob)
        #expect(blobHead.status == 200)
        expectSameBytes(blob.body, layer)

        let part = CollectingSink()
        let partHead = try await client.fetch(registry: reg.registry, path: "/v2/\(repo)/blobs/\(reg.string("blob_digest"))",
                                              range: 1000..<2000, into: part)
        #expect(partHead.status == 206)
        #expect(partHead.contentRange == HTTPContentRange(first: 1000, last: 1999, completeLength: Int64(layer.count)))
        expectSameBytes(part.body, layer[1000..<2000])

        // A missing blob is a 404 (after auth), not an error.
        let missing = CollectingSink()
        let missingHead = try await client.fetch(registry: reg.registry, path: "/v2/\(repo)/blobs/sha256:" + String(repeating: "0", count: 64), into: missing)
        #expect(missingHead.status == 404)
        #expect(missing.text.contains("BLOB_UNKNOWN"))

        // One token for all of that.
        let counts = try await reg.tokenCounts(client: origin)
        #expect(counts == ["repository:\(repo):pull": 1])

        // Expired tokens are fetched again.
        try await reg.setTokenLifetime(1)
        let fresh = RegistryClient(origin: origin, credentials: [reg.host: ("alice", "s3cret")])
        _ = try await fresh.fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", headers: [manifestAccept], into: CollectingSink())
        try await Task.sleep(for: .milliseconds(1300))
        let again = try await fresh.fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", headers: [manifestAccept], into: CollectingSink())
        #expect(again.status == 200)
        #expect(try await reg.tokenCounts(client: origin) == ["repository:\(repo):pull": 3])

        // Without credentials, or with the wrong password, the token server refuses.
        let anonymous = await expectOriginError { () async throws(OriginError) in
            try await RegistryClient(origin: origin).fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", into: CollectingSink())
        }
        guard case .registryDenied(let status, let message) = anonymous else { Issue.record("got \(String(describing: anonymous))"); return }
        #expect(status == 401 && message.contains("without credentials"), "\(message)")
        let wrong = await expectOriginError { () async throws(OriginError) in
            try await RegistryClient(origin: origin, credentials: [reg.host: ("alice", "nope")])
                .fetch(registry: reg.registry, path: "/v2/\(repo)/manifests/v1", into: CollectingSink())
        }
        guard case .registryDenied(401, let wrongMessage) = wrong else { Issue.record("got \(String(describing: wrong))"); return }
        #expect(wrongMessage.contains("with credentials"), "\(wrongMessage)")
    }

    @Test func anonymousBearerTokens() async throws {
        let dir = try TempDirectory("registry-anon")
        let layer = SplitMix64.bytes(50_000, seed: 22)
        try writeFile(dir.file("layer.bin"), layer)
        guard let reg = try await TestRegistry.start(dir: dir, label: "anon", blob: dir.file("layer.bin"), user: nil) else {
            Issue.record("\(TestRegistry.binary) is not installed (apt-get install docker-registry)"); return
        }
        let client = RegistryClient(origin: OriginClient())
        let blob = CollectingSink()
        let head = try await client.fetch(registry: reg.registry + "/", path: "v2/\(reg.repository)/blobs/\(reg.string("blob_digest"))", into: blob)
        #expect(head.status == 200)
        expectSameBytes(blob.body, layer)
        // /v2/ itself (no repository scope in the challenge).
        let base = try await client.fetch(registry: reg.registry, path: "/v2/", into: CollectingSink())
        #expect(base.status == 200)
    }
}

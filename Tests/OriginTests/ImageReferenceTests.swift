import Testing
import Origin

@Suite("Image references, platforms and manifests")
struct ImageReferenceTests {
    static let hex = String(repeating: "ab", count: 32)

    @Test("references read as docker pull reads them: Docker Hub and library/ by default, latest when untagged",
          arguments: [
            ("alpine", "docker.io", "library/alpine", "latest", nil),
            ("alpine:3.19", "docker.io", "library/alpine", "3.19", nil),
            ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", nil),
            ("docker.io/alpine", "docker.io", "library/alpine", "latest", nil),
            ("index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", nil),
            ("ghcr.io/org/team/app:v1.2.3-rc_1", "ghcr.io", "org/team/app", "v1.2.3-rc_1", nil),
            ("localhost/app", "localhost", "app", "latest", nil),
            ("127.0.0.1:5000/test/app:v1", "127.0.0.1:5000", "test/app", "v1", nil),
            ("Registry.Example:443/a.b/c__d/e-f--g", "registry.example:443", "a.b/c__d/e-f--g", "latest", nil),
            ("[::1]:5000/app@sha256:" + hex, "[::1]:5000", "app", nil, "sha256:" + hex),
            ("app:v1@sha256:" + hex, "docker.io", "library/app", "v1", "sha256:" + hex),
          ] as [(String, String, String, String?, String?)])
    func valid(text: String, registry: String, repository: String, tag: String?, digest: String?) throws {
        let r = try ImageReference(parsing: text)
        #expect(r.registry == registry)
        #expect(r.repository == repository)
        #expect(r.tag == tag)
        #expect(r.digest == digest)
        #expect(r.manifestReference == (digest ?? tag ?? ""))
        #expect(try ImageReference(parsing: r.description) == r, "the description reads back as the same reference")
    }

    @Test("malformed references are refused with a reason",
          arguments: ["", "Alpine", "app:", "app:-x", "app:" + String(repeating: "t", count: 129), "app@sha256:abc",
                      "app@md5:" + hex, "app@sha256:" + hex.uppercased(), "a//b", "/app", "app/", "a..b/c", "-a/b",
                      "ex ample.com/app", "example.com:99999/app", "example.com:/app", "[zz]:5/app", "app\u{7f}",
                      String(repeating: "a/", count: 200) + "a"])
    func invalid(text: String) {
        #expect(throws: ImageReference.ParseError.self, "\(text)") { try ImageReference(parsing: text) }
    }

    @Test("platforms: os/architecture[/variant]")
    func platforms() {
        #expect(ImagePlatform(parsing: "linux/amd64") == ImagePlatform(os: "linux", architecture: "amd64"))
        #expect(ImagePlatform(parsing: "linux/arm64/v8") == ImagePlatform(os: "linux", architecture: "arm64", variant: "v8"))
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] { #expect(ImagePlatform(parsing: bad) == nil, "\(bad)") }
        #expect(ImagePlatform.current.os == "linux")
    }

    static func descriptor(_ n: Int, platform: String? = nil) -> String {
        let p = platform.map { s -> String in
            let parts = s.split(separator: "/")
            return #","platform":{"os":"\#(parts[0])","architecture":"\#(parts[1])""# + (parts.count > 2 ? #","variant":"\#(parts[2])""# : "") + "}"
        } ?? ""
        return #"{"mediaType":"m","digest":"sha256:\#(String(repeating: String(n), count: 64))","size":\#(n * 100)\#(p)}"#
    }

    @Test("an image manifest gives its config and layers; foreign layers (with urls) are left out")
    func imageManifest() throws {
        let json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":\#(Self.descriptor(1)),"layers":[\#(Self.descriptor(2)),{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:\#(String(repeating: "3", count: 64))","size":5,"urls":["https://example.com/l"]},\#(Self.descriptor(4))]}"#
        let m = try ImageManifest(parsing: Array(json.utf8))
        guard case .image(let config, let layers) = m else { Issue.record("not an image: \(m)"); return }
        #expect(config.digest == "sha256:" + String(repeating: "1", count: 64) && config.size == 100)
        #expect(layers.map(\.size) == [200, 400])
        #expect(m.manifest(for: .current) == nil, "an image is not an index")
    }

    @Test("an index is resolved to a platform: the asked variant, else one without a variant; attestations never match")
    func indexSelection() throws {
        let json = #"{"schemaVersion":2,"manifests":[\#(Self.descriptor(1, platform: "unknown/unknown")),\#(Self.descriptor(2, platform: "linux/arm64/v8")),\#(Self.descriptor(3, platform: "linux/amd64/v2")),\#(Self.descriptor(4, platform: "linux/amd64")),\#(Self.descriptor(5, platform: "linux/arm/v7"))]}"#
        let m = try ImageManifest(parsing: Array(json.utf8), contentType: "application/vnd.oci.image.index.v1+json")
        guard case .index(let entries) = m else { Issue.record("not an index: \(m)"); return }
        #expect(entries.count == 5)
        #expect(m.manifest(for: ImagePlatform(os: "linux", architecture: "amd64"))?.size == 400)
        #expect(m.manifest(for: ImagePlatform(os: "linux", architecture: "amd64", variant: "v2"))?.size == 300)
        #expect(m.manifest(for: ImagePlatform(os: "linux", architecture: "arm64"))?.size == 200)
        #expect(m.manifest(for: ImagePlatform(os: "linux", architecture: "arm", variant: "v6")) == nil)
        #expect(m.manifest(for: ImagePlatform(os: "linux", architecture: "s390x")) == nil)
    }

    @Test("manifests that cannot be used are refused with a reason",
          arguments: ["", "[]", "{}", #"{"schemaVersion":1,"fsLayers":[]}"#, #"{"config":{"digest":"sha256:00","size":1},"layers":[]}"#,
                      #"{"config":\#(descriptor(1)),"layers":{}}"#, #"{"config":\#(descriptor(1))}"#,
                      #"{"config":{"digest":"sha256:\#(String(repeating: "1", count: 64))","size":-1},"layers":[]}"#,
                      #"{"config":{"digest":"sha256:\#(String(repeating: "1", count: 64))","size":1.5},"layers":[]}"#,
                      #"{"manifests":[1]}"#, #"{"manifests":[{"size":1}]}"#])
    func invalidManifests(json: String) {
        #expect(throws: ImageManifest.ParseError.self, "\(json)") { try ImageManifest(parsing: Array(json.utf8)) }
    }
}

@Suite("Registry auth files (auth.json, Docker config.json)")
struct RegistryAuthFileTests {
    @Test("auth (base64 user:password) and username/password entries; keys reduced to host[:port]; entries without either are skipped")
    func entries() throws {
        let json = #"""
        {"auths": {
          "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjp0"},
          "Registry.Example:5000": {"username": "bob", "password": "pw"},
          "ghcr.io": {"identitytoken": "x"}
        }, "credsStore": "desktop"}
        """#
        let auth = try RegistryAuthFile(parsing: Array(json.utf8))
        #expect(auth.credentials["index.docker.io"]?.username == "alice")
        #expect(auth.credentials["index.docker.io"]?.password == "s3cr:t", "the password may hold colons")
        #expect(auth.credentials["registry.example:5000"]?.username == "bob")
        #expect(auth.credentials["registry.example:5000"]?.password == "pw")
        #expect(auth.credentials.count == 2)
        #expect(auth.skipped == ["ghcr.io"])
    }

    @Test("files that are not auth files are refused with a reason", arguments: [
        "", "[]", #"{"auths": []}"#, #"{"other": {}}"#, #"{"auths": {"a": "x"}}"#, #"{"auths": {"": {"auth": "dTpw"}}}"#,
        #"{"auths": {"a": {"auth": "!!!!"}}}"#, #"{"auths": {"a": {"auth": "dXNlcg=="}}}"#, #"{"auths": {"a": {"auth": "dTpw=x"}}}"#,
    ])
    func invalid(json: String) {
        #expect(throws: RegistryAuthFile.ParseError.self, "\(json)") { try RegistryAuthFile(parsing: Array(json.utf8)) }
    }
}

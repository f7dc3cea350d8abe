import DarterCore
import Foundation
import Testing
@testable import RuntimeConfig

/// A file system in memory for `RuntimeInit.plan`.
struct MemoryFiles {
    var files: [String: String] = [:]
    func read(_ path: String) -> String? { files[path] }
    mutating func apply(_ plan: InitPlan) { for c in plan.changes { files[c.path] = c.new } }
}

/// Applies a unified diff of one file to `old` the way patch(1) does (hunks in order, context
/// checked): what --dry-run prints must turn the old file into exactly what a run writes.
func applyUnifiedDiff(_ diff: String, to old: String?) throws -> String {
    struct Bad: Error { let why: String }
    let oldLines = UnifiedDiff.lines(old ?? "")
    var out: [UnifiedDiff.Line] = []
    var next = 0  // index into oldLines
    let lines = UnifiedDiff.lines(diff).map(\.text)
    guard lines.count >= 2, lines[0].hasPrefix("--- "), lines[1].hasPrefix("+++ ") else { throw Bad(why: "no header") }
    var i = 2
    while i < lines.count {
        let h = lines[i]
        guard h.hasPrefix("@@ -") else { throw Bad(why: "expected a hunk at \(h)") }
        let oldStart = Int(h.dropFirst(4).prefix { $0.isNumber })!
        let begin = max(0, oldStart - 1)
        guard begin >= next else { throw Bad(why: "hunks out of order") }
        out += oldLines[next..<begin]
        next = begin
        i += 1
        while i < lines.count, !lines[i].hasPrefix("@@ ") {
            let l = lines[i], body = String(l.dropFirst())
            let unterminated = i + 1 < lines.count && lines[i + 1] == "\\ No newline at end of file"
            switch l.first {
            case " ", "-":
                guard next < oldLines.count, oldLines[next].text == body, oldLines[next].terminated == !unterminated else { throw Bad(why: "context mismatch at \(l)") }
                if l.first == " " { out.append(oldLines[next]) }
                next += 1
            case "+": out.append(.init(text: body, terminated: !unterminated))
            default: throw Bad(why: "unexpected line \(l)")
            }
            i += unterminated ? 2 : 1
        }
    }
    out += oldLines[next...]
    return out.map { $0.text + ($0.terminated ? "\n" : "") }.joined()
}

/// Each change's diff applied to its old content gives its new content.
func expectDiffsReproduce(_ plan: InitPlan, sourceLocation: SourceLocation = #_sourceLocation) throws {
    for c in plan.changes {
        let diff = UnifiedDiff.render(old: c.old, new: c.new, name: String(c.path.dropFirst()))
        #expect(try applyUnifiedDiff(diff, to: c.old) == c.new, "\(c.path):\n\(diff)", sourceLocation: sourceLocation)
    }
}

let daemon = DaemonEndpoint(scheme: "http", hostPort: "127.0.0.1:65001")

/// containerd 1.6's `containerd config default`, the registry part and some around it.
let defaultV2 = """
disabled_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.configs]

      [plugins."io.containerd.grpc.v1.cri".registry.headers]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]

"""

@Suite("darter init: hosts.toml and the flags' values")
struct RenderingTests {
    @Test("hosts.toml: server is the upstream (docker.io's API host), the daemon a pull and resolve host")
    func hostsTOML() throws {
        let hub = ContainerdConfig.hostsTOML(registry: try RegistrySpec.parse("docker.io"), daemon: daemon)
        #expect(hub.contains("\nserver = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:65001\"]\n  capabilities = [\"pull\", \"resolve\"]\n"), "\(hub)")
        let plain = ContainerdConfig.hostsTOML(registry: try RegistrySpec.parse("http://127.0.0.1:5000"), daemon: daemon)
        #expect(plain.contains("server = \"http://127.0.0.1:5000\"\n"))
        let tls = ContainerdConfig.hostsTOML(registry: try RegistrySpec.parse("Registry.Example:5000"), daemon: try DaemonEndpoint.parse("https://10.0.0.1:65001/"))
        #expect(tls.contains("server = \"https://registry.example:5000\"\n") && tls.contains("[host.\"https://10.0.0.1:65001\"]"), "\(tls)")
        let all = ContainerdConfig.hostsTOML(registry: try RegistrySpec.parse("_default"), daemon: daemon)
        #expect(!all.contains("server") && all.contains("[host.\"http://127.0.0.1:65001\"]"))
        // Every line is a comment, blank, or TOML the scanner reads.
        for text in [hub, plain, tls, all] { _ = try TOMLLines(text) }
    }

    @Test("--registry: hosts, http:// for plain HTTP, _default, comma lists; docker.io's aliases; bad values name the flag")
    func registries() throws {
        #expect(try RegistrySpec.parseList(["docker.io,http://127.0.0.1:5000", "ghcr.io", "docker.io", "registry-1.docker.io"])
                == [RegistrySpec(host: "docker.io"), RegistrySpec(host: "127.0.0.1:5000", plainHTTP: true), RegistrySpec(host: "ghcr.io")])
        #expect(try RegistrySpec.parse("[::1]:5000") == RegistrySpec(host: "[::1]:5000"))
        for bad in ["", "docker.io/library", "ftp://x", "host:0", "host:99999", "a b", "http://", "-x"] {
            #expect(throws: RuntimeConfigError.self) { try RegistrySpec.parseList([bad]) }
            do { _ = try RegistrySpec.parseList([bad]) } catch { #expect(error.description.contains("--registry"), "\(error)") }
        }
        #expect(throws: RuntimeConfigError.self) { try RegistrySpec.parseList(["http://x:1", "x:1"]) }
        #expect(try DaemonEndpoint.parse("http://127.0.0.1:65001").url == "http://127.0.0.1:65001")
        for bad in ["127.0.0.1:65001", "http://h:1/path", "http://", "tcp://h:1"] {
            do { _ = try DaemonEndpoint.parse(bad); Issue.record("\(bad) accepted") } catch { #expect(error.description.contains("--daemon"), "\(error)") }
        }
    }

    @Test("unified diffs: new files, changes in the middle and at the ends, no newline at the end; patch(1) order")
    func diffs() throws {
        let cases: [(String?, String)] = [
            (nil, "a\nb\n"), ("", "x\n"), ("a\nb\nc\n", "a\nB\nc\n"), ("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n"),
            ("a\nb", "a\nb\n"), ("a\nb\n", "a\nb"), ("a\n", "a\nb\nc\n"), ("x\ny\nz\n", ""),
        ]
        for (old, new) in cases {
            let diff = UnifiedDiff.render(old: old, new: new, name: "f")
            #expect(try applyUnifiedDiff(diff, to: old) == new, "\(String(describing: old)) → \(new):\n\(diff)")
        }
        #expect(UnifiedDiff.render(old: "a\n", new: "a\n", name: "f") == "")
        let d = UnifiedDiff.render(old: "a\nb\nc\n", new: "a\nB\nc\n", name: "etc/f")
        #expect(d == "--- a/etc/f\n+++ b/etc/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n", "\(d)")
        #expect(UnifiedDiff.render(old: nil, new: "x\n", name: "f") == "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+x\n")
    }
}

@Suite("darter init containerd: config.toml edits")
struct ContainerdConfigTests {
    func edit(_ text: String?, _ path: String = "/etc/containerd/certs.d", override: Bool = false) throws -> ContainerdConfig.Edit {
        try ContainerdConfig.setConfigPath(text, to: path, override: override)
    }

    @Test("version 2 (containerd's default config): config_path = \"\" set in place, every other line as it was")
    func version2Default() throws {
        let e = try edit(defaultV2)
        #expect(e.text == defaultV2.replacingOnce("      config_path = \"\"\n", with: "      config_path = \"/etc/containerd/certs.d\"\n"), "\(e.text)")
        #expect(e.hostsDirectory == "/etc/containerd/certs.d" && e.kept == nil)
        #expect(try edit(e.text).text == e.text, "a second edit changes nothing")
    }

    @Test("version 2 without the key or the table; comments, odd spacing and CRLF kept")
    func version2Insert() throws {
        let withTable = "# my config\nversion = 2   # two\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n    # registry settings\n    foo = 'x' # c\n[other]\nk = \"\"\"\n[not.a.table]\n\"\"\"\n"
        let e = try edit(withTable)
        #expect(e.text == withTable.replacingOnce("registry]\n", with: "registry]\n    config_path = \"/etc/containerd/certs.d\"\n"), "\(e.text)")
        let noTable = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"p\" # keep\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n"
        let e2 = try edit(noTable)
        #expect(e2.text == noTable + "\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n", "\(e2.text)")
        let noNewline = "version = 2\n[plugins]\n  x = 1"
        #expect(try edit(noNewline).text == noNewline + "\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
        let crlf = "version = 2\r\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\r\n"
        #expect(try edit(crlf).text == crlf + "  config_path = \"/etc/containerd/certs.d\"\r\n")
        // The table made by dotted keys in its parent: one more dotted key.
        let dotted = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  registry.headers = {}\n"
        let dottedEdit = try edit(dotted).text
        #expect(dottedEdit == dotted + "  registry.config_path = \"/etc/containerd/certs.d\"\n", "\(dottedEdit)")
        for t in [withTable, noTable, noNewline, crlf, dotted] { let once = try edit(t).text; #expect(try edit(once).text == once) }
    }

    @Test("version 3: [plugins.\"io.containerd.cri.v1.images\".registry]; version 1 (no version line): [plugins.cri.registry]")
    func versions3And1() throws {
        let v3 = "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = ''\n"
        #expect(try edit(v3).text == "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
        let v3bare = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\"]\n  enable_cdi = true\n"
        #expect(try edit(v3bare).text == v3bare + "\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
        let v1 = "root = \"/var/lib/containerd\"\n[plugins.cri]\n  sandbox_image = \"p\"\n"
        #expect(try edit(v1).text == v1 + "\n[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
    }

    @Test("no file, an empty one or only comments: a version 2 file with the key")
    func newFile() throws {
        let fresh = "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        #expect(try edit(nil).text == fresh)
        #expect(try edit("").text == fresh)
        #expect(try edit("# nothing yet\n").text == "# nothing yet\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
    }

    @Test("a config_path already set is kept (hosts go there) unless --config-path; mirrors entries and bad versions are refused")
    func existingAndRefusals() throws {
        let set = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/opt/certs.d:/etc/docker/certs.d\" # mine\n"
        let kept = try edit(set)
        #expect(kept.text == set && kept.hostsDirectory == "/opt/certs.d" && kept.kept == "/opt/certs.d:/etc/docker/certs.d")
        let over = try edit(set, "/x/certs.d", override: true)
        #expect(over.text == set.replacingOnce("\"/opt/certs.d:/etc/docker/certs.d\"", with: "\"/x/certs.d\"") && over.kept == nil, "\(over.text)")
        let mirrors = defaultV2 + "        [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n          endpoint = [\"https://m\"]\n"
        #expect { try edit(mirrors) } throws: { ($0 as? RuntimeConfigError)?.description.contains("mirror") == true }
        #expect(throws: RuntimeConfigError.self) { try edit("version = 7\n") }
        #expect(throws: RuntimeConfigError.self) { try edit("version = 2\n[plugins\n") }
        #expect(throws: RuntimeConfigError.self) { try edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = 3\n") }
    }
}

@Suite("darter init: plans (idempotent, dry-run diffs equal the files written)")
struct PlanTests {
    @Test("containerd: config.toml and a hosts.toml per registry; a second plan is empty; an edited hosts.toml is replaced")
    func containerd() throws {
        var fs = MemoryFiles(files: ["/etc/containerd/config.toml": defaultV2])
        let o = InitOptions(runtime: .containerd, registries: try RegistrySpec.parseList(["docker.io,http://127.0.0.1:5000,_default"]), daemon: daemon)
        let plan = try RuntimeInit.plan(o, read: fs.read)
        #expect(plan.changes.map(\.path) == ["/etc/containerd/config.toml", "/etc/containerd/certs.d/docker.io/hosts.toml",
                                             "/etc/containerd/certs.d/127.0.0.1:5000/hosts.toml", "/etc/containerd/certs.d/_default/hosts.toml"])
        try expectDiffsReproduce(plan)
        fs.apply(plan)
        #expect(try RuntimeInit.plan(o, read: fs.read).changes.isEmpty, "idempotent")
        fs.files["/etc/containerd/certs.d/docker.io/hosts.toml"] = "server = \"https://other\"\n"
        let again = try RuntimeInit.plan(o, read: fs.read)
        #expect(again.changes.map(\.path) == ["/etc/containerd/certs.d/docker.io/hosts.toml"] && again.changes[0].old != nil)
        // A kept config_path: hosts files go there, and a note says so.
        var kept = MemoryFiles(files: ["/c.toml": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/opt/hosts\"\n"])
        let k = try RuntimeInit.plan(InitOptions(runtime: .containerd, registries: [RegistrySpec(host: "docker.io")], daemon: daemon, configFile: "/c.toml"), read: kept.read)
        #expect(k.changes.map(\.path) == ["/opt/hosts/docker.io/hosts.toml"] && k.notes.first?.contains("/opt/hosts") == true)
        kept.apply(k)
        // --config-path: moved.
        let moved = try RuntimeInit.plan(InitOptions(runtime: .containerd, registries: [RegistrySpec(host: "docker.io")], daemon: daemon, configFile: "/c.toml", hostsDirectory: "/h"), read: kept.read)
        #expect(moved.changes.map(\.path) == ["/c.toml", "/h/docker.io/hosts.toml"])
        try expectDiffsReproduce(moved)
    }

    @Test("podman: a [[registry]] with the daemon as its first mirror, in a new or an existing registries.conf; idempotent")
    func podman() throws {
        let o = InitOptions(runtime: .podman, registries: [RegistrySpec(host: "docker.io")], daemon: daemon)
        var fs = MemoryFiles()
        let fresh = try RuntimeInit.plan(o, read: fs.read)
        #expect(fresh.changes.count == 1 && fresh.changes[0].path == "/etc/containers/registries.conf")
        #expect(fresh.changes[0].new.contains("[[registry]]\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:65001\"\ninsecure = true\n"), "\(fresh.changes[0].new)")
        #expect(fresh.notes.contains { $0.contains("--registry-mirror https://registry-1.docker.io") })
        fs.apply(fresh)
        #expect(try RuntimeInit.plan(o, read: fs.read).changes.isEmpty)

        let existing = """
        unqualified-search-registries = ["docker.io"]  # search

        [[registry]]
        prefix = "docker.io"
        location = "registry-1.docker.io"

        [[registry.mirror]]
        location = "mirror.example:5000"

        [[registry]]
        location = "quay.io"

        """
        fs.files["/etc/containers/registries.conf"] = existing
        let p = try RuntimeInit.plan(o, read: fs.read)
        #expect(p.changes.first?.new == existing.replacingOnce("[[registry.mirror]]\nlocation = \"mirror.example:5000\"",
                 with: "[[registry.mirror]]\nlocation = \"127.0.0.1:65001\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"mirror.example:5000\""), "\(p.changes.first?.new ?? "")")
        try expectDiffsReproduce(p)
        fs.apply(p)
        #expect(try RuntimeInit.plan(o, read: fs.read).changes.isEmpty)
        // quay.io has no mirrors yet: one after its keys.
        let q = try RuntimeInit.plan(InitOptions(runtime: .podman, registries: [RegistrySpec(host: "quay.io")], daemon: daemon), read: fs.read)
        #expect(q.changes.first?.new.hasSuffix("[[registry]]\nlocation = \"quay.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:65001\"\ninsecure = true\n") == true, "\(q.changes.first?.new ?? "")")
        // A plain-HTTP registry is insecure itself.
        let plain = try RuntimeInit.plan(InitOptions(runtime: .podman, registries: [RegistrySpec(host: "127.0.0.1:5000", plainHTTP: true)], daemon: daemon), read: MemoryFiles().read)
        #expect(plain.changes[0].new.contains("location = \"127.0.0.1:5000\"\ninsecure = true\n"))
        // Refused: two registries, _default, the version 1 format.
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(InitOptions(runtime: .podman, registries: try RegistrySpec.parseList(["a.io,b.io"]), daemon: daemon), read: { _ in nil }) }
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(InitOptions(runtime: .podman, registries: [RegistrySpec(host: "_default")], daemon: daemon), read: { _ in nil }) }
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(o, read: { _ in "[registries.search]\nregistries = []\n" }) }
    }

    @Test("docker: registry-mirrors in daemon.json, merged into the JSON there (its other text as it was); idempotent")
    func docker() throws {
        let o = InitOptions(runtime: .docker, registries: [RegistrySpec(host: "docker.io")], daemon: daemon)
        #expect(try RuntimeInit.plan(o, read: { _ in nil }).changes.first?.new == "{\n  \"registry-mirrors\": [\"http://127.0.0.1:65001\"]\n}\n")
        let cases: [(String, String)] = [
            ("{\n  \"log-driver\": \"json-file\",\n  \"data-root\": \"/d\"\n}\n",
             "{\n  \"registry-mirrors\": [\"http://127.0.0.1:65001\"],\n  \"log-driver\": \"json-file\",\n  \"data-root\": \"/d\"\n}\n"),
            ("{}", "{\n  \"registry-mirrors\": [\"http://127.0.0.1:65001\"]\n}"),
            ("{\"a\": {\"registry-mirrors\": 1}, \"registry-mirrors\": [\"https://m.example\"], \"z\": true}",
             "{\"a\": {\"registry-mirrors\": 1}, \"registry-mirrors\": [\"http://127.0.0.1:65001\", \"https://m.example\"], \"z\": true}"),
            ("{\"registry-mirrors\": []}", "{\"registry-mirrors\": [\"http://127.0.0.1:65001\"]}"),
        ]
        for (old, new) in cases {
            var fs = MemoryFiles(files: ["/etc/docker/daemon.json": old])
            let p = try RuntimeInit.plan(o, read: fs.read)
            #expect(p.changes.first?.new == new, "\(old) → \(p.changes.first?.new ?? "")")
            #expect((try? JSONValue.parse(Array(new.utf8))) != nil)
            try expectDiffsReproduce(p)
            fs.apply(p)
            #expect(try RuntimeInit.plan(o, read: fs.read).changes.isEmpty)
        }
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(o, read: { _ in "{not json" }) }
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(o, read: { _ in "{\"registry-mirrors\": \"x\"}" }) }
        #expect(throws: RuntimeConfigError.self) { try RuntimeInit.plan(InitOptions(runtime: .docker, registries: [RegistrySpec(host: "ghcr.io")], daemon: daemon), read: { _ in nil }) }
    }
}

extension String {
    /// The first occurrence of `target` replaced (the test fails if there is none).
    func replacingOnce(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { Issue.record("no \(target) in \(self)"); return self }
        return replacingCharacters(in: r, with: replacement)
    }
}

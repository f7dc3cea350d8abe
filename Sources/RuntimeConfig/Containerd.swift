/// containerd: `certs.d/<registry>/hosts.toml` per registry and `config_path` in config.toml.
public enum ContainerdConfig {
    /// The CRI registry table that holds `config_path`, by config.toml `version`.
    public static func registryTable(version: Int) -> [String] {
        switch version {
        case 1: return ["plugins", "cri", "registry"]
        case 2: return ["plugins", "io.containerd.grpc.v1.cri", "registry"]
        default: return ["plugins", "io.containerd.cri.v1.images", "registry"]
        }
    }

    /// A registry's hosts.toml: pull and resolve through the daemon, then `server` (the registry
    /// itself) if the daemon fails. containerd adds `?ns=<registry>` to each request, which is
    /// how the daemon's `/v2/` mirror knows the upstream.
    public static func hostsTOML(registry: RegistrySpec, daemon: DaemonEndpoint) -> String {
        var out = "# Written by `darter init containerd`. Pulls from "
        out += registry.isDefault ? "any registry without a directory of its own" : registry.host
        out += "\n# go through the local Darter daemon, and to the registry itself if the daemon fails.\n"
        if let upstream = registry.upstream { out += "server = \(TOMLLines.quote(upstream))\n" }
        out += "\n[host.\(TOMLLines.quote(daemon.url))]\n"
        out += "  capabilities = [\"pull\", \"resolve\"]\n"
        return out
    }

    public struct Edit: Sendable, Equatable {
        public var text: String
        /// Where the hosts files go: config_path's first directory.
        public var hostsDirectory: String
        /// The config_path the file already had and that was kept (not `override`).
        public var kept: String?
    }

    /// `config` (nil: no file) with `config_path = path` in its CRI registry table, everything
    /// else as it was. A config_path already set is kept unless `override`.
    public static func setConfigPath(_ config: String?, to path: String, override: Bool) throws(RuntimeConfigError) -> Edit {
        guard let config, !config.isEmpty else {
            let table = registryTable(version: 2)
            return Edit(text: "version = 2\n\n\(TOMLLines.header(table))\n  config_path = \(TOMLLines.quote(path))\n", hostsDirectory: path)
        }
        var doc = try TOMLLines(config)
        var version = 1  // containerd reads a config.toml without `version` as version 1
        if let line = doc.lines.first(where: { $0.fullKey == ["version"] }) {
            guard let v = line.value.flatMap({ Int($0) }), (1...3).contains(v) else {
                throw RuntimeConfigError("version must be 1, 2 or 3, got \(line.value.map(String.init) ?? "?")")
            }
            version = v
        } else if !doc.lines.contains(where: { $0.kind != .other }) {
            // Only comments: a version 2 file.
            version = 2
            try doc.insert(["version = 2" + doc.newline], at: doc.lines.count)
        }
        let table = registryTable(version: version)
        // containerd refuses registry.mirrors entries together with config_path.
        for (n, line) in doc.lines.enumerated() {
            let key: [String]
            switch line.kind {
            case .header(let p, _): key = p
            case .key: key = line.fullKey!
            case .other: continue
            }
            if key.count > table.count + 1, Array(key.prefix(table.count + 1)) == table + ["mirrors"] {
                throw RuntimeConfigError("line \(n + 1) sets a registry mirror under \(TOMLLines.header(table + ["mirrors"])), which containerd refuses together with config_path; move it to a hosts.toml and remove it")
            }
        }
        let key = table + ["config_path"]
        if let i = doc.lines.firstIndex(where: { $0.fullKey == key }) {
            guard let current = TOMLLines.stringValue(doc.lines[i].value) else {
                throw RuntimeConfigError("line \(i + 1): config_path is not a one-line string")
            }
            if current == path { return Edit(text: doc.text, hostsDirectory: path) }
            if !current.isEmpty && !override {
                let first = current.split(separator: ":").first.map(String.init) ?? current
                return Edit(text: doc.text, hostsDirectory: first, kept: current)
            }
            doc.replaceValue(at: i, with: TOMLLines.quote(path))
            return Edit(text: doc.text, hostsDirectory: path)
        }
        let entry = "config_path = \(TOMLLines.quote(path))" + doc.newline
        if let h = doc.lines.firstIndex(where: { $0.kind == .header(path: table, isArray: false) }) {
            // Right under the header, indented like the table's first key (or two more than the header).
            let next = doc.lines[(h + 1)...].prefix { if case .header = $0.kind { return false } else { return true } }
                .first { if case .key = $0.kind { return true } else { return false } }
            let indent = next.map { String($0.indentation) } ?? String(doc.lines[h].indentation) + "  "
            try doc.insert([indent + entry], at: h + 1)
        } else if let d = doc.lines.firstIndex(where: { line in
            guard let full = line.fullKey, line.table.count < table.count else { return false }
            return full.count > table.count && Array(full.prefix(table.count)) == table
        }) {
            // The table is made by dotted keys (`registry.x = …` under a parent): one more of them.
            let line = doc.lines[d]
            let prefix = table[line.table.count...].map(TOMLLines.keyComponent).joined(separator: ".")
            try doc.insert([String(line.indentation) + prefix + "." + entry], at: d + 1)
        } else {
            doc.terminateLastLine()
            let blank = doc.lines.last.map { $0.text.trimmed.isEmpty } ?? true ? "" : doc.newline
            try doc.insert([blank + TOMLLines.header(table) + doc.newline, "  " + entry], at: doc.lines.count)
        }
        return Edit(text: doc.text, hostsDirectory: path)
    }
}

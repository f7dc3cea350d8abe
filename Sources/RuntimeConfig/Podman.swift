/// podman, CRI-O, skopeo, buildah (containers/image): a `[[registry.mirror]]` for the daemon in
/// `registries.conf` (version 2 format), first among the registry's mirrors.
public enum RegistriesConf {
    public static func addMirror(_ config: String?, registry: RegistrySpec, daemon: DaemonEndpoint) throws(RuntimeConfigError) -> String {
        var doc = try TOMLLines(config ?? "")
        if let line = doc.lines.first(where: { line in
            if case .header(let p, _) = line.kind { return p.first == "registries" } else { return false }
        }) {
            throw RuntimeConfigError("\(line.text.trimmed) is the version 1 format; convert the file to version 2 ([[registry]] tables) first")
        }
        let names = registry.host == "docker.io" ? ["docker.io", "registry-1.docker.io", "index.docker.io"] : [registry.host]
        let mirrorLines = ["[[registry.mirror]]", "location = \(TOMLLines.quote(daemon.hostPort))"] + (daemon.plainHTTP ? ["insecure = true"] : [])
        // Each [[registry]] table: its own keys (to the next header), then its [[registry.mirror]]s.
        for i in doc.lines.indices {
            guard case .header(["registry"], true) = doc.lines[i].kind else { continue }
            func isHeader(_ k: Int) -> Bool { if case .header = doc.lines[k].kind { return true } else { return false } }
            let ownEnd = ((i + 1)..<doc.lines.count).first(where: isHeader) ?? doc.lines.count
            let regionEnd = (ownEnd..<doc.lines.count).first { doc.lines[$0].kind != .other && isHeader($0) && doc.lines[$0].kind != .header(path: ["registry", "mirror"], isArray: true) } ?? doc.lines.count
            let own = doc.lines[(i + 1)..<ownEnd]
            let prefix = own.first { $0.fullKey == ["registry", "prefix"] }.flatMap { TOMLLines.stringValue($0.value) }
            let location = own.first { $0.fullKey == ["registry", "location"] }.flatMap { TOMLLines.stringValue($0.value) }
            guard let name = prefix ?? location, names.contains(name) else { continue }
            if doc.lines[ownEnd..<regionEnd].contains(where: { $0.fullKey == ["registry", "mirror", "location"] && TOMLLines.stringValue($0.value) == daemon.hostPort }) {
                return doc.text
            }
            if ownEnd < regionEnd {
                try doc.insert((mirrorLines + [""]).map { $0 + doc.newline }, at: ownEnd)  // first among the mirrors
            } else {
                try doc.insert(([""] + mirrorLines).map { $0 + doc.newline }, at: lastLine(of: doc, from: i, before: ownEnd) + 1)
            }
            return doc.text
        }
        doc.terminateLastLine()
        var block: [String] = doc.lines.isEmpty || doc.lines.last!.text.trimmed.isEmpty ? [] : [""]
        block += ["# Written by `darter init podman`: pulls from \(registry.host) go through the local Darter daemon first."]
        block += ["[[registry]]", "location = \(TOMLLines.quote(registry.host))"] + (registry.plainHTTP ? ["insecure = true"] : [])
        block += [""] + mirrorLines
        try doc.insert(block.map { $0 + doc.newline }, at: doc.lines.count)
        return doc.text
    }

    /// The last line in `from..<before` that is not blank or a comment.
    static func lastLine(of doc: TOMLLines, from: Int, before: Int) -> Int {
        var last = from
        for k in from..<before where !doc.lines[k].text.trimmed.isEmpty && !doc.lines[k].text.trimmed.hasPrefix("#") { last = k }
        return last
    }
}

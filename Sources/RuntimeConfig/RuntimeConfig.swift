import DarterCore

// `darter init containerd|podman|docker`, the pure part: what to write where so a container
// runtime pulls through the local Darter daemon. No I/O: files come in through `read` and the
// changes go out as `FileChange`s (docs/API.md, "darter init").

public struct RuntimeConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum Runtime: String, Sendable, CaseIterable {
    case containerd, podman, docker

    /// The runtime's configuration file, as the runtime sees it.
    public var defaultConfigFile: String {
        switch self {
        case .containerd: return "/etc/containerd/config.toml"
        case .podman: return "/etc/containers/registries.conf"
        case .docker: return "/etc/docker/daemon.json"
        }
    }
}

/// A `--registry`: a host (`docker.io`, `registry.example:5000`), `http://host:port` for a
/// plain-HTTP one, or `_default` (containerd: every registry without a directory of its own).
public struct RegistrySpec: Sendable, Equatable {
    /// `docker.io`, `registry.example:5000`, `_default`
    public var host: String
    public var plainHTTP: Bool

    public init(host: String, plainHTTP: Bool = false) {
        self.host = host
        self.plainHTTP = plainHTTP
    }

    public var isDefault: Bool { host == "_default" }

    /// The registry itself: containerd's `server`. docker.io's API is at registry-1.docker.io.
    public var upstream: String? {
        if isDefault { return nil }
        if host == "docker.io" { return "https://registry-1.docker.io" }
        return (plainHTTP ? "http://" : "https://") + host
    }

    public static func parse(_ text: String) throws(RuntimeConfigError) -> RegistrySpec {
        if text == "_default" { return RegistrySpec(host: text) }
        var rest = Substring(text), plain = false
        if rest.hasPrefix("http://") { plain = true; rest = rest.dropFirst(7) } else if rest.hasPrefix("https://") { rest = rest.dropFirst(8) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let host = HostPort.parse(rest) else {
            throw RuntimeConfigError("--registry must be a registry host (docker.io, registry.example:5000), http://HOST:PORT for a plain-HTTP registry, or _default; got '\(text.prefix(100))'")
        }
        let name = ["registry-1.docker.io", "index.docker.io"].contains(host) ? "docker.io" : host
        return RegistrySpec(host: name, plainHTTP: plain)
    }

    /// Each `--registry` value, split at commas; the same registry once.
    public static func parseList(_ values: [String]) throws(RuntimeConfigError) -> [RegistrySpec] {
        var out: [RegistrySpec] = []
        for value in values {
            for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                let item = String(part).trimmed
                guard !item.isEmpty else { throw RuntimeConfigError("--registry has an empty entry in '\(value.prefix(100))'") }
                let spec = try parse(item)
                if let same = out.first(where: { $0.host == spec.host }) {
                    guard same.plainHTTP == spec.plainHTTP else { throw RuntimeConfigError("--registry names \(spec.host) both with and without http://") }
                    continue
                }
                out.append(spec)
            }
        }
        return out
    }
}

/// `host`, `host:port`, `[v6]:port` (lowercased; nil when it is not one).
enum HostPort {
    static func parse(_ s: Substring) -> String? {
        var host = s, port: Substring? = nil
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.startIndex...close]
            let after = s[s.index(after: close)...]
            if !after.isEmpty { guard after.first == ":" else { return nil }; port = after.dropFirst() }
            guard host.dropFirst().dropLast().allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }), host.count > 2 else { return nil }
        } else {
            if let colon = s.firstIndex(of: ":") { host = s[..<colon]; port = s[s.index(after: colon)...] }
            guard !host.isEmpty, host.count <= 253, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") }),
                  host.first != ".", host.first != "-" else { return nil }
        }
        if let port { guard let p = Int(port), (1...65535).contains(p), port.allSatisfy(\.isNumber) else { return nil } }
        return (host + (port.map { ":" + $0 } ?? "")).lowercased()
    }
}

/// `--daemon URL`: the local Darter daemon, `http://HOST[:PORT]` or `https://…`.
public struct DaemonEndpoint: Sendable, Equatable {
    public var scheme: String
    /// `127.0.0.1:65001`
    public var hostPort: String
    public var url: String { "\(scheme)://\(hostPort)" }
    public var plainHTTP: Bool { scheme == "http" }

    public static func parse(_ text: String) throws(RuntimeConfigError) -> DaemonEndpoint {
        var rest = Substring(text), scheme = "http"
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.hasPrefix("https://") { scheme = "https"; rest = rest.dropFirst(8) }
        else { throw RuntimeConfigError("--daemon must be http://HOST:PORT (the local Darter daemon), got '\(text.prefix(100))'") }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let hostPort = HostPort.parse(rest) else { throw RuntimeConfigError("--daemon must be http://HOST:PORT with no path, got '\(text.prefix(100))'") }
        return DaemonEndpoint(scheme: scheme, hostPort: hostPort)
    }
}

/// One file to write: its path as the runtime sees it, what is there now (nil: nothing) and
/// what goes there.
public struct FileChange: Sendable, Equatable {
    public var path: String
    public var old: String?
    public var new: String
    public init(path: String, old: String?, new: String) { self.path = path; self.old = old; self.new = new }
}

public struct InitOptions: Sendable {
    public var runtime: Runtime
    public var registries: [RegistrySpec]
    public var daemon: DaemonEndpoint
    /// The runtime's configuration file (config.toml, registries.conf, daemon.json).
    public var configFile: String
    /// containerd: the hosts directory (`config_path`). nil: the one config.toml names, else
    /// /etc/containerd/certs.d.
    public var hostsDirectory: String?

    public init(runtime: Runtime, registries: [RegistrySpec], daemon: DaemonEndpoint, configFile: String? = nil, hostsDirectory: String? = nil) {
        self.runtime = runtime
        self.registries = registries
        self.daemon = daemon
        self.configFile = configFile ?? runtime.defaultConfigFile
        self.hostsDirectory = hostsDirectory
    }
}

public struct InitPlan: Sendable, Equatable {
    /// Only files whose content changes.
    public var changes: [FileChange]
    /// What the user must know (the daemon's `--registry-mirror` for podman and docker, a
    /// config_path kept).
    public var notes: [String]
}

public enum RuntimeInit {
    public static let defaultHostsDirectory = "/etc/containerd/certs.d"

    /// What `darter init` writes. `read(path)` is a file's content, nil when there is none.
    public static func plan(_ o: InitOptions, read: (String) throws -> String?) throws -> InitPlan {
        var files: [FileChange] = []
        var notes: [String] = []
        func add(_ path: String, _ new: String) throws {
            let old = try read(path)
            files.append(FileChange(path: path, old: old, new: new))
        }
        guard !o.registries.isEmpty else { throw RuntimeConfigError("--registry: name at least one registry") }
        switch o.runtime {
        case .containerd:
            let old = try read(o.configFile)
            let edit: ContainerdConfig.Edit
            do { edit = try ContainerdConfig.setConfigPath(old, to: o.hostsDirectory ?? defaultHostsDirectory, override: o.hostsDirectory != nil) }
            catch { throw RuntimeConfigError("\(o.configFile): \(error)") }
            files.append(FileChange(path: o.configFile, old: old, new: edit.text))
            if let kept = edit.kept {
                notes.append("\(o.configFile) already sets config_path = \(TOMLLines.quote(kept)); the hosts files go there (--config-path DIR to change it)")
            }
            for r in o.registries {
                try add(edit.hostsDirectory + "/" + r.host + "/hosts.toml", ContainerdConfig.hostsTOML(registry: r, daemon: o.daemon))
            }
        case .podman:
            guard o.registries.count == 1, let r = o.registries.first, !r.isDefault else {
                throw RuntimeConfigError("--registry: podman and CRI-O send the daemon no registry name, so one daemon mirrors one registry (its --registry-mirror); name exactly one host")
            }
            do { try add(o.configFile, try RegistriesConf.addMirror(try read(o.configFile), registry: r, daemon: o.daemon)) }
            catch let e as RuntimeConfigError { throw RuntimeConfigError("\(o.configFile): \(e)") }
            notes.append("run the daemon with --registry-mirror \(r.upstream!) (podman sends no ?ns=)")
        case .docker:
            guard o.registries == [RegistrySpec(host: "docker.io")] else {
                throw RuntimeConfigError("--registry: Docker's registry-mirrors apply to Docker Hub only; leave --registry out or pass docker.io")
            }
            do { try add(o.configFile, try DaemonJSON.addMirror(try read(o.configFile), mirror: o.daemon.url)) }
            catch let e as RuntimeConfigError { throw RuntimeConfigError("\(o.configFile): \(e)") }
            notes.append("run the daemon with --registry-mirror https://registry-1.docker.io, and restart dockerd to read daemon.json")
        }
        return InitPlan(changes: files.filter { $0.old != $0.new }, notes: notes)
    }
}

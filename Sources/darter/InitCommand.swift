#if canImport(Glibc)
import Glibc
#endif
import DarterIO
import RuntimeConfig

/// `darter init containerd|podman|docker`: points a container runtime at the local daemon's
/// registry mirror (docs/API.md, "darter init"). The files and edits are RuntimeConfig's; this
/// reads, backs up and writes.
enum InitCommand {
    static func run(_ argv: [String]) async throws {
        let args = try Arguments(command: "init", flags: [
            .init(name: "registry", defaultValue: "", help: "a registry to pull through the daemon: HOST[:PORT], http://HOST:PORT (plain HTTP) or _default (containerd: every other registry); repeatable or comma-separated (default: docker.io)", kind: .repeated),
            .init(name: "daemon", defaultValue: "http://127.0.0.1:65001", help: "the local Darter daemon the runtime pulls through"),
            .init(name: "root", defaultValue: "/", help: "write under this directory instead of / (an init container's host mount, tests); the files still name paths as the runtime sees them"),
            .init(name: "config", defaultValue: "", help: "the runtime's configuration file (default: /etc/containerd/config.toml, /etc/containers/registries.conf, /etc/docker/daemon.json)"),
            .init(name: "config-path", defaultValue: "", help: "containerd: the hosts directory to set as config_path (default: the one config.toml names, else /etc/containerd/certs.d)"),
            .init(name: "dry-run", defaultValue: "", help: "print the change as a unified diff (patch -p1 -d ROOT applies it) and write nothing", kind: .toggle),
        ], arguments: argv)
        if args.wantsHelp {
            print("usage: darter init containerd|podman|docker [flags]\n\n" + args.usage.split(separator: "\n", maxSplits: 1).dropFirst().joined())
            return
        }
        guard args.positional.count == 1, let runtime = Runtime(rawValue: args.positional[0]) else {
            throw UsageError("init: name the runtime: darter init containerd|podman|docker (got \(args.positional.isEmpty ? "none" : args.positional.joined(separator: " ")))")
        }
        let options: InitOptions
        let root = args.string("root")
        do {
            let registries = args.all("registry").isEmpty ? [RegistrySpec(host: "docker.io")] : try RegistrySpec.parseList(args.all("registry"))
            let config = args.string("config"), hosts = args.string("config-path")
            for (flag, value) in [("config", config), ("config-path", hosts), ("root", root)] where !value.isEmpty && !value.hasPrefix("/") {
                throw RuntimeConfigError("--\(flag) must be an absolute path, got '\(value.prefix(100))'")
            }
            if !hosts.isEmpty && runtime != .containerd { throw RuntimeConfigError("--config-path is containerd's hosts directory; \(runtime.rawValue) has none") }
            options = InitOptions(runtime: runtime, registries: registries, daemon: try DaemonEndpoint.parse(args.string("daemon")),
                                  configFile: config.isEmpty ? nil : normalized(config), hostsDirectory: hosts.isEmpty ? nil : normalized(hosts))
        } catch let e as RuntimeConfigError {
            throw UsageError("init: \(e)")
        }
        let base = root == "/" ? "" : normalized(root)
        let plan: InitPlan
        do {
            plan = try RuntimeInit.plan(options) { path throws in try readIfExists(base + path) }
        } catch let e as RuntimeConfigError {
            throw UsageError("init \(runtime.rawValue): \(e)")
        }
        if args.isSet("dry-run") {
            for c in plan.changes {
                print(UnifiedDiff.render(old: c.old, new: c.new, name: String(c.path.dropFirst())), terminator: "")
            }
            for n in plan.notes { writeError("darter init: note: \(n)\n") }
            writeError(plan.changes.isEmpty ? "darter init: nothing to change\n" : "darter init: dry run: \(plan.changes.count) file(s) would change, nothing written\n")
            return
        }
        if plan.changes.isEmpty {
            print("darter init \(runtime.rawValue): nothing to change")
        }
        let stamp = timestamp()
        for c in plan.changes {
            let path = base + c.path
            let mode = fileMode(path) ?? 0o644
            if let old = c.old {
                let backup = path + ".darter-backup-" + stamp
                try writeAtomically(backup, old, mode: mode)
                try writeAtomically(path, c.new, mode: mode)
                print("changed \(path) (backup: \(backup))")
            } else {
                try writeAtomically(path, c.new, mode: mode)
                print("created \(path)")
            }
        }
        for n in plan.notes { print("note: \(n)") }
    }

    /// Without a trailing slash or doubled ones.
    static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/").joined(separator: "/")
    }

    struct FileError: Error, CustomStringConvertible { let description: String }

    static func readIfExists(_ path: String) throws -> String? {
        do {
            let bytes = try SystemCalls.readSmallFile(path, limit: 16 << 20)
            guard let text = String(validating: bytes, as: UTF8.self) else { throw FileError(description: "\(path) is not UTF-8 text") }
            return text
        } catch let e as Errno where e.rawValue == ENOENT {
            return nil
        } catch let e as Errno {
            throw FileError(description: "cannot read \(path): \(e)")
        }
    }

    static func fileMode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    /// The directory first, then SystemCalls.writeFileAtomically (a reader sees the old file or the new one).
    static func writeAtomically(_ path: String, _ text: String, mode: mode_t) throws {
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !dir.isEmpty {
            do { try SystemCalls.makeDirectories(dir) } catch { throw FileError(description: "cannot create \(dir): \(error)") }
        }
        do { try SystemCalls.writeFileAtomically(path, Array(text.utf8), mode: UInt32(mode)) } catch {
            throw FileError(description: "cannot write \(path): \(error)")
        }
    }

    /// 20240131T120000Z
    static func timestamp() -> String {
        var t = time(nil), tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tm.tm_year + 1900)\(two(tm.tm_mon + 1))\(two(tm.tm_mday))T\(two(tm.tm_hour))\(two(tm.tm_min))\(two(tm.tm_sec))Z"
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterCore
import DarterIO

@main
struct Darter {
    static let commands: [(name: String, summary: String, run: @Sendable ([String]) async throws -> Void)] = [
        ("seed", "run the seed peer: serve cached tasks over HTTP", { try await SeedCommand.run($0, role: .seed) }),
        ("peer", "run a peer daemon: the seed's front doors, tasks through the swarm (needs --scheduler)", { try await SeedCommand.run($0, role: .peer) }),
        ("scheduler", "run the swarm's scheduler: hosts, tasks, parents (no store)", SchedulerCommand.run),
        ("simulate", "a swarm in virtual time: the real scheduler and piece policy at N hosts (docs/SCALE.md)", SimulateCommand.run),
        ("get", "download a URL (or sha256:HEX) through the local daemon, else from the origin", GetCommand.run),
        ("init", "point containerd, podman or docker at the local daemon's registry mirror", InitCommand.run),
        ("import", "store local files in the piece cache (offline, or through a running daemon: --daemon) and print their task ids", ImportCommand.run),
        ("export", "write a task's content from a running daemon's store to a file", ExportCommand.run),
        ("stat", "what a running daemon's store holds of a task", StatCommand.run),
        ("bench", "measure any HTTP server: a concurrency sweep, JSON and SVG plots (--compare A B side by side)", BenchCommand.run),
        ("info", "list the tasks in a data directory", InfoCommand.run),
        ("debug-ingest", "write deterministic test content, printing each committed piece (crash tests)", DebugIngestCommand.run),
    ]

    static func main() async {
        var args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, name != "--help", name != "-h", name != "help" else {
            printUsage()
            return
        }
        args.removeFirst()
        if name == "--version" || name == "version" {
            print("darter \(DarterBuild.version)")
            return
        }
        guard let command = commands.first(where: { $0.name == name }) else {
            writeError("darter: unknown command '\(name)'\n")
            printUsage()
            exit(2)
        }
        do {
            try await command.run(args)
        } catch let e as UsageError {
            writeError("darter: \(e)\n")
            exit(2)
        } catch {
            writeError("darter \(name): \(error)\n")
            exit(1)
        }
    }

    static func printUsage() {
        print("usage: darter <command> [flags]\n\ncommands:")
        for c in commands { print("  " + c.name.padding(16) + c.summary) }
        print("\nRun 'darter <command> --help' for a command's flags.")
    }
}

/// One line of the daemon's log at info level (`--log-level`, `--log-format`).
func log(_ line: String) {
    Log.info(line)
}

func writeError(_ text: String) {
    SystemCalls.writeStandardError(text)
}

// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Darter",
    products: [
        .executable(name: "darter", targets: ["darter"]),
        // For the libFuzzer harnesses in Fuzz/.
        .library(name: "DarterCore", targets: ["DarterCore"]),
        .library(name: "HTTPCore", targets: ["HTTPCore"]),
        .library(name: "Origin", targets: ["Origin"]),
        .library(name: "PieceStore", targets: ["PieceStore"]),
        .library(name: "PieceProtocol", targets: ["PieceProtocol"]),
        .library(name: "HTTPClient", targets: ["HTTPClient"]),
        .library(name: "SchedulerProtocol", targets: ["SchedulerProtocol"]),
    ],
    targets: [
        // System libraries from Debian (see tools/bootstrap).
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // What Swift cannot import: GNU-only calls and constants.
        .target(name: "CDarterShim", cSettings: [.unsafeFlags(["-O3"])]),
        // CRC32C in C (SSE4.2 crc32q in three streams; a table fallback).
        .target(name: "CDarterChecksum", cSettings: [.unsafeFlags(["-O3"])]),
        // Typed libcurl glue (curl_easy_setopt/getinfo are variadic; callbacks, error buffer, threads).
        .target(name: "CDarterCurl", dependencies: [], linkerSettings: [.linkedLibrary("curl")]),

        // Pure vocabulary every other target shares: task ids, digests, piece math, URL
        // normalization, CRC32C, SHA-256, JSON. No I/O: the scheduler and `darter get` use it
        // without linking the store or io_uring.
        .target(name: "DarterCore", dependencies: ["CDarterChecksum", "CCrypto"], swiftSettings: strict),
        // The one I/O layer: io_uring ring owner, buffers, backends. All unsafe pointer code lives here.
        .target(name: "DarterIO", dependencies: ["DarterCore", "CURing", "CDarterShim"], swiftSettings: strict),
        // Content-addressed piece cache: layout, journal, recovery, eviction, waits.
        .target(name: "PieceStore", dependencies: ["DarterCore", "DarterIO"], swiftSettings: strict),
        // Pure HTTP/1.1: parse, serialize, ranges, conditionals. No I/O.
        .target(name: "HTTPCore", swiftSettings: strict),

        // The io_uring HTTP/1.1 server: event loops, connections, bodies from files.
        .target(name: "HTTPServer", dependencies: ["DarterCore", "DarterIO", "HTTPCore"], swiftSettings: strict),
        // The piece protocol between daemons (pure: paths, metadata, availability feed; docs/PROTOCOL.md).
        .target(name: "PieceProtocol", dependencies: ["DarterCore"], swiftSettings: strict),
        // Messages between daemons and the scheduler (pure JSON; docs/PROTOCOL.md).
        .target(name: "SchedulerProtocol", dependencies: ["DarterCore", "PieceProtocol"], swiftSettings: strict),
        // The scheduler's policy and state (pure, virtual time): hosts, tasks, parent scoring,
        // bad parents, the seed for a task by consistent hashing.
        .target(name: "Scheduler", dependencies: ["DarterCore", "PieceProtocol", "SchedulerProtocol"], swiftSettings: strict),
        // The HTTP/1.1 client on the event loops: pools, pipelining, bodies into piece buffers.
        .target(name: "HTTPClient", dependencies: ["DarterIO", "HTTPCore"], swiftSettings: strict),
        // Origin fetchers over libcurl: HTTP(S), S3 (SigV4), OCI registries (Bearer tokens).
        .target(name: "Origin", dependencies: ["DarterCore", "DarterIO", "HTTPCore", "HTTPClient", "CCurl", "CDarterCurl"], swiftSettings: strict),
        // Moving pieces: the assembler (a byte stream → checked pieces → store, memory, feed),
        // fresh pieces in memory, bodies served from the store, the availability feed.
        .target(name: "PieceTransfer", dependencies: ["DarterCore", "DarterIO", "PieceStore", "PieceProtocol", "HTTPServer"], swiftSettings: strict),
        // `darter get`: downloads through the local daemon's piece protocol (no store, no service;
        // the origin backends only for the no-daemon fallback).
        .target(name: "DarterGet", dependencies: ["DarterCore", "DarterIO", "HTTPCore", "HTTPClient", "PieceProtocol", "Origin"], swiftSettings: strict),
        // A daemon's side of the scheduler protocol: register everywhere, keep alive, announce and
        // report to the scheduler a task hashes to.
        .target(name: "SchedulerClient", dependencies: ["DarterCore", "HTTPClient", "HTTPCore", "PieceProtocol", "SchedulerProtocol"], swiftSettings: strict),
        // A peer's download policy (pure): which piece to ask which parent for.
        .target(name: "PeerPolicy", dependencies: ["DarterCore", "PieceProtocol"], swiftSettings: strict),
        // A swarm in virtual time driving the real Scheduler and PieceSelector (tests, tools).
        .target(name: "SwarmSimulator", dependencies: ["DarterCore", "PeerPolicy", "PieceProtocol", "Scheduler", "SchedulerProtocol", "SwarmDownload", "BenchReport"], swiftSettings: strict),
        // A peer's download of one task through the swarm: parents from the scheduler, pieces from
        // several at once, checked and landed through the piece assembler; the origin when none can.
        .target(name: "SwarmDownload", dependencies: ["DarterCore", "DarterIO", "HTTPClient", "HTTPCore", "PeerPolicy", "PieceProtocol",
                                                      "PieceStore", "PieceTransfer", "SchedulerClient", "SchedulerProtocol"], swiftSettings: strict),
        // `darter scheduler`'s routes over the Scheduler (no store).
        .target(name: "SchedulerService", dependencies: ["DarterCore", "Scheduler", "SchedulerProtocol", "PieceProtocol", "HTTPServer", "HTTPClient", "HTTPCore"], swiftSettings: strict),
        // The seed peer's routes over the piece store.
        .target(name: "SeedService", dependencies: ["DarterCore", "PieceTransfer", "PieceProtocol", "HTTPServer", "PieceStore", "HTTPCore", "DarterIO", "Origin", "SwarmDownload", "SchedulerProtocol", "SchedulerClient"], swiftSettings: strict),

        // `darter init containerd|podman|docker` (pure): hosts.toml, minimal config.toml,
        // registries.conf and daemon.json edits, unified diffs for --dry-run.
        .target(name: "RuntimeConfig", dependencies: ["DarterCore"], swiftSettings: strict),

        // `darter bench`'s results as files (pure): latency histograms, the JSON report, SVG plots.
        .target(name: "BenchReport", dependencies: ["DarterCore"], swiftSettings: strict),
        // `darter bench`'s load generator: connections on the event loops, requests back to back,
        // bodies received into a discard buffer, latencies into per-loop histograms.
        .target(name: "LoadGenerator", dependencies: ["BenchReport", "DarterCore", "DarterIO", "HTTPCore", "HTTPClient"], swiftSettings: strict),

        .executableTarget(name: "darter", dependencies: ["BenchReport", "LoadGenerator", "DarterCore", "RuntimeConfig", "PieceStore", "DarterIO", "SeedService", "HTTPServer", "HTTPClient", "Origin", "DarterGet", "Scheduler", "SchedulerService", "SchedulerClient", "SchedulerProtocol", "PieceProtocol", "PieceTransfer", "SwarmDownload", "SwarmSimulator"], swiftSettings: strict),
        // Benchmarks live apart from the product; tools/bench runs them.
        .executableTarget(name: "darter-bench", dependencies: ["DarterCore", "PieceStore", "DarterIO"],
                          path: "Benchmarks/DarterBench", swiftSettings: strict),

        // Helpers the test targets share: scratch directories and files, child processes and the
        // darter binary, free ports, raw HTTP and curl, the origin.py and registry.py launchers.
        .target(name: "DarterTestSupport", dependencies: ["DarterCore", "DarterIO", "HTTPServer"], path: "Tests/DarterTestSupport", swiftSettings: strict),
        .testTarget(name: "BenchReportTests", dependencies: ["BenchReport", "DarterCore"], swiftSettings: strict),
        .testTarget(name: "LoadGeneratorTests", dependencies: ["LoadGenerator", "BenchReport", "HTTPServer", "HTTPCore", "HTTPClient", "DarterIO", "DarterCore", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "DarterCoreTests", dependencies: ["DarterCore"], swiftSettings: strict),
        .testTarget(name: "DarterIOTests", dependencies: ["DarterCore", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "PieceStoreTests", dependencies: ["DarterCore", "PieceStore", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "PieceTransferTests", dependencies: ["PieceTransfer", "PieceProtocol", "PieceStore", "DarterCore", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "SeedServiceTests", dependencies: ["DarterCore", "DarterIO", "HTTPServer", "SeedService"], swiftSettings: strict),
        .testTarget(name: "HTTPClientTests", dependencies: ["HTTPClient", "HTTPServer", "HTTPCore", "DarterIO", "DarterCore", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "DarterGetTests", dependencies: ["DarterGet", "DarterCore", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "SchedulerProtocol", "SchedulerService", "SchedulerClient", "PieceProtocol", "DarterCore", "DarterIO", "HTTPServer", "HTTPClient", "HTTPCore", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "PeerPolicyTests", dependencies: ["PeerPolicy", "PieceProtocol", "DarterCore"], swiftSettings: strict),
        .testTarget(name: "RuntimeConfigTests", dependencies: ["RuntimeConfig", "DarterCore"], swiftSettings: strict),
        .testTarget(name: "SwarmSimulatorTests", dependencies: ["SwarmSimulator"], swiftSettings: strict),
        .testTarget(name: "PieceProtocolTests", dependencies: ["PieceProtocol", "DarterCore"], swiftSettings: strict),
        .testTarget(name: "HTTPCoreTests", dependencies: ["HTTPCore"], swiftSettings: strict),
        .testTarget(name: "OriginTests", dependencies: ["DarterCore", "HTTPCore", "Origin", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "ServerTests", dependencies: ["DarterCore", "DarterIO", "HTTPCore", "HTTPClient", "HTTPServer", "PieceProtocol", "PieceStore", "DarterTestSupport"], swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)

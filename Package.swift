// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Darter",
    products: [
        .executable(name: "darter", targets: ["darter"]),
        // For the libFuzzer harnesses in Fuzz/.
        .library(name: "HTTPCore", targets: ["HTTPCore"]),
        .library(name: "Origin", targets: ["Origin"]),
        .library(name: "PieceStore", targets: ["PieceStore"]),
    ],
    targets: [
        // System libraries from Debian (see tools/bootstrap).
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // What Swift cannot import: GNU-only calls and constants, CRC32C.
        .target(name: "CDarterShim", cSettings: [.unsafeFlags(["-O3"])]),
        // Typed libcurl glue (curl_easy_setopt/getinfo are variadic; callbacks, error buffer, threads).
        .target(name: "CDarterCurl", dependencies: [], linkerSettings: [.linkedLibrary("curl")]),

        // The one I/O layer: io_uring ring owner, buffers, backends. All unsafe pointer code lives here.
        .target(name: "DarterIO", dependencies: ["CURing", "CDarterShim", "CCrypto"], swiftSettings: strict),
        // Content-addressed piece cache: ids, layout, journal, recovery, eviction, waits.
        .target(name: "PieceStore", dependencies: ["DarterIO"], swiftSettings: strict),
        // Pure HTTP/1.1: parse, serialize, ranges, conditionals. No I/O.
        .target(name: "HTTPCore", swiftSettings: strict),

        // The io_uring HTTP/1.1 server: event loops, connections, bodies from files.
        .target(name: "HTTPServer", dependencies: ["DarterIO", "HTTPCore"], swiftSettings: strict),
        // Origin fetchers over libcurl: HTTP(S), S3 (SigV4), OCI registries (Bearer tokens).
        .target(name: "Origin", dependencies: ["DarterIO", "CCurl", "CDarterCurl"], swiftSettings: strict),
        // The seed peer's routes over the piece store.
        .target(name: "SeedService", dependencies: ["HTTPServer", "PieceStore", "HTTPCore", "DarterIO", "Origin"], swiftSettings: strict),

        .executableTarget(name: "darter", dependencies: ["PieceStore", "DarterIO", "SeedService", "HTTPServer", "Origin"], swiftSettings: strict),
        // Benchmarks live apart from the product; tools/bench runs them.
        .executableTarget(name: "darter-bench", dependencies: ["PieceStore", "DarterIO"],
                          path: "Benchmarks/DarterBench", swiftSettings: strict),

        // Helpers the test targets share (scratch directories, files, child processes).
        .target(name: "DarterTestSupport", dependencies: ["DarterIO"], path: "Tests/DarterTestSupport", swiftSettings: strict),
        .testTarget(name: "DarterIOTests", dependencies: ["DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "PieceStoreTests", dependencies: ["PieceStore", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "SeedServiceTests", dependencies: ["SeedService"], swiftSettings: strict),
        .testTarget(name: "HTTPCoreTests", dependencies: ["HTTPCore"], swiftSettings: strict),
        .testTarget(name: "OriginTests", dependencies: ["Origin", "DarterIO", "DarterTestSupport"], swiftSettings: strict),
        .testTarget(name: "ServerTests", dependencies: ["DarterIO", "PieceStore", "DarterTestSupport"], swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)

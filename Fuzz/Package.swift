// swift-tools-version:6.2
// libFuzzer harnesses. Build and run with tools/fuzz (needs --sanitize=fuzzer, so kept out of the main package).
import PackageDescription

let package = Package(
    name: "DarterFuzz",
    dependencies: [
        .package(name: "Darter", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "HTTPFuzz",
            dependencies: [.product(name: "HTTPCore", package: "Darter")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "HTTPResponseFuzz",
            dependencies: [.product(name: "HTTPCore", package: "Darter")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "ProtocolFuzz",
            dependencies: [.product(name: "PieceProtocol", package: "Darter"), .product(name: "DarterCore", package: "Darter"),
                           .product(name: "HTTPClient", package: "Darter"), .product(name: "SchedulerProtocol", package: "Darter")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "OriginFuzz",
            dependencies: [.product(name: "Origin", package: "Darter"), .product(name: "DarterCore", package: "Darter"),
                           .product(name: "HTTPCore", package: "Darter")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)

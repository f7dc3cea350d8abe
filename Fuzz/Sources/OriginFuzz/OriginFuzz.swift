// libFuzzer entry point for the parsers of what origins and users send the shield: image
// references and platforms (POST /preheat), OCI manifests and indexes (registries), the JSON
// under them, Content-Range (origins), --origin-allow lists, registry auth files, AWS shared
// config files and URL normalization (task ids).
// Not main.swift: libFuzzer supplies main(). Each input goes through every parser; the
// invariants are that what parses reads back the same and stays within its grammar.
import Origin
import DarterCore
import HTTPCore

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

func isDigest(_ s: String) -> Bool {
    s.utf8.count == 71 && s.hasPrefix("sha256:") && s.utf8.dropFirst(7).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
}

func references(_ text: String) {
    guard let r = try? ImageReference(parsing: text) else { return }
    check(!r.registry.isEmpty && r.registry == r.registry.lowercased(), "registry \(r.registry)")
    check(!r.repository.isEmpty && !r.repository.hasPrefix("/") && !r.repository.hasSuffix("/"), "repository \(r.repository)")
    check(r.tag != nil || r.digest != nil, "neither tag nor digest")
    if let d = r.digest { check(isDigest(d), "digest \(d)") }
    let again = try? ImageReference(parsing: r.description)
    check(again == r, "\(r.description) reads back as \(String(describing: again))")
}

func platforms(_ text: String) {
    guard let p = ImagePlatform(parsing: text) else { return }
    check(ImagePlatform(parsing: p.description) == p, "platform \(p) does not read back")
}

func manifests(_ bytes: [UInt8]) {
    guard let m = try? ImageManifest(parsing: bytes) else { return }
    switch m {
    case .index(let entries):
        for e in entries {
            check(isDigest(e.digest) && e.size >= 0, "entry \(e)")
            if let p = e.platform {
                let chosen = m.manifest(for: p)
                check(chosen?.platform?.os == p.os && chosen?.platform?.architecture == p.architecture, "\(p) chose \(String(describing: chosen))")
            }
        }
    case .image(let config, let layers):
        for d in [config] + layers { check(isDigest(d.digest) && d.size >= 0, "descriptor \(d)") }
        check(m.manifest(for: .current) == nil, "an image resolved a platform")
    }
}

func contentRanges(_ text: String) {
    guard let r = HTTPContentRange(parsing: text) else { return }
    check(r.first >= 0 && r.first <= r.last && (r.completeLength.map { $0 > r.last } ?? true), "range \(r)")
    check(HTTPContentRange(parsing: r.description) == r, "\(r) does not read back")
}

func allowlists(_ text: String) {
    guard case .success(let list) = OriginAllowlist.parse(text) else { return }
    for address: [UInt8] in [[127, 0, 0, 1], [169, 254, 169, 254], [10, 1, 2, 3], Array(repeating: 0, count: 15) + [1]] {
        _ = list.allowsConnection(host: "example.com", address: address)
    }
}

func authFiles(_ bytes: [UInt8]) {
    guard let file = try? RegistryAuthFile(parsing: bytes) else { return }
    for host in file.credentials.keys { check(!host.isEmpty && host == host.lowercased() && !host.contains("/"), "auth key \(host)") }
}

func awsFiles(_ text: String) {
    for (name, values) in AWSSharedFile(parsing: text).sections {
        check(!name.hasPrefix(" ") && !name.hasSuffix(" "), "section '\(name)'")
        for key in values.keys { check(!key.isEmpty && key == key.lowercased(), "key '\(key)'") }
    }
}

func urls(_ text: String) {
    guard let n = try? URLNormalizer.normalize(text) else { return }
    let again = try? URLNormalizer.normalize(n)
    check(again == n, "normalizing \(n) again gives \(String(describing: again))")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    let text = String(decoding: bytes, as: UTF8.self)
    references(text)
    platforms(text)
    manifests(bytes)
    contentRanges(text)
    allowlists(text)
    authFiles(bytes)
    awsFiles(text)
    urls(text)
    return 0
}

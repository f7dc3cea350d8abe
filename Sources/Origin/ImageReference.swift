import DarterCore
/// An image reference as `docker pull` reads it: `[registry/]repository[:tag][@sha256:<hex>]`.
///
/// A first component with a `.` or a `:`, or `localhost`, names the registry; otherwise the
/// registry is Docker Hub (`docker.io`), where one-component names live under `library/`
/// (`alpine` is `docker.io/library/alpine`). No tag and no digest means the tag `latest`.
public struct ImageReference: Sendable, Equatable, CustomStringConvertible {
    /// `host[:port]`, lowercased; `docker.io` for Docker Hub.
    public var registry: String
    /// Path components joined by `/` (`library/alpine`, `org/team/app`).
    public var repository: String
    public var tag: String?
    /// `sha256:<64 lowercase hex>`.
    public var digest: String?

    /// What to ask the registry for: the digest when there is one, else the tag.
    public var manifestReference: String { digest ?? tag ?? "latest" }

    public var description: String {
        registry + "/" + repository + (tag.map { ":" + $0 } ?? "") + (digest.map { "@" + $0 } ?? "")
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(parsing text: String) throws(ParseError) {
        func fail(_ why: String) -> ParseError { ParseError(description: "image reference '\(text.prefix(300))': \(why)") }
        guard !text.isEmpty else { throw fail("empty") }
        guard text.count <= 1024, text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw fail("expected [registry/]name[:tag][@sha256:<hex>] in printable ASCII")
        }
        var rest = Substring(text)
        var digest: String? = nil
        if let at = rest.firstIndex(of: "@") {
            let d = rest[rest.index(after: at)...]
            guard d.hasPrefix("sha256:"), d.count == 71, d.dropFirst(7).allSatisfy(\.isLowercaseHex) else {
                throw fail("the digest must be sha256:<64 lowercase hex>")
            }
            digest = String(d)
            rest = rest[..<at]
        }
        var tag: String? = nil
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let t = rest[rest.index(after: colon)...]
            guard let first = t.first, first.isTagStart, t.count <= 128, t.allSatisfy(\.isTagCharacter) else {
                throw fail("a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -")
            }
            tag = String(t)
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false)
        var registry = "docker.io"
        if components.count > 1, let first = components.first,
           first.contains(".") || first.contains(":") || first == "localhost" {
            guard Self.isRegistryHost(first) else { throw fail("'\(first)' is not a registry host[:port]") }
            registry = first.lowercased()
            components.removeFirst()
        }
        if registry == "index.docker.io" || registry == "registry-1.docker.io" { registry = "docker.io" }
        if registry == "docker.io" && components.count == 1 { components.insert("library", at: 0) }
        guard !components.isEmpty, components.allSatisfy(Self.isPathComponent) else {
            throw fail("repository components are lowercase letters and digits, joined by '.', '_', '__' or dashes")
        }
        let repository = components.joined(separator: "/")
        guard repository.count <= 255 else { throw fail("the repository name is over 255 characters") }
        self.registry = registry
        self.repository = repository
        self.tag = tag ?? (digest == nil ? "latest" : nil)
        self.digest = digest
    }

    /// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
    static func isPathComponent(_ c: Substring) -> Bool {
        let b = Array(c.utf8)
        func alnum(_ x: UInt8) -> Bool { (x >= 0x61 && x <= 0x7a) || (x >= 0x30 && x <= 0x39) }
        guard let first = b.first, let last = b.last, alnum(first), alnum(last) else { return false }
        var i = 0
        while i < b.count {
            if alnum(b[i]) { i += 1; continue }
            var j = i
            while j < b.count, !alnum(b[j]) { j += 1 }
            let sep = b[i..<j]
            let ok = sep.elementsEqual([0x2e]) || sep.elementsEqual([0x5f]) || sep.elementsEqual([0x5f, 0x5f]) || sep.allSatisfy { $0 == 0x2d }
            guard ok else { return false }
            i = j
        }
        return true
    }

    /// `host[:port]`: dot-separated labels of letters, digits and inner dashes (or a bracketed
    /// IPv6 address), then an optional numeric port.
    static func isRegistryHost(_ s: Substring) -> Bool {
        var host = s, port: Substring? = nil
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return false }
            let inner = s[s.index(after: s.startIndex)..<close]
            guard !inner.isEmpty, inner.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            let after = s[s.index(after: close)...]
            if after.isEmpty { return true }
            guard after.first == ":" else { return false }
            port = after.dropFirst()
            host = "h"
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            port = s[s.index(after: colon)...]
        }
        if let port { guard let p = Int(port), (1...65535).contains(p), port.allSatisfy(\.isASCIIDigit) else { return false } }
        // Labels of letters, digits and inner dashes, joined by dots.
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard let first = label.first, let last = label.last, first != "-", last != "-" else { return false }
            return label.allSatisfy { $0.isASCIIDigit || $0.isASCIILetter || $0 == "-" }
        }
    }
}

/// `os/architecture[/variant]`, as in `linux/amd64` or `linux/arm64/v8`.
public struct ImagePlatform: Sendable, Equatable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?

    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    /// The platform this process runs on.
    public static var current: ImagePlatform {
        #if arch(arm64)
        ImagePlatform(os: "linux", architecture: "arm64")
        #elseif arch(x86_64)
        ImagePlatform(os: "linux", architecture: "amd64")
        #else
        ImagePlatform(os: "linux", architecture: "unknown")
        #endif
    }

    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count),
              parts.allSatisfy({ !$0.isEmpty && $0.count <= 64 && $0.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == "." || $0 == "-" } })
        else { return nil }
        self.init(os: String(parts[0]), architecture: String(parts[1]), variant: parts.count == 3 ? String(parts[2]) : nil)
    }

    public var description: String { os + "/" + architecture + (variant.map { "/" + $0 } ?? "") }
}

/// A manifest from a registry: an index (a list of per-platform manifests) or an image.
public enum ImageManifest: Sendable, Equatable {
    /// A content descriptor: what to fetch and how big it is.
    public struct Descriptor: Sendable, Equatable {
        public var mediaType: String
        /// `sha256:<64 lowercase hex>`.
        public var digest: String
        public var size: Int64
        /// For index entries.
        public var platform: ImagePlatform?
    }

    case index([Descriptor])
    case image(config: Descriptor, layers: [Descriptor])

    /// The media types a client asks for (Accept), newest first.
    public static let acceptedMediaTypes = [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Parses an OCI or Docker schema 2 manifest or index. Layers that name external `urls`
    /// (non-distributable "foreign" layers) are left out: registries do not hold them.
    public init(parsing bytes: [UInt8], contentType: String? = nil) throws(ParseError) {
        guard case .object(let root)? = try? JSONValue.parse(bytes) else { throw ParseError(description: "the manifest is not a JSON object") }
        let mediaType = root["mediaType"]?.string ?? contentType?.split(separator: ";").first.map { String($0).trimmingSpaces() } ?? ""
        if root["schemaVersion"]?.number == 1 || mediaType.hasPrefix("application/vnd.docker.distribution.manifest.v1") {
            throw ParseError(description: "schema 1 manifests are not supported")
        }
        if case .array(let entries)? = root["manifests"] {
            var list: [Descriptor] = []
            for (i, e) in entries.enumerated() {
                guard case .object(let fields) = e else { throw ParseError(description: "manifests[\(i)] is not an object") }
                var d = try Self.descriptor(fields, "manifests[\(i)]")
                if case .object(let p)? = fields["platform"], let os = p["os"]?.string, let arch = p["architecture"]?.string {
                    d.platform = ImagePlatform(os: os, architecture: arch, variant: p["variant"]?.string)
                }
                list.append(d)
            }
            self = .index(list)
            return
        }
        guard case .object(let configFields)? = root["config"] else { throw ParseError(description: "the manifest has neither \"manifests\" nor \"config\"") }
        let config = try Self.descriptor(configFields, "config")
        guard case .array(let layerValues)? = root["layers"] else { throw ParseError(description: "the manifest has no \"layers\" array") }
        var layers: [Descriptor] = []
        for (i, l) in layerValues.enumerated() {
            guard case .object(let fields) = l else { throw ParseError(description: "layers[\(i)] is not an object") }
            if case .array(let urls)? = fields["urls"], !urls.isEmpty { continue }
            layers.append(try Self.descriptor(fields, "layers[\(i)]"))
        }
        self = .image(config: config, layers: layers)
    }

    static func descriptor(_ fields: [String: JSONValue], _ what: String) throws(ParseError) -> Descriptor {
        guard let digest = fields["digest"]?.string else { throw ParseError(description: "\(what) has no digest") }
        guard digest.hasPrefix("sha256:"), digest.utf8.count == 71, digest.dropFirst(7).allSatisfy(\.isLowercaseHex) else {
            throw ParseError(description: "\(what): digest '\(digest.prefix(100))' is not sha256:<64 lowercase hex>")
        }
        guard let size = fields["size"]?.number, size >= 0, size <= 1e15, size == size.rounded() else {
            throw ParseError(description: "\(what) has no size (a whole number of bytes)")
        }
        return Descriptor(mediaType: fields["mediaType"]?.string ?? "", digest: digest, size: Int64(size), platform: nil)
    }

    /// The index entry for `platform`: the same OS and architecture, and the same variant when
    /// one is asked for (else an entry without a variant comes first). Attestation manifests
    /// (`unknown/unknown`) never match.
    public func manifest(for platform: ImagePlatform) -> Descriptor? {
        guard case .index(let entries) = self else { return nil }
        let candidates = entries.filter { $0.platform?.os == platform.os && $0.platform?.architecture == platform.architecture }
        if let v = platform.variant { return candidates.first { $0.platform?.variant == v } }
        return candidates.first { $0.platform?.variant == nil } ?? candidates.first
    }
}

extension Character {
    var isLowercaseHex: Bool { ("0"..."9").contains(self) || ("a"..."f").contains(self) }
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
    var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    var isTagStart: Bool { isASCIIDigit || isASCIILetter || self == "_" }
    var isTagCharacter: Bool { isTagStart || self == "." || self == "-" }
}

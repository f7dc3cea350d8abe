import DarterCore
/// Registry credentials from an auth file in the format podman, skopeo, buildah and Docker
/// write (`auth.json`, `~/.docker/config.json`):
///
///     {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"},
///                "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
///
/// Keys may carry a scheme and a path (Docker's Hub key does); the host[:port] is kept,
/// lowercased. Entries with neither `auth` nor `username`/`password` (an `identitytoken`, a
/// credential helper) are skipped and listed in ``skipped``.
public struct RegistryAuthFile: Sendable {
    /// host[:port] → credential.
    public var credentials: [String: (username: String, password: String)] = [:]
    /// Keys whose entry had no usable credential.
    public var skipped: [String] = []

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(parsing bytes: [UInt8]) throws(ParseError) {
        guard case .object(let root)? = try? JSONValue.parse(bytes) else { throw ParseError(description: "not a JSON object") }
        guard case .object(let auths)? = root["auths"] else { throw ParseError(description: "no \"auths\" object") }
        for key in auths.keys.sorted() {
            guard case .object(let entry)? = auths[key] else { throw ParseError(description: "auths[\"\(key.prefix(100))\"] is not an object") }
            let host = Self.host(ofKey: key)
            guard !host.isEmpty else { throw ParseError(description: "auths key \"\(key.prefix(100))\" names no registry") }
            if let auth = entry["auth"]?.string, !auth.isEmpty {
                guard let decoded = base64Decode(auth), let text = String(validating: decoded, as: UTF8.self),
                      let colon = text.firstIndex(of: ":") else {
                    throw ParseError(description: "auths[\"\(key.prefix(100))\"].auth is not base64 of user:password")
                }
                credentials[host] = (String(text[..<colon]), String(text[text.index(after: colon)...]))
            } else if let user = entry["username"]?.string, let password = entry["password"]?.string, !user.isEmpty {
                credentials[host] = (user, password)
            } else {
                skipped.append(key)
            }
        }
    }

    /// "https://index.docker.io/v1/" → "index.docker.io"; "Registry.Example:5000" → "registry.example:5000".
    static func host(ofKey key: String) -> String {
        var k = Substring(key)
        if let r = k.firstRange(of: "://") { k = k[r.upperBound...] }
        return String(k.prefix { $0 != "/" }).lowercased()
    }
}

/// Standard base64 (RFC 4648, `+/`), padding optional; nil on any other character.
func base64Decode(_ text: String) -> [UInt8]? {
    var out: [UInt8] = []
    var buffer: UInt32 = 0, bits = 0
    var padding = 0
    for c in text.utf8 {
        let v: UInt32
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "+"): v = 62
        case UInt8(ascii: "/"): v = 63
        case UInt8(ascii: "="): padding += 1; continue
        default: return nil
        }
        guard padding == 0 else { return nil }  // data after padding
        buffer = buffer << 6 | v
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
        }
    }
    guard padding <= 2, bits < 6 else { return nil }
    return out
}

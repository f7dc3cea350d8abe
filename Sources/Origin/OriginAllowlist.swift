import DarterIO

/// Which origins may be connected to, so a seed is no SSRF tool. Pure: the origin client checks
/// it on every connection it opens (``OriginConfiguration/allowlist``).
///
/// Entries are host names (exact, case-insensitive; `*.example.com` for subdomains) and CIDR
/// blocks (`10.0.0.0/8`, `fd00::/8`). With no entries every origin is allowed except the
/// always-denied blocks: link-local `169.254.0.0/16` and `fe80::/10`, and the cloud metadata
/// address `fd00:ec2::254` — unless an entry names them explicitly.
public struct OriginAllowlist: Sendable, Equatable {
    public struct CIDR: Sendable, Equatable {
        var address: [UInt8]  // 4 or 16 bytes
        var prefix: Int
        func contains(_ ip: [UInt8]) -> Bool {
            guard ip.count == address.count else { return false }
            var bits = prefix
            for i in 0..<ip.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xff : ~UInt8(0xff >> UInt8(bits))
                if ip[i] & mask != address[i] & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    public var hosts: [String] = []
    public var blocks: [CIDR] = []
    static let denied: [CIDR] = [
        parseCIDR("169.254.0.0/16")!, parseCIDR("fe80::/10")!, parseCIDR("fd00:ec2::254/128")!,
    ]

    public init() {}

    /// Parses `--origin-allow`: comma-separated hosts and CIDRs. On error, a failure naming the bad entry.
    public static func parse(_ list: String) -> Result<OriginAllowlist, AllowlistError> {
        var a = OriginAllowlist()
        for raw in list.split(separator: ",") {
            let e = raw.trimmingSpaces().lowercased()
            if e.isEmpty { continue }
            if e.contains("/") {
                guard let c = parseCIDR(e) else { return .failure(AllowlistError(entry: e)) }
                a.blocks.append(c)
            } else if let ip = parseIP(e) {
                a.blocks.append(CIDR(address: ip, prefix: ip.count * 8))
            } else {
                guard e.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "*" }) else {
                    return .failure(AllowlistError(entry: e))
                }
                a.hosts.append(e)
            }
        }
        return .success(a)
    }

    public var isEmpty: Bool { hosts.isEmpty && blocks.isEmpty }

    /// Decides for one connection: the host of the URL a transfer is at now (after any
    /// redirect; an IPv6 literal may come in brackets) and the one address it is about to
    /// connect to. The origin client asks this for every connection, so redirects, registry
    /// token realms and a second DNS answer are held to the same list as the URL asked for.
    public func allowsConnection(host: String, address: [UInt8]) -> Bool {
        let explicitlyAllowed = blocks.contains { $0.contains(address) }
        if Self.denied.contains(where: { $0.contains(address) }) { return explicitlyAllowed }
        if isEmpty || explicitlyAllowed { return true }
        let bare = (host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host).lowercased()
        return hosts.contains { $0 == bare || ($0.hasPrefix("*.") && bare.hasSuffix($0.dropFirst(1))) }
    }
}

public struct AllowlistError: Error, Sendable, Equatable, CustomStringConvertible {
    public var entry: String
    public var description: String { "--origin-allow: '\(entry)' is neither a host name, an IP address nor a CIDR block" }
}

func parseIP(_ s: String) -> [UInt8]? { Socket.parseIPAddress(s) }

func parseCIDR(_ s: String) -> OriginAllowlist.CIDR? {
    let parts = s.split(separator: "/")
    guard parts.count == 2, let ip = parseIP(String(parts[0])), let prefix = Int(parts[1]), prefix >= 0, prefix <= ip.count * 8 else { return nil }
    return OriginAllowlist.CIDR(address: ip, prefix: prefix)
}

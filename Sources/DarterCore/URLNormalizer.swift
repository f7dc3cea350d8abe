/// Why a URL cannot name a task.
public enum URLNormalizationError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingScheme, unsupportedScheme(String), missingHost, invalidHost(String), invalidPort(String)
    public var description: String {
        switch self {
        case .missingScheme: return "URL has no scheme (expected http://, https:// or s3://)"
        case .unsupportedScheme(let s): return "URL scheme '\(s)' is not supported (expected http, https or s3)"
        case .missingHost: return "URL has no host"
        case .invalidHost(let h): return "URL host '\(h.prefix(200))' is not a host name or an IP address"
        case .invalidPort(let p): return "URL port '\(p)' is not a number from 1 to 65535"
        }
    }
}

/// Puts a URL in the form task ids are computed from, so that the same object fetched with
/// a fresh signature, or through containerd, gets the same id.
///
/// Rules: scheme and host lowercased; default ports (80, 443) dropped; fragment dropped;
/// signature query parameters dropped (S3 `X-Amz-*`, GCS `X-Goog-*`, S3 v2 / OSS / OBS
/// `Signature`, `Expires`, `AWSAccessKeyId`, `OSSAccessKeyId`, `AccessKeyId`, COS `q-*`
/// signature fields, containerd's `ns`); remaining parameters sorted by key (stable).
public enum URLNormalizer {
    static let droppedKeys: Set<String> = [
        "signature", "expires", "awsaccesskeyid", "ossaccesskeyid", "accesskeyid", "ns",
        "q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list", "q-signature",
        "security-token", "x-oss-security-token", "x-obs-security-token",
    ]
    static let droppedPrefixes = ["x-amz-", "x-goog-"]

    static func isSignatureKey(_ key: Substring) -> Bool {
        let k = key.lowercased()
        return droppedKeys.contains(k) || droppedPrefixes.contains { k.hasPrefix($0) }
    }

    public static func normalize(_ url: String) throws(URLNormalizationError) -> String {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://"),
              !url[..<colon].isEmpty, url[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) })
        else { throw .missingScheme }
        let scheme = url[..<colon].lowercased()
        guard ["http", "https", "s3"].contains(scheme) else { throw .unsupportedScheme(scheme) }
        var rest = url[url.index(colon, offsetBy: 3)...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }  // userinfo is not identity
        var host = authority.lowercased()
        var portSuffix = ""
        // Port: after the last colon that is outside an IPv6 literal.
        if let colon = host.lastIndex(of: ":"), !host[colon...].contains("]") {
            let port = String(host[host.index(after: colon)...])
            guard colon != host.startIndex else { throw .missingHost }
            guard port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber), let p = Int(port), (1...65535).contains(p) else { throw .invalidPort(port) }
            let isDefault = (scheme == "http" && p == 80) || (scheme == "https" && p == 443)
            portSuffix = isDefault ? "" : ":\(p)"
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw .missingHost }
        // A colon left in the host would read as a port the second time (not idempotent).
        guard isHost(host) else { throw .invalidHost(host) }
        host += portSuffix
        var pathAndQuery = rest[authorityEnd...]
        var query: Substring = ""
        if let q = pathAndQuery.firstIndex(of: "?") {
            query = pathAndQuery[pathAndQuery.index(after: q)...]
            pathAndQuery = pathAndQuery[..<q]
        }
        let path = pathAndQuery.isEmpty ? "/" : String(pathAndQuery)
        let kept = query.split(separator: "&", omittingEmptySubsequences: true)
            .filter { !isSignatureKey($0.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]) }
            .enumerated()
            .sorted { a, b in
                let ka = a.element.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
                let kb = b.element.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
                return ka != kb ? ka < kb : a.offset < b.offset
            }
            .map { String($0.element) }
        return scheme + "://" + host + path + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&"))
    }
}

/// A registered name (RFC 3986: unreserved, sub-delims and percent signs, no colon) or an IPv6
/// literal in brackets (with an optional `%25` zone of unreserved characters).
private func isHost(_ host: String) -> Bool {
    if host.hasPrefix("[") {
        guard host.hasSuffix("]"), host.count > 2 else { return false }
        let inner = host.dropFirst().dropLast()
        let address = inner.prefix { $0 != "%" }, zone = inner.dropFirst(address.count)
        return !address.isEmpty && address.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
            && zone.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._~%".contains($0)) }
    }
    return host.unicodeScalars.allSatisfy { c in
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "-._~%!$&'()*+,;=".unicodeScalars.contains(c))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DarterIO

/// Where and how `s3://bucket/key` URLs are fetched.
///
/// Settings come from where the AWS CLI and SDKs take them, in the same order: the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`), then the profile named by
/// `AWS_PROFILE` (default `default`) in the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
/// else `~/.aws/credentials`) and the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`,
/// where it is `[profile NAME]`), then region `us-east-1`.
public struct S3Configuration: Sendable {
    /// e.g. "http://127.0.0.1:9000": path-style addressing (`<endpoint>/<bucket>/<key>`);
    /// nil → virtual-hosted `https://<bucket>.s3.<region>.amazonaws.com/<key>`.
    public var endpoint: String?
    public var region: String
    public var accessKeyID: String?
    public var secretAccessKey: String?
    /// Sent as `x-amz-security-token`.
    public var sessionToken: String?
    /// Where the access key came from (`environment`, or a file and profile), for the log.
    public var credentialSource: String?

    /// `readFile` reads the shared files (nil: absent or unreadable).
    public init(environment: [String: String] = SystemCalls.environment(),
                readFile: (String) -> [UInt8]? = { try? SystemCalls.readSmallFile($0) }) {
        func value(_ name: String) -> String? {
            guard let v = environment[name], !v.isEmpty else { return nil }
            return v
        }
        let profile = value("AWS_PROFILE") ?? "default"
        let home = value("HOME")
        func section(_ path: String?, _ name: String) -> (path: String, values: [String: String])? {
            guard let path, let bytes = readFile(path) else { return nil }
            return AWSSharedFile(parsing: String(decoding: bytes, as: UTF8.self)).sections[name].map { (path, $0) }
        }
        let credentials = section(value("AWS_SHARED_CREDENTIALS_FILE") ?? home.map { $0 + "/.aws/credentials" }, profile)
        let config = section(value("AWS_CONFIG_FILE") ?? home.map { $0 + "/.aws/config" }, profile == "default" ? "default" : "profile " + profile)

        endpoint = value("AWS_ENDPOINT_URL_S3") ?? value("AWS_ENDPOINT_URL") ?? config?.values["endpoint_url"]
        region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? config?.values["region"] ?? "us-east-1"
        if let id = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") {
            (accessKeyID, secretAccessKey, sessionToken) = (id, secret, value("AWS_SESSION_TOKEN"))
            credentialSource = "environment"
        } else {
            for file in [credentials, config].compactMap({ $0 }) {
                guard let id = file.values["aws_access_key_id"], let secret = file.values["aws_secret_access_key"] else { continue }
                (accessKeyID, secretAccessKey, sessionToken) = (id, secret, file.values["aws_session_token"])
                credentialSource = "\(file.path) [\(profile)]"
                break
            }
        }
    }
}

/// The AWS shared credentials and config files: INI sections of `key = value` lines. Keys are
/// lowercased; `#` and `;` start comments; indented lines (nested settings) are skipped.
public struct AWSSharedFile: Sendable, Equatable {
    /// Section name (`default`, `profile dev`, `dev`) → key → value.
    public var sections: [String: [String: String]] = [:]

    public init(parsing text: String) {
        var current: String? = nil
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if raw.first == " " || raw.first == "\t" { continue }
            let line = raw.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { current = nil; continue }
                let name = line.dropFirst().dropLast().split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
                current = name
                if sections[name] == nil { sections[name] = [:] }
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingSpaces().lowercased()
            let value = line[line.index(after: eq)...].trimmingSpaces()
            if !key.isEmpty { sections[section]![key] = value }
        }
    }
}

/// Transport settings for every origin transfer.
public struct OriginConfiguration: Sendable {
    public var verifyTLS = true
    /// A PEM bundle of CA certificates to trust instead of the system's.
    public var caFile: String? = nil
    public var connectTimeoutSeconds = 10
    /// A transfer slower than this many bytes per second for `lowSpeedTimeSeconds` fails (timedOut).
    public var lowSpeedLimitBytesPerSecond = 1024
    public var lowSpeedTimeSeconds = 30
    public var maxRedirects = 10
    public var userAgent = "darter"
    public var s3 = S3Configuration()
    /// Origins every connection a transfer opens (the first host, each redirect, a registry's
    /// token realm) must pass: checked in libcurl's open-socket callback just before connect(2),
    /// with the host of the URL it is at (as libcurl parses it) and the address. The default
    /// refuses link-local and cloud metadata addresses only.
    public var allowlist = OriginAllowlist()
    /// Paces the bytes received from origins, over every transfer of both backends together
    /// (`--origin-rate`); nil: unlimited.
    public var rateLimit: RateLimiter? = nil
    public init() {}
}

/// One request to an origin.
public struct OriginRequest: Sendable {
    /// http://, https://, or s3://bucket/key (the key is taken literally and percent-encoded).
    public var url: String
    /// "GET" or "HEAD" (anything else is sent as a custom method without a body).
    public var method: String = "GET"
    /// Extra request headers.
    public var headers: [(String, String)] = []
    /// Sends `Range: bytes=<lower>-<upper-1>`; open-ended (`bytes=<lower>-`) when upper == Int64.max.
    public var range: Range<Int64>? = nil

    public init(url: String, method: String = "GET", headers: [(String, String)] = [], range: Range<Int64>? = nil) {
        self.url = url
        self.method = method
        self.headers = headers
        self.range = range
    }
}

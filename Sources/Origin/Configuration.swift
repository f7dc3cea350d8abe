#if canImport(Glibc)
import Glibc
#endif
import DarterIO

/// Where and how `s3://bucket/key` URLs are fetched.
public struct S3Configuration: Sendable {
    /// e.g. "http://127.0.0.1:9000": path-style addressing (`<endpoint>/<bucket>/<key>`);
    /// nil → virtual-hosted `https://<bucket>.s3.<region>.amazonaws.com/<key>`.
    public var endpoint: String?
    /// Default: env AWS_REGION, else AWS_DEFAULT_REGION, else "us-east-1".
    public var region: String
    /// Default: env AWS_ACCESS_KEY_ID.
    public var accessKeyID: String?
    /// Default: env AWS_SECRET_ACCESS_KEY.
    public var secretAccessKey: String?
    /// Default: env AWS_SESSION_TOKEN (sent as `x-amz-security-token`).
    public var sessionToken: String?

    public init(environment: [String: String] = SystemCalls.environment()) {
        func value(_ name: String) -> String? {
            guard let v = environment[name], !v.isEmpty else { return nil }
            return v
        }
        endpoint = value("AWS_ENDPOINT_URL_S3") ?? value("AWS_ENDPOINT_URL")
        region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "us-east-1"
        accessKeyID = value("AWS_ACCESS_KEY_ID")
        secretAccessKey = value("AWS_SECRET_ACCESS_KEY")
        sessionToken = value("AWS_SESSION_TOKEN")
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

import Testing
@testable import DarterCore

@Suite("URLNormalizer")
struct URLNormalizerTests {
    static let cases: [(String, String)] = [
        // Scheme and host are lowercased; path case is kept.
        ("HTTP://Example.COM/Path/To", "http://example.com/Path/To"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("S3://Bucket/Key", "s3://bucket/Key"),
        // Empty path becomes "/".
        ("https://example.com", "https://example.com/"),
        ("https://example.com?b=1", "https://example.com/?b=1"),
        // Default ports dropped, others kept; only the scheme's own default.
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("s3://bucket:443/a", "s3://bucket:443/a"),
        // Fragment dropped (also one containing ? or /).
        ("https://example.com/a#frag", "https://example.com/a"),
        ("https://example.com/a?x=1#frag?y=2/z", "https://example.com/a?x=1"),
        ("https://example.com#frag", "https://example.com/"),
        // Userinfo dropped, including an @ in the password.
        ("https://user:pa@ss@example.com/a", "https://example.com/a"),
        ("https://user@example.com:8080/a", "https://example.com:8080/a"),
        // Query: sorted by key, stable for repeated keys, values untouched, empty parts dropped.
        ("https://h/p?b=2&a=1", "https://h/p?a=1&b=2"),
        ("https://h/p?b=2&a=9&b=1&a=3", "https://h/p?a=9&a=3&b=2&b=1"),
        ("https://h/p?z&y=&x==", "https://h/p?x==&y=&z"),
        ("https://h/p?&&a=1&&", "https://h/p?a=1"),
        ("https://h/p?A=1&a=2", "https://h/p?A=1&a=2"),
        ("https://h/p?", "https://h/p"),
        // Signature parameters dropped, case-insensitively; similar names kept.
        ("https://h/p?X-Amz-Signature=s&v=1", "https://h/p?v=1"),
        ("https://h/p?x-amz-date=d&X-AMZ-CREDENTIAL=c", "https://h/p"),
        ("https://h/p?X-Goog-Signature=s&X-Goog-Expires=1", "https://h/p"),
        ("https://h/p?Signature=s&Expires=1&AWSAccessKeyId=k&OSSAccessKeyId=o&AccessKeyId=a", "https://h/p"),
        ("https://h/p?q-sign-algorithm=sha1&q-ak=a&q-sign-time=1&q-key-time=1&q-header-list=h&q-url-param-list=&q-signature=s", "https://h/p"),
        ("https://h/p?security-token=t&x-oss-security-token=t&x-obs-security-token=t", "https://h/p"),
        ("https://h/p?ns=docker.io&tag=1", "https://h/p?tag=1"),
        ("https://h/p?nsx=1&signatures=2&amz=3", "https://h/p?amz=3&nsx=1&signatures=2"),
        ("https://h/p?x-amz=1", "https://h/p?x-amz=1"),  // "x-amz" without the dash suffix is not a prefix match
        // IPv6 literals, with and without a port.
        ("http://[::1]/a", "http://[::1]/a"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ("http://[::1]:80/a", "http://[::1]/a"),
        ("https://[2001:DB8::1]:443/", "https://[2001:db8::1]/"),
        ("http://[fe80::1%25eth0]:9000/x", "http://[fe80::1%25eth0]:9000/x"),
        // Ports are canonical numbers.
        ("http://example.com:0080/a", "http://example.com/a"),
        ("http://example.com:08080/a", "http://example.com:8080/a"),
        ("http://example.com:65535/", "http://example.com:65535/"),
        ("http://example.com:1/", "http://example.com:1/"),
        // Path is not decoded or resolved.
        ("https://h/a/../b/%2F?x=%20", "https://h/a/../b/%2F?x=%20"),
    ]

    @Test("normalizes", arguments: cases)
    func normalizes(input: String, expected: String) throws {
        #expect(try URLNormalizer.normalize(input) == expected)
    }

    @Test("normalization is idempotent", arguments: cases)
    func idempotent(input: String, expected: String) throws {
        #expect(try URLNormalizer.normalize(try URLNormalizer.normalize(input)) == expected)
    }

    static let errors: [(String, URLNormalizationError)] = [
        ("", .missingScheme),
        ("example.com/a", .missingScheme),
        ("//example.com/a", .missingScheme),
        ("://example.com/a", .missingScheme),
        ("localhost:8080/a", .missingScheme),
        ("http:/example.com", .missingScheme),
        ("ht tp://example.com", .missingScheme),
        ("ftp://example.com/a", .unsupportedScheme("ftp")),
        ("FILE:///etc/passwd", .unsupportedScheme("file")),
        ("gs://bucket/a", .unsupportedScheme("gs")),
        ("http://example.com:abc/a", .invalidPort("abc")),
        ("http://example.com:0/a", .invalidPort("0")),
        ("http://example.com:65536/a", .invalidPort("65536")),
        ("http://example.com:-1/a", .invalidPort("-1")),
        ("http://example.com:/a", .invalidPort("")),
        ("http://[::1]:x/a", .invalidPort("x")),
        ("http://a:b:443/", .invalidHost("a:b")),
        ("https://exa mple.com/", .invalidHost("exa mple.com")),
        ("https://{x}/", .invalidHost("{x}")),
        ("http://[zz]/a", .invalidHost("[zz]")),
        ("http:///a", .missingHost),
        ("http://", .missingHost),
        ("https://?q=1", .missingHost),
        ("https://user@/a", .missingHost),
        ("http://:80/a", .missingHost),
    ]

    @Test("rejects", arguments: errors)
    func rejects(input: String, error: URLNormalizationError) {
        #expect(throws: error) { try URLNormalizer.normalize(input) }
    }

    @Test("a port with no host is rejected too")
    func portWithoutHost() {
        #expect(throws: URLNormalizationError.missingHost) { try URLNormalizer.normalize("http://:8080/a") }
        #expect(throws: URLNormalizationError.missingHost) { try URLNormalizer.normalize("https://user@:8443/a") }
    }

    @Test("error descriptions are helpful")
    func descriptions() {
        #expect(URLNormalizationError.unsupportedScheme("ftp").description.contains("'ftp'"))
        #expect(URLNormalizationError.invalidPort("99999").description.contains("'99999'"))
        #expect(URLNormalizationError.missingScheme.description.contains("scheme"))
        #expect(URLNormalizationError.missingHost.description.contains("host"))
    }
}

import Testing
@testable import DarterCore

private let hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

@Suite("TaskID")
struct TaskIDTests {
    @Test("64 lowercase hex digits parse as a URL task; sha256:<hex> as a digest task")
    func parsesValid() throws {
        let u = try #require(TaskID(hex64))
        #expect(u.kind == .url)
        #expect(u.hash.hex == hex64)
        let d = try #require(TaskID("sha256:" + hex64))
        #expect(d.kind == .digest)
        #expect(d.hash == u.hash)
        #expect(d != u)
        // Substrings parse too.
        let text = "/tasks/" + hex64 + "/x"
        let start = text.index(text.startIndex, offsetBy: 7)
        #expect(TaskID(text[start..<text.index(start, offsetBy: 64)]) == u)
    }

    static let malformed: [String] = [
        "",
        String(hex64.dropLast()),                 // 63
        hex64 + "0",                              // 65
        hex64.uppercased(),
        "0123456789ABCDEF" + hex64.dropFirst(16), // partly uppercase
        String(hex64.dropLast()) + "g",
        String(hex64.dropLast()) + " ",
        " " + String(hex64.dropLast()),
        "../" + String(hex64.dropFirst(3)),
        "../../etc/passwd",
        "sha256:",
        "sha256:" + String(hex64.dropLast()),
        "sha256:" + hex64.uppercased(),
        "sha256:" + hex64 + "0",
        "SHA256:" + hex64,
        "sha512:" + hex64,
        "sha256:sha256:" + hex64,
        "u-" + hex64,
        String(hex64.dropLast(2)) + "é",          // 64 UTF-8 bytes, one non-hex character
        String(repeating: "0", count: 63) + "\0",
    ]

    @Test("malformed ids are rejected, from text and from request-path bytes (a slice inside a larger buffer)", arguments: malformed)
    func rejectsMalformed(text: String) {
        #expect(TaskID(text) == nil)
        let padded = Array(("/tasks/" + text + "/meta").utf8)
        #expect(TaskID(utf8: padded[7..<(padded.count - 5)]) == nil)
    }

    @Test("request-path bytes parse like text, also as a slice that does not start at index 0")
    func parsesPathBytes() throws {
        for text in [hex64, "sha256:" + hex64] {
            let padded = Array(("/tasks/" + text + "/meta").utf8)
            let slice = padded[7..<(padded.count - 5)]
            #expect(TaskID(utf8: slice) == TaskID(text) && TaskID(text) != nil, "\(text)")
            #expect(TaskID(utf8: Array(text.utf8)) == TaskID(text))  // the generic entry
        }
    }

    @Test("description round-trips through the parser")
    func descriptionRoundTrip() throws {
        for id in [try TaskID.forURL("https://example.com/a"), try #require(TaskID.forDigest("sha256:" + hex64))] {
            #expect(TaskID(id.description) == id)
        }
        #expect(try #require(TaskID(hex64)).description == hex64)
        #expect(try #require(TaskID("sha256:" + hex64)).description == "sha256:" + hex64)
    }

    @Test("fileName is u-<hex> or d-<hex>")
    func fileName() throws {
        #expect(try #require(TaskID(hex64)).fileName == "u-" + hex64)
        #expect(try #require(TaskID("sha256:" + hex64)).fileName == "d-" + hex64)
        let id = try TaskID.forURL("https://example.com/../../x?a=/../")
        #expect(id.fileName.count == 66)
        #expect(id.fileName.hasPrefix("u-"))
        #expect(id.fileName.dropFirst(2).allSatisfy { "0123456789abcdef".contains($0) })
    }

    @Test("forDigest accepts only sha256:<64 lowercase hex>")
    func forDigest() {
        #expect(TaskID.forDigest("sha256:" + hex64)?.kind == .digest)
        #expect(TaskID.forDigest(hex64) == nil)
        #expect(TaskID.forDigest("sha256:" + hex64.uppercased()) == nil)
        #expect(TaskID.forDigest("sha256:abc") == nil)
        #expect(TaskID.forDigest("") == nil)
    }

    @Test("forURL is SHA-256 of length-prefixed fields")
    func forURLEncoding() throws {
        // Independently computed: the documented encoding of the normalized URL and options.
        var encoded: [UInt8] = []
        for field in ["darter-task-v1", "https://example.com/a?b=1", "t", "app", "0"] {
            let bytes = Array(field.utf8)
            let n = UInt32(bytes.count)
            encoded += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + bytes
        }
        let expected = SHA256Hasher.hash(encoded)
        let id = try TaskID.forURL("HTTPS://Example.com:443/a?b=1#frag", tag: "t", application: "app")
        #expect(id.kind == .url)
        #expect(id.hash.bytes == expected)
    }

    static let sameAsBase = [
        "https://bucket.s3.amazonaws.com/blob?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeef",
        "https://bucket.s3.amazonaws.com/blob?X-Amz-Signature=other&X-Amz-Date=20250101T000000Z",
        "https://bucket.s3.amazonaws.com/blob?x-amz-signature=lowercase",
        "https://bucket.s3.amazonaws.com/blob?ns=docker.io",
        "https://bucket.s3.amazonaws.com/blob#fragment",
        "https://bucket.s3.amazonaws.com:443/blob",
        "HTTPS://BUCKET.S3.AmazonAWS.com/blob",
        "https://user:secret@bucket.s3.amazonaws.com/blob",
        "https://bucket.s3.amazonaws.com/blob?",
        "https://bucket.s3.amazonaws.com/blob?Signature=x&Expires=1&AWSAccessKeyId=y",
        "https://bucket.s3.amazonaws.com/blob?X-Goog-Signature=x&X-Goog-Date=y",
    ]

    @Test("signatures, ns=, fragment, default port, host case and userinfo do not change the id", arguments: sameAsBase)
    func sameID(url: String) throws {
        let base = try TaskID.forURL("https://bucket.s3.amazonaws.com/blob")
        #expect(try TaskID.forURL(url) == base)
    }

    @Test("path, query, scheme, port, tag, application and piece length change the id")
    func differentIDs() throws {
        let base = "https://bucket.s3.amazonaws.com/blob"
        let ids: [TaskID] = [
            try TaskID.forURL(base),
            try TaskID.forURL(base + "2"),
            try TaskID.forURL("https://bucket.s3.amazonaws.com/Blob"),
            try TaskID.forURL(base + "?versionId=1"),
            try TaskID.forURL(base + "?versionId=2"),
            try TaskID.forURL("http://bucket.s3.amazonaws.com/blob"),
            try TaskID.forURL("https://bucket.s3.amazonaws.com:8443/blob"),
            try TaskID.forURL(base, tag: "a"),
            try TaskID.forURL(base, application: "a"),
            try TaskID.forURL(base, pieceLength: 4 << 20),
            try TaskID.forURL(base, pieceLength: 8 << 20),
        ]
        #expect(Set(ids).count == ids.count)
        // Explicit default piece length 0 is the default.
        #expect(try TaskID.forURL(base, pieceLength: 0) == ids[0])
    }

    @Test("field boundaries are unambiguous")
    func fieldBoundaries() throws {
        let url = "https://example.com/x"
        #expect(try TaskID.forURL(url, tag: "ab", application: "c") != TaskID.forURL(url, tag: "a", application: "bc"))
        #expect(try TaskID.forURL(url, tag: "", application: "a") != TaskID.forURL(url, tag: "a", application: ""))
        #expect(try TaskID.forURL(url, tag: "1", pieceLength: 0) != TaskID.forURL(url, tag: "", pieceLength: 10))
        #expect(try TaskID.forURL(url, tag: "a", application: "b") == TaskID.forURL(url, tag: "a", application: "b"))
    }

    @Test("forURL rejects what the normalizer rejects")
    func forURLErrors() {
        #expect(throws: URLNormalizationError.missingScheme) { try TaskID.forURL("example.com/x") }
        #expect(throws: URLNormalizationError.unsupportedScheme("ftp")) { try TaskID.forURL("ftp://example.com/x") }
    }

    @Test("ordering: URL ids before digest ids, then by hash")
    func ordering() throws {
        let lo = try #require(TaskID(String(repeating: "0", count: 64)))
        let hi = try #require(TaskID(String(repeating: "f", count: 64)))
        let dlo = try #require(TaskID("sha256:" + String(repeating: "0", count: 64)))
        #expect(lo < hi)
        #expect(hi < dlo)
        #expect(!(lo < lo))
        let mid = try #require(TaskID(String(repeating: "0", count: 63) + "1"))
        #expect(lo < mid && mid < hi)
        #expect([dlo, hi, mid, lo].sorted() == [lo, mid, hi, dlo])
    }

    @Test("SHA256Digest byte and hex conversions")
    func digest() throws {
        let bytes = (0..<32).map { UInt8($0 * 7 + 1) }
        let d = try #require(SHA256Digest(bytes: bytes))
        #expect(d.bytes == bytes)
        #expect(SHA256Digest(hex: d.hex) == d)
        #expect(d.hex.count == 64)
        #expect(SHA256Digest(bytes: Array(bytes.dropLast())) == nil)
        #expect(SHA256Digest(bytes: bytes + [0]) == nil)
    }
}

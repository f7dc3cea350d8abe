#if canImport(Glibc)
import DarterCore
import Glibc
#endif
import Foundation
import Synchronization
import Testing
import DarterIO
import Origin
import HTTPCore

/// A self-signed certificate for 127.0.0.1: `dir`/cert.pem and `dir`/key.pem.
func makeSelfSignedCertificate(_ openssl: String, in dir: TempDirectory) async throws {
    let r = try await runProcess(openssl, [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir.file("key.pem"), "-out", dir.file("cert.pem"),
    ], scratch: dir.path)
    try #require(r.exitCode == 0, "openssl: \(r.output)")
}

@Suite("OriginClient over HTTPS (origin.py --tls)")
struct TLSTests {
    @Test func selfSignedCertificateNeedsItsCAFile() async throws {
        guard let openssl = findExecutable("openssl") else {
            Issue.record("openssl is not installed"); return
        }
        let dir = try TempDirectory("tls")
        let body = SplitMix64.bytes(200_000, seed: 11)
        try writeFile(dir.file("file.bin"), body)
        try await makeSelfSignedCertificate(openssl, in: dir)
        let server = try await OriginServer.start(dir: dir.path, tls: (dir.file("cert.pem"), dir.file("key.pem")), log: dir.file("origin.log"))
        let url = server.url("/files/file.bin")

        let error = await expectOriginError { () async throws(OriginError) in
            try await OriginClient().fetch(OriginRequest(url: url), into: CollectingSink())
        }
        guard case .tlsFailed(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("127.0.0.1"))

        var trusting = OriginConfiguration()
        trusting.caFile = dir.file("cert.pem")
        let sink = CollectingSink()
        let head = try await OriginClient(configuration: trusting).fetch(OriginRequest(url: url, range: 10..<20), into: sink)
        #expect(head.status == 206)
        expectSameBytes(sink.body, Array(body[10..<20]))

        var unverified = OriginConfiguration()
        unverified.verifyTLS = false
        let plain = CollectingSink()
        let head2 = try await OriginClient(configuration: unverified).fetch(OriginRequest(url: url), into: plain)
        #expect(head2.status == 200)
        expectSameBytes(plain.body, body)
        #expect(head2.httpVersion == "1.1", "origin.py speaks HTTP/1.1 only")
    }

    /// nginx offering h2 by ALPN: the fetch goes over HTTP/2 (whole and ranged bytes exact).
    @Test func http2WhenOffered() async throws {
        guard let openssl = findExecutable("openssl"), let nginx = findExecutable("nginx") ?? findExecutable("/usr/sbin/nginx") else {
            Issue.record("openssl or nginx is not installed (tools/bootstrap installs them)"); return
        }
        let dir = try TempDirectory("h2")
        let body = SplitMix64.bytes(3_000_000, seed: 12)
        try SystemCalls.makeDirectories(dir.file("www"))
        try writeFile(dir.file("www/file.bin"), body)
        try await makeSelfSignedCertificate(openssl, in: dir)
        let port = closedPort()
        try writeFile(dir.file("nginx.conf"), Array("""
        daemon off;
        master_process off;
        pid \(dir.file("nginx.pid"));
        error_log \(dir.file("error.log")) warn;
        events { worker_connections 64; }
        http {
            access_log off;
            client_body_temp_path \(dir.path)/tmp-body;
            proxy_temp_path \(dir.path)/tmp-proxy;
            fastcgi_temp_path \(dir.path)/tmp-fastcgi;
            uwsgi_temp_path \(dir.path)/tmp-uwsgi;
            scgi_temp_path \(dir.path)/tmp-scgi;
            server {
                listen 127.0.0.1:\(port) ssl http2;
                ssl_certificate \(dir.file("cert.pem"));
                ssl_certificate_key \(dir.file("key.pem"));
                root \(dir.file("www"));
            }
        }

        """.utf8))
        let server = try ChildProcess(nginx, ["-e", dir.file("error.log"), "-c", dir.file("nginx.conf")], logPath: dir.file("nginx.log"))
        var config = OriginConfiguration()
        config.caFile = dir.file("cert.pem")
        let url = "https://127.0.0.1:\(port)/file.bin"
        var head: OriginResponseHead? = nil
        let sink = CollectingSink()
        for _ in 0..<100 where head == nil {
            head = try? await OriginClient(configuration: config).fetch(OriginRequest(url: url), into: sink)
            if head == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let whole = try #require(head, "nginx did not come up: \(server.log)")
        #expect(whole.status == 200 && whole.httpVersion == "2", "status \(whole.status) over HTTP/\(whole.httpVersion)")
        expectSameBytes(sink.body, body)
        let ranged = CollectingSink()
        let part = try await OriginClient(configuration: config).fetch(OriginRequest(url: url, range: 1_000_000..<2_500_000), into: ranged)
        #expect(part.status == 206 && part.httpVersion == "2")
        expectSameBytes(ranged.body, Array(body[1_000_000..<2_500_000]))
        withExtendedLifetime(server) {}  // nginx runs until here
    }
}

/// A moto_server with signature checks on, a bucket and an object (Tests/Fixtures/s3_setup.py).
struct MotoS3 {
    let process: ChildProcess
    let endpoint: String
    let accessKeyID: String
    let secretAccessKey: String
    let session: (id: String, secret: String, token: String)

    static func start(dir: TempDirectory, bucket: String, key: String, file: String) async throws -> MotoS3? {
        guard let moto = findExecutable("moto_server") else { return nil }
        let p = try ChildProcess(moto, ["-H", "127.0.0.1", "-p", "0"], logPath: dir.file("moto.log"))
        let port = try await p.waitForLog(#"Running on http://127\.0\.0\.1:(\d+)"#, timeout: 30)
        let endpoint = "http://127.0.0.1:\(port)"
        let setup = try await runProcess("python3", [fixturesDirectory + "/s3_setup.py", "--endpoint", endpoint,
                                                     "--bucket", bucket, "--key", key, "--file", file], scratch: dir.path)
        guard setup.exitCode == 0, let line = setup.stdoutText.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw TestError("s3_setup.py failed (\(setup.exitCode)): \(setup.output)")
        }
        let json = try jsonObject(String(line))
        let s = json["session"] as? [String: String] ?? [:]
        return MotoS3(process: p, endpoint: endpoint, accessKeyID: json["access_key_id"] as? String ?? "",
                      secretAccessKey: json["secret_access_key"] as? String ?? "",
                      session: (s["access_key_id"] ?? "", s["secret_access_key"] ?? "", s["session_token"] ?? ""))
    }

    func configuration(id: String? = nil, secret: String? = nil, token: String? = nil) -> OriginConfiguration {
        var c = OriginConfiguration()
        c.s3 = S3Configuration(environment: [:])
        c.s3.endpoint = endpoint
        c.s3.region = "us-east-1"
        c.s3.accessKeyID = id ?? accessKeyID
        c.s3.secretAccessKey = secret ?? secretAccessKey
        c.s3.sessionToken = token
        return c
    }
}

@Suite("OriginClient over S3 (moto_server, SigV4 enforced)")
struct S3Tests {
    @Test func signedGetsAndWrongSecret() async throws {
        let dir = try TempDirectory("s3")
        let body = SplitMix64.bytes(300_001, seed: 13)
        try writeFile(dir.file("object.bin"), body)
        // A space is encoded as %20. (A "+" would be too, as boto3 and S3 do, but moto 5.2 then
        // computes the signature over a literal "+" and rejects boto3's own requests as well.)
        let key = "layers/one two.bin"
        guard let s3 = try await MotoS3.start(dir: dir, bucket: "darter-bucket", key: key, file: dir.file("object.bin")) else {
            Issue.record("moto_server is not installed"); return
        }
        let url = "s3://darter-bucket/\(key)"

        let sink = CollectingSink()
        let head = try await OriginClient(configuration: s3.configuration()).fetch(OriginRequest(url: url), into: sink)
        #expect(head.status == 200, "\(sink.text.prefix(400))")
        expectSameBytes(sink.body, body)
        #expect(head.totalLength == Int64(body.count))
        #expect(head.effectiveURL.hasPrefix(s3.endpoint + "/darter-bucket/layers/one%20two.bin"))

        let ranged = CollectingSink()
        let rangeHead = try await OriginClient(configuration: s3.configuration()).fetch(OriginRequest(url: url, range: 1000..<3000), into: ranged)
        #expect(rangeHead.status == 206)
        #expect(rangeHead.contentRange == HTTPContentRange(first: 1000, last: 2999, completeLength: Int64(body.count)))
        expectSameBytes(ranged.body, Array(body[1000..<3000]))

        let headOnly = try await OriginClient(configuration: s3.configuration()).fetch(OriginRequest(url: url, method: "HEAD"), into: CollectingSink())
        #expect(headOnly.status == 200)
        #expect(headOnly.contentLength == Int64(body.count))

        let wrong = CollectingSink()
        let denied = try await OriginClient(configuration: s3.configuration(secret: "wrong-secret")).fetch(OriginRequest(url: url), into: wrong)
        #expect(denied.status == 403)
        #expect(wrong.text.contains("SignatureDoesNotMatch"))

        // Temporary credentials: the session token must be sent (and signed).
        let temp = CollectingSink()
        let withToken = try await OriginClient(configuration: s3.configuration(id: s3.session.id, secret: s3.session.secret, token: s3.session.token))
            .fetch(OriginRequest(url: url), into: temp)
        #expect(withToken.status == 200, "\(temp.text.prefix(400))")
        expectSameBytes(temp.body, body)
        let noToken = try await OriginClient(configuration: s3.configuration(id: s3.session.id, secret: s3.session.secret))
            .fetch(OriginRequest(url: url), into: CollectingSink())
        #expect(noToken.status == 403)

        let missing = try await OriginClient(configuration: s3.configuration()).fetch(OriginRequest(url: "s3://darter-bucket/nope"), into: CollectingSink())
        #expect(missing.status == 404)

        // The same credentials from ~/.aws/credentials, and the endpoint and region from ~/.aws/config.
        try SystemCalls.makeDirectories(dir.file(".aws"))
        try writeFile(dir.file(".aws/credentials"), Array("[default]\naws_access_key_id = \(s3.accessKeyID)\naws_secret_access_key = \(s3.secretAccessKey)\n".utf8))
        try writeFile(dir.file(".aws/config"), Array("[default]\nregion = us-east-1\nendpoint_url = \(s3.endpoint)\n".utf8))
        var fromFiles = OriginConfiguration()
        fromFiles.s3 = S3Configuration(environment: ["HOME": dir.path])
        #expect(fromFiles.s3.credentialSource == dir.file(".aws/credentials") + " [default]")
        let shared = CollectingSink()
        let sharedHead = try await OriginClient(configuration: fromFiles).fetch(OriginRequest(url: url), into: shared)
        #expect(sharedHead.status == 200, "\(shared.text.prefix(400))")
        expectSameBytes(shared.body, body)
    }

    /// The allowlist is checked against the host an s3:// fetch really connects to: the
    /// configured endpoint (path-style). (AWS's own hosts cannot be resolved here, so the
    /// virtual-hosted default is not reached in this sandbox.)
    @Test func allowlistSeesTheS3EndpointHost() async throws {
        var c = OriginConfiguration()
        c.s3 = S3Configuration(environment: ["AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"])
        c.s3.endpoint = "http://127.0.0.1:\(closedPort())"
        c.allowlist = try OriginAllowlist.parse("10.0.0.0/8").get()
        let error = await expectOriginError { () async throws(OriginError) in
            try await OriginClient(configuration: c).fetch(OriginRequest(url: "s3://my-bucket/a/b.bin"), into: CollectingSink())
        }
        guard case .refused(let message) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("127.0.0.1"), "\(message)")
    }

    @Test func environmentDefaults() {
        let c = S3Configuration(environment: ["AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret",
                                              "AWS_SESSION_TOKEN": "token"])
        #expect(c.region == "eu-west-1")
        #expect(c.accessKeyID == "id")
        #expect(c.secretAccessKey == "secret")
        #expect(c.sessionToken == "token")
        #expect(c.endpoint == nil)
        let empty = S3Configuration(environment: [:])
        #expect(empty.region == "us-east-1")
        #expect(empty.accessKeyID == nil)
    }

    @Test("shared files: the profile from AWS_PROFILE in ~/.aws/credentials, then ~/.aws/config ([profile NAME]); the environment wins")
    func sharedFiles() {
        let files: [String: String] = [
            "/h/.aws/credentials": """
            # comment
            [default]
            aws_access_key_id = AKDEFAULT
            aws_secret_access_key = sdefault
            [dev]
            AWS_Access_Key_ID=AKDEV
              nested = skipped
            aws_secret_access_key =  sdev  
            aws_session_token = tdev
            """,
            "/h/.aws/config": """
            [default]
            region = eu-central-1
            [profile dev]
            region = ap-south-1
            endpoint_url = http://127.0.0.1:9000
            [profile cfg]
            aws_access_key_id = AKCFG
            aws_secret_access_key = scfg
            """,
            "/elsewhere/creds": "[default]\naws_access_key_id = AKOTHER\naws_secret_access_key = sother\n",
        ]
        func make(_ env: [String: String]) -> S3Configuration {
            S3Configuration(environment: env, readFile: { files[$0].map { Array($0.utf8) } })
        }
        let d = make(["HOME": "/h"])
        #expect(d.accessKeyID == "AKDEFAULT" && d.secretAccessKey == "sdefault" && d.sessionToken == nil && d.region == "eu-central-1")
        #expect(d.credentialSource == "/h/.aws/credentials [default]" && d.endpoint == nil)
        let dev = make(["HOME": "/h", "AWS_PROFILE": "dev"])
        #expect(dev.accessKeyID == "AKDEV" && dev.secretAccessKey == "sdev" && dev.sessionToken == "tdev")
        #expect(dev.region == "ap-south-1" && dev.endpoint == "http://127.0.0.1:9000")
        let cfg = make(["HOME": "/h", "AWS_PROFILE": "cfg"])
        #expect(cfg.accessKeyID == "AKCFG" && cfg.credentialSource == "/h/.aws/config [cfg]" && cfg.region == "us-east-1")
        let env = make(["HOME": "/h", "AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "senv", "AWS_REGION": "us-west-2"])
        #expect(env.accessKeyID == "AKENV" && env.credentialSource == "environment" && env.region == "us-west-2")
        let moved = make(["HOME": "/h", "AWS_SHARED_CREDENTIALS_FILE": "/elsewhere/creds", "AWS_CONFIG_FILE": "/none"])
        #expect(moved.accessKeyID == "AKOTHER" && moved.region == "us-east-1")
        let none = make(["HOME": "/nobody"])
        #expect(none.accessKeyID == nil && none.credentialSource == nil)
    }
}

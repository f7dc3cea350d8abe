#if canImport(Glibc)
import Glibc
#endif
import Testing
import DarterIO
import HTTPServer
import Origin
import PieceStore
@testable import SeedService

/// The host the allowlist is checked against is the one the fetch will connect to.
@Suite("SeedService.originHost")
struct OriginHostTests {
    func service(s3 endpoint: String?) async throws -> (SeedService, PieceStore, String) {
        let dir = ".build/seedservice-tests/" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        try SystemCalls.makeDirectories(dir)
        let store = try await PieceStore.open(StoreConfiguration(directory: dir), io: ThreadPoolBackend())
        var config = OriginConfiguration()
        config.s3 = S3Configuration(environment: ["AWS_REGION": "eu-west-1"])
        config.s3.endpoint = endpoint
        return (SeedService(store: store, metrics: ServerMetrics(), origin: OriginClient(configuration: config)), store, dir)
    }

    @Test("s3:// URLs: the --s3-endpoint host, else the bucket's virtual-hosted AWS host; http(s) URLs: their host")
    func hosts() async throws {
        let (aws, store1, dir1) = try await service(s3: nil)
        #expect(aws.originHost("s3://my-bucket/a/b.bin") == "my-bucket.s3.eu-west-1.amazonaws.com")
        #expect(aws.originHost("https://user@Example.com:8443/x?y") == "Example.com")
        #expect(aws.originHost("http://[fd00:ec2::254]/latest") == "fd00:ec2::254")
        let (minio, store2, dir2) = try await service(s3: "http://10.1.2.3:9000/")
        #expect(minio.originHost("s3://my-bucket/a") == "10.1.2.3")
        await store1.close(); await store2.close()
        _ = system("rm -rf '\(dir1)' '\(dir2)'")
    }

    @Test("allowlist verdicts are kept until their deadline, then asked again")
    func verdictsExpire() {
        let v = HostVerdicts()
        #expect(v.get("a.example", now: 0) == nil)
        v.set("a.example", false, until: 30_000)
        v.set("b.example", true, until: 30_000)
        #expect(v.get("a.example", now: 29_999) == false)
        #expect(v.get("b.example", now: 29_999) == true)
        #expect(v.get("a.example", now: 30_000) == nil)
    }
}

import Testing
@testable import SeedService

@Suite("Preheat jobs")
struct PreheatRegistryTests {
    @Test("past its capacity the table forgets the oldest finished jobs, never a running one")
    func boundedTable() {
        let jobs = PreheatRegistry(capacity: 3)
        let a = jobs.start(image: "a"), b = jobs.start(image: "b"), c = jobs.start(image: "c")
        jobs.update(b) { $0.state = "succeeded" }
        jobs.update(c) { $0.state = "failed" }
        let d = jobs.start(image: "d")  // a is still pending: b, the oldest finished, goes
        #expect(jobs.get(a) != nil && jobs.get(b) == nil && jobs.get(c) != nil && jobs.get(d) != nil)
        let e = jobs.start(image: "e")
        #expect(jobs.get(c) == nil && jobs.get(a) != nil && jobs.get(e) != nil)
        let f = jobs.start(image: "f")  // nothing finished left: all kept
        #expect([a, d, e, f].allSatisfy { jobs.get($0) != nil })
        #expect(Set([a, b, c, d, e, f]).count == 6, "ids are never reused")
    }
}

@Suite("Manifests kept for stale-if-error")
struct TagManifestCacheTests {
    @Test("the last answer per key is kept; past the byte limit the oldest go first")
    func bounded() {
        let cache = TagManifestCache(limit: 10)
        cache.store("a", headers: [("content-type", "x")], body: Array(repeating: 1, count: 4))
        cache.store("b", headers: [], body: Array(repeating: 2, count: 4))
        cache.store("a", headers: [], body: Array(repeating: 3, count: 4))  // replaces a, now the newest
        #expect(cache.get("a")?.body == Array(repeating: 3, count: 4) && cache.get("b") != nil)
        cache.store("c", headers: [], body: Array(repeating: 4, count: 4))  // 12 > 10: b, the oldest, goes
        #expect(cache.get("b") == nil && cache.get("a") != nil && cache.get("c") != nil)
    }
}

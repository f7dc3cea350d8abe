import Synchronization
import Testing
import DarterCore
import PieceProtocol
@testable import PieceTransfer

/// The availability feed as the server drives it: next() once per delivery.
@Suite("AvailabilityFeed")
struct AvailabilityFeedTests {
    let id = TaskID(kind: .url, hash: SHA256Digest(bytes: SHA256Hasher.hash([7]))!)

    func meta(_ pieces: [Int], complete: Bool = false) -> TaskMetadata {
        TaskMetadata(id: id, contentLength: 10 * 4096, pieceLength: 4096, pieces: PieceSet(pieces), complete: complete)
    }

    /// One delivery (the next line, or nil at the end).
    func next(_ feed: AvailabilityFeed) async -> [UInt8]? {
        await withCheckedContinuation { c in feed.next { c.resume(returning: $0) } }
    }

    func decode(_ line: [UInt8]?) throws -> [AvailabilityEvent] {
        var d = AvailabilityDecoder()
        return try d.feed(line ?? [])
    }

    @Test("a snapshot, then pieces pushed as they are announced (batched), then the end")
    func pushes() async throws {
        let arrivals = PieceArrivals()
        let feed = AvailabilityFeed(id, arrivals: arrivals, heartbeat: .seconds(60), snapshot: { self.meta([0]) }, isFetching: { true })
        #expect(try decode(await next(feed)) == [.snapshot(meta([0]))])
        arrivals.announce(id, .piece(1))
        arrivals.announce(id, .piece(2))
        #expect(try decode(await next(feed)) == [.have(PieceSet([1, 2]))], "what landed while no delivery was pending comes in one line")
        // A delivery pending when a piece lands is made at once.
        let pending = Task { await next(feed) }
        try await Task.sleep(for: .milliseconds(50))
        arrivals.announce(id, .piece(3))
        #expect(try decode(await pending.value) == [.have(PieceSet([3]))])
        arrivals.announce(id, .ended(failure: nil))
        #expect(try decode(await next(feed)) == [.complete])
        #expect(await next(feed) == nil)
    }

    @Test("a piece announced with its SHA-256 goes out with it on the have line")
    func digests() async throws {
        let arrivals = PieceArrivals()
        let feed = AvailabilityFeed(id, arrivals: arrivals, heartbeat: .seconds(60), snapshot: { self.meta([0]) }, isFetching: { true })
        _ = await next(feed)
        let d = SHA256Digest(bytes: SHA256Hasher.hash([1]))!
        arrivals.announce(id, .piece(1, sha256: d))
        arrivals.announce(id, .piece(2))
        #expect(try decode(await next(feed)) == [.have(PieceSet([1, 2]), sha256: [1: d])])
        feed.cancel()
    }

    @Test("a complete task: snapshot and complete in one delivery; nothing fetching: snapshot and failed")
    func ends() async throws {
        let done = AvailabilityFeed(id, arrivals: PieceArrivals(), snapshot: { self.meta(Array(0..<10), complete: true) }, isFetching: { false })
        #expect(try decode(await next(done)) == [.snapshot(meta(Array(0..<10), complete: true)), .complete])
        #expect(await next(done) == nil)
        let idle = AvailabilityFeed(id, arrivals: PieceArrivals(), snapshot: { self.meta([0]) }, isFetching: { false })
        let events = try decode(await next(idle))
        #expect(events.count == 2 && events.first == .snapshot(meta([0])))
        if case .failed = events.last {} else { Issue.record("expected failed, got \(events)") }
        // A fetch that ended with every piece held, not yet committed (the store not yet
        // calling it complete): complete, not failed.
        let justEnded = AvailabilityFeed(id, arrivals: PieceArrivals(), snapshot: { self.meta(Array(0..<10)) }, isFetching: { false })
        #expect(try decode(await next(justEnded)) == [.snapshot(meta(Array(0..<10))), .complete])
    }

    @Test("heartbeats keep a quiet feed alive; cancel delivers the pending call (nil) and stops listening")
    func heartbeatAndCancel() async throws {
        let arrivals = PieceArrivals()
        let feed = AvailabilityFeed(id, arrivals: arrivals, heartbeat: .milliseconds(50), snapshot: { self.meta([]) }, isFetching: { true })
        _ = await next(feed)
        #expect(try decode(await next(feed)) == [.heartbeat])
        #expect(arrivals.listenerCount == 1)
        let pending = Task { await next(feed) }
        try await Task.sleep(for: .milliseconds(10))
        feed.cancel()
        // The server counts the pending delivery until it comes: cancel must make it come.
        let got = await pending.value
        let gotEvents = try decode(got)
        #expect(got == nil || gotEvents == [.heartbeat])
        #expect(arrivals.listenerCount == 0)
    }
}

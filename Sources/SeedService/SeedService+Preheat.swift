import DarterIO
import FoundationEssentials
import HTTPServer
import Origin
import PieceStore
import PieceTransfer
import Synchronization
import DarterCore

extension SeedService {
    struct PreheatRequest: Decodable {
        var url: String?
        var image: String?
        var platform: String?
        var digest: String?
        var headers: [String: String]?
    }

    /// `POST /preheat`: start fetching an object (`url`) or an image's blobs (`image`) in the
    /// background; `GET /preheat/{id}`: its state.
    func preheat(_ body: [UInt8], respond: @escaping @Sendable (Response) -> Void) {
        func badRequest(_ why: String) { respond(.text(400, why + "\n", route: "preheat")) }
        guard let ingestor else { return respond(.text(501, "this seed has no origin access configured\n", route: "preheat")) }
        guard let req = try? JSONDecoder().decode(PreheatRequest.self, from: Data(body)) else {
            return badRequest("preheat body must be JSON like {\"url\": \"http://...\", \"digest\": \"sha256:...\"} or {\"image\": \"registry.example/app:1.0\"}")
        }
        switch (req.url, req.image) {
        case (.some, .some): return badRequest("preheat takes \"url\" or \"image\", not both")
        case (nil, nil): return badRequest("preheat needs \"url\" (an object) or \"image\" (an image reference)")
        case (nil, .some(let image)):
            if req.digest != nil { return badRequest("\"digest\" is for \"url\"; pin an image by its manifest digest: name@sha256:<hex>") }
            if req.headers != nil { return badRequest("\"headers\" are for \"url\"; the seed's registry credentials come from --registry-auth-file") }
            let reference: ImageReference
            do { reference = try ImageReference(parsing: image) } catch { return badRequest("\"image\": \(error)") }
            var platform = ImagePlatform.current
            if let p = req.platform {
                guard let parsed = ImagePlatform(parsing: p) else { return badRequest("\"platform\" must be os/architecture[/variant] like linux/amd64, got '\(p.prefix(100))'") }
                platform = parsed
            }
            let job = preheats.start(image: reference.description)
            Task { [self] in await preheatImage(reference, platform: platform, job: job, ingestor: ingestor) }
            return respond(.text(202, "{\"id\":\(json(job)),\"image\":\(json(reference.description)),\"platform\":\(json(platform.description))}\n",
                                 contentType: "application/json", route: "preheat"))
        case (.some(let url), nil):
            if req.platform != nil { return badRequest("\"platform\" is for \"image\"") }
            let source: ObjectSource
            switch urlSource(url, digest: req.digest, headers: (req.headers ?? [:]).map { ($0.key, $0.value) }) {
            case .success(let s): source = s
            case .failure(let reason): return respond(.text(400, reason.message, route: "preheat"))
            }
            let job = preheats.start(task: source.id)
            Task { [self] in
                preheats.update(job) { $0.state = "running" }
                do throws(PreheatFailure) {
                    let bytes = try await fetchCompletely(source, ingestor)
                    preheats.update(job) { $0.state = "succeeded"; $0.bytes = bytes }
                } catch {
                    preheats.update(job) { $0.state = "failed"; $0.error = error.description }
                }
            }
            respond(.text(202, "{\"id\":\(json(job)),\"task\":\(json(source.id.description))}\n", contentType: "application/json", route: "preheat"))
        }
    }

    func preheatStatus(_ id: String) -> Response {
        guard let p = preheats.get(id) else { return .text(404, "no preheat job \(id.prefix(80))\n", route: "preheat") }
        var fields = ["\"id\":\(json(id))"]
        if let task = p.task { fields.append("\"task\":\(json(task.description))") }
        if let image = p.image { fields.append("\"image\":\(json(image))") }
        fields += ["\"state\":\(json(p.state))", "\"error\":\(p.error.map(json) ?? "null")", "\"bytes\":\(p.bytes)"]
        if p.image != nil {
            fields += ["\"total_bytes\":\(p.totalBytes.map(String.init) ?? "null")",
                       "\"blobs\":\(p.blobs.map(String.init) ?? "null")", "\"blobs_done\":\(p.blobsDone)"]
        }
        return .text(200, "{" + fields.joined(separator: ",") + "}\n", contentType: "application/json", route: "preheat")
    }

    /// Why an image preheat failed (the job's `error`).
    struct PreheatFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// Blobs of one image fetched at once.
    static let imagePreheatParallelBlobs = 3

    /// Resolves `reference` to the image manifest for `platform` (through an index when the
    /// registry has one), then fetches its config and layers into the cache as registry blobs,
    /// named and verified by digest: the same tasks a pull through the mirror finds.
    func preheatImage(_ reference: ImageReference, platform: ImagePlatform, job: String, ingestor: Ingestor) async {
        preheats.update(job) { $0.state = "running" }
        let upstream = registryURL(forHost: reference.registry)
        do throws(PreheatFailure) {
            var manifest = try await fetchManifest(upstream, reference.repository, reference.manifestReference, digest: reference.digest, ingestor)
            if case .index(let entries) = manifest {
                guard let entry = manifest.manifest(for: platform) else {
                    let listed = entries.compactMap { $0.platform?.description }.joined(separator: ", ")
                    throw PreheatFailure("\(reference) has no manifest for \(platform) (its index lists: \(listed.isEmpty ? "no platforms" : listed))")
                }
                manifest = try await fetchManifest(upstream, reference.repository, entry.digest, digest: entry.digest, ingestor)
            }
            guard case .image(let config, let layers) = manifest else {
                throw PreheatFailure("\(reference): the index for \(platform) points at another index")
            }
            var seen = Set<String>()
            let blobs = ([config] + layers).filter { seen.insert($0.digest).inserted }
            preheats.update(job) { $0.blobs = blobs.count; $0.totalBytes = blobs.reduce(0) { $0 + $1.size } }
            try await fetchBlobs(blobs, upstream: upstream, repository: reference.repository, ingestor) { [preheats] size in
                preheats.update(job) { $0.blobsDone += 1; $0.bytes += size }
            }
            preheats.update(job) { $0.state = "succeeded" }
        } catch {
            preheats.update(job) { $0.state = "failed"; $0.error = error.description }
        }
    }

    /// `blobs`, at most ``imagePreheatParallelBlobs`` at a time; `done` after each.
    private func fetchBlobs(_ blobs: [ImageManifest.Descriptor], upstream: String, repository: String, _ ingestor: Ingestor,
                            done: @escaping @Sendable (Int64) -> Void) async throws(PreheatFailure) {
        var failure: PreheatFailure? = nil
        await withTaskGroup(of: PreheatFailure?.self) { group in
            var running = 0
            for blob in blobs {
                if running == Self.imagePreheatParallelBlobs, let f = await group.next() {
                    failure = failure ?? f
                    running -= 1
                }
                if failure != nil { break }
                group.addTask { [self] in
                    do throws(PreheatFailure) {
                        done(try await fetchBlob(blob, upstream: upstream, repository: repository, ingestor))
                        return nil
                    } catch {
                        return error
                    }
                }
                running += 1
            }
            for await f in group { failure = failure ?? f }
        }
        if let failure { throw failure }
    }

    /// One blob into the cache (a hit when it is there already); its length.
    private func fetchBlob(_ blob: ImageManifest.Descriptor, upstream: String, repository: String, _ ingestor: Ingestor) async throws(PreheatFailure) -> Int64 {
        guard let id = TaskID.forDigest(blob.digest) else { throw PreheatFailure("blob \(blob.digest): not a sha256 digest") }
        let source = ObjectSource(kind: .registry(base: upstream, path: "/v2/\(repository)/blobs/\(blob.digest)"), expectedDigest: id.hash, id: id)
        do { return try await fetchCompletely(source, ingestor) } catch { throw PreheatFailure("blob \(blob.digest): \(error)") }
    }

    /// Fetches `source` into the cache, or finds it there, and waits until it is complete; its length.
    private func fetchCompletely(_ source: ObjectSource, _ ingestor: Ingestor) async throws(PreheatFailure) -> Int64 {
        switch await ingestor.open(source) {
        case .ready(let info, _):
            await ingestor.waitForCompletion(info.id)
            guard let done = store.info(source.id), done.complete else {
                throw PreheatFailure(store.info(source.id)?.failure ?? "the fetch did not complete")
            }
            return done.contentLength ?? 0
        case .originStatus(let status, let reason): throw PreheatFailure("\(status): \(reason)")
        case .failed(let reason): throw PreheatFailure(reason)
        }
    }

    /// A manifest from `upstream` by tag or digest; when fetched by `digest`, its bytes must hash to it.
    private func fetchManifest(_ upstream: String, _ repository: String, _ reference: String, digest: String?,
                               _ ingestor: Ingestor) async throws(PreheatFailure) -> ImageManifest {
        let sink = BoundedCollector(limit: 4 << 20)
        let what = "manifest \(repository)\(reference.hasPrefix("sha256:") ? "@" : ":")\(reference) from \(upstream)"
        let head: OriginResponseHead
        do {
            head = try await ingestor.registry.fetch(registry: upstream, path: "/v2/\(repository)/manifests/\(reference)",
                                                     headers: [("Accept", ImageManifest.acceptedMediaTypes.joined(separator: ", "))], into: sink)
        } catch {
            if let refusal = error.refusal { throw PreheatFailure("\(what): \(refusal.status) \(refusal.reason)") }
            throw PreheatFailure("\(what): " + (sink.overflowed ? "larger than \(sink.limit >> 20) MiB" : "\(error)"))
        }
        guard head.status == 200 else { throw PreheatFailure("\(what): the registry answered \(head.status)") }
        if let digest, SHA256Digest(bytes: SHA256Hasher.hash(sink.bytes)) != TaskID.forDigest(digest)?.hash {
            throw PreheatFailure("\(what): its bytes do not hash to \(digest)")
        }
        do { return try ImageManifest(parsing: sink.bytes, contentType: head.header("content-type")) } catch {
            throw PreheatFailure("\(what): \(error)")
        }
    }
}

/// Preheat jobs, by id.
final class PreheatRegistry: Sendable {
    struct Job: Sendable {
        /// The task a `url` job fills.
        var task: TaskID?
        /// An `image` job's reference, as the seed reads it.
        var image: String?
        var state = "pending"
        var error: String?
        /// A `url` job: the object's length once it succeeded. An `image` job: bytes of blobs cached so far.
        var bytes: Int64 = 0
        /// An `image` job, once its manifest is read: the config and layers, and their bytes.
        var totalBytes: Int64?
        var blobs: Int?
        var blobsDone = 0
    }
    private struct Table { var jobs: [String: Job] = [:]; var order: [String] = []; var counter = 0 }
    private let table = Mutex(Table())
    /// Jobs remembered: past it, the oldest finished ones are forgotten (their ids answer 404).
    let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func start(task: TaskID) -> String { add(Job(task: task), tag: task.hash.w0) }

    func start(image: String) -> String {
        let h = SHA256Hasher.hash(Array(image.utf8))
        return add(Job(image: image), tag: h.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
    }

    private func add(_ job: Job, tag: UInt64) -> String {
        table.withLock { t in
            t.counter += 1
            let id = "p\(t.counter)-" + String(tag, radix: 16)
            t.jobs[id] = job
            t.order.append(id)
            if t.order.count > capacity {
                let finished = t.order.filter { ["succeeded", "failed"].contains(t.jobs[$0]?.state) }
                for old in finished.prefix(t.order.count - capacity) { t.jobs[old] = nil }
                t.order.removeAll { t.jobs[$0] == nil }
            }
            return id
        }
    }

    func update(_ id: String, _ change: (inout Job) -> Void) {
        table.withLock { if var j = $0.jobs[id] { change(&j); $0.jobs[id] = j } }
    }

    func get(_ id: String) -> Job? { table.withLock { $0.jobs[id] } }

    /// Remembered jobs per state (for /metrics).
    var countsByState: [String: Int] {
        table.withLock { t in
            var counts = ["pending": 0, "running": 0, "succeeded": 0, "failed": 0]
            for j in t.jobs.values { counts[j.state, default: 0] += 1 }
            return counts
        }
    }
}

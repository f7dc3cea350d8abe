import DarterCore
import DarterIO
import Origin
import PieceProtocol
import PieceStore
import PieceTransfer
import SchedulerProtocol
import SwarmDownload

extension Ingestor {
    /// The task through the swarm (on a seed: parents are only hosts holding pieces, the origin
    /// gives the rest). True when the swarm handled it (complete or failed, the job finished);
    /// false when the scheduler said to go to the origin (or could not be asked) before anything
    /// was stored, so the usual origin fetch runs.
    func runThroughSwarm(_ swarm: SwarmSource, _ job: IngestJob, _ source: ObjectSource) async -> Bool {
        // A registry blob or manifest by digest goes through the swarm as its URL under the
        // registry; seeds and the origin fallback fetch it with the registry's token auth.
        let url: String, registry: (base: String, path: String)?
        switch source.kind {
        case .url(let u): (url, registry) = (u, nil)
        case .registry(var base, let path):
            while base.hasSuffix("/") { base.removeLast() }
            guard path.hasPrefix("/v2/"), source.expectedDigest != nil else { return false }
            (url, registry) = (base + path, (base, path))
        }
        let id = source.id
        /// Ends the job with `reason` before anything was stored.
        func refuse(_ reason: String) -> Bool {
            Log.warning("swarm: \(reason)")
            job.resolveStart(.failed(reason))
            job.finish()
            return true
        }
        let held = store.info(id, pieces: true).map { PieceSet(bitmap: $0.committed) } ?? PieceSet()
        let announce = Announce(host: swarm.hostID, task: id, url: url, headers: source.headers.map { .init(name: $0.0, value: $0.1) },
                                digest: source.expectedDigest, pieces: held, registry: registry?.base)
        let meta: TaskMetadata
        let located: AnnounceReply
        switch await swarm.locate(announce) {
        case .backToSource(let why):
            guard swarm.configuration.backToSource else {
                return refuse("\(source.describe): \(why), and --no-back-to-source forbids the origin")
            }
            Log.info("swarm: \(source.describe): \(why); from the origin")
            return false
        case .parents(let m, let reply):
            (meta, located) = (m, reply)
        }
        guard let length = meta.contentLength else { return false }
        if let expected = source.expectedDigest, let known = meta.digest, known != expected {
            return refuse("the swarm says \(source.describe) is sha256:\(known.hex), not the expected sha256:\(expected.hex)")
        }
        let info: TaskInfo
        do {
            info = try await store.createTask(id, pieceLength: meta.pieceLength, contentLength: length, expectedDigest: source.expectedDigest,
                                              origin: OriginMetadata(contentType: meta.contentType, sourceURL: source.describe))
        } catch {
            return refuse("cannot store \(source.describe): \(error)")
        }
        guard info.pieceLength == meta.pieceLength else {
            // An earlier, incomplete copy here was cut another way than the swarm's.
            return refuse("\(source.describe): the copy here has \(info.pieceLength)-byte pieces, the swarm's \(meta.pieceLength); delete it to fetch anew")
        }
        resident.beginFetch(id, pieceLength: info.pieceLength)
        job.resolveStart(.ready(info, hit: false))
        let assembler = PieceAssembler(store: store, id: id, pieceLength: info.pieceLength, contentLength: length,
                                       resident: resident, arrivals: arrivals, piecesInFlight: configuration.piecesInFlight,
                                       pageCacheOnIngest: configuration.pageCacheOnIngest)
        let origins = self.origins, registryClient = self.registry, headers = source.headers
        let download = SwarmDownload(meta: meta, announce: announce, assembler: assembler, have: PieceSet(bitmap: info.committed),
                                     scheduler: swarm.scheduler, pieces: swarm.pieces, feeds: swarm.feeds,
                                     origin: { _, offset, buffer, length in
                                         let fetched = if let registry {
                                             await registryClient.fetchPiece(registry: registry.base, path: registry.path, headers: headers,
                                                                             offset: offset, length: length, into: buffer)
                                         } else {
                                             await origins.fetchPiece(url: url, headers: headers, offset: offset, length: length, into: buffer)
                                         }
                                         switch fetched {
                                         case .success: return nil
                                         case .failure(let e): return e.description
                                         }
                                     },
                                     configuration: swarm.configuration, log: { Log.info($0) })
        let outcome = await download.run(located)
        do {
            guard case .complete(let bySource) = outcome else {
                if case .failed(let why) = outcome { throw IngestError.failed(why) }
                throw IngestError.failed("the swarm gave up")
            }
            try await assembler.finish(streamEnded: false)
            try await store.completeTask(id, contentLength: length, digestInBackground: true,
                                         whenReadThrough: { [resident] in resident.settled(id) })
            let fromOrigin = bySource["origin"] ?? 0
            let parents = bySource.filter { $0.key != "origin" }.sorted { $0.key < $1.key }
            Log.info("swarm: \(source.describe): complete, \(parents.reduce(0) { $0 + $1.value }) pieces from parents ("
                + parents.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "), \(fromOrigin) from the origin")
        } catch {
            let reason = "fetching \(source.describe) through the swarm: \(error)"
            Log.error("swarm: \(reason)")
            await store.failTask(id, reason: reason)
            endFetch(id, job, failure: reason)
            return true
        }
        endFetch(id, job, failure: nil)
        return true
    }
}

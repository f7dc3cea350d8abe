import DarterCore
import DarterIO
import HTTPClient
import HTTPCore
import PieceProtocol
import SchedulerClient
import SchedulerProtocol

/// A peer's way into the swarm for one task: the scheduler names parents, one of them gives the
/// task's metadata (a seed opens the fetch with `POST /tasks`, a peer answers `/meta`); then a
/// ``SwarmDownload`` fetches the pieces. Shared by every task of the daemon: two HTTP clients on
/// its event loops, one for pieces (persistent, pipelined) and one for the long-lived feeds (a
/// piece request must never queue behind a feed that does not end).
public final class SwarmSource: Sendable {
    public let scheduler: SchedulerClient
    public let pieces: HTTPClient
    public let feeds: HTTPClient
    public let configuration: SwarmConfiguration
    let log: @Sendable (String) -> Void

    public init(scheduler: SchedulerClient, group: EventLoopGroup, configuration: SwarmConfiguration, log: @escaping @Sendable (String) -> Void) {
        self.scheduler = scheduler
        var p = HTTPClientConfiguration()
        p.maxConnectionsPerHost = 2
        p.pipelineDepth = max(1, (configuration.requestsPerParent + 1) / 2)
        p.connectTimeout = .seconds(3)
        pieces = HTTPClient(group: group, configuration: p)
        var f = HTTPClientConfiguration()
        f.maxConnectionsPerHost = 4
        f.pipelineDepth = 1
        f.connectTimeout = .seconds(3)
        feeds = HTTPClient(group: group, configuration: f)
        self.configuration = configuration
        self.log = log
    }

    public var hostID: String { scheduler.configuration.identity.id }

    public enum Located: Sendable {
        /// The metadata, and the announce's answer (its parents and the shares dealt to this host).
        case parents(TaskMetadata, AnnounceReply)
        /// Go to the origin: why.
        case backToSource(String)
    }

    /// Asks the scheduler for parents of `announce.task`, then one of them for the metadata.
    public func locate(_ announce: Announce) async -> Located {
        let reply: AnnounceReply
        do { reply = try await scheduler.announce(announce) } catch {
            return .backToSource("the scheduler cannot be asked: \(error)")
        }
        if reply.parents.isEmpty { return .backToSource(reply.reason ?? "the scheduler names no parent") }
        // Seeds first: one that is not fetching the task yet starts on this request.
        for p in reply.parents.sorted(by: { ($0.role == .seed ? 0 : 1) < ($1.role == .seed ? 0 : 1) }) {
            if var meta = await metadata(from: p, announce), meta.id == announce.task, meta.contentLength != nil {
                // Piece digests count only from a seed, which read the origin; a peer could lie.
                if p.role != .seed { meta.pieceDigests = [:] }
                return .parents(meta, reply)
            }
        }
        return .backToSource("no parent of \(reply.parents.count) answered with the task's metadata")
    }

    func metadata(from parent: ParentCandidate, _ a: Announce) async -> TaskMetadata? {
        guard let base = try? HTTPClientURL(parsing: "http://\(parent.address)/") else { return nil }
        var request: HTTPClientRequest
        if parent.role == .seed, let open = a.openRequest {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            request = HTTPClientRequest(method: .post, url: HTTPClientURL(host: base.host, port: base.port, target: PieceProtocol.openPath),
                                        headers: headers, body: open.json.serializedBytes, deadline: .seconds(60))
        } else {
            request = HTTPClientRequest(url: HTTPClientURL(host: base.host, port: base.port, target: PieceProtocol.metaPath(a.task)), deadline: .seconds(10))
        }
        guard let r = try? await pieces.send(request) else {
            log("swarm: task \(a.task): parent \(parent.id) at \(parent.address) does not answer")
            return nil
        }
        guard r.status == 200 else {
            log("swarm: task \(a.task): parent \(parent.id) answered \(r.status) for the metadata")
            return nil
        }
        return try? TaskMetadata(parsing: r.body)
    }
}

import DarterCore

/// The piece protocol between daemons (and `darter get`), over HTTP/1.1 with persistent,
/// pipelined connections. Pure: paths, headers and messages that both sides encode and decode.
/// docs/PROTOCOL.md is its contract.
///
/// - `POST /tasks` with an ``OpenTaskRequest``: the daemon starts (or joins) fetching the task
///   and answers its ``TaskMetadata`` once the length is known.
/// - `GET /tasks/{id}/meta`: the ``TaskMetadata`` now.
/// - `GET /tasks/{id}/pieces`: the availability feed, a long-lived chunked response of
///   ``AvailabilityEvent`` lines: a snapshot, then the pieces as they land (pushed, not polled),
///   then the end.
/// - `GET /tasks/{id}/pieces/{n}[?wait=MS]`: piece `n` with its CRC32C in ``crcHeader`` (and
///   its SHA-256 in ``sha256Header`` when the daemon knows it); with `wait`, a piece still
///   arriving is waited for up to MS milliseconds.
///
/// A seed that reads the origin for a swarm gives every piece a SHA-256 and publishes it (in
/// metadata, on `have` lines, in ``sha256Header``); a peer checks every piece it gets from
/// another peer against the seed's digest, since a lying parent can send a CRC32C that matches
/// its wrong bytes.
public enum PieceProtocol {
    /// The protocol version daemons announce in metadata.
    public static let version = 1
    public static let crcHeader = "X-Darter-Piece-CRC32C"
    public static let sha256Header = "X-Darter-Piece-SHA256"
    /// Piece digests go in a feed's snapshot line up to this many (76 bytes each in JSON: the
    /// line stays under the decoder's 4 MiB). With default piece lengths a task has at most
    /// about a thousand pieces below 32 GiB; bigger ones are told on `have` lines only.
    public static let maxDigestsInSnapshot = 40_000
    /// The longest wait a daemon grants for a piece (longer asks are cut to this).
    public static let maxWaitMilliseconds = 60_000
    /// The most pieces a task may have here: a snapshot line of a task this big (its ranges and its
    /// bitmap) is what the feed's line limit is sized for. Metadata of a bigger task is refused.
    public static let maxPieceCount = 1 << 20
    /// Seconds between heartbeats on a quiet availability feed.
    public static let heartbeatSeconds = 10

    public static let openPath = "/tasks"
    public static func metaPath(_ id: TaskID) -> String { "/tasks/\(id)/meta" }
    public static func availabilityPath(_ id: TaskID) -> String { "/tasks/\(id)/pieces" }
    public static func piecePath(_ id: TaskID, _ index: Int, waitMilliseconds: Int? = nil) -> String {
        "/tasks/\(id)/pieces/\(index)" + (waitMilliseconds.map { "?wait=\($0)" } ?? "")
    }

    /// A CRC32C header value: eight hex digits.
    public static func crcValue(_ crc: UInt32) -> String { Hex.word(crc) }
    /// Parses a CRC32C header value; nil unless it is one to eight hex digits.
    public static func parseCRC(_ value: some StringProtocol) -> UInt32? { Hex.parseWord(value) }

    /// The `wait` query value in milliseconds, cut to ``maxWaitMilliseconds``; nil when absent,
    /// an error text when malformed.
    public static func parseWait(_ value: String?) -> Result<Int?, ProtocolError> {
        guard let value else { return .success(nil) }
        guard let ms = Int(value), ms >= 0 else { return .failure(ProtocolError("wait must be a whole number of milliseconds, got '\(value.prefix(20))'")) }
        return .success(min(ms, maxWaitMilliseconds))
    }
}

/// A message that does not follow the protocol: the reason names the field.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A set of piece indexes, written as ranges: `0-17,20,22-23` (empty: ``).
public struct PieceSet: Sendable, Equatable, Hashable, CustomStringConvertible {
    private var words: [UInt64] = []
    public private(set) var count = 0

    public init() {}
    public init(_ indexes: some Sequence<Int>) { for i in indexes { insert(i) } }
    /// From a bitmap (`true` = held).
    public init(bitmap: [Bool]) { for (i, held) in bitmap.enumerated() where held { insert(i) } }

    public func contains(_ index: Int) -> Bool {
        guard index >= 0, index / 64 < words.count else { return false }
        return words[index / 64] & (1 << UInt64(index % 64)) != 0
    }

    @discardableResult
    public mutating func insert(_ index: Int) -> Bool {
        precondition(index >= 0, "piece index \(index)")
        while index / 64 >= words.count { words.append(0) }
        let bit: UInt64 = 1 << UInt64(index % 64)
        if words[index / 64] & bit != 0 { return false }
        words[index / 64] |= bit
        count += 1
        return true
    }

    public mutating func formUnion(_ other: PieceSet) {
        while words.count < other.words.count { words.append(0) }
        for (w, word) in other.words.enumerated() where word & ~words[w] != 0 {
            count += (word & ~words[w]).nonzeroBitCount
            words[w] |= word
        }
    }

    /// How many of this set's pieces `other` lacks (what a parent holding this set can give a
    /// child holding `other`), by whole words.
    public func count(notIn other: PieceSet) -> Int {
        var n = 0
        for (w, word) in words.enumerated() {
            n += (w < other.words.count ? word & ~other.words[w] : word).nonzeroBitCount
        }
        return n
    }

    public var isEmpty: Bool { count == 0 }

    /// The indexes in ascending order.
    public var indexes: [Int] {
        var out: [Int] = []
        out.reserveCapacity(count)
        for (w, word) in words.enumerated() where word != 0 {
            for b in 0..<64 where word & (1 << UInt64(b)) != 0 { out.append(w * 64 + b) }
        }
        return out
    }

    /// Whether every index in `0..<total` is in the set.
    public func isComplete(pieceCount total: Int) -> Bool {
        count >= total && (0..<total).allSatisfy(contains)
    }

    /// `a-b,c,...` in ascending order.
    public var description: String {
        var parts: [String] = []
        var start = -1, last = -2
        func flush() { if start >= 0 { parts.append(start == last ? "\(start)" : "\(start)-\(last)") } }
        for i in indexes {
            if i == last + 1 { last = i; continue }
            flush()
            start = i; last = i
        }
        flush()
        return parts.joined(separator: ",")
    }

    /// Parses the ranges form; indexes must be below `limit` (a task's piece count) and ranges ascending.
    public init(parsing text: some StringProtocol, limit: Int = PieceProtocol.maxPieceCount) throws(ProtocolError) {
        self.init()
        guard !text.isEmpty else { return }
        var previous = -1
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard let a = bounds.first.flatMap({ Int($0) }), a >= 0,
                  let b = bounds.count == 2 ? Int(bounds[1]) : a, b >= a else {
                throw ProtocolError("piece set: '\(part.prefix(40))' is not an index or a range a-b")
            }
            guard a > previous else { throw ProtocolError("piece set: ranges must ascend without overlap at '\(part.prefix(40))'") }
            guard b < limit else { throw ProtocolError("piece set: index \(b) is past the task's \(limit) pieces") }
            for i in a...b { insert(i) }
            previous = b
        }
    }
}

/// What a daemon knows of a task: `GET /tasks/{id}/meta`, the answer to `POST /tasks`, and the
/// first line of the availability feed. `committedPieces` keeps the seed's earlier bitmap form
/// (one `0`/`1` per piece) so existing clients still read it.
public struct TaskMetadata: Sendable, Equatable {
    public var id: TaskID
    public var contentLength: Int64?
    public var pieceLength: Int
    /// Pieces the daemon holds now (committed, or arrived whole and checked).
    public var pieces: PieceSet
    public var complete: Bool
    public var digest: SHA256Digest?
    public var contentType: String?
    /// The SHA-256 of each piece, as far as the daemon knows them (`"pieceSHA256":
    /// {"INDEX": "HEX", …}`, absent when none).
    public var pieceDigests: [Int: SHA256Digest]

    public init(id: TaskID, contentLength: Int64?, pieceLength: Int, pieces: PieceSet = PieceSet(), complete: Bool = false,
                digest: SHA256Digest? = nil, contentType: String? = nil, pieceDigests: [Int: SHA256Digest] = [:]) {
        self.id = id
        self.contentLength = contentLength
        self.pieceLength = pieceLength
        self.pieces = pieces
        self.complete = complete
        self.digest = digest
        self.contentType = contentType
        self.pieceDigests = pieceDigests
    }

    /// Pieces in the task, when its length is known.
    public var pieceCount: Int? { contentLength.map { PieceMath.pieceCount(contentLength: $0, pieceLength: pieceLength) } }

    public var json: JSONValue {
        let count = pieceCount ?? (pieces.indexes.last.map { $0 + 1 } ?? 0)
        var o: [String: JSONValue] = [
            "protocol": JSONValue(PieceProtocol.version),
            "id": .string(id.description),
            "contentLength": contentLength.map { JSONValue($0) } ?? .null,
            "pieceLength": JSONValue(pieceLength),
            "pieceCount": JSONValue(count),
            "complete": .bool(complete),
            "pieces": .string(pieces.description),
            "committedPieces": .string(String((0..<count).map { pieces.contains($0) ? "1" : "0" })),
            "digest": digest.map { .string("sha256:" + $0.hex) } ?? .null,
            "contentType": JSONValue(contentType),
        ]
        if !pieceDigests.isEmpty { o["pieceSHA256"] = PieceDigestsJSON.encode(pieceDigests) }
        return .object(o)
    }

    public init(json: JSONValue) throws(ProtocolError) {
        guard json.object != nil else { throw ProtocolError("metadata is not a JSON object") }
        guard let text = json["id"]?.string, let id = TaskID(text) else { throw ProtocolError("metadata: id is missing or not a task id") }
        guard let pieceLength = json["pieceLength"]?.integer, PieceMath.isValidPieceLength(Int(pieceLength)) else {
            throw ProtocolError("metadata: pieceLength is missing or not a valid piece length")
        }
        var length: Int64?
        if let l = json["contentLength"], !l.isNull {
            guard let n = l.integer, n >= 0 else { throw ProtocolError("metadata: contentLength is not a whole number") }
            length = n
        }
        let limit = length.map { PieceMath.pieceCount(contentLength: $0, pieceLength: Int(pieceLength)) } ?? PieceProtocol.maxPieceCount
        guard limit <= PieceProtocol.maxPieceCount else {
            throw ProtocolError("metadata: \(limit) pieces is more than the protocol's \(PieceProtocol.maxPieceCount)")
        }
        var pieces = PieceSet()
        if let ranges = json["pieces"]?.string {
            pieces = try PieceSet(parsing: ranges, limit: limit)
        } else if let bitmap = json["committedPieces"]?.string {
            pieces = PieceSet(bitmap: bitmap.prefix(limit).map { $0 == "1" })
        }
        var digest: SHA256Digest?
        if let d = json["digest"], !d.isNull {
            guard let s = d.string, s.hasPrefix("sha256:"), let h = SHA256Digest(hex: s.dropFirst(7)) else {
                throw ProtocolError("metadata: digest must be sha256:<64 hex>")
            }
            digest = h
        }
        var digests: [Int: SHA256Digest] = [:]
        if let d = json["pieceSHA256"], !d.isNull { digests = try PieceDigestsJSON.decode(d, limit: limit, field: "metadata: pieceSHA256") }
        self.init(id: id, contentLength: length, pieceLength: Int(pieceLength), pieces: pieces,
                  complete: json["complete"]?.bool ?? false, digest: digest, contentType: json["contentType"]?.string, pieceDigests: digests)
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) {
        guard let v = try? JSONValue.parse(bytes) else { throw ProtocolError("metadata is not JSON") }
        try self.init(json: v)
    }
}

/// `POST /tasks`: fetch (or join the fetch of) `url`, sending `headers` to its origin; content
/// named by `digest` must match it. With `registry`, `url` is that OCI registry's
/// `<registry>/v2/<name>/blobs|manifests/<digest>`, fetched with the registry's token
/// authentication; `digest` is then required.
public struct OpenTaskRequest: Sendable, Equatable {
    public var url: String
    public var headers: [Header]
    public var digest: SHA256Digest?
    public var registry: String?

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) { self.name = name; self.value = value }
    }

    public init(url: String, headers: [Header] = [], digest: SHA256Digest? = nil, registry: String? = nil) {
        self.url = url
        self.headers = headers
        self.digest = digest
        self.registry = registry
    }

    /// The path under `registry` (`/v2/...`), when this is a registry request.
    public var registryPath: String? {
        guard let registry, url.hasPrefix(registry) else { return nil }
        return String(url.dropFirst(registry.count))
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["url": .string(url), "headers": .array(headers.map { .array([.string($0.name), .string($0.value)]) })]
        if let digest { o["digest"] = .string("sha256:" + digest.hex) }
        if let registry { o["registry"] = .string(registry) }
        return .object(o)
    }

    public init(parsing bytes: [UInt8]) throws(ProtocolError) {
        guard let v = try? JSONValue.parse(bytes), v.object != nil else { throw ProtocolError("the body must be a JSON object") }
        guard let url = v["url"]?.string, !url.isEmpty else { throw ProtocolError("url is missing or not a string") }
        var headers: [Header] = []
        if let h = v["headers"], !h.isNull {
            guard let list = h.array else { throw ProtocolError("headers must be a list of [name, value] pairs") }
            for item in list {
                guard let pair = item.array, pair.count == 2, let name = pair[0].string, let value = pair[1].string,
                      !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ":") }),
                      !value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                    throw ProtocolError("headers: each must be [name, value] with a token name and a value without CR, LF or NUL")
                }
                headers.append(Header(name: name, value: value))
            }
        }
        var digest: SHA256Digest?
        if let d = v["digest"], !d.isNull {
            guard let s = d.string, s.hasPrefix("sha256:"), let h = SHA256Digest(hex: s.dropFirst(7)) else {
                throw ProtocolError("digest must be sha256:<64 lowercase hex>")
            }
            digest = h
        }
        var registry: String?
        if let r = v["registry"], !r.isNull {
            guard let base = r.string, base.hasPrefix("http://") || base.hasPrefix("https://"), !base.hasSuffix("/") else {
                throw ProtocolError("registry must be http(s)://host[:port] without a trailing slash")
            }
            guard url.hasPrefix(base + "/v2/") else { throw ProtocolError("with registry, url must be <registry>/v2/...") }
            guard digest != nil else { throw ProtocolError("with registry, digest is required (blobs and manifests by digest only)") }
            registry = base
        }
        self.init(url: url, headers: headers, digest: digest, registry: registry)
    }
}

/// Piece digests in JSON: an object from decimal piece index to 64 lowercase hex digits.
enum PieceDigestsJSON {
    static func encode(_ digests: [Int: SHA256Digest]) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for (i, d) in digests { o[String(i)] = .string(d.hex) }
        return .object(o)
    }

    static func decode(_ v: JSONValue, limit: Int, field: String) throws(ProtocolError) -> [Int: SHA256Digest] {
        guard let o = v.object else { throw ProtocolError("\(field) must be an object of piece index to SHA-256 hex") }
        var out: [Int: SHA256Digest] = [:]
        // In key order, so a message with several bad entries is refused naming the same one
        // however it arrived (a dictionary's order is its history's: the fuzzer found whole and
        // split feeds naming different pieces).
        for (key, value) in o.sorted(by: { $0.key < $1.key }) {
            guard key.utf8.count <= 7, key.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let i = Int(key), i < limit else {
                throw ProtocolError("\(field): '\(key.prefix(20))' is not a piece index below \(limit)")
            }
            guard let s = value.string, let d = SHA256Digest(hex: s) else { throw ProtocolError("\(field): piece \(i)'s digest is not 64 lowercase hex") }
            out[i] = d
        }
        return out
    }
}

/// One line of the availability feed (`GET /tasks/{id}/pieces`), as newline-terminated JSON:
/// `{"snapshot": META}` first, then `{"have":"RANGES"}` as pieces land (with `"sha256":
/// {"INDEX": "HEX"}` for those whose digest the daemon knows), `{}` as a heartbeat, and last
/// `{"complete":true}` or `{"failed":"REASON"}`, after which the response ends.
public enum AvailabilityEvent: Sendable, Equatable {
    case snapshot(TaskMetadata)
    case have(PieceSet, sha256: [Int: SHA256Digest] = [:])
    case heartbeat
    case complete
    case failed(String)

    public var line: [UInt8] {
        let v: JSONValue
        switch self {
        case .snapshot(let m): v = ["snapshot": m.json]
        case .have(let p, let digests):
            v = digests.isEmpty ? ["have": .string(p.description)] : ["have": .string(p.description), "sha256": PieceDigestsJSON.encode(digests)]
        case .heartbeat: v = [:]
        case .complete: v = ["complete": true]
        case .failed(let why): v = ["failed": .string(why)]
        }
        return v.serializedBytes + [10]
    }

    public init(parsingLine bytes: [UInt8], pieceLimit: Int = PieceProtocol.maxPieceCount) throws(ProtocolError) {
        guard let v = try? JSONValue.parse(bytes), let o = v.object else { throw ProtocolError("availability: a line is not a JSON object") }
        if let m = o["snapshot"] { self = .snapshot(try TaskMetadata(json: m)) }
        else if let h = o["have"] {
            guard let s = h.string else { throw ProtocolError("availability: have must be a ranges string") }
            let set = try PieceSet(parsing: s, limit: pieceLimit)
            var digests: [Int: SHA256Digest] = [:]
            if let d = o["sha256"], !d.isNull {
                digests = try PieceDigestsJSON.decode(d, limit: pieceLimit, field: "availability: sha256")
                guard digests.keys.allSatisfy({ set.contains($0) }) else { throw ProtocolError("availability: sha256 names a piece the have line does not") }
            }
            self = .have(set, sha256: digests)
        }
        else if o["complete"]?.bool == true { self = .complete }
        else if let f = o["failed"] { self = .failed(f.string ?? "failed") }
        else if o.isEmpty { self = .heartbeat }
        else { throw ProtocolError("availability: unknown event \(v.serialized.prefix(80))") }
    }
}

/// Cuts the feed's body bytes into events, however they are split. A line longer than
/// `maxLineLength` (a snapshot of a huge task is the longest) is an error.
public struct AvailabilityDecoder: Sendable {
    private var pending: [UInt8] = []
    public let maxLineLength: Int
    /// Piece indexes must be below this once the snapshot said how many there are.
    private var pieceLimit = PieceProtocol.maxPieceCount

    public init(maxLineLength: Int = 4 << 20) { self.maxLineLength = maxLineLength }

    public mutating func feed(_ bytes: some Collection<UInt8>) throws(ProtocolError) -> [AvailabilityEvent] {
        var events: [AvailabilityEvent] = []
        for b in bytes {
            if b == 10 {
                let line = pending
                pending.removeAll(keepingCapacity: true)
                if line.isEmpty { continue }
                let e = try AvailabilityEvent(parsingLine: line, pieceLimit: pieceLimit)
                if case .snapshot(let m) = e, let n = m.pieceCount { pieceLimit = n }
                events.append(e)
            } else {
                pending.append(b)
                if pending.count > maxLineLength { throw ProtocolError("availability: a line is longer than \(maxLineLength) bytes") }
            }
        }
        return events
    }
}

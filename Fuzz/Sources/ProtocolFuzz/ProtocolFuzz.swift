// libFuzzer entry point for the piece protocol's parsers (piece sets, task metadata, open
// requests, the availability feed, wait and CRC values), the JSON under them, and the HTTP
// client's URLs. Not main.swift: libFuzzer supplies main(), and top-level code (which would
// initialise globals) never runs.
//
// The first byte picks the parser (its value modulo 8; the seeds use the digits 0-7), the rest
// is its input. What parses must read back the same: a piece set printed parses to the same set,
// metadata and open requests serialized to JSON parse back equal, JSON serialization is
// idempotent, a URL's description parses to the same host, port and target. The availability
// decoder must give the same events (and the same error) however its input is split: whole, in
// two at a point the input picks, byte by byte; the lines of the events it gave decode back to
// them. Errors name what is wrong in a bounded text. Selector 7 with a body starting `{` is the
// scheduler protocol's messages (registration, announce, announce reply, progress): what parses
// serializes to JSON that parses back equal.
import DarterCore
import HTTPClient
import PieceProtocol
import SchedulerProtocol

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

/// FNV-1a, so every choice below depends on the whole input.
func hash(_ input: some Sequence<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in input { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// An error's reason is there and quotes a bounded part of the input.
func checkReason(_ error: some CustomStringConvertible, _ what: String) {
    let text = error.description
    check(!text.isEmpty && text.count <= 500, "\(what) error of \(text.count) characters: \(text.prefix(100))")
}

func isHex(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b) }

// MARK: - Piece sets

/// `LIMIT/SET` (LIMIT a decimal, at most 2^20) or just `SET` (the default limit).
func pieceSets(_ text: String) {
    var limit = 1 << 20
    var set = Substring(text)
    if let slash = text.firstIndex(of: "/") {
        guard let n = Int(text[..<slash]), n >= 0 else { return }
        limit = min(n, 1 << 20)
        set = text[text.index(after: slash)...]
    }
    let s: PieceSet
    do { s = try PieceSet(parsing: set, limit: limit) } catch { return checkReason(error, "piece set") }
    checkPieceSet(s, limit: limit, from: String(set))
}

func checkPieceSet(_ s: PieceSet, limit: Int, from text: String) {
    let indexes = s.indexes
    check(s.count == indexes.count, "count \(s.count) for \(indexes.count) indexes")
    check(s.isEmpty == text.isEmpty, "'\(text.prefix(80))' gave an empty set: \(s.isEmpty)")
    check(indexes.allSatisfy { $0 >= 0 && $0 < limit }, "index past the limit \(limit): \(s)")
    check(zip(indexes, indexes.dropFirst()).allSatisfy { $0 < $1 }, "indexes not ascending: \(indexes.prefix(20))")
    check(indexes.allSatisfy(s.contains) && !s.contains(-1) && !s.contains(limit), "contains disagrees with indexes")
    let printed = s.description
    let again = try? PieceSet(parsing: printed, limit: limit)
    check(again == s, "'\(printed.prefix(80))' reads back as \(String(describing: again).prefix(80))")
    check(again?.description == printed, "printing is not canonical: \(printed.prefix(80))")
    check(PieceSet(indexes) == s, "a set rebuilt from its indexes differs")
    let top = indexes.last.map { $0 + 1 } ?? 0
    check(PieceSet(bitmap: (0..<top).map(s.contains)) == s, "the bitmap form differs")
    check(s.isComplete(pieceCount: top) == (s.count == top), "isComplete(\(top)) with \(s.count) pieces")
    var union = s
    union.formUnion(s)
    check(union == s, "a set united with itself changed")
}

// MARK: - Metadata, open requests, availability

func metadata(_ bytes: [UInt8]) {
    let m: TaskMetadata
    do { m = try TaskMetadata(parsing: bytes) } catch { return checkReason(error, "metadata") }
    checkMetadata(m)
}

func checkMetadata(_ m: TaskMetadata) {
    check(PieceMath.isValidPieceLength(m.pieceLength), "piece length \(m.pieceLength)")
    check(m.contentLength.map { $0 >= 0 } ?? true, "content length \(String(describing: m.contentLength))")
    if let n = m.pieceCount { check(m.pieces.indexes.last.map { $0 < n } ?? true, "pieces past the task's \(n): \(m.pieces)") }
    let json = m.json
    let text = json.serializedBytes
    let again = try? TaskMetadata(parsing: text)
    check(again == m, "metadata does not read back: \(String(decoding: text.prefix(300), as: UTF8.self))")
    check(json["pieceCount"]?.integer == Int64(m.pieceCount ?? (m.pieces.indexes.last.map { $0 + 1 } ?? 0)), "pieceCount")
    // An older reader's form, the bitmap alone, says the same.
    var old = json.object!
    old["pieces"] = nil
    check((try? TaskMetadata(json: .object(old))) == m, "the committedPieces bitmap reads back differently")
    // As the feed's first line.
    check((try? AvailabilityEvent(parsingLine: AvailabilityEvent.snapshot(m).line)) == .snapshot(m), "snapshot line")
}

func openRequests(_ bytes: [UInt8]) {
    let r: OpenTaskRequest
    do { r = try OpenTaskRequest(parsing: bytes) } catch { return checkReason(error, "open request") }
    check(!r.url.isEmpty, "empty url")
    for h in r.headers {
        check(!h.name.isEmpty && h.name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }, "header name \(h.name)")
        check(!h.value.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }, "header value \(h.value)")
    }
    let text = r.json.serializedBytes
    let again = try? OpenTaskRequest(parsing: text)
    check(again == r, "open request does not read back: \(String(decoding: text.prefix(300), as: UTF8.self))")
}

/// What a decoder gave: the events, then the error that stopped it (if any).
struct Decoded: Equatable {
    var events: [AvailabilityEvent] = []
    var error: String? = nil
}

func decode(_ bytes: [UInt8], maxLineLength: Int, feeds: [Range<Int>]) -> Decoded {
    var decoder = AvailabilityDecoder(maxLineLength: maxLineLength)
    var out = Decoded()
    for feed in feeds {
        do { out.events += try decoder.feed(bytes[feed]) } catch {
            checkReason(error, "availability")
            out.error = error.description
            return out
        }
    }
    return out
}

func availability(_ bytes: [UInt8]) {
    let h = hash(bytes)
    let split = Int(h % UInt64(bytes.count + 1))
    let maxLineLength = [4 << 20, 4 << 20, 24, 200][Int((h >> 20) % 4)]
    let whole = decode(bytes, maxLineLength: maxLineLength, feeds: [0..<bytes.count])
    let halves = decode(bytes, maxLineLength: maxLineLength, feeds: [0..<split, split..<bytes.count])
    let single = decode(bytes, maxLineLength: maxLineLength, feeds: (0..<bytes.count).map { $0..<($0 + 1) })
    // A feed that fails gives none of its events: only the ones of earlier feeds.
    check(whole.error == single.error && halves.error == single.error,
          "errors differ: whole \(String(describing: whole.error)), split at \(split) \(String(describing: halves.error)), bytes \(String(describing: single.error))")
    if single.error == nil {
        check(whole == single && halves == single, "events differ: whole \(whole.events.count), split at \(split) \(halves.events.count), bytes \(single.events.count)")
    } else {
        check(whole.events.isEmpty && single.events.starts(with: halves.events), "events before the error differ")
    }
    // Every event's line decodes back to it, in the same order (a snapshot sets the piece limit
    // of later lines, so they are decoded as one feed).
    var again = AvailabilityDecoder()
    let lines = single.events.flatMap(\.line)
    let reread = try? again.feed(lines)
    check(reread == single.events, "event lines do not read back: \(String(decoding: lines.prefix(300), as: UTF8.self))")
    for event in single.events {
        let line = event.line
        check(line.last == 10 && !line.dropLast().contains(10), "an event is not one line")
        if case .snapshot(let m) = event { checkMetadata(m) }
    }
}

// MARK: - Waits, CRC values

func waits(_ text: String) {
    switch PieceProtocol.parseWait(text) {
    case .success(let ms?):
        check((0...PieceProtocol.maxWaitMilliseconds).contains(ms), "wait \(ms) ms from '\(text)'")
        check(PieceProtocol.parseWait(String(ms)) == .success(ms), "wait \(ms) does not read back")
    case .success(nil):
        fatalError("invariant violated: a wait value '\(text)' read as no wait")
    case .failure(let error):
        checkReason(error, "wait")
        check(Int(text).map { $0 < 0 } ?? true, "wait '\(text)' refused")
    }
}

func crcs(_ text: String, _ bytes: [UInt8]) {
    if let v = PieceProtocol.parseCRC(text) {
        check((1...8).contains(text.utf8.count) && text.utf8.allSatisfy(isHex), "'\(text)' read as the CRC \(v)")
        check(PieceProtocol.parseCRC(PieceProtocol.crcValue(v)) == v, "CRC \(v) does not read back")
    }
    // A value from the input's first four bytes.
    let v = bytes.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let value = PieceProtocol.crcValue(v)
    check(value.utf8.count == 8 && value.utf8.allSatisfy { isHex($0) && !(0x41...0x46).contains($0) }, "crcValue(\(v)) is '\(value)'")
    check(PieceProtocol.parseCRC(value) == v && PieceProtocol.parseCRC(value.uppercased()) == v, "'\(value)' does not read back")
}

// MARK: - JSON, URLs

func json(_ bytes: [UInt8]) {
    if let v = try? JSONValue.parse(bytes) {
        let text = v.serialized
        let again = try? JSONValue.parse(Array(text.utf8))
        check(again == v, "'\(text.prefix(200))' reads back as \(String(describing: again).prefix(200))")
        check(again?.serialized == text, "serializing again changes '\(text.prefix(200))'")
        check(!text.utf8.contains { $0 < 0x20 }, "a control byte in serialized JSON")
    }
    // Any string quotes and reads back.
    let s = String(decoding: bytes, as: UTF8.self)
    let quoted = JSONValue.quoted(s)
    check((try? JSONValue.parse(Array(quoted.utf8))) == .string(s), "\(quoted.prefix(200)) does not read back")
}

func urls(_ text: String) {
    for candidate in [text, "http://" + text] {
        let u: HTTPClientURL
        do { u = try HTTPClientURL(parsing: candidate) } catch { checkReason(error, "URL"); continue }
        check(!u.host.isEmpty, "empty host from \(candidate)")
        check(u.target.hasPrefix("/") && !u.target.contains("#"), "target '\(u.target)'")
        check(u.hostHeader.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "Host header '\(u.hostHeader)' from '\(candidate)'")
        let again = try? HTTPClientURL(parsing: u.description)
        check(again == u, "'\(u.description)' (from '\(candidate)') reads back as \(String(describing: again))")
    }
}

// MARK: - Scheduler messages

func roundTrip<M: Equatable>(_ bytes: [UInt8], _ what: String, _ parse: ([UInt8]) throws(ProtocolError) -> M, _ json: (M) -> JSONValue) {
    let m: M
    do { m = try parse(bytes) } catch { return checkReason(error, what) }
    let again: M
    do { again = try parse(json(m).serializedBytes) } catch { fatalError("\(what) serialized as \(json(m).serialized.prefix(200)) does not parse: \(error)") }
    check(again == m, "\(what) does not read back the same: \(json(m).serialized.prefix(200))")
}

func schedulerMessages(_ bytes: [UInt8]) {
    roundTrip(bytes, "registration", { b throws(ProtocolError) in try HostRegistration(parsing: b) }, \.json)
    roundTrip(bytes, "registration reply", { b throws(ProtocolError) in try RegistrationReply(parsing: b) }, \.json)
    roundTrip(bytes, "announce", { b throws(ProtocolError) in try Announce(parsing: b) }, \.json)
    roundTrip(bytes, "announce reply", { b throws(ProtocolError) in try AnnounceReply(parsing: b) }, \.json)
    roundTrip(bytes, "progress", { b throws(ProtocolError) in try ProgressReport(parsing: b) }, \.json)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let bytes = Array(input.dropFirst())
    let text = String(decoding: bytes, as: UTF8.self)
    switch input[0] % 8 {
    case 0: pieceSets(text)
    case 1: metadata(bytes); json(bytes)
    case 2: openRequests(bytes); json(bytes)
    case 3: availability(bytes)
    case 4: waits(text)
    case 5: crcs(text, bytes)
    case 6: json(bytes)
    default: if bytes.first == UInt8(ascii: "{") { schedulerMessages(bytes) } else { urls(text) }
    }
    return 0
}

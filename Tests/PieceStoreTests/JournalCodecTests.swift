import Testing
import DarterIO
import DarterCore
@testable import PieceStore

private func id(_ s: String) -> TaskID { try! TaskID.forURL("https://example.com/" + s) }
private let digest = SHA256Digest(bytes: (0..<32).map { UInt8(truncatingIfNeeded: $0 * 37 + 5) })!
private let digestID = TaskID(kind: .digest, hash: digest)

/// Every record kind, with and without its optional fields.
let sampleRecords: [JournalRecord] = [
    .taskCreated(TaskDescriptor(
        id: id("full"), pieceLength: 4 << 20, contentLength: 123_456_789, createdAt: 1_700_000_000, pinned: true,
        expectedDigest: digest,
        origin: OriginMetadata(contentType: "application/vnd.oci.image.layer.v1.tar+gzip", etag: "W/\"ünïcødé-🎉\"",
                               lastModified: "Tue, 15 Nov 1994 08:12:31 GMT", sourceURL: "https://例え.jp/パス?q=ü"))),
    .taskCreated(TaskDescriptor(id: digestID, pieceLength: 4096, contentLength: nil, createdAt: 0)),
    .taskCreated(TaskDescriptor(id: id("empty-strings"), pieceLength: 64 << 20, contentLength: 0, createdAt: -5,
                                origin: OriginMetadata(contentType: "", etag: "", lastModified: nil, sourceURL: ""))),
    .pieceCommitted(id("full"), index: 0, length: 1, crc32c: 0),
    .pieceCommitted(digestID, index: Int(UInt32.max), length: 64 << 20, crc32c: 0xFFFF_FFFF),
    .pieceCommitted(id("full"), index: 3, length: 4 << 20, crc32c: 0x1234_5678, sha256: digest),
    .pieceDropped(id("full"), index: 7),
    .pieceDropped(digestID, index: 0),
    .taskCompleted(id("full"), contentLength: 123_456_789, sha256: digest),
    .taskCompleted(digestID, contentLength: 0, sha256: nil),
    .taskAccessed(id("full"), at: 1_700_000_123),
    .taskAccessed(digestID, at: Int64.min),
    .taskAccessed(digestID, at: Int64.max),
    .taskPinned(id("full"), true),
    .taskPinned(id("full"), false),
    .taskDeleted(id("full")),
    .taskDeleted(digestID),
]

private func encodeJournal(_ records: [JournalRecord]) -> (bytes: [UInt8], frameEnds: [Int]) {
    var out = JournalCodec.magic
    var ends: [Int] = []
    for r in records {
        JournalCodec.encode(r, into: &out)
        ends.append(out.count)
    }
    return (out, ends)
}

private func frame(_ payload: [UInt8]) -> [UInt8] {
    func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
    return le(UInt32(payload.count)) + le(CRC32C.checksum(payload)) + payload
}

@Suite("JournalCodec")
struct JournalCodecTests {
    @Test("every record kind round-trips on its own", arguments: sampleRecords)
    func roundTripEach(record: JournalRecord) {
        let (bytes, ends) = encodeJournal([record])
        let (records, valid) = JournalCodec.decode(bytes)
        #expect(records == [record])
        #expect(valid == bytes.count)
        #expect(ends == [bytes.count])
    }

    @Test("a journal of all kinds round-trips in order")
    func roundTripAll() {
        let (bytes, _) = encodeJournal(sampleRecords)
        let (records, valid) = JournalCodec.decode(bytes)
        #expect(records == sampleRecords)
        #expect(valid == bytes.count)
        #expect(records.map(\.taskID) == sampleRecords.map(\.taskID))
    }

    @Test("frame layout: magic, then little-endian length and CRC32C of the payload")
    func layout() {
        #expect(JournalCodec.magic == Array("DARTJNL1".utf8))
        var out: [UInt8] = []
        JournalCodec.encode(.taskDeleted(digestID), into: &out)
        let length = Int(out[0]) | Int(out[1]) << 8 | Int(out[2]) << 16 | Int(out[3]) << 24
        let crc = UInt32(out[4]) | UInt32(out[5]) << 8 | UInt32(out[6]) << 16 | UInt32(out[7]) << 24
        #expect(length == out.count - 8)
        #expect(length == 1 + 1 + 32)  // type, kind, hash
        #expect(crc == CRC32C.checksum(out[8...]))
        #expect(out[8] == 7)          // record type
        #expect(out[9] == 1)          // digest kind
        #expect(Array(out[10...]) == digest.bytes)
        // encode appends.
        let before = out
        JournalCodec.encode(.taskDeleted(digestID), into: &out)
        #expect(Array(out[..<before.count]) == before)
        #expect(Array(out[before.count...]) == before)
    }

    @Test("a journal with only the magic is empty and valid; a bad or short magic yields nothing")
    func magicHandling() {
        #expect(JournalCodec.decode(JournalCodec.magic) == ([], 8))
        #expect(JournalCodec.decode([]) == ([], 0))
        #expect(JournalCodec.decode(Array("DART".utf8)) == ([], 0))
        var (bytes, _) = encodeJournal(sampleRecords)
        bytes[7] = UInt8(ascii: "2")  // DARTJNL2
        #expect(JournalCodec.decode(bytes) == ([], 0))
        let (good, _) = encodeJournal(sampleRecords)
        #expect(JournalCodec.decode(Array(good.dropFirst())) == ([], 0))
    }

    @Test("a torn tail at every possible length decodes to a prefix ending on a frame boundary")
    func tornTail() {
        let (bytes, ends) = encodeJournal(sampleRecords)
        for cut in 0...bytes.count {
            let (records, valid) = JournalCodec.decode(Array(bytes[..<cut]))
            if cut < JournalCodec.magic.count {
                #expect(records.isEmpty && valid == 0, "cut \(cut)")
                continue
            }
            let complete = ends.filter { $0 <= cut }.count
            #expect(records == Array(sampleRecords.prefix(complete)), "cut \(cut)")
            #expect(valid == (complete == 0 ? JournalCodec.magic.count : ends[complete - 1]), "cut \(cut)")
        }
    }

    @Test("a flipped bit anywhere in a frame ends decoding just before that frame")
    func bitFlips() {
        let (bytes, ends) = encodeJournal(sampleRecords)
        let starts = [JournalCodec.magic.count] + ends.dropLast()
        var checked = 0
        for position in JournalCodec.magic.count..<bytes.count {
            let frameIndex = ends.firstIndex { position < $0 }!
            for bit in [position % 8, (position + 3) % 8] {
                var damaged = bytes
                damaged[position] ^= UInt8(1) << UInt8(bit)
                let (records, valid) = JournalCodec.decode(damaged)
                #expect(records == Array(sampleRecords.prefix(frameIndex)), "byte \(position) bit \(bit)")
                #expect(valid == starts[frameIndex], "byte \(position) bit \(bit)")
                checked += 1
            }
        }
        #expect(checked == 2 * (bytes.count - 8))
        // Damage in the magic loses everything.
        for position in 0..<8 {
            var damaged = bytes
            damaged[position] ^= 0x01
            #expect(JournalCodec.decode(damaged) == ([], 0))
        }
    }

    @Test("garbage after the last frame is not decoded", arguments: [
        [UInt8](repeating: 0, count: 64),  // a preallocated, zeroed tail
        [UInt8](repeating: 0, count: 8),
        [UInt8](repeating: 0xFF, count: 20),
        [1, 2, 3],
        [UInt8](repeating: 0, count: 4),
    ])
    func garbageTail(tail: [UInt8]) {
        let (bytes, _) = encodeJournal(sampleRecords)
        let (records, valid) = JournalCodec.decode(bytes + tail)
        #expect(records == sampleRecords)
        #expect(valid == bytes.count)
    }

    @Test("frames with a good checksum but a bad payload end decoding")
    func badPayloads() {
        let (prefix, _) = encodeJournal([sampleRecords[0]])
        var deleted: [UInt8] = []
        JournalCodec.encode(.taskDeleted(digestID), into: &deleted)
        let deletedPayload = Array(deleted[8...])
        let bad: [[UInt8]] = [
            [],                                          // empty payload (length 0, crc 0)
            [99] + Array(deletedPayload.dropFirst()),    // unknown record type
            deletedPayload + [0],                        // trailing byte
            Array(deletedPayload.dropLast()),            // short hash
            [7, 2] + digest.bytes,                       // unknown TaskID kind
            [6, 0] + digest.bytes,                       // taskPinned without its flag
            [4, 0] + digest.bytes + [UInt8](repeating: 0, count: 8) + [2],  // optional digest flag 2
            [1, 0] + digest.bytes + [UInt8](repeating: 0, count: 4 + 8 + 8 + 1 + 1) + [5, 0, 0, 0, 65],  // string longer than payload
        ]
        for (i, payload) in bad.enumerated() {
            let journal = prefix + frame(payload) + frame(deletedPayload)
            let (records, valid) = JournalCodec.decode(journal)
            #expect(records == [sampleRecords[0]], "case \(i)")
            #expect(valid == prefix.count, "case \(i)")
        }
        // The helper frames a good payload correctly.
        #expect(JournalCodec.decode(prefix + frame(deletedPayload)).records == [sampleRecords[0], .taskDeleted(digestID)])
    }

    @Test("a frame claiming more than 1 MiB is rejected without reading it")
    func oversizedFrame() {
        let (prefix, _) = encodeJournal([sampleRecords[3]])
        let huge = [UInt8](repeating: 0, count: (1 << 20) + 1)
        let journal = prefix + frame(huge)
        let (records, valid) = JournalCodec.decode(journal)
        #expect(records == [sampleRecords[3]])
        #expect(valid == prefix.count)
    }

    @Test("100,000 pieceCommitted records encode and decode correctly")
    func manyRecords() {
        let task = id("big")
        let originals: [JournalRecord] = (0..<100_000).map {
            .pieceCommitted(task, index: $0, length: 4 << 20, crc32c: UInt32(truncatingIfNeeded: $0 &* 2_654_435_761))
        }
        let clock = ContinuousClock()
        let t0 = clock.now
        let (bytes, _) = encodeJournal(originals)
        let t1 = clock.now
        let (records, valid) = JournalCodec.decode(bytes)
        let t2 = clock.now
        print("journal: encoded 100000 records (\(bytes.count) bytes) in \(t1 - t0), decoded in \(t2 - t1)")
        #expect(records.count == originals.count)
        #expect(records == originals)
        #expect(valid == bytes.count)
        #expect(bytes.count == 8 + 100_000 * (8 + 1 + 33 + 12))
    }
}

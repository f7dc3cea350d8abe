import Testing
import DarterCore
import PieceProtocol

@Suite("Piece protocol messages")
struct PieceProtocolTests {
    let id = try! TaskID.forURL("http://example.com/big.iso")

    @Test("piece sets print as ascending ranges and parse back; bad sets name what is wrong")
    func pieceSets() throws {
        let s = PieceSet([0, 1, 2, 5, 7, 8, 63, 64, 200])
        #expect(s.description == "0-2,5,7-8,63-64,200")
        #expect(try PieceSet(parsing: s.description) == s)
        #expect(s.count == 9 && s.contains(64) && !s.contains(65) && !s.contains(-1))
        #expect(PieceSet().description == "")
        #expect(try PieceSet(parsing: "").isEmpty)
        #expect(PieceSet(0..<4).isComplete(pieceCount: 4) && !PieceSet([0, 2, 3]).isComplete(pieceCount: 4))
        for bad in ["x", "3-1", "1,1", "5,2", "1-", "-1", "1,,2", "0-9"] {
            #expect(throws: ProtocolError.self, "\(bad)") { try PieceSet(parsing: bad, limit: 5) }
        }
    }

    @Test("metadata round-trips through JSON and keeps the seed's committedPieces bitmap")
    func metadata() throws {
        let m = TaskMetadata(id: id, contentLength: 10 << 20, pieceLength: 4 << 20, pieces: PieceSet([0, 2]), complete: false,
                             digest: SHA256Digest(bytes: Array(repeating: 7, count: 32)), contentType: "application/x-iso")
        let json = m.json
        #expect(json["committedPieces"]?.string == "101")
        #expect(json["pieceCount"]?.integer == 3)
        #expect(json["pieces"]?.string == "0,2")
        #expect(try TaskMetadata(parsing: json.serializedBytes) == m)
        // An older seed's meta, without "pieces": the bitmap is read.
        var old = json.object!
        old["pieces"] = nil
        #expect(try TaskMetadata(json: .object(old)).pieces == PieceSet([0, 2]))
        // Unknown length: no piece count limit from it.
        let open = TaskMetadata(id: id, contentLength: nil, pieceLength: 4 << 20)
        #expect(try TaskMetadata(json: open.json) == open)
        for (field, value) in [("id", JSONValue("nope")), ("pieceLength", 1000), ("contentLength", -1), ("digest", "md5:1"), ("pieces", "9")] {
            var o = json.object!
            o[field] = value
            #expect(throws: ProtocolError.self, "\(field)") { try TaskMetadata(json: .object(o)) }
        }
    }

    @Test("metadata of more pieces than the protocol carries is refused (it built a bitmap per piece, or looped over the ranges)")
    func tooManyPieces() throws {
        // Found by tools/fuzz protocol: a contentLength of 163851048576 with 4 KiB pieces (40 million
        // pieces) parsed, and its snapshot line was 40 MB, past the feed's line limit.
        let most = TaskMetadata(id: id, contentLength: Int64(PieceProtocol.maxPieceCount) * 4096, pieceLength: 4096)
        #expect(try TaskMetadata(json: most.json) == most)
        var over = most.json.object!
        over["contentLength"] = JSONValue(Int64(PieceProtocol.maxPieceCount) * 4096 + 1)
        over["pieces"] = "0"
        #expect { try TaskMetadata(json: .object(over)) } throws: { ($0 as? ProtocolError)?.description.contains("pieces") == true }
        // Ranges over a huge task used to be inserted one by one.
        let huge = #"{"id":"\#(id)","pieceLength":4096,"contentLength":9007199254740992,"pieces":"0-2199023255551"}"#
        #expect(throws: ProtocolError.self) { try TaskMetadata(parsing: Array(huge.utf8)) }
        var decoder = AvailabilityDecoder()
        #expect(throws: ProtocolError.self) { try decoder.feed(Array(#"{"snapshot":\#(huge)}"#.utf8) + [10]) }
    }

    @Test("open requests: url, headers, digest; each bad field is named")
    func openRequest() throws {
        let r = OpenTaskRequest(url: "http://o/x", headers: [.init(name: "Authorization", value: "Bearer t")],
                                digest: SHA256Digest(bytes: Array(repeating: 1, count: 32)))
        #expect(try OpenTaskRequest(parsing: r.json.serializedBytes) == r)
        #expect(try OpenTaskRequest(parsing: Array(#"{"url":"http://o/y"}"#.utf8)) == OpenTaskRequest(url: "http://o/y"))
        let blob = OpenTaskRequest(url: "http://127.0.0.1:5000/v2/test/app/blobs/sha256:" + String(repeating: "ab", count: 32),
                                   digest: SHA256Digest(bytes: Array(repeating: 0xab, count: 32)), registry: "http://127.0.0.1:5000")
        #expect(try OpenTaskRequest(parsing: blob.json.serializedBytes) == blob)
        #expect(blob.registryPath == "/v2/test/app/blobs/sha256:" + String(repeating: "ab", count: 32))
        #expect(r.registryPath == nil)
        let cases: [(String, String)] = [
            (#"[]"#, "JSON object"), (#"{}"#, "url"), (#"{"url":3}"#, "url"),
            (#"{"url":"u","headers":{"a":"b"}}"#, "headers"), (#"{"url":"u","headers":[["a b","c"]]}"#, "headers"),
            (#"{"url":"u","headers":[["a","c\r\nX: y"]]}"#, "headers"), (#"{"url":"u","digest":"sha256:zz"}"#, "digest"),
            (#"{"url":"http://r/v2/a/blobs/x","registry":"ftp://r"}"#, "registry"),
            (#"{"url":"http://r/v2/a/blobs/x","registry":"http://r/"}"#, "registry"),
            (#"{"url":"http://other/v2/a/blobs/x","registry":"http://r","digest":"sha256:\#(String(repeating: "ab", count: 32))"}"#, "registry"),
            (#"{"url":"http://r/v2/a/blobs/x","registry":"http://r"}"#, "digest"),
        ]
        for (body, field) in cases {
            #expect { try OpenTaskRequest(parsing: Array(body.utf8)) } throws: { ($0 as? ProtocolError)?.description.contains(field) == true }
        }
    }

    @Test("piece digests: in metadata and on have lines, round trip; a bad index, digest, or a digest for a piece the line does not name is refused")
    func pieceDigests() throws {
        let d0 = SHA256Digest(bytes: SHA256Hasher.hash([0])), d3 = SHA256Digest(bytes: SHA256Hasher.hash([3]))
        let m = TaskMetadata(id: id, contentLength: 40 << 20, pieceLength: 4 << 20, pieces: PieceSet([0, 3]), pieceDigests: [0: d0!, 3: d3!])
        #expect(try TaskMetadata(parsing: m.json.serializedBytes) == m)
        #expect(m.json["pieceSHA256"]?["3"]?.string == d3!.hex)
        #expect(TaskMetadata(id: id, contentLength: 1, pieceLength: 4 << 20).json["pieceSHA256"] == nil, "absent when none are known")
        let have = AvailabilityEvent.have(PieceSet([3, 4]), sha256: [3: d3!])
        var d = AvailabilityDecoder()
        #expect(try d.feed(have.line) == [have])
        let hex = d0!.hex
        let bad: [(String, String)] = [
            (#"{"have":"3","sha256":{"4":"\#(hex)"}}"#, "does not"), (#"{"have":"3","sha256":{"3":"xyz"}}"#, "64 lowercase hex"),
            (#"{"have":"3","sha256":{"-3":"\#(hex)"}}"#, "piece index"), (#"{"have":"3","sha256":["\#(hex)"]}"#, "object"),
        ]
        for (line, why) in bad {
            var d = AvailabilityDecoder()
            #expect { try d.feed(Array(line.utf8) + [10]) } throws: { ($0 as? ProtocolError)?.description.contains(why) == true }
        }
        // Several bad digests: the error names the first in key order, however the line was built.
        for order in [#"{"2":"x","1":"y"}"#, #"{"1":"y","2":"x"}"#] {
            var d = AvailabilityDecoder()
            #expect { try d.feed(Array(#"{"have":"1-2","sha256":\#(order)}"#.utf8) + [10]) } throws: {
                ($0 as? ProtocolError)?.description.contains("piece 1's digest") == true
            }
        }
        // Metadata: an index past the task's pieces.
        var o = m.json.object!
        o["pieceSHA256"] = ["10": .string(hex)]
        #expect { try TaskMetadata(json: .object(o)) } throws: { ($0 as? ProtocolError)?.description.contains("below 10") == true }
    }

    @Test("availability events are one JSON line each; the decoder gives the same events however the bytes are split")
    func availability() throws {
        let m = TaskMetadata(id: id, contentLength: 40 << 20, pieceLength: 4 << 20, pieces: PieceSet([0]))
        let events: [AvailabilityEvent] = [.snapshot(m), .have(PieceSet([1, 2])), .heartbeat, .have(PieceSet([3])), .failed("origin said 500"), .complete]
        var bytes: [UInt8] = []
        for e in events { bytes += e.line }
        #expect(bytes.filter { $0 == 10 }.count == events.count)
        for split in [1, 2, 7, 50, bytes.count] {
            var d = AvailabilityDecoder()
            var got: [AvailabilityEvent] = []
            var i = 0
            while i < bytes.count {
                got += try d.feed(bytes[i..<min(bytes.count, i + split)])
                i += split
            }
            #expect(got == events, "split \(split)")
        }
        // After a snapshot of 10 pieces, an index past them is refused.
        var d = AvailabilityDecoder()
        _ = try d.feed(AvailabilityEvent.snapshot(m).line)
        #expect(throws: ProtocolError.self) { try d.feed(Array(#"{"have":"10"}"#.utf8) + [10]) }
        var small = AvailabilityDecoder(maxLineLength: 8)
        #expect(throws: ProtocolError.self) { try small.feed(Array(repeating: UInt8(ascii: " "), count: 9)) }
        #expect(throws: ProtocolError.self) { try AvailabilityEvent(parsingLine: Array(#"{"what":1}"#.utf8)) }
    }

    @Test("paths, CRC values and waits")
    func paths() {
        #expect(PieceProtocol.piecePath(id, 3, waitMilliseconds: 500) == "/tasks/\(id)/pieces/3?wait=500")
        #expect(PieceProtocol.availabilityPath(id) == "/tasks/\(id)/pieces")
        #expect(PieceProtocol.crcValue(0xAB) == "000000ab")
        #expect(PieceProtocol.parseCRC("000000ab") == 0xAB && PieceProtocol.parseCRC("xyz") == nil && PieceProtocol.parseCRC("123456789") == nil)
        #expect(PieceProtocol.parseCRC("DEADbeef") == 0xDEAD_BEEF && PieceProtocol.parseCRC("0") == 0 && PieceProtocol.parseCRC("") == nil)
        // Found by tools/fuzz protocol: a sign was taken for part of the value.
        for signed in ["-0", "+1", "+0000001", " 1", "1 "] { #expect(PieceProtocol.parseCRC(signed) == nil, "\(signed)") }
        #expect(PieceProtocol.parseWait(nil) == .success(nil))
        #expect(PieceProtocol.parseWait("250") == .success(250))
        #expect(PieceProtocol.parseWait("99999999") == .success(PieceProtocol.maxWaitMilliseconds))
        if case .success = PieceProtocol.parseWait("-3") { Issue.record("negative wait accepted") }
    }
}

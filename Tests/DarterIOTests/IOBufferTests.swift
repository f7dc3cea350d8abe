import Testing
import DarterIO
import DarterCore

@Suite("IOBuffer")
struct IOBufferTests {
    @Test("capacity is rounded up to whole 4 KiB pages", arguments: [(0, 4096), (1, 4096), (4096, 4096), (4097, 8192), (100_000, 102_400)])
    func capacityRounding(requested: Int, expected: Int) {
        let b = IOBuffer(capacity: requested)
        #expect(b.capacity == expected)
    }

    @Test("address is page aligned and memory starts zeroed", arguments: [1, 4096, 12_345, 1 << 20])
    func alignmentAndZero(capacity: Int) {
        let b = IOBuffer(capacity: capacity)
        b.withUnsafeMutableBytes { raw in
            #expect(Int(bitPattern: raw.baseAddress) % directIOAlignment == 0)
            #expect(raw.count == b.capacity)
            #expect(raw.allSatisfy { $0 == 0 })
        }
    }

    @Test("alignUp / alignDown")
    func alignHelpers() {
        #expect(alignUp(0) == 0)
        #expect(alignUp(1) == 4096)
        #expect(alignUp(4096) == 4096)
        #expect(alignUp(4097) == 8192)
        #expect(alignDown(4095) == 0)
        #expect(alignDown(8191) == 4096)
        #expect(alignDown(8192) == 8192)
    }

    @Test("copyBytes / bytes round-trip, subscript, fill, equals")
    func copyRoundTrip() {
        let data = SplitMix64.bytes(5000, seed: 1)
        let b = IOBuffer(capacity: 8192)
        b.copyBytes(from: data, at: 100)
        #expect(b.bytes(100..<5100) == data)
        #expect(b.bytes(0..<100).allSatisfy { $0 == 0 })
        #expect(b.bytes(5100..<8192).allSatisfy { $0 == 0 })
        #expect(b[100] == data[0])
        #expect(b[5099] == data[4999])

        b[0] = 0xAB
        #expect(b[0] == 0xAB)
        #expect(b.bytes(0..<1) == [0xAB])

        // A non-contiguous source takes the element-by-element path.
        b.copyBytes(from: (0..<50).lazy.map { UInt8($0 * 3) }, at: 6000)
        #expect(b.bytes(6000..<6050) == (0..<50).map { UInt8($0 * 3) })

        b.fill(0x5A, range: 7000..<7100)
        #expect(b.bytes(6999..<7101) == [0] + [UInt8](repeating: 0x5A, count: 100) + [0])

        let c = IOBuffer(capacity: 4096)
        c.copyBytes(from: b, range: 100..<1100, at: 3)
        #expect(c.bytes(3..<1003) == Array(data[0..<1000]))
        #expect(holds(c.equals(3..<1003, b, 100..<1100)))
        #expect(!holds(c.equals(3..<1003, b, 101..<1101)))
        #expect(!holds(c.equals(3..<1003, b, 100..<1099)))  // different lengths never equal
        c[500] ^= 1
        #expect(!holds(c.equals(3..<1003, b, 100..<1100)))
    }

    @Test("copyBytes within one buffer handles overlap (memmove)")
    func overlappingCopy() {
        let b = IOBuffer(capacity: 4096)
        b.copyBytes(from: (0..<100).map { UInt8($0) }, at: 0)
        b.copyBytes(from: b, range: 0..<100, at: 10)
        #expect(b.bytes(10..<110) == (0..<100).map { UInt8($0) })
    }

    @Test("SplitMix64.bytes is the generator's words, little-endian, cut to length; seeds differ")
    func seededBytes() {
        var rng = SplitMix64(seed: 5)
        let words = (0..<3).map { _ in rng.next() }
        let expected = words.flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (8 * UInt64($0))) } }
        #expect(SplitMix64.bytes(21, seed: 5) == Array(expected.prefix(21)))
        #expect(SplitMix64.bytes(0, seed: 5).isEmpty)
        #expect(SplitMix64.bytes(64, seed: 5) != SplitMix64.bytes(64, seed: 6))
    }

    @Test("fillPattern / matchesPattern detect any changed byte")
    func patternDetectsChange() {
        let n = 64 << 10
        let b = IOBuffer(capacity: n)
        b.fillPattern(seed: 0xDA27, streamOffset: 0, range: 0..<n)
        #expect(holds(b.matchesPattern(seed: 0xDA27, streamOffset: 0, range: 0..<n)))
        #expect(!holds(b.matchesPattern(seed: 0xDA28, streamOffset: 0, range: 0..<n)))
        #expect(!holds(b.matchesPattern(seed: 0xDA27, streamOffset: 8, range: 0..<n)))
        // The pattern is not trivially constant.
        #expect(b.bytes(0..<8) != b.bytes(8..<16))
        var rng = SplitMix64(seed: 9)
        for _ in 0..<200 {
            let i = Int.random(in: 0..<n, using: &rng)
            let bit = UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            b[i] ^= bit
            #expect(!holds(b.matchesPattern(seed: 0xDA27, streamOffset: 0, range: 0..<n)), "byte \(i)")
            // Only the word holding the change mismatches.
            let word = i & ~7
            #expect(holds(b.matchesPattern(seed: 0xDA27, streamOffset: 0, range: 0..<word)))
            #expect(holds(b.matchesPattern(seed: 0xDA27, streamOffset: Int64(word + 8), range: (word + 8)..<n)))
            b[i] ^= bit
        }
        #expect(holds(b.matchesPattern(seed: 0xDA27, streamOffset: 0, range: 0..<n)))
    }

    @Test("any slice of a pattern stream regenerates from its stream offset")
    func patternSlices() {
        let n = 32 << 10
        let whole = IOBuffer(capacity: n)
        whole.fillPattern(seed: 77, streamOffset: 1 << 40, range: 0..<n)
        for (start, count, at) in [(0, 8, 0), (8, 4096, 16), (12_288, 8192, 0), (n - 8, 8, 4088), (1024, 0, 0)] {
            let part = IOBuffer(capacity: 16 << 10)
            part.fillPattern(seed: 77, streamOffset: (1 << 40) + Int64(start), range: at..<(at + count))
            #expect(holds(part.equals(at..<(at + count), whole, start..<(start + count))), "slice at \(start)")
            #expect(holds(whole.matchesPattern(seed: 77, streamOffset: (1 << 40) + Int64(start), range: start..<(start + count))))
        }
    }

    @Test("crc32c(range) equals CRC32C.checksum of the same bytes")
    func crcOfRange() {
        let b = IOBuffer(capacity: 100_000)
        b.fillPattern(seed: 3, streamOffset: 0, range: 0..<b.capacity)
        for range in [0..<0, 0..<1, 5..<1000, 0..<b.capacity, 4096..<(4096 + 3 * 8192 + 1), 17..<99_999] {
            #expect(b.crc32c(range) == CRC32C.checksum(b.bytes(range)), "\(range)")
            #expect(b.crc32c(range, seed: 0xFEED) == CRC32C.checksum(b.bytes(range), seed: 0xFEED))
        }
        // Continuation across ranges.
        #expect(b.crc32c(5000..<9000, seed: b.crc32c(0..<5000)) == b.crc32c(0..<9000))
    }

    @Test("a range past the end traps")
    func outOfRangeTraps() async {
        await #expect(processExitsWith: .failure) {
            let b = IOBuffer(capacity: 4096)
            _ = b.bytes(0..<4097)
        }
    }
}

@Suite("SHA-256 of IOBuffer ranges")
struct IOBufferHashTests {
    @Test("update from an IOBuffer range")
    func ioBufferRange() {
        let data = SplitMix64.bytes(10_000, seed: 11)
        let buffer = IOBuffer(capacity: 16_384)
        buffer.copyBytes(from: data, at: 1000)
        var h = SHA256Hasher()
        h.update(buffer, range: 1000..<4000)
        h.update(buffer, range: 4000..<11_000)
        #expect(h.finalize() == SHA256Hasher.hash(data))

        var partial = SHA256Hasher()
        partial.update(buffer, range: 1001..<1001)
        #expect(partial.finalize() == SHA256Hasher.hash([UInt8]()))
    }

    @Test("firstIndex(of:in:) finds a pattern inside the range only, also across a near miss and at the edges")
    func firstIndex() {
        let buffer = IOBuffer(capacity: 4096)
        let text = Array("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody\r\n\r\n".utf8)
        buffer.copyBytes(from: text)
        let end = Array("\r\n\r\n".utf8)
        #expect(buffer.firstIndex(of: end, in: 0..<text.count) == 21)
        #expect(buffer.firstIndex(of: end, in: 22..<text.count) == text.count - 4)
        #expect(buffer.firstIndex(of: end, in: 0..<25) == 21)
        #expect(buffer.firstIndex(of: end, in: 0..<24) == nil, "a match must end inside the range")
        #expect(buffer.firstIndex(of: end, in: 0..<3) == nil)
        #expect(buffer.firstIndex(of: [], in: 0..<10) == nil)
        #expect(buffer.firstIndex(of: Array("HTTP".utf8), in: 0..<4) == 0)
        #expect(buffer.firstIndex(of: Array("\r\n".utf8), in: 15..<17) == 15)
    }
}

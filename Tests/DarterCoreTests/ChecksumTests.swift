import Testing
@testable import DarterCore

@Suite("CRC32C")
struct CRC32CTests {
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ([], 0),
    ]

    @Test("known vectors (RFC 3720 / iSCSI)", arguments: vectors)
    func knownVectors(input: [UInt8], expected: UInt32) {
        #expect(CRC32C.checksum(input) == expected)
        #expect(CRC32C.softwareChecksum(input) == expected)
    }

    @Test("the hardware path is in use on this x86-64 host")
    func hardwareAvailable() {
        #if arch(x86_64)
        // SSE4.2 is present on every x86-64 CI machine; without it the hw/sw comparisons below are vacuous.
        #expect(CRC32C.isHardwareAccelerated)
        #endif
    }

    static let lengths: [Int] = {
        var l = Array(0...100)
        let block = 8192
        for k in 1...4 {
            for d in -9...9 { l.append(3 * block * k + d) }
        }
        for d in [-1, 0, 1, 7, 8, 9] { l.append(block + d); l.append(2 * block + d) }
        l += [1 << 20, (1 << 20) + 3, (1 << 20) - 5, 3 * block * 43 + 5]
        return l
    }()

    @Test("hardware path equals software path for many lengths")
    func hardwareMatchesSoftware() {
        let data = SplitMix64.bytes(Self.lengths.max()!, seed: 42)
        for n in Self.lengths {
            let slice = Array(data[0..<n])
            let hw = CRC32C.checksum(slice)
            let sw = CRC32C.softwareChecksum(slice)
            #expect(hw == sw, "length \(n)")
        }
    }

    @Test("hardware path equals software path at unaligned start addresses and with seeds")
    func unalignedAndSeeded() {
        let data = SplitMix64.bytes(3 * 8192 * 2 + 64, seed: 7)
        for start in 0..<9 {
            for n in [0, 1, 15, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1, 3 * 8192 * 2 + 3] {
                let slice = data[start..<(start + n)]  // ArraySlice: contiguous, unaligned base address
                let seed = UInt32(truncatingIfNeeded: start &* 0x9E37_79B9)
                #expect(CRC32C.checksum(slice, seed: seed) == CRC32C.softwareChecksum(Array(slice), seed: seed), "start \(start) length \(n)")
            }
        }
    }

    @Test("non-contiguous collections give the same checksum")
    func nonContiguous() {
        let bytes = Array("123456789".utf8)
        #expect(CRC32C.checksum(bytes.lazy.map { $0 }) == 0xE306_9283)
        #expect(CRC32C.checksum(repeatElement(UInt8(0), count: 32)) == 0x8A91_36AA)
    }

    @Test("seed continuation: crc(a + b) == crc(b, seed: crc(a))")
    func seedContinuation() {
        let data = SplitMix64.bytes(3 * 8192 * 3 + 100, seed: 99)
        let whole = CRC32C.checksum(data)
        for split in [0, 1, 7, 8, 100, 8191, 8192, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1, 40_000, data.count - 1, data.count] {
            let a = Array(data[..<split]), b = Array(data[split...])
            #expect(CRC32C.checksum(b, seed: CRC32C.checksum(a)) == whole, "split \(split)")
            #expect(CRC32C.softwareChecksum(b, seed: CRC32C.softwareChecksum(a)) == whole, "sw split \(split)")
        }
        // Many small pieces.
        var crc: UInt32 = 0
        var i = 0
        var step = 1
        while i < data.count {
            let end = min(data.count, i + step)
            crc = CRC32C.checksum(data[i..<end], seed: crc)
            i = end
            step = step * 3 % 9001 + 1
        }
        #expect(crc == whole)
    }

    @Test("one changed bit changes the checksum")
    func detectsBitFlip() {
        var data = SplitMix64.bytes(4096, seed: 3)
        let original = CRC32C.checksum(data)
        for i in stride(from: 0, to: data.count, by: 97) {
            data[i] ^= 0x10
            #expect(CRC32C.checksum(data) != original)
            data[i] ^= 0x10
        }
        #expect(CRC32C.checksum(data) == original)
    }
}

@Suite("SHA-256")
struct SHA256Tests {
    @Test("known vectors (FIPS 180-2)", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(input: String, expected: String) {
        let digest = SHA256Hasher.hash(Array(input.utf8))
        #expect(digest.count == 32)
        #expect(Hex.encode(digest) == expected)
    }

    @Test("one million 'a' fed in uneven chunks")
    func millionA() {
        var h = SHA256Hasher()
        var left = 1_000_000
        var chunk = 1
        while left > 0 {
            let n = min(left, chunk)
            h.update([UInt8](repeating: UInt8(ascii: "a"), count: n))
            left -= n
            chunk = chunk * 7 % 65_537 + 1
        }
        #expect(Hex.encode(h.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("incremental equals one-shot, at every split point of a small input")
    func incrementalEqualsOneShot() {
        let data = SplitMix64.bytes(300, seed: 5)
        let oneShot = SHA256Hasher.hash(data)
        for split in 0...data.count {
            var h = SHA256Hasher()
            h.update(data[..<split])
            h.update(data[split...])
            #expect(h.finalize() == oneShot, "split \(split)")
        }
        // A non-contiguous collection takes the copying path.
        var h = SHA256Hasher()
        h.update(data.lazy.map { $0 })
        #expect(h.finalize() == oneShot)
    }
}

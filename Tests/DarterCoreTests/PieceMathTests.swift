import Testing
@testable import DarterCore

private let MiB: Int64 = 1 << 20
private let GiB: Int64 = 1 << 30

@Suite("PieceMath")
struct PieceMathTests {
    static let defaults: [(Int64?, Int)] = [
        (nil, 1 << 20),
        (0, 1 << 20),
        (-1, 1 << 20),
        (1, 1 << 20),
        (256 * MiB, 1 << 20),
        (1 * GiB, 1 << 20),               // 1 GiB / 2000 ≈ 0.5 MiB → 1 MiB
        (2000 * MiB, 1 << 20),            // exactly 1 MiB per 2000 pieces
        (2000 * MiB + 1999, 1 << 20),     // integer division: still 1 MiB
        (2000 * MiB + 2000, 2 << 20),     // one byte per piece more → next power of two
        (4 * GiB, 4 << 20),               // 4 GiB / 2000 ≈ 2.05 MiB → 4 MiB
        (16000 * MiB, 8 << 20),
        (16000 * MiB + 2000, 16 << 20),
        (128000 * MiB, 64 << 20),
        (128000 * MiB + 2000, 64 << 20),  // would be 128 MiB: clamped
        (400 * GiB, 64 << 20),
        (Int64.max, 64 << 20),
    ]

    @Test("default piece length: next_power_of_two(length / 2000) clamped to 1–64 MiB", arguments: defaults)
    func defaultPieceLength(contentLength: Int64?, expected: Int) {
        #expect(PieceMath.defaultPieceLength(contentLength: contentLength) == expected)
    }

    @Test("default piece length is a valid power of two, monotonic, and gives about 2000 pieces at most")
    func defaultPieceLengthProperties() {
        var rng = SplitMix64(seed: 500)
        var lengths: [Int64] = (0..<2000).map { _ in Int64.random(in: 1...(400 * GiB), using: &rng) }
        lengths += (0..<40).map { Int64(1) << $0 }
        lengths.sort()
        var previous = 0
        for n in lengths {
            let p = PieceMath.defaultPieceLength(contentLength: n)
            #expect(p & (p - 1) == 0, "\(n) → \(p) is not a power of two")
            #expect(PieceMath.isValidPieceLength(p))
            #expect(p >= previous, "not monotonic at \(n)")
            previous = p
            let count = PieceMath.pieceCount(contentLength: n, pieceLength: p)
            if p < PieceMath.maximumPieceLength {
                // length / 2000 rounds down, so 2000 pieces plus a sub-2000-byte remainder can occur.
                #expect(count <= 2001, "\(n) bytes → \(count) pieces of \(p)")
            }
            if p > PieceMath.minimumDefaultPieceLength {
                #expect(count > 1000, "\(n) bytes → only \(count) pieces of \(p): a smaller power of two would do")
            }
        }
    }

    static let counts: [(Int64, Int, Int)] = [
        (0, 4096, 0), (1, 4096, 1), (4095, 4096, 1), (4096, 4096, 1), (4097, 4096, 2),
        (8192, 4096, 2), (100 * GiB, 64 << 20, 1600), (100 * GiB + 1, 64 << 20, 1601), (5 * MiB, 4 << 20, 2),
    ]

    @Test("piece count", arguments: counts)
    func pieceCount(contentLength: Int64, pieceLength: Int, expected: Int) {
        #expect(PieceMath.pieceCount(contentLength: contentLength, pieceLength: pieceLength) == expected)
    }

    @Test("piece offsets and lengths; the last piece may be short")
    func lengths() {
        let pl = 4 << 20
        let n = 10 * MiB + 123
        #expect(PieceMath.pieceCount(contentLength: n, pieceLength: pl) == 3)
        #expect(PieceMath.offset(ofPiece: 0, pieceLength: pl) == 0)
        #expect(PieceMath.offset(ofPiece: 2, pieceLength: pl) == 8 * MiB)
        #expect(PieceMath.offset(ofPiece: 100_000, pieceLength: 64 << 20) == 100_000 * 64 * MiB)  // no Int32 overflow
        #expect(PieceMath.length(ofPiece: 0, contentLength: n, pieceLength: pl) == pl)
        #expect(PieceMath.length(ofPiece: 1, contentLength: n, pieceLength: pl) == pl)
        #expect(PieceMath.length(ofPiece: 2, contentLength: n, pieceLength: pl) == 2 * (1 << 20) + 123)
        #expect(PieceMath.length(ofPiece: 3, contentLength: n, pieceLength: pl) == 0)
        #expect(PieceMath.length(ofPiece: 1, contentLength: 8 * MiB, pieceLength: pl) == pl, "exact multiple: last piece is full")
        #expect(PieceMath.length(ofPiece: 0, contentLength: 0, pieceLength: pl) == 0)
        #expect(PieceMath.length(ofPiece: 0, contentLength: 1, pieceLength: pl) == 1)
        // The lengths add up to the content length.
        let totals: [Int64] = [0, 1, 4095, 4096, 4097, 3 * 4096 + 1]
        for total in totals {
            let count = PieceMath.pieceCount(contentLength: total, pieceLength: 4096)
            let sum = (0..<count).reduce(Int64(0)) { $0 + Int64(PieceMath.length(ofPiece: $1, contentLength: total, pieceLength: 4096)) }
            #expect(sum == total)
        }
    }

    static let coverings: [(Range<Int64>, Range<Int>)] = [
        (0..<0, 0..<0), (5000..<5000, 0..<0),
        (0..<1, 0..<1), (0..<4096, 0..<1), (0..<4097, 0..<2), (4095..<4096, 0..<1), (4095..<4097, 0..<2),
        (4096..<4097, 1..<2), (4096..<8192, 1..<2), (4096..<8193, 1..<3), (8191..<8192, 1..<2), (1..<40_960, 0..<10),
    ]

    @Test("pieces covering a byte range", arguments: coverings)
    func piecesCovering(range: Range<Int64>, expected: Range<Int>) {
        #expect(PieceMath.pieces(covering: range, pieceLength: 4096) == expected)
    }

    @Test("pieces(covering:) agrees with a brute-force scan")
    func piecesCoveringBruteForce() {
        let pl = 4096
        for lo in stride(from: Int64(0), to: 20_000, by: 977) {
            for len in [Int64(0), 1, 100, 4095, 4096, 4097, 9000] {
                let r = lo..<(lo + len)
                let expected = (0..<10).filter { i in
                    let s = Int64(i * pl), e = s + Int64(pl)
                    return r.overlaps(s..<e)
                }
                let got = PieceMath.pieces(covering: r, pieceLength: pl)
                #expect(Array(got) == expected, "\(r)")
            }
        }
    }

    @Test("valid explicit piece lengths: multiples of 4 KiB from 4 KiB to 64 MiB", arguments: [
        (4096, true), (8192, true), (12_288, true), (4 << 20, true), (64 << 20, true),
        (0, false), (-4096, false), (1, false), (4095, false), (6144, false), ((64 << 20) + 4096, false), (128 << 20, false),
    ])
    func validPieceLength(length: Int, valid: Bool) {
        #expect(PieceMath.isValidPieceLength(length) == valid)
    }
}

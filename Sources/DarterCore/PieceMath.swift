/// Piece arithmetic: how content is cut into pieces. Pure.
public enum PieceMath {
    /// 1 MiB: a piece is passed on only once it is here whole and checked, so each hop of the
    /// swarm costs a piece's time at the per-child rate (measured, 8 peers × 200 Mbit/s ×
    /// 256 MiB: p99 1.51× the ideal with 4 MiB pieces, 1.33× with 1 MiB, 1.35× with 512 KiB).
    public static let minimumDefaultPieceLength = 1 << 20
    /// The default aims at about this many pieces per object (Dragonfly: 500, with 4 MiB at least).
    public static let targetPieceCount: Int64 = 2000
    public static let maximumPieceLength = 64 << 20
    /// Smallest piece length accepted when set explicitly: one direct-I/O block.
    public static let minimumPieceLength = 4096

    /// next_power_of_two(length / 2000) clamped to 1–64 MiB (1 MiB up to 2 GiB, 64 MiB from
    /// 128 GiB); 1 MiB when unknown.
    public static func defaultPieceLength(contentLength: Int64?) -> Int {
        guard let n = contentLength, n > 0 else { return minimumDefaultPieceLength }
        var p = 1
        let target = max(1, n / targetPieceCount)
        while Int64(p) < target { p <<= 1 }
        return min(max(p, minimumDefaultPieceLength), maximumPieceLength)
    }

    /// Whether an explicitly chosen piece length is usable: a multiple of 4 KiB (direct I/O)
    /// from 4 KiB to 64 MiB.
    public static func isValidPieceLength(_ n: Int) -> Bool {
        n >= minimumPieceLength && n <= maximumPieceLength && n % minimumPieceLength == 0
    }

    /// Number of pieces for `contentLength` bytes (0 for empty content).
    public static func pieceCount(contentLength: Int64, pieceLength: Int) -> Int {
        Int((contentLength + Int64(pieceLength) - 1) / Int64(pieceLength))
    }

    /// Byte offset of piece `index`.
    public static func offset(ofPiece index: Int, pieceLength: Int) -> Int64 { Int64(index) * Int64(pieceLength) }

    /// Length of piece `index` (the last one may be short).
    public static func length(ofPiece index: Int, contentLength: Int64, pieceLength: Int) -> Int {
        let start = offset(ofPiece: index, pieceLength: pieceLength)
        return Int(max(0, min(Int64(pieceLength), contentLength - start)))
    }

    /// The pieces that hold bytes `range` (empty range: none).
    public static func pieces(covering range: Range<Int64>, pieceLength: Int) -> Range<Int> {
        guard !range.isEmpty else { return 0..<0 }
        return Int(range.lowerBound / Int64(pieceLength))..<Int((range.upperBound - 1) / Int64(pieceLength) + 1)
    }
}

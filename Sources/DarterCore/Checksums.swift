import CDarterChecksum
import CCrypto

/// CRC32C (Castagnoli), hardware accelerated with SSE4.2 when available.
public enum CRC32C {
    public static func checksum<C: Collection<UInt8>>(_ bytes: C, seed: UInt32 = 0) -> UInt32 {
        if let r = bytes.withContiguousStorageIfAvailable({ darter_crc32c(seed, $0.baseAddress, $0.count) }) { return r }
        let a = Array(bytes)
        return a.withUnsafeBytes { darter_crc32c(seed, $0.baseAddress, $0.count) }
    }
    /// The table-driven implementation, for cross-checking the hardware path.
    public static func softwareChecksum(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { darter_crc32c_sw(seed, $0.baseAddress, $0.count) }
    }
    public static var isHardwareAccelerated: Bool { darter_crc32c_hw_available() != 0 }
    /// CRC32C of memory the caller owns for the call (an I/O buffer's range).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        darter_crc32c(seed, bytes.baseAddress, bytes.count)
    }
}

/// Incremental SHA-256 through libcrypto's EVP interface (uses SHA-NI when present).
public struct SHA256Hasher: ~Copyable, @unchecked Sendable {
    // Owned EVP context, freed in deinit.
    private let context: OpaquePointer

    public init() {
        context = EVP_MD_CTX_new()!
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }
    deinit { EVP_MD_CTX_free(context) }

    public mutating func update<C: Collection<UInt8>>(_ bytes: C) {
        if bytes.withContiguousStorageIfAvailable({ EVP_DigestUpdate(context, $0.baseAddress, $0.count) }) == nil {
            let a = Array(bytes)
            a.withUnsafeBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        }
    }

    /// Bytes in memory the caller owns for the call (an I/O buffer's range).
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
    }

    /// The 32-byte digest. The hasher is consumed.
    public consuming func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 32
        out.withUnsafeMutableBytes { _ = EVP_DigestFinal_ex(context, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &len) }
        return out
    }

    /// SHA-256 of `bytes` in one call.
    public static func hash<C: Collection<UInt8>>(_ bytes: C) -> [UInt8] {
        var h = SHA256Hasher()
        h.update(bytes)
        return h.finalize()
    }
}

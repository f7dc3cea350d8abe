#if canImport(Glibc)
import Glibc
#endif
import CDarterShim

/// An open file descriptor. Ownership (who closes it) is the holder's business.
public struct FileDescriptor: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public var description: String { "fd \(rawValue)" }
}

/// Flags for opening files (a subset of open(2)'s).
public struct OpenOptions: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let readOnly = OpenOptions([])
    public static let readWrite = OpenOptions(rawValue: O_RDWR)
    public static let writeOnly = OpenOptions(rawValue: O_WRONLY)
    public static let create = OpenOptions(rawValue: O_CREAT)
    public static let exclusive = OpenOptions(rawValue: O_EXCL)
    public static let truncate = OpenOptions(rawValue: O_TRUNC)
    public static let append = OpenOptions(rawValue: O_APPEND)
    /// O_DIRECT: bypass the page cache. Buffers, offsets and lengths must be aligned.
    public static let direct = OpenOptions(rawValue: darter_o_direct())
    public static let directory = OpenOptions(rawValue: O_DIRECTORY)
    /// O_NONBLOCK: opening a FIFO does not wait for a writer (regular files are unaffected).
    public static let nonBlocking = OpenOptions(rawValue: O_NONBLOCK)

    var kernelFlags: Int32 { rawValue | O_CLOEXEC }
}

/// Space on the filesystem that holds a path (statvfs(3)).
public struct FileSystemSpace: Sendable, Equatable {
    public var totalBytes: Int64
    public var availableBytes: Int64
    public init(totalBytes: Int64, availableBytes: Int64) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
    }
    public var usedFraction: Double {
        totalBytes > 0 ? Double(totalBytes - availableBytes) / Double(totalBytes) : 0
    }
}

/// Synchronous syscalls used at startup and for rare metadata work. Each retries EINTR and
/// throws a typed ``Errno``. Hot-path I/O goes through an ``IOBackend`` instead.
public enum SystemCalls {
    /// open(2).
    public static func open(_ path: String, _ options: OpenOptions, mode: UInt32 = 0o644) throws(Errno) -> FileDescriptor {
        let fd = try retryingOnInterrupt { Glibc.open(path, options.kernelFlags, mode) }
        return FileDescriptor(rawValue: fd)
    }

    /// close(2). EINTR is not retried: Linux always releases the descriptor.
    public static func close(_ fd: FileDescriptor) throws(Errno) {
        if Glibc.close(fd.rawValue) < 0 && errno != EINTR { throw Errno.current }
    }

    /// fstat(2)'s st_size.
    public static func fileSize(_ fd: FileDescriptor) throws(Errno) -> Int64 {
        var st = stat()
        _ = try retryingOnInterrupt { fstat(fd.rawValue, &st) }
        return Int64(st.st_size)
    }

    /// getcwd(3) ("." if it cannot be had).
    public static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether an open descriptor is a regular file (fstat(2)'s S_IFREG).
    public static func isRegularFile(_ fd: FileDescriptor) throws(Errno) -> Bool {
        var st = stat()
        _ = try retryingOnInterrupt { fstat(fd.rawValue, &st) }
        return st.st_mode & S_IFMT == S_IFREG
    }

    /// A small file's bytes (configuration, credentials): open(2), read(2) until EOF, close(2).
    /// Throws EFBIG past `limit` bytes. Room for fstat(2)'s size is reserved first, so a large
    /// file (a test's content) is not copied each time the array grows.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 20) throws(Errno) -> [UInt8] {
        let fd = try open(path, .readOnly)
        defer { try? close(fd) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(Int64(limit), max(0, try fileSize(fd)))) + 1)
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = try chunk.withUnsafeMutableBytes { b in Result { () throws(Errno) in try retryingOnInterrupt { Glibc.read(fd.rawValue, b.baseAddress, b.count) } } }.get()
            if n == 0 { return bytes }
            bytes += chunk[..<n]
            if bytes.count > limit { throw Errno(rawValue: EFBIG) }
        }
    }

    /// Whether a path exists (stat(2) succeeds).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// mkdir(2) for every missing component (like `mkdir -p`).
    public static func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws(Errno) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            if mkdir(prefix, mode) < 0 && errno != EEXIST { throw Errno.current }
            prefix += "/"
        }
    }

    /// The names in a directory, without "." and "..".
    public static func listDirectory(_ path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno.current }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// statvfs(3) for the filesystem holding `path`.
    public static func fileSystemSpace(_ path: String) throws(Errno) -> FileSystemSpace {
        var s = statvfs()
        _ = try retryingOnInterrupt { statvfs(path, &s) }
        let unit = Int64(s.f_frsize)
        return FileSystemSpace(totalBytes: Int64(s.f_blocks) * unit, availableBytes: Int64(s.f_bavail) * unit)
    }

    /// rename(2).
    public static func rename(_ from: String, _ to: String) throws(Errno) {
        _ = try retryingOnInterrupt { Glibc.rename(from, to) }
    }

    /// unlink(2).
    public static func unlink(_ path: String) throws(Errno) {
        _ = try retryingOnInterrupt { Glibc.unlink(path) }
    }

    /// rmdir(2).
    public static func removeDirectory(_ path: String) throws(Errno) {
        _ = try retryingOnInterrupt { Glibc.rmdir(path) }
    }

    /// fsync(2) on a directory, so a rename or create inside it is durable.
    public static func syncDirectory(_ path: String) throws(Errno) {
        let fd = try open(path, [.readOnly, .directory])
        defer { try? close(fd) }
        _ = try retryingOnInterrupt { fsync(fd.rawValue) }
    }

    /// Opens (creating) `path` and takes an exclusive flock(2) on it without waiting.
    /// Throws EWOULDBLOCK (`Errno.again`) when another process holds it. The lock lasts until
    /// the descriptor is closed.
    public static func lockFile(_ path: String) throws(Errno) -> FileDescriptor {
        let fd = try open(path, [.readWrite, .create], mode: 0o644)
        if flock(fd.rawValue, LOCK_EX | LOCK_NB) != 0 {
            let e = Errno.current
            try? close(fd)
            throw e
        }
        return fd
    }

    /// Large buffers (send chunks, pieces) come from mmap and go back to the kernel when
    /// freed, so a server's memory falls again after a burst (mallopt M_MMAP_THRESHOLD).
    public static func returnLargeAllocationsToKernel(threshold: Int = 128 << 10) {
        darter_malloc_mmap_threshold(Int32(threshold))
    }

    /// posix_fadvise(POSIX_FADV_WILLNEED): start reading a range into the page cache.
    public static func prefetch(_ fd: FileDescriptor, offset: Int64, length: Int64) {
        _ = posix_fadvise(fd.rawValue, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    /// Bytes of physical memory (sysconf(_SC_PHYS_PAGES) × page size; 0 if unknown).
    public static func physicalMemory() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size : 0
    }

    /// write(2) of `text` to standard error, unbuffered (logs and diagnostics).
    public static func writeStandardError(_ text: String) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { try? writeFully(2, $0) }
    }

    /// write(2) of all of `bytes` to `fd`, retrying EINTR and short writes (no offset). Blocks.
    private static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Errno) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = try retryingOnInterrupt { write(fd, base + done, bytes.count - done) }
            if n == 0 { throw Errno.ioError }
            done += n
        }
    }

    /// isatty(3): whether `fd` is a terminal (progress lines are for people).
    public static func isTerminal(_ fd: FileDescriptor) -> Bool { isatty(fd.rawValue) == 1 }

    /// write(2) of all of `buffer[range]` to `fd` (a pipe or a terminal: no offset), retrying
    /// EINTR and short writes. Blocks.
    public static func writeAll(_ fd: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>) throws(Errno) {
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.capacity)
        try writeFully(fd.rawValue, UnsafeRawBufferPointer(start: buffer.base + range.lowerBound, count: range.count))
    }

    /// Writes `bytes` to `path` so a reader sees the old file or the new one: `path.darter-tmp`
    /// (open(2) with `mode`, write(2) retrying EINTR and short writes, fchmod(2), fsync(2)), then
    /// rename(2) over `path`. The temporary file is removed on failure.
    public static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: UInt32) throws(Errno) {
        let tmp = path + ".darter-tmp"
        let fd = try open(tmp, [.writeOnly, .create, .truncate], mode: mode)
        do throws(Errno) {
            // Array.withUnsafeBytes rethrows untyped: the Errno comes back as a value.
            let written = bytes.withUnsafeBytes { b in Result { () throws(Errno) in try writeFully(fd.rawValue, b) } }
            try written.get()
            _ = fchmod(fd.rawValue, mode_t(mode))
            guard fsync(fd.rawValue) == 0 else { throw Errno.current }
            try close(fd)
        } catch {
            try? close(fd)
            try? unlink(tmp)
            throw error
        }
        do throws(Errno) { try rename(tmp, path) } catch { try? unlink(tmp); throw error }
    }

    /// stat(2)'s size of a path (nil when it does not exist).
    public static func fileSize(atPath path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    /// Wall-clock seconds since the epoch (CLOCK_REALTIME): persisted times, Date headers.
    public static func wallClockSeconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    /// Monotonic nanoseconds (CLOCK_MONOTONIC): the event loops' timers.
    public static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Monotonic milliseconds (CLOCK_MONOTONIC): timeouts and intervals.
    public static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The process environment (`environ`), as name → value.
    public static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }

    /// Resident set size of this process in bytes (from /proc/self/statm).
    public static func residentBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var size = 0, resident = 0
        guard withUnsafeMutablePointer(to: &size, { s in
            withUnsafeMutablePointer(to: &resident) { r in
                withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) }
            }
        }) == 2 else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

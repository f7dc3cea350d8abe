import Synchronization

/// A backend for tests: forwards to another backend but fails chosen calls the way disks do
/// (EIO, ENOSPC, a write that lands only partly).
public final class FaultInjectingBackend: IOBackend, @unchecked Sendable {
    public enum Operation: Sendable, Hashable { case open, read, write, dataSync, allocate, truncate, rename, unlink }

    public enum Fault: Sendable {
        /// The call fails with this error and does nothing.
        case fail(Errno)
        /// A write puts only its first `bytes` on disk, then fails with EIO.
        case tornWrite(bytes: Int)
        /// The call is carried out, but its completion arrives this much later (a slow disk).
        case slowCompletion(milliseconds: Int)
    }

    struct Rule {
        var operation: Operation
        var skip: Int
        var remaining: Int
        var fault: Fault
    }

    public let inner: any IOBackend
    public var name: String { "fault-injecting(\(inner.name))" }
    private let rules = Mutex<[Rule]>([])
    private let counts = Mutex<[Operation: Int]>([:])

    public init(wrapping inner: any IOBackend) { self.inner = inner }

    /// After `skip` more matching calls succeed, the next `times` ones get `fault`.
    public func inject(_ fault: Fault, on operation: Operation, skip: Int = 0, times: Int = 1) {
        rules.withLock { $0.append(Rule(operation: operation, skip: skip, remaining: times, fault: fault)) }
    }

    public func clearFaults() { rules.withLock { $0.removeAll() } }

    /// How many calls of `operation` reached this backend (faulted or not).
    public func count(_ operation: Operation) -> Int { counts.withLock { $0[operation] ?? 0 } }

    private func fault(for operation: Operation) -> Fault? {
        counts.withLock { $0[operation, default: 0] += 1 }
        return rules.withLock { rules in
            guard let i = rules.firstIndex(where: { $0.operation == operation && $0.remaining > 0 }) else { return nil }
            if rules[i].skip > 0 { rules[i].skip -= 1; return nil }
            rules[i].remaining -= 1
            return rules[i].fault
        }
    }

    private func check(_ operation: Operation) throws(Errno) {
        switch fault(for: operation) {
        case .fail(let e)?: throw e
        case .tornWrite?: throw Errno.ioError
        case .slowCompletion?, nil: return  // slow completions are modelled for writes only
        }
    }

    public func makeBuffer(capacity: Int) -> IOBuffer { inner.makeBuffer(capacity: capacity) }

    public func open(_ path: String, _ options: OpenOptions, mode: UInt32) async throws(Errno) -> FileDescriptor {
        try check(.open); return try await inner.open(path, options, mode: mode)
    }
    public func close(_ fd: FileDescriptor) async throws(Errno) { try await inner.close(fd) }
    public func read(_ fd: FileDescriptor, into buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        try check(.read); return try await inner.read(fd, into: buffer, range: range, at: offset)
    }
    public func write(_ fd: FileDescriptor, from buffer: borrowing IOBuffer, range: Range<Int>, at offset: Int64) async throws(Errno) -> Int {
        switch fault(for: .write) {
        case .fail(let e)?: throw e
        case .tornWrite(let bytes)?:
            // Keep whole direct-I/O blocks only when the range is aligned; a torn write still
            // leaves a prefix behind, as a power cut would.
            var keep = min(bytes, range.count)
            let aligned = offset % Int64(directIOAlignment) == 0 && range.lowerBound % directIOAlignment == 0
                && range.count % directIOAlignment == 0
            if aligned { keep = alignDown(keep) }
            if keep > 0 { _ = try? await inner.write(fd, from: buffer, range: range.lowerBound..<(range.lowerBound + keep), at: offset) }
            throw Errno.ioError
        case .slowCompletion(let ms)?:
            let n = try await inner.write(fd, from: buffer, range: range, at: offset)
            try? await Task.sleep(for: .milliseconds(ms))
            return n
        case nil:
            return try await inner.write(fd, from: buffer, range: range, at: offset)
        }
    }
    public func dataSync(_ fds: [FileDescriptor]) async throws(Errno) { try check(.dataSync); try await inner.dataSync(fds) }
    public func sync(_ fd: FileDescriptor) async throws(Errno) { try check(.dataSync); try await inner.sync(fd) }
    public func allocate(_ fd: FileDescriptor, offset: Int64, length: Int64, keepingSize: Bool) async throws(Errno) {
        try check(.allocate); try await inner.allocate(fd, offset: offset, length: length, keepingSize: keepingSize)
    }
    public func truncate(_ fd: FileDescriptor, length: Int64) async throws(Errno) { try check(.truncate); try await inner.truncate(fd, length: length) }
    public func rename(_ from: String, to: String) async throws(Errno) { try check(.rename); try await inner.rename(from, to: to) }
    public func unlink(_ path: String) async throws(Errno) { try check(.unlink); try await inner.unlink(path) }
}

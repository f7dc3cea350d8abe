import Dispatch
import DarterCore
import DarterIO
import Origin
import Synchronization

/// The origin's byte stream cut into pieces for ``Output`` (the no-daemon fallback). A few
/// piece buffers circulate: the HTTP client receives straight into them; libcurl's thread
/// copies into them and waits when all are on their way to the output.
final class OriginPieceSink: OriginDirectSink, @unchecked Sendable {
    let pieceLength: Int
    let io: any IOBackend
    let output: Output
    let progress: Progress

    // Stream state (one attempt at a time).
    private(set) var position: Int64
    private var current: SharedIOBuffer?
    private var fill = 0
    private var nextPiece: Int
    private var skip: Int64 = 0
    private var discard: SharedIOBuffer?
    private var discarding = false
    private(set) var refused = false
    private var status = 0

    private struct Shared {
        var free: [SharedIOBuffer] = []
        var made = 0
        var waiters: [@Sendable () -> Void] = []
        var writes: [Task<Void, Never>] = []
        var failure: GetError?
    }
    private let shared = Mutex(Shared())
    private let buffers = 3

    init(pieceLength: Int, io: any IOBackend, start: Int64, output: Output, progress: Progress) {
        self.pieceLength = pieceLength
        self.io = io
        self.output = output
        self.progress = progress
        position = start
        nextPiece = Int(start / Int64(pieceLength))
    }

    var failure: GetError? { shared.withLock { $0.failure } }

    /// After a failed attempt: the piece being filled is dropped; the next attempt asks from
    /// its start.
    func restartAtLastPiece() {
        position -= Int64(fill)
        progress.received.add(-Int64(fill), ordering: .relaxed)
        fill = 0
    }

    func receive(head: OriginResponseHead) -> Bool {
        status = head.status
        if head.status >= 400 { return true }  // its body is read and dropped; the status is reported
        if position > 0 {
            if head.status == 206, head.contentRange?.first == position { skip = 0 }
            else if head.status == 200 { skip = position }  // Range ignored: read past what we have
            else { return false }
        }
        if progress.total == nil, let total = head.totalLength { progress.total = total }
        return true
    }

    /// A free piece buffer, or nil (`wake` is called when one is back).
    private func takeBuffer(orWake wake: @escaping @Sendable () -> Void) -> SharedIOBuffer? {
        shared.withLock { s in
            if let b = s.free.popLast() { return b }
            if s.made < buffers {
                s.made += 1
                return SharedIOBuffer(io.makeBuffer(capacity: pieceLength))
            }
            s.waiters.append(wake)
            return nil
        }
    }

    private func submitPiece() {
        guard let piece = current, fill > 0 else { return }
        current = nil
        let (index, length) = (nextPiece, fill)
        nextPiece += 1
        fill = 0
        let task = Task { [self] in
            do throws(GetError) { try await output.accept(index, piece, length: length) } catch {
                shared.withLock { $0.failure = $0.failure ?? error }
            }
            let waiters = shared.withLock { s -> [@Sendable () -> Void] in
                s.free.append(piece)
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w() }
        }
        shared.withLock { $0.writes.append(task) }
    }

    func receive(body chunk: OriginChunk) -> Bool {
        if status >= 400 { return true }
        var start = 0
        if skip > 0 {
            let d = Int(min(skip, Int64(chunk.count)))
            skip -= Int64(d)
            start = d
        }
        while start < chunk.count {
            if failure != nil { return false }
            if current == nil {
                let ready = DispatchSemaphore(value: 0)
                guard let b = takeBuffer(orWake: { ready.signal() }) else { ready.wait(); continue }
                current = b
            }
            let n = min(chunk.count - start, pieceLength - fill)
            chunk.copy(into: current!.buffer, at: fill, from: start, count: n)
            advance(n)
            start += n
        }
        return true
    }

    func bodySpace(orWake wake: @escaping @Sendable () -> Void) -> OriginBodySpace {
        discarding = status >= 400 || skip > 0
        if discarding {
            if discard == nil { discard = SharedIOBuffer(IOBuffer(capacity: 256 << 10)) }
            let room = status >= 400 ? discard!.buffer.capacity : Int(min(skip, Int64(discard!.buffer.capacity)))
            return .space(BufferSpace(buffer: discard!, range: 0..<room))
        }
        if failure != nil { return .abort }
        if current == nil {
            guard let b = takeBuffer(orWake: wake) else { return .wait }
            current = b
        }
        return .space(BufferSpace(buffer: current!, range: fill..<pieceLength))
    }

    func bodyReceived(_ count: Int) -> Bool {
        if discarding {
            if skip > 0 { skip -= Int64(count) }
            return true
        }
        advance(count)
        return true
    }

    private func advance(_ n: Int) {
        fill += n
        position += Int64(n)
        progress.received.add(Int64(n), ordering: .relaxed)
        if fill == pieceLength { submitPiece() }
    }

    /// The stream ended: the last (short) piece goes out; every piece is awaited.
    func finishStream() async throws(GetError) {
        submitPiece()
        let writes = shared.withLock { $0.writes }
        for w in writes { await w.value }
        if let f = failure { throw f }
    }
}

/// The download's progress, and the line a terminal shows: bytes, rate, time left, and where
/// the bytes come from.
public final class Progress: @unchecked Sendable {
    private let state = Mutex<(total: Int64?, source: String)>((nil, ""))
    /// Bytes received (checked pieces, or the origin's stream).
    public let received = Atomic<Int64>(0)
    private let output = Mutex<Output?>(nil)
    private let started = ContinuousClock.now
    private var ticker: Task<Void, Never>?
    let enabled: Bool

    /// - Parameter enabled: draw the line (standard error is a terminal, and progress wanted).
    public init(enabled: Bool) { self.enabled = enabled }

    public var total: Int64? {
        get { state.withLock { $0.total } }
        set { state.withLock { $0.total = newValue } }
    }
    public var source: String {
        get { state.withLock { $0.source } }
        set { state.withLock { $0.source = newValue } }
    }
    var written: Output? {
        get { output.withLock { $0 } }
        set { output.withLock { $0 = newValue } }
    }

    public func start() {
        guard enabled else { return }
        ticker = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                if !Task.isCancelled { draw(final: false) }
            }
        }
    }

    public func stop(success: Bool) {
        ticker?.cancel()
        if enabled && success { draw(final: true) } else if enabled { SystemCalls.writeStandardError("\n") }
    }

    private func draw(final: Bool) {
        let done = max(received.load(ordering: .relaxed), written?.written.load(ordering: .relaxed) ?? 0)
        let elapsed = (ContinuousClock.now - started)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var line = "\r\u{1B}[K" + Self.bytes(done)
        if let total {
            line += " / \(Self.bytes(total)) (\(total > 0 ? Int(Double(done) * 100 / Double(total)) : 100)%)"
        }
        line += "  \(Self.bytes(Int64(rate)))/s"
        if !final, let total, rate > 0, done < total { line += "  ETA \(Self.duration(Double(total - done) / rate))" }
        if final { line += "  in \(Self.duration(seconds))" }
        line += "  from \(source)" + (final ? "\n" : "")
        SystemCalls.writeStandardError(line)
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format1(v)) + " " + units[u]
    }

    static func duration(_ s: Double) -> String {
        if s < 60 { return format1(s) + "s" }
        let m = Int(s) / 60
        return m < 60 ? "\(m)m\(Int(s) % 60)s" : "\(m / 60)h\(m % 60)m"
    }

    static func format1(_ v: Double) -> String {
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

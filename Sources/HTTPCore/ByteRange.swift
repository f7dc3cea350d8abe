/// What to send for a `Range` header (RFC 9110 §14.2), given the representation's length.
public enum HTTPRangeSelection: Sendable, Hashable {
    /// Send the whole representation with 200: no Range header, or one we must ignore
    /// (malformed, not `bytes`, or the content is empty).
    case full
    /// Send 206 with these bytes (inclusive, already clamped to the length) and
    /// `Content-Range: bytes first-last/length`.
    case partial(ClosedRange<Int>)
    /// Send 416 with `Content-Range: bytes */length`.
    case unsatisfiable
    /// Several satisfiable ranges were asked for. **Our choice: answer 200 with the full body**
    /// (RFC 9110 §14.2 lets a server ignore Range); we never build multipart/byteranges.
    /// The ranges are reported, clamped and in request order, for logging.
    case multiple([ClosedRange<Int>])
}

/// `Range: bytes=...` evaluation.
public enum HTTPByteRanges: Sendable {
    /// Evaluates a Range header value against a representation of `contentLength` bytes.
    ///
    /// - `a-b`: bytes a through b, b clamped to `length - 1`; unsatisfiable when a ≥ length.
    /// - `a-`: from a to the end.
    /// - `-n`: the last n bytes (all of them if n ≥ length); `-0` is unsatisfiable.
    /// - A set of several ranges where only one is satisfiable is served as that one range;
    ///   with several satisfiable ranges, see ``HTTPRangeSelection/multiple(_:)``.
    /// - Malformed values (`b < a`, signs, garbage, unit other than `bytes`) are ignored: ``HTTPRangeSelection/full``.
    ///   Whitespace around the range specs and commas is tolerated; inside a spec it is malformed.
    /// - **Zero-length content: Range is ignored and the answer is ``HTTPRangeSelection/full``** (a 200 with an
    ///   empty body), because no byte range of it exists to put in a 206, and a 200 serves every client.
    public static func select(rangeHeader: String?, contentLength: Int) -> HTTPRangeSelection {
        guard let rangeHeader else { return .full }
        return select(rangeBytes: Array(rangeHeader.utf8)[...], contentLength: contentLength)
    }

    static func select(rangeBytes value: ArraySlice<UInt8>, contentLength: Int) -> HTTPRangeSelection {
        guard contentLength > 0 else { return .full }
        guard let eq = value.firstIndex(of: UInt8(ascii: "=")),
              bytesEqualCaseInsensitive(value[value.startIndex..<eq], "bytes") else { return .full }
        var satisfiable: [ClosedRange<Int>] = []
        var sawSpec = false
        for spec in splitList(value[(eq + 1)...]) where !spec.isEmpty {
            sawSpec = true
            guard let dash = spec.firstIndex(of: UInt8(ascii: "-")) else { return .full }
            let firstText = spec[spec.startIndex..<dash]
            let lastText = spec[(dash + 1)...]
            if firstText.isEmpty {
                guard let suffix = saturatingDecimal(lastText) else { return .full }
                if suffix > 0 {
                    satisfiable.append(max(0, contentLength - suffix)...(contentLength - 1))
                }
            } else {
                guard let first = saturatingDecimal(firstText) else { return .full }
                var last = Int.max
                if !lastText.isEmpty {
                    guard let l = saturatingDecimal(lastText), l >= first else { return .full }
                    last = l
                }
                if first < contentLength {
                    satisfiable.append(first...min(last, contentLength - 1))
                }
            }
        }
        guard sawSpec else { return .full }
        switch satisfiable.count {
        case 0: return .unsatisfiable
        case 1: return .partial(satisfiable[0])
        default: return .multiple(satisfiable)
        }
    }

    /// 1*DIGIT, saturating at `Int.max` (a huge position is still syntactically fine).
    private static func saturatingDecimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.allSatisfy(isDigit) else { return nil }
        return parseDecimal(bytes) ?? Int.max
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A line plot as a self-contained SVG document (no scripts, fonts or stylesheets outside it):
/// axes with ticks and labels, grid lines, a legend, lines made of segments (a gap between
/// segments is not drawn over), point markers with a tooltip each. Pure: ``render()`` returns
/// the text.
public struct SVGPlot: Sendable {
    public enum Scale: Sendable {
        case linear
        case log10
        /// Quantiles 0..<1 drawn at -log10(1 - q): 0 %, 90 %, 99 %, 99.9 % … equally spaced, so
        /// the tail of a latency distribution gets the room (HdrHistogram's percentile plot).
        case tailQuantile
    }

    public struct Line: Sendable {
        public var name: String
        /// Each segment is drawn as one polyline.
        public var segments: [[(x: Double, y: Double)]]
        public var color: Int
        public var dashed: Bool
        public var markers: Bool
        public init(name: String, segments: [[(x: Double, y: Double)]], color: Int, dashed: Bool = false, markers: Bool = true) {
            self.name = name
            self.segments = segments
            self.color = color
            self.dashed = dashed
            self.markers = markers
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var xScale: Scale
    public var yScale: Scale
    public var lines: [Line]
    /// Tick positions (data values) instead of the automatic ones.
    public var xTicks: [Double]?
    public var yFromZero = true
    public var xFromZero = false
    /// Small text above data points (step names on a time series).
    public var annotations: [(x: Double, y: Double, text: String)] = []
    public var width = 880
    public var height = 520

    public init(title: String, xLabel: String, yLabel: String, xScale: Scale = .linear, yScale: Scale = .linear, lines: [Line] = []) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xScale = xScale
        self.yScale = yScale
        self.lines = lines
    }

    /// Tableau 10: distinguishable, also in grey print.
    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]

    public static func color(_ i: Int) -> String { palette[((i % palette.count) + palette.count) % palette.count] }

    // MARK: Scales

    static func transform(_ v: Double, _ scale: Scale) -> Double {
        switch scale {
        case .linear: v
        case .log10: log10(Swift.max(v, 1e-12))
        case .tailQuantile: -log10(Swift.max(1 - Swift.min(v, 0.999999), 1e-6))
        }
    }

    /// Ticks (data values) covering lo...hi (transformed bounds come back through `range`).
    static func ticks(_ lo: Double, _ hi: Double, _ scale: Scale, fromZero: Bool) -> (ticks: [Double], range: ClosedRange<Double>) {
        switch scale {
        case .linear:
            var a = fromZero ? Swift.min(0, lo) : lo, b = hi
            if b <= a { b = a + 1 }
            let step = niceStep((b - a) / 5)
            a = (a / step).rounded(.down) * step
            b = (b / step).rounded(.up) * step
            var t: [Double] = []
            var v = a
            while v <= b + step / 2 { t.append(abs(v) < step / 1e6 ? 0 : v); v += step }
            return (t, a...b)
        case .log10:
            let a = log10(Swift.max(lo, 1e-12)).rounded(.down), b0 = log10(Swift.max(hi, 1e-12)).rounded(.up)
            let b = b0 <= a ? a + 1 : b0
            var t: [Double] = []
            var e = a
            while e <= b {
                let d = pow10(e)
                t.append(d)
                if b - a <= 2 && e < b { t.append(2 * d); t.append(5 * d) }
                e += 1
            }
            return (t, a...b)
        case .tailQuantile:
            let b = Swift.max(1, transform(hi, .tailQuantile).rounded(.up))
            return ((0...Int(b)).map { 1 - pow10(-Double($0)) }, 0...b)
        }
    }

    /// 1, 2 or 5 × 10^k at or above `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let e = log10(raw).rounded(.down)
        let base = pow10(e)
        for m in [1.0, 2, 5, 10] where m * base >= raw * 0.999 { return m * base }
        return 10 * base
    }

    // MARK: Rendering

    /// Legend entries go below the plot in columns as wide as the longest name.
    var legendLayout: (columns: Int, columnWidth: Double, rows: Int) {
        guard !lines.isEmpty else { return (1, 0, 0) }
        let longest = lines.map { Swift.min($0.name.count, 60) }.max() ?? 0
        let columnWidth = 40 + 7.2 * Double(longest)
        let columns = Swift.max(1, Swift.min(lines.count, Int((Double(width) - 100) / columnWidth)))
        return (columns, columnWidth, (lines.count + columns - 1) / columns)
    }

    /// The document's height: the plot's and the legend's rows.
    public var totalHeight: Int { height + legendLayout.rows * 20 + (lines.isEmpty ? 0 : 8) }

    public func render() -> String {
        let legend = legendLayout
        let left = 84.0, right = Double(width) - 28, top = 52.0, bottom = Double(height) - 62
        let docHeight = totalHeight
        var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(docHeight)" viewBox="0 0 \(width) \(docHeight)" font-family="Helvetica, Arial, sans-serif" font-size="13">
        <rect x="0" y="0" width="\(width)" height="\(docHeight)" fill="#ffffff"/>
        <text x="\(fmt(Double(width) / 2))" y="28" text-anchor="middle" font-size="17" font-weight="bold">\(escape(title))</text>

        """
        let points = lines.flatMap { $0.segments.flatMap { $0 } }.filter { $0.x.isFinite && $0.y.isFinite }
        guard !points.isEmpty else {
            out += "<text x=\"\(fmt((left + right) / 2))\" y=\"\(fmt((top + bottom) / 2))\" text-anchor=\"middle\">no data</text>\n</svg>\n"
            return out
        }
        let xs = points.map(\.x).filter { xScale == .linear || $0 > 0 }, ys = points.map(\.y).filter { yScale == .linear || $0 > 0 }
        let (xt, xr) = xTicks.map { t in (t, Self.transform(t.min()!, xScale)...Self.transform(t.max()!, xScale)) }
            ?? Self.ticks(xs.min() ?? 0, xs.max() ?? 1, xScale, fromZero: xFromZero)
        let (yt, yr) = Self.ticks(ys.min() ?? 0, ys.max() ?? 1, yScale, fromZero: yFromZero)
        let xSpan = Swift.max(xr.upperBound - xr.lowerBound, 1e-12), ySpan = Swift.max(yr.upperBound - yr.lowerBound, 1e-12)
        func px(_ x: Double) -> Double { left + (Self.transform(x, xScale) - xr.lowerBound) / xSpan * (right - left) }
        func py(_ y: Double) -> Double { bottom - (Self.transform(y, yScale) - yr.lowerBound) / ySpan * (bottom - top) }

        // Grid and ticks.
        out += "<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n"
        for t in xt { out += "<line x1=\"\(fmt(px(t)))\" y1=\"\(fmt(top))\" x2=\"\(fmt(px(t)))\" y2=\"\(fmt(bottom))\"/>\n" }
        for t in yt { out += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(py(t)))\" x2=\"\(fmt(right))\" y2=\"\(fmt(py(t)))\"/>\n" }
        out += "</g>\n<g fill=\"#333333\">\n"
        for t in xt { out += "<text x=\"\(fmt(px(t)))\" y=\"\(fmt(bottom + 18))\" text-anchor=\"middle\">\(escape(tickLabel(t, xScale)))</text>\n" }
        for t in yt { out += "<text x=\"\(fmt(left - 8))\" y=\"\(fmt(py(t) + 4))\" text-anchor=\"end\">\(escape(tickLabel(t, yScale)))</text>\n" }
        out += "</g>\n"
        out += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(right - left))\" height=\"\(fmt(bottom - top))\" fill=\"none\" stroke=\"#333333\"/>\n"
        out += "<text x=\"\(fmt((left + right) / 2))\" y=\"\(fmt(bottom + 44))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        out += "<text transform=\"translate(20 \(fmt((top + bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"

        // Lines, clipped to the plot area.
        out += "<clipPath id=\"plot-area\"><rect x=\"\(fmt(left - 4))\" y=\"\(fmt(top - 4))\" width=\"\(fmt(right - left + 8))\" height=\"\(fmt(bottom - top + 8))\"/></clipPath>\n"
        out += "<g clip-path=\"url(#plot-area)\" fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\">\n"
        for line in lines {
            let color = Self.color(line.color), dash = line.dashed ? " stroke-dasharray=\"7 4\"" : ""
            for segment in line.segments {
                let visible = segment.filter { $0.x.isFinite && $0.y.isFinite && (xScale == .linear || $0.x > 0) && (yScale == .linear || $0.y > 0) }
                guard !visible.isEmpty else { continue }
                let path = visible.map { "\(fmt(px($0.x))),\(fmt(py($0.y)))" }.joined(separator: " ")
                out += "<polyline points=\"\(path)\" stroke=\"\(color)\"\(dash)/>\n"
                if line.markers {
                    for p in visible {
                        out += "<circle cx=\"\(fmt(px(p.x)))\" cy=\"\(fmt(py(p.y)))\" r=\"3.5\" fill=\"\(color)\" stroke=\"none\"><title>\(escape(line.name)): \(escape(tickLabel(p.x, xScale, precise: true))), \(escape(tickLabel(p.y, yScale, precise: true)))</title></circle>\n"
                    }
                }
            }
        }
        out += "</g>\n"

        for a in annotations where a.x.isFinite && a.y.isFinite {
            out += "<text x=\"\(fmt(px(a.x)))\" y=\"\(fmt(py(a.y) - 8))\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555555\">\(escape(a.text))</text>\n"
        }

        // Legend, below the plot.
        for (i, line) in lines.enumerated() {
            let lx = left + Double(i % legend.columns) * legend.columnWidth
            let y = Double(height) + 4 + Double(i / legend.columns) * 20
            let dash = line.dashed ? " stroke-dasharray=\"7 4\"" : ""
            out += "<line x1=\"\(fmt(lx))\" y1=\"\(fmt(y))\" x2=\"\(fmt(lx + 24))\" y2=\"\(fmt(y))\" stroke=\"\(Self.color(line.color))\" stroke-width=\"2.5\"\(dash)/>\n"
            out += "<text x=\"\(fmt(lx + 30))\" y=\"\(fmt(y + 4))\">\(escape(String(line.name.prefix(60))))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    func tickLabel(_ v: Double, _ scale: Scale, precise: Bool = false) -> String {
        if scale == .tailQuantile { return percentLabel(v) }
        return siLabel(v, precise: precise)
    }
}

/// 0.999 → "99.9%".
func percentLabel(_ q: Double) -> String {
    let p = q * 100
    for digits in 0...5 {
        let s = fixed(p, digits)
        if abs((Double(s) ?? p) - p) < 1e-9 * Swift.max(1, p) { return s + "%" }
    }
    return fixed(p, 4) + "%"
}

/// 1234 → "1.23k", 2.5e9 → "2.5G", 0.0042 → "0.0042".
public func siLabel(_ v: Double, precise: Bool = false) -> String {
    let a = abs(v)
    if a == 0 { return "0" }
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    for (scale, suffix) in units where a >= scale { return trimmed(v / scale, precise ? 3 : 2) + suffix }
    return trimmed(v, a >= 100 ? 0 : (a >= 1 ? 2 : 4))
}

/// Fixed digits without trailing zeros: 2.50 → "2.5".
func trimmed(_ v: Double, _ digits: Int) -> String {
    var s = fixed(v, digits)
    if s.contains(".") {
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
    }
    return s
}

/// `v` with exactly `digits` decimals (no Foundation).
public func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf") }
    let scale = pow10(Double(digits))
    let r = (abs(v) * scale).rounded()
    guard r < 9e18 else { return String(v) }
    let n = UInt64(r)
    let whole = n / UInt64(scale), frac = n % UInt64(scale)
    var s = (v < 0 && n > 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let f = String(frac)
        s += "." + String(repeating: "0", count: digits - f.count) + f
    }
    return s
}

/// Coordinates with two decimals.
func fmt(_ v: Double) -> String { trimmed(v, 2) }

/// Text for XML character data and attribute values.
public func escape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default:
            // XML 1.0 allows no C0 control but tab, newline, carriage return.
            if c.value < 0x20 && c != "\t" && c != "\n" && c != "\r" { out += " " } else { out.unicodeScalars.append(c) }
        }
    }
    return out
}

func pow10(_ e: Double) -> Double {
    var r = 1.0
    let n = Int(abs(e))
    for _ in 0..<n { r *= 10 }
    return e < 0 ? 1 / r : r
}

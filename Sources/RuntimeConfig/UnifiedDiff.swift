/// A unified diff (`diff -u`, three lines of context) of two texts, as `patch -p1` reads it.
public enum UnifiedDiff {
    /// `--- a/<name>` / `+++ b/<name>` (`/dev/null` for a file that is not there) and the hunks;
    /// "" when the texts are equal.
    public static func render(old: String?, new: String, name: String, context: Int = 3) -> String {
        if old == new { return "" }
        let a = lines(old ?? ""), b = lines(new)
        let ops = diff(a.map { $0.text + ($0.terminated ? "\n" : "") }, b.map { $0.text + ($0.terminated ? "\n" : "") })
        var out = "--- " + (old == nil ? "/dev/null" : "a/" + name) + "\n+++ b/" + name + "\n"
        // Hunks: each change with `context` equal lines either side, overlapping ones merged.
        var hunks: [Range<Int>] = []
        for (k, op) in ops.enumerated() where op.kind != .same {
            let r = max(0, k - context)..<min(ops.count, k + 1 + context)
            if let last = hunks.last, r.lowerBound <= last.upperBound { hunks[hunks.count - 1] = last.lowerBound..<r.upperBound } else { hunks.append(r) }
        }
        for h in hunks {
            let (start, end) = (h.lowerBound, h.upperBound)
            let hunk = ops[start..<end]
            let aStart = hunk.first!.a, bStart = hunk.first!.b
            let aCount = hunk.filter { $0.kind != .insert }.count, bCount = hunk.filter { $0.kind != .delete }.count
            out += "@@ -\(range(aStart, aCount)) +\(range(bStart, bCount)) @@\n"
            for op in hunk {
                let line: Line
                switch op.kind {
                case .same: line = a[op.a]; out += " "
                case .delete: line = a[op.a]; out += "-"
                case .insert: line = b[op.b]; out += "+"
                }
                out += line.text + "\n"
                if !line.terminated { out += "\\ No newline at end of file\n" }
            }
        }
        return out
    }

    static func range(_ start: Int, _ count: Int) -> String {
        let first = count == 0 ? start : start + 1
        return count == 1 ? "\(first)" : "\(first),\(count)"
    }

    struct Line { var text: String; var terminated: Bool }

    static func lines(_ s: String) -> [Line] {
        var out: [Line] = []
        var current = ""
        for u in s.unicodeScalars {
            if u == "\n" { out.append(Line(text: current, terminated: true)); current = "" } else { current.unicodeScalars.append(u) }
        }
        if !current.isEmpty { out.append(Line(text: current, terminated: false)) }
        return out
    }

    enum Kind { case same, delete, insert }
    /// An edit step; `a`, `b`: the line indices in each text (for an insert, `a` is where in the old).
    struct Op { var kind: Kind; var a: Int; var b: Int }

    /// The shortest edit by longest common subsequence (config files are small; past 4,000 lines
    /// a side, everything is replaced).
    static func diff(_ a: [String], _ b: [String]) -> [Op] {
        let n = a.count, m = b.count
        var ops: [Op] = []
        guard n <= 4000, m <= 4000 else {
            for i in 0..<n { ops.append(Op(kind: .delete, a: i, b: 0)) }
            for j in 0..<m { ops.append(Op(kind: .insert, a: n, b: j)) }
            return ops
        }
        // lcs[i][j]: the LCS length of a[i...] and b[j...].
        var lcs = [[Int32]](repeating: [Int32](repeating: 0, count: m + 1), count: n + 1)
        if n > 0 && m > 0 {
            for i in stride(from: n - 1, through: 0, by: -1) {
                for j in stride(from: m - 1, through: 0, by: -1) {
                    lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
                }
            }
        }
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, a[i] == b[j] { ops.append(Op(kind: .same, a: i, b: j)); i += 1; j += 1 }
            else if i < n, j == m || lcs[i + 1][j] >= lcs[i][j + 1] { ops.append(Op(kind: .delete, a: i, b: j)); i += 1 }
            else { ops.append(Op(kind: .insert, a: i, b: j)); j += 1 }
        }
        return ops
    }
}

/// One sample of a Prometheus text page: `name{label="value",…} value`.
public struct MetricSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// The samples of a Prometheus text exposition (comments skipped). Label values may hold
/// escaped quotes and backslashes.
public func metricSamples(_ text: String) -> [MetricSample] {
    var out: [MetricSample] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
        let chars = Array(line)
        var i = 0
        var name = ""
        while i < chars.count, chars[i] != "{", chars[i] != " " { name.append(chars[i]); i += 1 }
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while i < chars.count, chars[i] != "}" {
                var key = ""
                while i < chars.count, chars[i] != "=" { key.append(chars[i]); i += 1 }
                i += 2  // ="
                var value = ""
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        i += 1
                        value.append(chars[i] == "n" ? "\n" : chars[i])
                    } else {
                        value.append(chars[i])
                    }
                    i += 1
                }
                i += 1  // "
                labels[key] = value
                if i < chars.count, chars[i] == "," { i += 1 }
            }
            i += 1  // }
        }
        let rest = String(chars[min(i, chars.count)...]).trimmedBlanks()
        let number = rest == "+Inf" ? Double.infinity : Double(rest)
        if let number { out.append(MetricSample(name: name, labels: labels, value: number)) }
    }
    return out
}

extension Array where Element == MetricSample {
    /// The value of the sample `name` whose labels include `labels` (nil if none).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }?.value
    }

    /// `name_count` of a histogram series.
    public func histogramCount(_ name: String, _ labels: [String: String] = [:]) -> Double? { value(name + "_count", labels) }
}

/// What is wrong with a Prometheus text page as a scraper reads it: each family has HELP and
/// TYPE before its samples, names and label names are valid, no sample line repeats, and every
/// histogram series has ascending `le` buckets, cumulative counts that never fall, a `+Inf`
/// bucket equal to `_count`, and a `_sum`. Empty when well formed.
public func expositionProblems(_ text: String) -> [String] {
    var problems: [String] = []
    var types: [String: String] = [:], helps: Set<String> = []
    var seen: Set<String> = []
    func isName(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, f == "_" || f == ":" || ("a"..."z").contains(f) || ("A"..."Z").contains(f) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || $0 == ":" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
        if line.hasPrefix("# HELP ") {
            if parts.count < 4 { problems.append("HELP without text: \(line)") }
            helps.insert(parts[2])
        } else if line.hasPrefix("# TYPE ") {
            guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                problems.append("bad TYPE line: \(line)"); continue
            }
            if types[parts[2]] != nil { problems.append("TYPE twice for \(parts[2])") }
            types[parts[2]] = parts[3]
        } else if !line.hasPrefix("#") {
            if !seen.insert(String(line.split(separator: " ").first ?? "")).inserted { problems.append("sample repeated: \(line)") }
        }
    }
    let samples = metricSamples(text)
    for s in samples {
        guard isName(s.name) else { problems.append("bad metric name \(s.name)"); continue }
        for k in s.labels.keys where !isName(k) { problems.append("bad label name \(k) on \(s.name)") }
        var family = s.name
        for suffix in ["_bucket", "_sum", "_count"] where s.name.hasSuffix(suffix) && types[s.name] == nil {
            family = String(s.name.dropLast(suffix.count))
        }
        if types[family] == nil { problems.append("\(s.name) has no TYPE line") }
        if !helps.contains(family) { problems.append("\(s.name) has no HELP line") }
        if family.hasSuffix("_total") && types[family] != "counter" { problems.append("\(family) ends in _total but is a \(types[family] ?? "?")") }
    }
    for (family, type) in types where type == "histogram" {
        // Series by their labels other than le.
        var series: [String: [(le: Double, count: Double)]] = [:]
        for s in samples where s.name == family + "_bucket" {
            guard let le = s.labels["le"], let bound = le == "+Inf" ? Double.infinity : Double(le) else {
                problems.append("\(family)_bucket without a numeric le"); continue
            }
            let key = s.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            series[key, default: []].append((bound, s.value))
        }
        if series.isEmpty { problems.append("histogram \(family) has no buckets") }
        for (key, buckets) in series {
            let labels = Dictionary(uniqueKeysWithValues: key.split(separator: ",").map { kv -> (String, String) in
                let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
                return (p[0], p.count > 1 ? p[1] : "")
            })
            if zip(buckets, buckets.dropFirst()).contains(where: { $0.le >= $1.le }) { problems.append("\(family){\(key)}: le not ascending") }
            if zip(buckets, buckets.dropFirst()).contains(where: { $0.count > $1.count }) { problems.append("\(family){\(key)}: bucket counts fall") }
            if buckets.last?.le != .infinity { problems.append("\(family){\(key)}: no +Inf bucket") }
            let count = samples.first { $0.name == family + "_count" && $0.labels == labels }?.value
            if count == nil || count != buckets.last?.count { problems.append("\(family){\(key)}: _count \(count.map { "\($0)" } ?? "missing") is not the +Inf bucket \(buckets.last?.count ?? -1)") }
            if !samples.contains(where: { $0.name == family + "_sum" && $0.labels == labels }) { problems.append("\(family){\(key)}: no _sum") }
        }
    }
    return problems
}

import DarterCore

extension SwarmDownload {
    /// The `source` label of a piece from `parent`: the origin, a seed parent or a peer parent.
    func metricsSource(_ parent: String) -> DarterMetrics.Source {
        if parent == Self.originID { return .origin }
        return links[parent]?.candidate.role == .seed ? .seed : .peer
    }
}

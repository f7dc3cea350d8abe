import BenchReport

/// The plots of a sweep over swarm sizes (docs/SCALE.md): completion ÷ T_min against N, and the
/// completion CDF of every N, with Kraken's published figures beside them. Pure: SVG text.
public enum ScalePlots {
    /// Kraken's published figures, completion ÷ the ideal (REFERENCE-P2P §3, issue 14):
    /// production, 3 GB to 2,600 hosts at 300 MB/s: p50 1.0, p99 1.8, p99.9 2.2; its simulator:
    /// 74-85 % of line rate for 1,000-5,000 peers, i.e. 1/0.85-1/0.74 of the ideal.
    public static let krakenProduction: [(percentile: String, hosts: Double, ratio: Double)] = [("p50", 2_600, 1.0), ("p99", 2_600, 1.8), ("p99.9", 2_600, 2.2)]
    public static let krakenSimulatorBand: (hosts: ClosedRange<Double>, ratios: ClosedRange<Double>) = (1_000...5_000, (1 / 0.85)...(1 / 0.74))

    /// `scale-vs-n.svg` and `scale-cdf.svg` for `runs` (peers, result), in the order given.
    public static func svgs(_ runs: [(peers: Int, result: SwarmSimulation.Result)], shape: String) -> [(name: String, text: String)] {
        let sorted = runs.sorted { $0.peers < $1.peers }
        func line(_ name: String, _ color: Int, _ value: (SwarmSimulation.Result) -> Double) -> SVGPlot.Line {
            SVGPlot.Line(name: name, segments: [sorted.map { (Double($0.peers), value($0.result)) }], color: color)
        }
        var vsN = SVGPlot(title: "Completion ÷ T_min against swarm size (simulated, \(shape))", xLabel: "peers", yLabel: "completion ÷ T_min",
                          xScale: .log10, lines: [
                            line("Darter p50", 0, \.p50VsIdeal), line("Darter p99", 2, \.p99VsIdeal), line("Darter max", 3, \.maxVsIdeal),
                          ])
        vsN.lines.append(SVGPlot.Line(name: "Kraken, production: 2,600 hosts, p50 p99 p99.9 (published)",
                                      segments: krakenProduction.map { [($0.hosts, $0.ratio)] }, color: 1, dashed: true))
        let band = krakenSimulatorBand
        vsN.lines.append(SVGPlot.Line(name: "Kraken, its simulator: 74-85 % of line rate (published)",
                                      segments: [[(band.hosts.lowerBound, band.ratios.lowerBound), (band.hosts.upperBound, band.ratios.lowerBound)],
                                                 [(band.hosts.lowerBound, band.ratios.upperBound), (band.hosts.upperBound, band.ratios.upperBound)]],
                                      color: 4, dashed: true, markers: false))
        // The runs' sizes, and Kraken's, so its figures are inside the plot.
        vsN.xTicks = Array(Set(sorted.map { Double($0.peers) } + [band.hosts.lowerBound, krakenProduction[0].hosts, band.hosts.upperBound])).sorted()
        vsN.yFromZero = false
        var cdf = SVGPlot(title: "Completion ÷ T_min, CDF over the peers (simulated, \(shape))", xLabel: "completion ÷ T_min", yLabel: "fraction of peers done")
        cdf.lines = sorted.enumerated().map { k, run in
            let ratios = run.result.ratios.sorted()
            // At most ~500 points a line (10,000 peers would be 10,000), the last one always.
            let step = max(1, ratios.count / 500)
            let points = ratios.indices.filter { $0 % step == step - 1 || $0 == ratios.count - 1 }.map { (ratios[$0], Double($0 + 1) / Double(ratios.count)) }
            return SVGPlot.Line(name: "\(run.peers) peers", segments: [points], color: k == sorted.count - 1 ? 2 : k < 2 ? k : k + 1, markers: ratios.count <= 100)
        }
        cdf.xFromZero = false
        return [("scale-vs-n.svg", vsN.render()), ("scale-cdf.svg", cdf.render())]
    }
}

import DarterCore
import HTTPClient

/// The schedulers a daemon talks to, from its `--scheduler` entries. An entry whose host is an
/// IP address is one member; an entry whose host is a name stands for every address the name
/// resolves to (a Kubernetes headless Service: one address per scheduler pod), each a member at
/// the entry's port. Names are looked up again from time to time, so schedulers come and go;
/// a task goes to the member it hashes to (rendezvous hashing over the members' `host:port`, so
/// every daemon that sees the same members sends a task to the same scheduler, whether it was
/// given the Service's name, the pods' names or their addresses).
///
/// Pure: lookups come in (``apply(_:)``), what changed goes out; no I/O, no clock.
public struct SchedulerMembers: Sendable, Equatable {
    /// The entries as configured (`http://host:port`; the target is ignored).
    public let entries: [HTTPClientURL]
    /// Per name, the addresses it resolved to last; absent until it first resolved.
    private var resolved: [String: [String]] = [:]
    /// The members now: unique by `hostHeader`, in its order.
    public private(set) var members: [HTTPClientURL] = []

    /// What one round of lookups changed.
    public struct Change: Sendable, Equatable {
        public var added: [HTTPClientURL] = []
        public var removed: [HTTPClientURL] = []
        public var isEmpty: Bool { added.isEmpty && removed.isEmpty }
        public init(added: [HTTPClientURL] = [], removed: [HTTPClientURL] = []) {
            self.added = added
            self.removed = removed
        }
    }

    /// Address entries are members at once; names join once they resolve.
    public init(entries: [HTTPClientURL]) {
        self.entries = entries
        members = Self.members(entries, resolved)
    }

    /// The hosts that need looking up (each once, in the entries' order).
    public var names: [String] {
        var seen = Set<String>()
        return entries.map(\.host).filter { !Self.isAddressLiteral($0) && seen.insert($0).inserted }
    }

    /// Names that have never resolved (their entries have no member yet).
    public var unresolvedNames: [String] { names.filter { resolved[$0] == nil } }

    /// One round of lookups: per name, its addresses now, or nil when the lookup failed. A name
    /// that resolved stands for exactly those addresses from now on (members that vanished
    /// leave, new ones join); one that failed keeps the addresses it had, so a DNS hiccup does
    /// not drop every scheduler at once (a scheduler that really went away stops answering,
    /// and its tasks pass to the next on the ring until the name resolves without it).
    /// Names not in `lookups` keep what they had.
    public mutating func apply(_ lookups: [String: [String]?]) -> Change {
        for (name, addresses) in lookups {
            guard let addresses, names.contains(name) else { continue }
            resolved[name] = addresses
        }
        let before = members
        members = Self.members(entries, resolved)
        let old = Set(before.map(\.hostHeader)), new = Set(members.map(\.hostHeader))
        return Change(added: members.filter { !old.contains($0.hostHeader) }, removed: before.filter { !new.contains($0.hostHeader) })
    }

    /// The members for `key` (a task id), best first: rendezvous hashing on `host:port`.
    public func ranked(_ key: String) -> [HTTPClientURL] {
        let byName = Dictionary(members.map { ($0.hostHeader, $0) }, uniquingKeysWith: { a, _ in a })
        return RendezvousHash.ranked(key, members.map(\.hostHeader)).compactMap { byName[$0] }
    }

    /// An IPv4 address in dotted-decimal form, or an IPv6 one (HTTPClientURL holds it without
    /// brackets; a name cannot contain `:`). Anything else is a name to look up.
    public static func isAddressLiteral(_ host: String) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCIIDigit) && Int(p)! <= 255
        }
    }

    private static func members(_ entries: [HTTPClientURL], _ resolved: [String: [String]]) -> [HTTPClientURL] {
        var out: [String: HTTPClientURL] = [:]
        for e in entries {
            let hosts = isAddressLiteral(e.host) ? [e.host] : resolved[e.host] ?? []
            for h in hosts {
                let m = HTTPClientURL(host: h, port: e.port)
                if out[m.hostHeader] == nil { out[m.hostHeader] = m }
            }
        }
        return out.keys.sorted().map { out[$0]! }
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

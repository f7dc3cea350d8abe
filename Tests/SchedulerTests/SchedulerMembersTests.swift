import Testing
import DarterCore
import HTTPClient
import SchedulerClient

@Suite("SchedulerMembers: --scheduler entries, names expanded to their addresses (pure)")
struct SchedulerMembersTests {
    let service = HTTPClientURL(host: "darter-scheduler.darter.svc", port: 65002)

    func hosts(_ l: [HTTPClientURL]) -> [String] { l.map(\.hostHeader) }

    @Test("address entries are members at once; a name joins with each address it resolves to, at its port")
    func expansion() {
        var m = SchedulerMembers(entries: [HTTPClientURL(host: "10.0.0.9", port: 65002), service, HTTPClientURL(host: "fd00::1", port: 7000)])
        #expect(hosts(m.members) == ["10.0.0.9:65002", "[fd00::1]:7000"])
        #expect(m.names == ["darter-scheduler.darter.svc"])
        #expect(m.unresolvedNames == ["darter-scheduler.darter.svc"])
        let change = m.apply(["darter-scheduler.darter.svc": ["10.0.0.5", "10.0.0.6", "10.0.0.9"]])
        #expect(hosts(change.added) == ["10.0.0.5:65002", "10.0.0.6:65002"], "10.0.0.9:65002 was a member already")
        #expect(change.removed.isEmpty)
        #expect(hosts(m.members) == ["10.0.0.5:65002", "10.0.0.6:65002", "10.0.0.9:65002", "[fd00::1]:7000"])
        #expect(m.unresolvedNames.isEmpty)
    }

    @Test("members come and go as the name's addresses change; a failed lookup keeps the last ones; an empty answer empties the name")
    func comeAndGo() {
        var m = SchedulerMembers(entries: [service])
        #expect(m.members.isEmpty)
        #expect(hosts(m.apply([service.host: ["10.0.0.5", "10.0.0.6"]]).added) == ["10.0.0.5:65002", "10.0.0.6:65002"])
        // A pod replaced: one address leaves, a new one joins.
        let moved = m.apply([service.host: ["10.0.0.6", "10.0.0.7"]])
        #expect(moved == .init(added: [HTTPClientURL(host: "10.0.0.7", port: 65002)], removed: [HTTPClientURL(host: "10.0.0.5", port: 65002)]))
        // The same answer again (in another order) changes nothing.
        #expect(m.apply([service.host: ["10.0.0.7", "10.0.0.6"]]).isEmpty)
        // DNS fails: what the name stood for stays.
        #expect(m.apply([service.host: nil]).isEmpty)
        #expect(hosts(m.members) == ["10.0.0.6:65002", "10.0.0.7:65002"])
        // A name nobody configured is ignored.
        #expect(m.apply(["elsewhere.example": ["10.9.9.9"]]).isEmpty)
        // The Service has no pods left.
        #expect(hosts(m.apply([service.host: []]).removed) == ["10.0.0.6:65002", "10.0.0.7:65002"])
        #expect(m.members.isEmpty)
    }

    @Test("one name at two ports is two members per address; two names sharing an address make it one member")
    func duplicates() {
        var m = SchedulerMembers(entries: [service, HTTPClientURL(host: service.host, port: 65003), HTTPClientURL(host: "scheduler-0.example", port: 65002)])
        #expect(m.names == [service.host, "scheduler-0.example"])
        _ = m.apply([service.host: ["10.0.0.5"], "scheduler-0.example": ["10.0.0.5"]])
        #expect(hosts(m.members) == ["10.0.0.5:65002", "10.0.0.5:65003"])
    }

    @Test("a task's ranking is rendezvous hashing over host:port: the same however the members were named; a member leaving moves only its tasks")
    func ranking() {
        var byName = SchedulerMembers(entries: [service])
        _ = byName.apply([service.host: ["10.0.0.5", "10.0.0.6", "10.0.0.7"]])
        let byAddress = SchedulerMembers(entries: ["10.0.0.7", "10.0.0.5", "10.0.0.6"].map { HTTPClientURL(host: $0, port: 65002) })
        let tasks = (0..<300).map { try! TaskID.forURL("http://origin.test/object-\($0)").description }
        for t in tasks {
            #expect(hosts(byName.ranked(t)) == hosts(byAddress.ranked(t)))
            #expect(hosts(byName.ranked(t)) == RendezvousHash.ranked(t, ["10.0.0.5:65002", "10.0.0.6:65002", "10.0.0.7:65002"]))
        }
        let before = tasks.map { byName.ranked($0)[0].hostHeader }
        _ = byName.apply([service.host: ["10.0.0.5", "10.0.0.6"]])
        let after = tasks.map { byName.ranked($0)[0].hostHeader }
        for (b, a) in zip(before, after) where b != "10.0.0.7:65002" { #expect(a == b, "a task whose scheduler stayed moved") }
        #expect(Set(after) == ["10.0.0.5:65002", "10.0.0.6:65002"])
        #expect(SchedulerMembers(entries: []).ranked(tasks[0]).isEmpty)
    }

    @Test("address literals: dotted-decimal IPv4 and IPv6; anything else is a name")
    func literals() {
        for a in ["127.0.0.1", "10.0.0.255", "::1", "fd00::5"] { #expect(SchedulerMembers.isAddressLiteral(a), "\(a)") }
        for n in ["localhost", "darter-scheduler.darter.svc", "10.0.0", "10.0.0.256", "1.2.3.4.5", "1..2.3", "0x7f.0.0.1", "scheduler-0"] {
            #expect(!SchedulerMembers.isAddressLiteral(n), "\(n)")
        }
    }
}

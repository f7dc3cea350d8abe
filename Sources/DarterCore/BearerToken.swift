/// `Authorization: Bearer <token>` checks (the scheduler's `--cluster-token`, a daemon's
/// `--admin-token`).
public enum BearerToken {
    /// Whether `header` is `Bearer <token>`. Compares in time independent of where the token
    /// first differs.
    public static func matches(_ header: String?, token: String) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.utf8.dropFirst(7)), want = Array(token.utf8)
        var diff = given.count ^ want.count
        for i in 0..<want.count { diff |= Int(want[i] ^ (i < given.count ? given[i] : 0)) }
        return diff == 0
    }
}

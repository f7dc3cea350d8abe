import DarterIO
import DarterCore

extension PieceStore {
    // MARK: Eviction

    private func candidates(excluding: TaskID?) -> ([EvictionCandidate], Int64) {
        state.withLock { s in
            (s.index.tasks.compactMap { id, t in
                id == excluding || t.deleting ? nil
                    : EvictionCandidate(id: id, bytes: t.allocatedBytes, lastAccess: t.lastAccess, pinned: t.descriptor.pinned, inUse: t.inUse)
            }, s.index.bytesUsed)
        }
    }

    private func evict(_ ids: [TaskID]) async {
        for id in ids {
            // Re-checked under the lock inside deleteTask: a task that became busy stays.
            if (try? await deleteTask(id)) == true { state.withLock { $0.evictions += 1 } }
        }
    }

    /// Evicts what the policy says so that `bytes` more fit; throws ``StoreError/noSpace(_:_:)``
    /// when they cannot fit even then.
    func makeRoom(for bytes: Int64, excluding id: TaskID?) async throws {
        let (list, used) = candidates(excluding: id)
        let fs = try? SystemCalls.fileSystemSpace(configuration.directory)
        let decision = configuration.eviction.decide(candidates: list, storeBytes: used, incomingBytes: bytes, fileSystem: fs, now: Self.now())
        // A request that cannot fit anyway must not empty the cache: then only expired tasks go.
        await evict(decision.evict.filter { decision.fits || $0.reason == .ttl }.map(\.id))
        if !decision.fits {
            throw StoreError.noSpace(id, "\(bytes) bytes do not fit the quota or the filesystem even after evicting every unpinned idle task")
        }
    }

    /// After ENOSPC from the filesystem: evict least recently used idle tasks until at least
    /// `bytes` were freed (quota or not).
    func evictForSpace(bytes: Int64, excluding id: TaskID) async throws {
        let (list, _) = candidates(excluding: id)
        var freed: Int64 = 0
        var victims: [TaskID] = []
        for c in EvictionPolicy.evictionOrder(list) {
            if freed >= bytes { break }
            victims.append(c.id)
            freed += c.bytes
        }
        await evict(victims)
    }

    /// Periodic upkeep: TTL and watermark eviction, and persisting access times.
    /// Returns the evicted task ids.
    @discardableResult
    public func maintain(now: Int64? = nil) async -> [TaskID] {
        let (list, used) = candidates(excluding: nil)
        let fs = try? SystemCalls.fileSystemSpace(configuration.directory)
        let decision = configuration.eviction.decide(candidates: list, storeBytes: used, fileSystem: fs, now: now ?? Self.now())
        let ids = decision.evict.map(\.id)
        await evict(ids)
        appendAccessTimes(force: false)
        return ids
    }

    /// Queues access-time records for tasks read since their last persisted access.
    func appendAccessTimes(force: Bool) {
        let interval = configuration.accessPersistInterval
        let records = state.withLock { s -> [JournalRecord] in
            s.index.tasks.compactMap { id, t in
                let stale = force ? t.lastAccess > t.persistedAccess : t.lastAccess - t.persistedAccess >= interval
                return stale && !t.deleting ? .taskAccessed(id, at: t.lastAccess) : nil
            }
        }
        if !records.isEmpty { appendLater(records) }
    }

    /// Records an access (serving a task counts for LRU).
    public func touch(_ id: TaskID) {
        state.withLock { $0.index.tasks[id]?.lastAccess = Self.now() }
    }
}

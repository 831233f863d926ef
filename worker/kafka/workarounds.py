"""kafka-python clients as the worker needs them: three workarounds for kafka-python 3.0.12, each
on the function or method that makes it.

Each is a deviation from upstream that should go upstream (dpkp/kafka-python, still present on
its master in December 2026); ``kafka-python`` is pinned below 3.1 until a release is tested.
"""

import time

from kafka import KafkaConsumer, KafkaProducer


def _no_auto_create(cluster, config: dict) -> None:
    """Workaround: ``allow_auto_create_topics=False`` is ignored upstream, as
    ``KafkaConnectionManager`` builds its ``ClusterMetadata`` without the option, so every
    metadata request may auto-create a topic on brokers that allow it: pass it on."""
    cluster.config["allow_auto_create_topics"] = config["allow_auto_create_topics"]


def _keep_finished_joins(coordinator) -> None:
    """Workaround: a finished join is thrown away, or never applied, upstream.

    A JoinGroup/SyncGroup round trip that finishes while no ``poll()`` waits for it is lost:
    ``join_group_async`` starts a new JoinGroup (``if self._join_task is None or
    self._join_task.is_done``), and the group leader's repeated JoinGroup starts yet another
    rebalance; and when the rejoin was caused by a metadata change, the leader's assignment
    already refreshed the snapshot, ``need_rejoin()`` turns False and the member stays
    "rebalancing" without heartbeats until it is evicted. Measured with ``poll(timeout_ms=0)``
    every 20-50 ms: one member was still rebalancing after 5 s (generation 231 after 12 s with
    two), or joined a new topic's group in 1 of 3 tries.

    This keeps the unclaimed assignment, makes ``need_rejoin()`` true while there is one and
    hands it to the next attempt instead of a new request. Upstream fix: await a finished
    ``_join_task`` first, whatever ``need_rejoin()`` says (``wait_for`` on a finished task
    returns its result at once).
    """
    join_and_sync = coordinator._do_join_and_sync_async
    on_join_complete = coordinator._on_join_complete_async
    need_rejoin = coordinator.need_rejoin
    unclaimed: list[bytes] = []  # the assignment of a finished join no poll() has taken yet

    async def do_join_and_sync():
        if unclaimed:
            return unclaimed[0]
        assignment = await join_and_sync()
        unclaimed[:] = [assignment]
        return assignment

    async def on_complete(generation, member_id, protocol, assignment):
        unclaimed.clear()
        await on_join_complete(generation, member_id, protocol, assignment)

    coordinator._do_join_and_sync_async = do_join_and_sync
    coordinator._on_join_complete_async = on_complete
    coordinator.need_rejoin = lambda: bool(unclaimed) or need_rejoin()


def any_connection_up(manager) -> bool:
    """Whether one of a kafka-python connection manager's broker connections is up (a copy of
    the table is read: the IO thread changes it)."""
    return any(conn.connected for conn in list(manager._conns.values()))


class GroupConsumer(KafkaConsumer):
    """The worker's consumer: kafka-python's, with the three workarounds, and the connection and
    IO-thread questions the watchdog asks from its own thread.

    The worker calls ``poll(timeout_ms=0)`` only (one pass, never blocking): a rebalance that
    revokes partitions therefore completes inside one ``poll()`` call, and the follow-up
    JoinGroup can only be sent by the next call, after the processor committed the revoked
    partitions' work.
    """

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        _no_auto_create(self._cluster, self.config)
        _keep_finished_joins(self._coordinator)

    def connected(self) -> bool:
        """Whether a connection to some broker is up (any thread may ask)."""
        return any_connection_up(self._manager)

    def io_thread_alive(self) -> bool:
        """Whether kafka-python's IO thread (heartbeats, fetches, commits) still runs."""
        thread = self._net._io_thread
        return thread is not None and thread.is_alive()

    def _poll_once(self, timer, max_records, update_offsets=True):
        """Upstream's body, without "return {} while not joined" (the worker has a group).

        Workaround: fetching stops during a rebalance upstream. ``KafkaConsumer.poll()`` returns
        no records at all while a JoinGroup is outstanding (``_poll_once`` returns early when
        ``coordinator.poll()`` says "not joined yet"). The broker holds a JoinGroup until every
        member has rejoined, which after a crash means until the dead member's session timed
        out: every surviving worker then stops for up to ``session_timeout_ms`` although, with
        the cooperative protocol, it keeps its partitions. Java's consumer goes on fetching for
        the partitions it owns (``updateAssignmentMetadataIfNeeded(timer,
        waitForJoinGroup=false)``); so does this. (Partitions being revoked are never fetched:
        kafka-python marks them ``pending_revocation`` first.)
        """
        self._coordinator.poll(timeout_ms=timer.timeout_ms)
        self._refresh_committed_offsets(timeout_ms=timer.timeout_ms)
        self._fetcher.reset_offsets_if_needed()
        self._fetcher.maybe_validate_positions()
        self._fetcher.validate_offsets_if_needed()
        poll_timeout_ms = min(timer.timeout_ms, self._coordinator.time_to_next_poll() * 1000)
        records, idle = self._fetcher.fetch_records(
            max_records, update_offsets=update_offsets, timeout_ms=poll_timeout_ms)
        if not records and idle and poll_timeout_ms > 0:
            time.sleep(min(poll_timeout_ms, self.config["retry_backoff_ms"]) / 1000)
        return records


class Producer(KafkaProducer):
    """The worker's producer: kafka-python's, with ``allow_auto_create_topics`` honoured, and the
    connection question the watchdog asks from its own thread."""

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        _no_auto_create(self._metadata, self.config)

    def connected(self) -> bool:
        """Whether a connection to some broker is up (any thread may ask)."""
        return any_connection_up(self._sender._client._manager)

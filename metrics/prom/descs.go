// descs.go: the name, help and labels of every metric the Collector exports.
package prom

import "github.com/prometheus/client_golang/prometheus"

// descs are the Collector's metric descriptions.
type descs struct {
	requestSeconds, quorumFailures, siblings, objectBytes, served, servedErrors *prometheus.Desc

	readRepairs, hintsStored, hintsDelivered, hintsRefused, hintsRehomed, hintBytes, hintsPending *prometheus.Desc

	transfersPending, partitionsPulled, partitionsDropped, transferKeys, transferBytes *prometheus.Desc

	tombstonesPurged, corruptRecords, dotConflicts, entriesFolded, coalescedGets *prometheus.Desc

	aeRounds, aeErrors, aeSeconds, aePartitions, aeDiffPartitions, aeDiffKeys, aeKeys, aeBytes *prometheus.Desc
	aeLastTime, aeLastDiffKeys, aeLastOK                                                       *prometheus.Desc

	members, reachable, memberChanges, ready, storageFailed *prometheus.Desc

	conns, accepted, refused, inFlight, busy, transportBytes *prometheus.Desc

	commits, updates, fsyncs, fsyncSeconds, checkpoints, logBytes, checkpointLag, corruptReads *prometheus.Desc
}

func newDescs(def func(name, help string, labels ...string) *prometheus.Desc) descs {
	return descs{
		requestSeconds: def("request_duration_seconds", "Client requests this node coordinated, by operation (forward: a write handed to a replica, also counted as its put or delete) and outcome, and their latency.", "op", "outcome"),
		quorumFailures: def("quorum_failures_total", "Requests that failed their quorum, by operation and reason.", "op", "reason"),
		siblings:       def("read_siblings", "Live siblings found by each successful Get (0: missing or deleted key)."),
		objectBytes:    def("object_size_bytes", "Bytes of the live sibling values each successful Get found (op=get), and of each value a Put wrote (op=put).", "op"),
		served:         def("served_requests_total", "Requests from peers this node served, by kind.", "kind"),
		servedErrors:   def("served_errors_total", "Requests from peers answered with an error."),

		readRepairs:    def("read_repairs_total", "Replicas sent a merged state after a Get found them stale."),
		hintsStored:    def("hints_stored_total", "Hints this node accepted for other nodes."),
		hintsDelivered: def("hints_delivered_total", "Hints this node handed back to their owners."),
		hintsRefused:   def("hints_refused_total", "Hints declined because the hint store was full."),
		hintsRehomed:   def("hints_rehomed_total", "Hints for nodes that left, handed to their keys' current primaries."),
		hintBytes:      def("hints_bytes", "Bytes of hints held now."),
		hintsPending:   def("hints_pending", "Hints held now, by intended owner.", "peer"),

		transfersPending:  def("transfers_pending", "Partitions this node still has to pull."),
		partitionsPulled:  def("partitions_pulled_total", "Newly owned partitions pulled."),
		partitionsDropped: def("partitions_dropped_total", "Partitions dropped once handed to their owners."),
		transferKeys:      def("transfer_keys_total", "Keys moved by partition transfers, by direction (in: received).", "direction"),
		transferBytes:     def("transfer_bytes_total", "Bytes moved by partition transfers, by direction (in: received).", "direction"),

		tombstonesPurged: def("tombstones_purged_total", "Tombstone-only keys purged once every primary held them."),
		corruptRecords:   def("corrupt_records_total", "Stored states found damaged and replaced from other replicas."),
		dotConflicts:     def("dot_conflicts_total", "Merges that found one version dot carrying two versions."),
		entriesFolded:    def("vv_entries_folded_total", "Dead version-vector entries folded away."),
		coalescedGets:    def("coalesced_gets_total", "Gets that shared a concurrent Get's quorum read."),

		aeRounds:         def("antientropy_rounds_total", "Anti-entropy rounds run."),
		aeErrors:         def("antientropy_errors_total", "Anti-entropy rounds in which a sync with some peer failed."),
		aeSeconds:        def("antientropy_round_duration_seconds", "Duration of each anti-entropy round."),
		aePartitions:     def("antientropy_partitions_compared_total", "Partitions compared with peers."),
		aeDiffPartitions: def("antientropy_partitions_differing_total", "Partitions whose hashes differed from a peer's."),
		aeDiffKeys:       def("antientropy_keys_differing_total", "Keys whose digests differed from a peer's."),
		aeKeys:           def("antientropy_keys_total", "Key states exchanged by anti-entropy, by direction (in: taken from peers).", "direction"),
		aeBytes:          def("antientropy_bytes_total", "Bytes exchanged by anti-entropy, by direction (in: replies).", "direction"),
		aeLastTime:       def("antientropy_last_sync_timestamp_seconds", "When the last anti-entropy sync with each peer ended, in Unix seconds.", "peer"),
		aeLastDiffKeys:   def("antientropy_last_sync_keys_differing", "Keys that differed in the last anti-entropy sync with each peer.", "peer"),
		aeLastOK:         def("antientropy_last_sync_success", "1 if the last anti-entropy sync with each peer succeeded, else 0.", "peer"),

		members:       def("members", "Nodes in this node's ring."),
		reachable:     def("members_reachable", "Nodes of the ring this node believes up, itself included."),
		memberChanges: def("membership_changes_total", "Membership changes this node was told of."),
		ready:         def("ready", "1 once the node finished the pulls it started with, else 0."),
		storageFailed: def("storage_failed", "1 once the node's storage failed for good (the node refuses writes; restart it), else 0."),

		conns:          def("transport_connections", "Peer connections open now, by direction.", "direction"),
		accepted:       def("transport_accepted_total", "Inbound peer connections accepted."),
		refused:        def("transport_refused_total", "Inbound peer connections refused: too many were open."),
		inFlight:       def("transport_requests_in_flight", "Inbound peer requests being handled now."),
		busy:           def("transport_busy_total", "Inbound peer requests refused: too many were in flight."),
		transportBytes: def("transport_bytes_total", "Frame bytes of peer traffic, by direction.", "direction"),

		commits:       def("storage_commits_total", "Storage batches made durable (one log write and fsync each)."),
		updates:       def("storage_updates_total", "Storage writes acknowledged; divided by commits, the writes per fsync."),
		fsyncs:        def("storage_fsyncs_total", "Storage log fsyncs."),
		fsyncSeconds:  def("storage_fsync_seconds_total", "Time spent in storage log fsyncs; divided by fsyncs, the mean fsync latency."),
		checkpoints:   def("storage_checkpoints_total", "Copies of the storage log into the main file."),
		logBytes:      def("storage_log_bytes", "Bytes in the storage log segment being written."),
		checkpointLag: def("storage_checkpoint_lag_bytes", "Bytes of storage log still being copied into the main file."),
		corruptReads:  def("storage_corrupt_reads_total", "Storage reads that found a stored value damaged."),
	}
}

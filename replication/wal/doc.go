// Package wal is a raft log store and stable store for hashicorp/raft built
// as a write-ahead log: entries are appended to segment files with one
// fdatasync per StoreLogs batch and read back with one pread each.
//
// [Store] implements raft.LogStore, raft.StableStore,
// raft.MonotonicLogStore (IsMonotonic reports true: the log never has gaps),
// raft.CommitTrackingLogStore and raft.DeferredSyncLogStore (Strata's patch
// of hashicorp/raft, third_party/raft): StoreLogsNoSync writes a batch
// without its fdatasync, SyncLogs makes it durable later, so the leader
// replicates while its own copy is synced. Every mutation syncs such a
// batch first, so at most one batch is ever written and not durable, and a
// crash can tear only the tail, as with StoreLogs.
//
// # Directory
//
//	LOCK                        flock'ed while a Store has the directory open
//	00000000000000000001.wal    segment holding entries 1..k (name = base index, 20 digits)
//	0000000000000000000k+1.wal  next segment; the last one is the tail, the others are sealed
//	                            (the oldest may be retired: wholly below the first index)
//	meta                        logical first index (written only by head deletions)
//	stable                      StableStore values
//
// # Segments
//
// A segment starts with a 32-byte header, then holds the records of
// consecutive entries, base index first. Every integer in a header is
// little-endian.
//
//	offset size
//	0      8    magic "STRATAWL"
//	8      4    version (1)
//	12     4    flags (0)
//	16     8    base index, equal to the one in the file name
//	24     4    reserved (0)
//	28     4    CRC32-C of bytes 0..27
//
// A record is
//
//	0      4    CRC32-C (Castagnoli) of the next 4+n bytes: the length and the payload
//	4      4    n, the payload length
//	8      n    payload
//
// and a log entry's payload is
//
//	uvarint   Index (must be the segment's base + the record's position)
//	uvarint   Term
//	byte      Type (raft.LogType)
//	byte      flags: 1 Extensions present, 2 AppendedAt present, 4 commit index present
//	[varint   AppendedAt seconds since 1970, uvarint nanoseconds]   if flag 2
//	[uvarint  len, Extensions]                                      if flag 1
//	[uvarint  commit index]                                         if flag 4
//	Data      the rest of the payload
//
// AppendedAt keeps its instant, not its location or monotonic reading. Each
// batch is encoded into one buffer, written with one pwrite at the end of the
// tail segment and made durable with one fdatasync; then the offsets of its
// records are added to the segment's in-memory index, which is all GetLog
// needs to read an entry with one pread. When a batch finds the tail
// segment at Options.SegmentSize or more, it starts a new segment instead,
// which costs a directory fsync too. A batch never spans two segments.
//
// New segments are preallocated to SegmentSize with fallocate: then an
// append overwrites allocated space instead of growing the file, and its
// fdatasync needs no journal commit for the size change (on this project's
// ext4 test machine, 128-byte and 1 KiB synced appends got about 1.4x
// faster; large ones gained nothing). Preallocated space reads as zeros, so
// the entries of a segment end at the first record that does not decode,
// and only zeros may follow it. Everything that removes data from a segment
// (a tail deletion, recovery from a torn append, rolling back a failed
// write) therefore erases it: truncate, preallocate again, fdatasync. A
// record written at the same place before can never reappear.
//
// # Worked example
//
// StageCommitIndex(7), then StoreLogs with entry 7 (term 2, a LogCommand
// with Data "put a=1") and entry 8 (term 2, a LogNoop with Extensions "x"
// and AppendedAt 1700000000.000000005) into an empty store creates
// 00000000000000000007.wal:
//
//	00000000  53 54 52 41 54 41 57 4c  01 00 00 00 00 00 00 00  header: "STRATAWL", version 1, flags 0,
//	00000010  07 00 00 00 00 00 00 00  00 00 00 00 03 5b 6f a9  base 7, reserved, CRC
//	00000020  30 3d 50 28 0b 00 00 00                           entry 7: CRC, n = 11,
//	00000028  07 02 00 00 70 75 74 20  61 3d 31                 index 7, term 2, type 0, flags 0, "put a=1"
//	00000033  35 3e d3 ca 0d 00 00 00                           entry 8: CRC, n = 13,
//	0000003b  08 02 01 07                                       index 8, term 2, type 1 (LogNoop), flags 7,
//	0000003f  80 c4 9f d5 0c 05                                 AppendedAt: zigzag varint 1700000000, 5 ns,
//	00000045  01 78 07                                          Extensions len 1 "x", commit index 7; no Data
//	00000048  00 00 00 ...                                      zeros (preallocated) up to SegmentSize
//
// The in-memory index of this segment is base 7, offsets [0x20, 0x33], end
// 0x48: GetLog(8) preads bytes 0x33..0x47.
//
// # Deletions
//
// DeleteRange must remove a prefix, a suffix or all of the log; a range in
// the middle would leave a gap and returns ErrUnsupportedDelete.
//
//   - Head (compaction after a snapshot): the meta file is replaced
//     atomically (meta.tmp, fdatasync, rename, directory fsync) with the new
//     first index, then segments wholly below it are retired (see
//     Retention). Entries below it in the first remaining segment stay on
//     disk, hidden.
//   - Tail (raft dropping a conflicting suffix before appending the
//     leader's entries): segments wholly inside the range are removed, last
//     first, the directory is synced, and the segment holding the first
//     deleted entry is erased from that entry's record on.
//   - Everything (after a snapshot is installed or restored, which raft
//     does for a MonotonicLogStore): the meta file records last+1, then every
//     segment is retired. The next StoreLogs may start at any index; if it
//     starts below the recorded first index, every segment file is removed
//     and meta is reset first.
//
// The meta file is 32 bytes: "STRATAMT", version (1), reserved, the first
// index (uint64), reserved, CRC32-C of the first 28 bytes.
//
// # Retention
//
// Options.MaxSegments is etcd's --max-wals. etcd keeps its WAL files locked
// from the one holding its last snapshot's index on; every 30 seconds it
// removes the oldest unlocked files while the directory holds more than
// --max-wals files, and with 0 it removes none. Here the files raft may
// still read are the segments holding entries at or after the first index
// (hashicorp/raft's compaction keeps TrailingLogs entries before the
// snapshot's index, which a lagging follower is sent from the log): a
// segment whose entries all lie below the first index is retired, closed
// and never read again. The oldest retired segments are removed at once
// (after a head or whole deletion, before a new segment is created, and by
// Open) while the directory holds more than MaxSegments segments, retired
// and live; a live segment is never removed by this rule. A negative
// MaxSegments (etcd's 0) keeps every retired segment. The removals need no
// directory fsync: a retired file that comes back after a crash is retired
// again by Open. Tail deletions still remove the conflicting entries they
// drop, as before: they are not a part of the log any more.
//
// # Recovery
//
// Open validates every record of every segment. In the tail segment, bytes
// after the last valid record that are not zeros and hold no valid record
// are a torn append (a crash inside StoreLogs) and are erased. Anything else
// is ErrCorrupt: a damaged record in a sealed segment, anything but zeros
// after a sealed segment's entries, a damaged record in the tail followed
// by a valid one, a gap between segments, a damaged header, meta or stable
// file. Committed entries are never dropped silently. A tail segment
// without a complete entry (a crash while starting it) is removed. Segments
// wholly below the meta file's first index (retired, or left by a crash
// during a head deletion) are retired without being read, and purged as
// MaxSegments says; a gap may follow them.
//
// # Stable store
//
// The stable file is an append-only log of records framed like the ones
// above, whose payload is uvarint(len(key)), key, value; the last value of a
// key wins. Each Set appends one record and fdatasyncs before returning. A
// torn last record is dropped on Open, which rewrites the file (temporary
// file, rename, directory fsync) once it has grown well past its live
// values. Get and GetUint64 of a missing key return nil and 0 with no error,
// as raft.StableStore documents.
//
// # Caveats
//
//   - Entries are atomic one by one, not per batch: a crash inside
//     StoreLogs can keep a prefix of the batch (kill -9 can interrupt a
//     multi-page write). The batch was not acknowledged, and raft treats the
//     survivors like any other unacknowledged entries, as with etcd's WAL.
//   - A failed fsync, or a failed file operation that leaves the disk state
//     unknown, fails the store: every later write returns ErrFailed, and the
//     store must be reopened to recover.
//   - Wrapping the store in raft.LogCache hides CommitTrackingLogStore; the
//     store keeps no cache of its own, reads come from the page cache.
//   - A segment holds at most 4 GiB; a batch larger than that is
//     ErrTooLarge.
package wal

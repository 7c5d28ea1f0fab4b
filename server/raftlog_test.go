package server_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-kv/strata/server"
)

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRaftLogRecoveryIsLogged stops a member, leaves a torn append at the
// end of its raft log (as a crash in the middle of a write does) and
// restarts it: the member serves everything written before, and its log
// says the torn tail was erased.
func TestRaftLogRecoveryIsLogged(t *testing.T) {
	c := newCluster(t, 1, engines()[0], nil)
	cli := c.client()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := cli.Put(ctxT(t), k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.members[0].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[0] = nil
	tearRaftLog(t, filepath.Join(c.cfgs[0].DataDir, "member", "raft", "log"))

	var out syncBuffer
	cfg := c.cfgs[0]
	cfg.Logger = slog.New(slog.NewTextHandler(&out, nil))
	m, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.members[0] = m
	select {
	case <-m.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("restarted member is not ready")
	}
	resp, err := c.client().Get(ctxT(t), "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("after recovery: get c = %v", resp.Kvs)
	}
	logged := out.String()
	if !strings.Contains(logged, `msg="wal: erasing torn tail"`) || !strings.Contains(logged, "component=wal") {
		t.Fatalf("torn-tail recovery not logged; log:\n%s", logged)
	}
}

// tearRaftLog writes the start of a record that never completed after the
// data of the newest segment in dir: a header announcing a payload, a bad
// checksum and only part of the payload.
func tearRaftLog(t *testing.T, dir string) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no raft log segments in %s (%v)", dir, err)
	}
	path := segs[len(segs)-1] // names sort in index order
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The segment is preallocated with zeros: the data ends at the last
	// non-zero byte. The gap leaves room for zeros the last record may
	// end with; the scan reads the zeros and the partial record after
	// them as one torn record.
	end := len(bytes.TrimRight(data, "\x00")) + 64
	torn := binary.LittleEndian.AppendUint32(nil, 0xdeadbeef)
	torn = binary.LittleEndian.AppendUint32(torn, 4096)
	torn = append(torn, "partial payload"...)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(torn, int64(end)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

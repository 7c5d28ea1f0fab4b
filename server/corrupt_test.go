package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/certtest"
	"github.com/strata-kv/strata/internal/tlsutil"
	"github.com/strata-kv/strata/server"
)

// TestCorruptAlarmRefusesWrites raises the CORRUPT alarm: writes, lease
// grants and revokes and compactions are refused with etcd's "corrupt
// cluster" on the leader and on followers, reads go on, and disarming the
// alarm lets writes through again.
func TestCorruptAlarmRefusesWrites(t *testing.T) {
	c := newCluster(t, 3, engines()[0], nil)
	ctx := ctxT(t)
	cli := c.client()
	put, err := cli.Put(ctx, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: c.members[1].MemberID(), Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.members {
		mc := c.client(i)
		waitFor(t, "the alarm on every member", func() bool { return c.members[i].Node().Corrupt() })
		for name, op := range map[string]func() error{
			"put":     func() error { _, err := mc.Put(ctx, "k", "w"); return err },
			"delete":  func() error { _, err := mc.Delete(ctx, "k"); return err },
			"txn":     func() error { _, err := mc.Txn(ctx).Then(clientv3.OpPut("k", "x")).Commit(); return err },
			"grant":   func() error { _, err := mc.Grant(ctx, 60); return err },
			"revoke":  func() error { _, err := mc.Revoke(ctx, 1); return err },
			"compact": func() error { _, err := mc.Compact(ctx, put.Header.Revision); return err },
		} {
			if err := op(); !errors.Is(err, rpctypes.ErrCorrupt) {
				t.Errorf("member %d: %s: %v, want %v", i, name, err, rpctypes.ErrCorrupt)
			}
		}
		if g, err := mc.Get(ctx, "k"); err != nil || string(g.Kvs[0].Value) != "v" {
			t.Errorf("member %d: get under the alarm: %v %v", i, g, err)
		}
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: c.members[1].MemberID(), Alarm: pb.AlarmType_CORRUPT}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "after"); err != nil {
		t.Fatal(err)
	}
}

// flipInFile changes, in a stopped member's engine file, every copy of
// old to new (of the same length), and returns how many it changed: a
// value changed on disk behind the engine's back, as a bad disk would.
func flipInFile(t *testing.T, path string, old, new []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(b, old)
	if n == 0 {
		t.Fatalf("%q not found in %s", old, path)
	}
	if err := os.WriteFile(path, bytes.ReplaceAll(b, old, new), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// corruptMember stops member i, changes a value in its bbolt file and
// returns the member's configuration.
func corruptMember(t *testing.T, c *cluster, i int) server.Config {
	t.Helper()
	mc := c.client(i)
	waitFor(t, "the member to apply the victim", func() bool {
		g, err := mc.Get(ctxT(t), "victim", clientv3.WithSerializable())
		return err == nil && len(g.Kvs) == 1
	})
	if err := c.members[i].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[i] = nil
	flipInFile(t, filepath.Join(c.cfgs[i].DataDir, "member", "data", "data.db"),
		[]byte("precious-AAAAAAAAAAAAAAAA"), []byte("precious-AAAAAAAABAAAAAAA"))
	return c.cfgs[i]
}

func writeData(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := ctxT(t)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "victim", "precious-AAAAAAAAAAAAAAAA"); err != nil {
		t.Fatal(err)
	}
}

func waitCorruptAlarm(t *testing.T, cli *clientv3.Client) []*pb.AlarmMember {
	t.Helper()
	ctx := ctxT(t)
	var alarms []*pb.AlarmMember
	waitFor(t, "the CORRUPT alarm", func() bool {
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			return false
		}
		alarms = nil
		for _, a := range resp.Alarms {
			if a.Alarm == pb.AlarmType_CORRUPT {
				alarms = append(alarms, a)
			}
		}
		return len(alarms) > 0
	})
	if _, err := cli.Put(ctx, "k", "x"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("put under the CORRUPT alarm: %v, want %v", err, rpctypes.ErrCorrupt)
	}
	return alarms
}

// TestCorruptionDetected changes a value in a stopped member's bbolt file
// (bbolt has no checksums: the member would serve the wrong value). With
// the initial check, the member refuses to serve and stops; without it,
// the leader's periodic check raises the CORRUPT alarm.
func TestCorruptionDetected(t *testing.T) {
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) { cfg.CorruptCheckTime = 200 * time.Millisecond })
	cli := c.client(0, 1)
	writeData(t, cli)
	time.Sleep(500 * time.Millisecond) // checks run on a healthy cluster
	if resp, err := cli.AlarmList(ctxT(t)); err != nil || len(resp.Alarms) > 0 {
		t.Fatalf("alarms on a healthy cluster: %v %v", resp, err)
	}
	cfg := corruptMember(t, c, 2)

	cfg.InitialCorruptCheck = true
	m, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.members[2] = m
	select {
	case <-m.StopNotify():
	case <-m.ReadyNotify():
		t.Fatal("the corrupted member serves clients")
	case <-time.After(20 * time.Second):
		t.Fatal("the corrupted member did not stop")
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "found data inconsistency with peers") {
		t.Fatalf("Err() = %v", err)
	}
	m.Close()

	cfg.InitialCorruptCheck = false
	if m, err = server.Start(cfg); err != nil {
		t.Fatal(err)
	}
	c.members[2] = m
	waitCorruptAlarm(t, cli)
}

// TestCompactHashCheck changes a value in a stopped member's file, then
// compacts: the leader's compaction hash check, asking its peers over
// mutual TLS, finds the member's hash outside the majority's and raises
// the CORRUPT alarm for it.
func TestCompactHashCheck(t *testing.T) {
	ca := certtest.NewCA(t, "peer-ca")
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		cfg.CompactHashCheck = true
		cfg.CompactHashCheckTime = 200 * time.Millisecond
		toHTTPS(cfg)
		pair := ca.Issue(cfg.Name, "member-"+cfg.Name, "127.0.0.1")
		cfg.PeerTLSInfo = tlsutil.Info{CertFile: pair.CertFile, KeyFile: pair.KeyFile, TrustedCAFile: ca.CertFile, ClientCertAuth: true}
	})
	cli := c.client(0, 1)
	writeData(t, cli)
	victim := c.members[2].MemberID()
	cfg := corruptMember(t, c, 2)
	m, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.members[2] = m
	put, err := cli.Put(ctxT(t), "last", "1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted member to catch up", func() bool { return m.Node().AppliedIndex() >= c.members[0].Node().AppliedIndex() })
	if _, err := cli.Compact(ctxT(t), put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	alarms := waitCorruptAlarm(t, cli)
	if len(alarms) != 1 || alarms[0].MemberID != victim {
		t.Fatalf("alarms %v, want one for member %x", alarms, victim)
	}
}

// faultEngine is a fault-injection wrapper of an engine: once corrupt is
// set, its snapshots' Gets fail with engine.ErrCorrupt, as an engine whose
// checksums caught a damaged block.
func faultEngine(inner engine.Engine, corrupt *atomic.Bool) engine.Engine {
	e := inner
	e.Open = func(dir string, opts engine.Options) (engine.Backend, error) {
		be, err := inner.Open(dir, opts)
		if err != nil {
			return nil, err
		}
		return &faultBackend{Backend: be, corrupt: corrupt}, nil
	}
	return e
}

type faultBackend struct {
	engine.Backend
	corrupt *atomic.Bool
}

func (b *faultBackend) NewSnapshot() (engine.Snapshot, error) {
	s, err := b.Backend.NewSnapshot()
	if err != nil {
		return nil, err
	}
	return &faultSnapshot{Snapshot: s, corrupt: b.corrupt}, nil
}

type faultSnapshot struct {
	engine.Snapshot
	corrupt *atomic.Bool
}

func (s *faultSnapshot) Get(key []byte) ([]byte, error) {
	if s.corrupt.Load() {
		return nil, fmt.Errorf("fault injection: block checksum mismatch: %w", engine.ErrCorrupt)
	}
	return s.Snapshot.Get(key)
}

// TestReadCorruptionRaisesAlarm has one member's engine report a damaged
// block on reads (fault injection): the read fails with "corrupt
// cluster", the member raises the CORRUPT alarm for itself, and writes
// are refused cluster-wide.
func TestReadCorruptionRaisesAlarm(t *testing.T) {
	var corrupt atomic.Bool
	c := newCluster(t, 3, engines()[1], func(cfg *server.Config) {
		if cfg.Name == "m0" {
			cfg.Engine = faultEngine(cfg.Engine, &corrupt)
		}
	})
	ctx := ctxT(t)
	writeData(t, c.client(1))
	m0 := c.client(0)
	waitFor(t, "member 0 to apply the data", func() bool {
		g, err := m0.Get(ctx, "victim", clientv3.WithSerializable())
		return err == nil && len(g.Kvs) == 1
	})
	corrupt.Store(true)
	if _, err := m0.Get(ctx, "victim", clientv3.WithSerializable()); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("read of a damaged block: %v, want %v", err, rpctypes.ErrCorrupt)
	}
	alarms := waitCorruptAlarm(t, c.client(1, 2))
	if len(alarms) != 1 || alarms[0].MemberID != c.members[0].MemberID() {
		t.Fatalf("alarms %v, want one for member 0 (%x)", alarms, c.members[0].MemberID())
	}
}

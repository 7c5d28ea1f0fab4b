package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/server"
)

// TestEngineChecksumFailure changes a value inside a stopped pebble
// member's table file (after an offline defrag wrote its data into
// tables): pebble's block checksum catches it, and the member refuses to
// start with an error wrapping engine.ErrCorrupt rather than serving
// changed data.
func TestEngineChecksumFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "m")
	s, cli := startMember(t, "m", dataDir, "pebble")
	const value = "4f1c9a7e2b6d8035e1f7a9c3d5b20486"
	if _, err := cli.Put(ctx, "victim", value); err != nil {
		t.Fatal(err)
	}
	stopMember(t, s, cli)
	if err := run([]string{"defrag", "--data-dir", dataDir}); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(memberDataDir(dataDir), "*.sst"))
	flipped := 0
	for _, f := range tables {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(value)); i >= 0 {
			b[i+3] ^= 0x01
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped++
		}
	}
	if flipped == 0 {
		t.Fatalf("value not found in the tables %v", tables)
	}
	eng, _ := backends.Registry().Lookup("pebble")
	srv, err := server.Start(server.Config{Name: "m", DataDir: dataDir, Engine: eng,
		ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}})
	if err == nil {
		srv.Close()
		t.Fatal("the member started on a damaged table")
	}
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("start: %v, want an error wrapping %v", err, engine.ErrCorrupt)
	}
}

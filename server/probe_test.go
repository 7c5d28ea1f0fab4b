package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

func probeGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestProbesBeforeReady starts one member of a three-member cluster whose
// other members never start: it has no leader and never becomes ready,
// and its metrics URL answers at once, as etcd's does.
func TestProbesBeforeReady(t *testing.T) {
	peers := freePorts(t, 3)
	var initial []string
	for i, p := range peers {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, p))
	}
	s, err := server.Start(server.Config{
		Name:                     "m0",
		DataDir:                  filepath.Join(t.TempDir(), "m0"),
		Engine:                   bbolt.Engine(),
		ListenClientURLs:         []string{"http://127.0.0.1:0"},
		ListenMetricsURLs:        []string{"http://127.0.0.1:0"},
		ListenPeerURLs:           []string{"http://" + peers[0]},
		InitialAdvertisePeerURLs: []string{"http://" + peers[0]},
		InitialCluster:           strings.Join(initial, ","),
		Logger:                   testLogger(t, "m0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := s.MetricsURLs()[0]

	for _, tc := range []struct {
		path     string
		code     int
		contains string
	}{
		{"/health", http.StatusServiceUnavailable, `{"health":"false","reason":"RAFT NO LEADER"}`},
		{"/livez", http.StatusOK, "ok"},
		{"/readyz/non_learner", http.StatusOK, "ok"},
		{"/readyz/data_corruption", http.StatusOK, "ok"},
		{"/metrics", http.StatusOK, "etcd_server_has_leader 0"},
		{"/version", http.StatusOK, `"etcdserver"`},
	} {
		code, body := probeGet(t, base+tc.path)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.contains)
		}
	}
	select {
	case <-s.ReadyNotify():
		t.Fatal("a member without quorum says it is ready")
	default:
	}
}

// TestHealthWithoutQuorum checks that /health turns 503 once a member is
// cut off from its quorum (here: the leader, the two other members
// stopped).
func TestHealthWithoutQuorum(t *testing.T) {
	c := newCluster(t, 3, bbolt.Engine(), func(cfg *server.Config) {
		cfg.ListenMetricsURLs = []string{"http://127.0.0.1:0"}
	})
	lead := c.leader()
	url := c.members[lead].MetricsURLs()[0] + "/health"
	if code, body := probeGet(t, url); code != http.StatusOK {
		t.Fatalf("healthy cluster: /health %d %s", code, body)
	}
	for i := range c.members {
		if i == lead {
			continue
		}
		if err := c.members[i].Close(); err != nil {
			t.Fatal(err)
		}
		c.members[i] = nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := probeGet(t, url)
		if code == http.StatusServiceUnavailable {
			var h struct{ Health, Reason string }
			if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &h); err != nil || h.Health != "false" || h.Reason == "" {
				t.Fatalf("/health body %q", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health still %d %s 20s after quorum was lost", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

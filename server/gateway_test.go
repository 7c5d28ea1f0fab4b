package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// gatewayPost posts a JSON body to the gateway and decodes the answer.
func gatewayPost(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: %q: %v", url, b, err)
		}
	}
	return resp.StatusCode
}

// TestGateway uses etcd's JSON gateway as curl would (etcd's documented
// examples: keys and values in base64, etcd's field names), including a
// watch stream, and checks that EnableGRPCGateway=false turns it off.
func TestGateway(t *testing.T) {
	c := newCluster(t, 1, bbolt.Engine(), nil)
	base := c.members[0].ClientURLs()[0]

	// curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key":"Zm9v","value":"YmFy"}'
	var put struct {
		Header struct {
			ClusterID string `json:"cluster_id"`
			Revision  string `json:"revision"`
		} `json:"header"`
	}
	if code := gatewayPost(t, base+"/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`, &put); code != http.StatusOK {
		t.Fatalf("put: %d", code)
	}
	if put.Header.Revision != "2" || put.Header.ClusterID == "" {
		t.Fatalf("put header %+v", put.Header)
	}
	var rng struct {
		Kvs []struct {
			Key, Value     string
			ModRevision    string `json:"mod_revision"`
			CreateRevision string `json:"create_revision"`
		} `json:"kvs"`
		Count string `json:"count"`
	}
	if code := gatewayPost(t, base+"/v3/kv/range", `{"key":"Zm9v"}`, &rng); code != http.StatusOK {
		t.Fatalf("range: %d", code)
	}
	if len(rng.Kvs) != 1 || rng.Kvs[0].Key != "Zm9v" || rng.Kvs[0].Value != "YmFy" || rng.Kvs[0].ModRevision != "2" || rng.Count != "1" {
		t.Fatalf("range %+v", rng)
	}

	// A watch stream: the created response, then the put's event.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch", strings.NewReader(`{"create_request":{"key":"Zm9v"}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	type watchLine struct {
		Result struct {
			Created bool `json:"created"`
			Events  []struct {
				Kv struct{ Key, Value string } `json:"kv"`
			} `json:"events"`
		} `json:"result"`
	}
	next := func() watchLine {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch stream ended: %v", lines.Err())
		}
		var l watchLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("watch line %q: %v", lines.Text(), err)
		}
		return l
	}
	if l := next(); !l.Result.Created {
		t.Fatalf("first watch line %+v, want created", l)
	}
	if code := gatewayPost(t, base+"/v3/kv/put", `{"key":"Zm9v","value":"`+base64.StdEncoding.EncodeToString([]byte("baz"))+`"}`, nil); code != http.StatusOK {
		t.Fatalf("second put: %d", code)
	}
	if l := next(); len(l.Result.Events) != 1 || l.Result.Events[0].Kv.Value != "YmF6" {
		t.Fatalf("watch event %+v", l)
	}
	cancel()

	// An error keeps gRPC's code and etcd's text.
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	r2, err := http.Post(base+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Zm9v","revision":"100"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if err := json.Unmarshal(b, &e); err != nil || e.Code != 11 || e.Message != "etcdserver: mvcc: required revision is a future revision" {
		t.Fatalf("future revision: %d %s", r2.StatusCode, b)
	}

	off := false
	c2 := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) { cfg.EnableGRPCGateway = &off })
	if code := gatewayPost(t, c2.members[0].ClientURLs()[0]+"/v3/kv/range", `{"key":"Zm9v"}`, nil); code != http.StatusNotFound {
		t.Fatalf("gateway off: range answered %d, want 404", code)
	}
}

// TestGatewayCurl runs README's curl command lines with the real curl
// (skipped when curl is not installed): the gateway's put and range in
// base64, and /health.
func TestGatewayCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl on PATH")
	}
	c := newCluster(t, 1, bbolt.Engine(), nil)
	base := c.members[0].ClientURLs()[0]
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %q: %v: %s", args, err, out)
		}
		return string(out)
	}
	// curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key":"Zm9v","value":"YmFy"}'
	if out := run("-L", base+"/v3/kv/put", "-X", "POST", "-d", `{"key":"Zm9v","value":"YmFy"}`); !strings.Contains(out, `"revision":"2"`) {
		t.Errorf("put: %s", out)
	}
	if out := run("-L", base+"/v3/kv/range", "-X", "POST", "-d", `{"key":"Zm9v"}`); !strings.Contains(out, `"key":"Zm9v"`) || !strings.Contains(out, `"value":"YmFy"`) {
		t.Errorf("range: %s", out)
	}
	// curl -s 127.0.0.1:2379/health
	if out := run(strings.TrimPrefix(base, "http://") + "/health"); !strings.Contains(out, `"health":"true"`) {
		t.Errorf("/health: %s", out)
	}
}

// TestAccessControl checks etcd's access controller on the client HTTP
// endpoints: CORS headers for every origin at the default ("*", an
// OPTIONS preflight answered at once), /v3beta/ served as /v3/; with
// --cors and --host-whitelist set, only a listed origin gets them and a
// plain-http request for another host is refused with 421 and etcd's
// text.
func TestAccessControl(t *testing.T) {
	do := func(t *testing.T, method, url, host, origin, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	t.Run("default", func(t *testing.T) {
		c := newCluster(t, 1, bbolt.Engine(), nil)
		base := c.members[0].ClientURLs()[0]
		resp, _ := do(t, http.MethodGet, base+"/health", "", "http://ui.example:3000", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			resp.Header.Get("Access-Control-Allow-Methods") != "POST, GET, OPTIONS, PUT, DELETE" ||
			resp.Header.Get("Access-Control-Allow-Headers") != "accept, content-type, authorization" {
			t.Errorf("/health: %d, CORS headers %v", resp.StatusCode, resp.Header)
		}
		resp, body := do(t, http.MethodOptions, base+"/v3/kv/put", "", "http://ui.example:3000", "")
		if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp, body := do(t, http.MethodPost, base+"/v3beta/kv/put", "", "", `{"key":"Zm9v","value":"YmFy"}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"revision":"2"`) {
			t.Errorf("/v3beta/kv/put: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("restricted", func(t *testing.T) {
		c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
			cfg.CORS = []string{"http://ui.example:3000"}
			cfg.HostWhitelist = []string{"localhost"}
		})
		base := c.members[0].ClientURLs()[0]
		port := base[strings.LastIndex(base, ":")+1:]
		resp, body := do(t, http.MethodGet, base+"/health", "", "", "")
		if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, `etcd --host-whitelist "127.0.0.1"`) || !strings.Contains(body, "CVE-2018-5702") {
			t.Errorf("host 127.0.0.1 not whitelisted: %d %q", resp.StatusCode, body)
		}
		resp, _ = do(t, http.MethodGet, base+"/health", "localhost:"+port, "http://other.example:1", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("whitelisted host, origin not allowed: %d %v", resp.StatusCode, resp.Header)
		}
		resp, _ = do(t, http.MethodGet, base+"/health", "localhost:"+port, "http://ui.example:3000", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "http://ui.example:3000" {
			t.Errorf("whitelisted host, allowed origin: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

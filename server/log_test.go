package server_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// readLogLines parses every line of an etcd-style JSON log file.
func readLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// etcdTS is etcd's timestamp layout, 2006-01-02T15:04:05.000000Z0700.
var etcdTS = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d{4})$`)

// TestLogsAreEtcdJSON starts a member logging to a file with the default
// level and format, and checks that every line is etcd's zap JSON (keys
// level, ts, caller, msg) and that the lines operators grep for are there
// with etcd's field names; raft's own lines arrive at their level.
func TestLogsAreEtcdJSON(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "strata.log")
	c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
		cfg.Logger = nil
		cfg.LogOutputs = []string{logFile}
	})
	c.close()

	lines := readLogLines(t, logFile)
	if os.Getenv("PEEK") != "" {
		b, _ := os.ReadFile(logFile)
		t.Logf("%s", b)
	}
	if len(lines) == 0 {
		t.Fatal("no log lines")
	}
	found := map[string]map[string]any{}
	raftInfo := false
	for _, l := range lines {
		for _, k := range []string{"level", "ts", "caller", "msg"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line %v has no %q", l, k)
			}
		}
		if ts, _ := l["ts"].(string); !etcdTS.MatchString(ts) {
			t.Errorf("ts %q is not etcd's format", ts)
		}
		switch l["level"] {
		case "info", "warn", "error":
		default:
			t.Errorf("level %v is not one of zap's lower-case levels at info or above", l["level"])
		}
		if caller, _ := l["caller"].(string); !strings.Contains(caller, ".go:") {
			t.Errorf("caller %q is not file:line", caller)
		}
		msg, _ := l["msg"].(string)
		if strings.Contains(msg, " elected leader ") {
			msg = "elected leader"
		}
		found[msg] = l
		if l["logger"] == "raft" && l["level"] == "info" && strings.HasPrefix(msg, "entering ") {
			raftInfo = true
		}
	}
	memberID := "" // the member's ID in hex, as etcd prints it
	for _, want := range []struct{ msg, field string }{
		{"starting member", "local-member-id"},
		{"starting member", "data-dir"},
		{"ready to serve client requests", "local-member-id"},
		{"elected leader", "logger"},
		{"stopped member", "local-member-id"},
	} {
		l, ok := found[want.msg]
		if !ok {
			t.Errorf("no %q line", want.msg)
			continue
		}
		if _, ok := l[want.field]; !ok {
			t.Errorf("%q line %v has no %q", want.msg, l, want.field)
		}
		if want.field == "local-member-id" {
			id := l[want.field].(string)
			if memberID != "" && id != memberID {
				t.Errorf("local-member-id %q, earlier %q", id, memberID)
			}
			memberID = id
		}
	}
	if !raftInfo {
		t.Error(`no raft line ("entering ... state") at info level: raft's lines do not arrive at their level`)
	}
}

// TestLogLevels checks --log-level: at "warn" no info line is written, at
// "panic" (which etcd accepts too) nothing is.
func TestLogLevels(t *testing.T) {
	for _, level := range []string{"warn", "panic"} {
		t.Run(level, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "strata.log")
			c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
				cfg.Logger = nil
				cfg.LogOutputs = []string{logFile}
				cfg.LogLevel = level
			})
			c.close()
			for _, l := range readLogLines(t, logFile) {
				if l["level"] == "info" || level == "panic" {
					t.Errorf("--log-level=%s logged %v", level, l)
				}
			}
		})
	}
}

// TestLogConsoleFormat checks --log-format=console: tab-separated, not
// JSON.
func TestLogConsoleFormat(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "strata.log")
	lg, closeLog, err := server.NewLogger("info", []string{logFile}, "console")
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("ready to serve client requests", "local-member-id", "8e9e05c52164694d")
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(strings.TrimSpace(string(b)), "\t")
	if len(fields) != 5 || fields[1] != "info" || fields[3] != "ready to serve client requests" ||
		fields[4] != `{"local-member-id": "8e9e05c52164694d"}` {
		t.Fatalf("console line %q", b)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z0700", fields[0]); err != nil {
		t.Fatalf("console time %q: %v", fields[0], err)
	}
}

// TestLogConfigErrors checks that etcd's invalid logging settings are
// refused with etcd's messages.
func TestLogConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		level   string
		outputs []string
		format  string
		want    string
	}{
		{"level", "loud", nil, "", `unrecognized level: "loud"`},
		{"format", "", nil, "xml", "unknown log format: xml, supported values json, console"},
		{"default with others", "", []string{"default", "stderr"}, "", `multi logoutput for "default" is not supported yet`},
		{"journal with others", "", []string{"systemd/journal", "stdout"}, "", "running with systemd/journal but other '--log-outputs' values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.Config{Engine: bbolt.Engine(), LogLevel: tc.level, LogOutputs: tc.outputs, LogFormat: tc.format}
			cfg.EnsureDefaults()
			err := cfg.Validate()
			if err == nil || !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig with %q", err, tc.want)
			}
			if _, _, err := server.NewLogger(tc.level, tc.outputs, tc.format); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewLogger: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRequestStatsLog checks etcd's "request stats" line: logged for every
// unary request at debug (at warn past --warning-unary-request-duration),
// with the put's value redacted to its size as etcd does.
func TestRequestStatsLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "strata.log")
	c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
		cfg.Logger = nil
		cfg.LogOutputs = []string{logFile}
		cfg.LogLevel = "debug"
	})
	if _, err := c.client().Put(ctxT(t), "stats-key", "secret-value"); err != nil {
		t.Fatal(err)
	}
	c.close()
	for _, l := range readLogLines(t, logFile) {
		if l["msg"] != "request stats" || l["response type"] != "/etcdserverpb.KV/Put" {
			continue
		}
		content, _ := l["request content"].(string)
		if !strings.Contains(content, "stats-key") || strings.Contains(content, "secret-value") || !strings.Contains(content, "value_size:12") {
			t.Fatalf("request content %q: want the key, the value's size, not the value", content)
		}
		if l["request count"] != 1.0 || l["level"] != "debug" {
			t.Fatalf("request stats %v", l)
		}
		return
	}
	t.Fatal("no request stats line for the put")
}

// TestRaftAndHeartbeatLogs runs three members logging etcd's JSON to
// files and checks, in the leader's log, etcd/raft's "<id> became leader
// at term <n>" line, and, once a follower is stopped, etcd's late
// heartbeat warning with its fields (to: the follower's ID; the heartbeat
// interval, twice it as expected duration, the excess) and
// etcd_server_heartbeat_send_failures_total counting it.
func TestRaftAndHeartbeatLogs(t *testing.T) {
	dir := t.TempDir()
	logOf := func(name string) string { return filepath.Join(dir, name+".log") }
	c := newCluster(t, 3, bbolt.Engine(), func(cfg *server.Config) {
		cfg.Logger = nil
		cfg.LogOutputs = []string{logOf(cfg.Name)}
	})
	lead := c.leader()
	leadID := fmt.Sprintf("%x", c.members[lead].MemberID())
	became := regexp.MustCompile(`^` + leadID + ` became leader at term [1-9]\d*$`)
	foundBecame := false
	for _, l := range readLogLines(t, logOf(c.cfgs[lead].Name)) {
		if msg, _ := l["msg"].(string); became.MatchString(msg) && l["logger"] == "raft" && l["level"] == "info" {
			foundBecame = true
		}
	}
	if !foundBecame {
		t.Errorf("no %q line in the leader's log", became)
	}

	f := (lead + 1) % 3
	fID := fmt.Sprintf("%x", c.members[f].MemberID())
	if err := c.members[f].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[f] = nil
	const msg = "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
	var line map[string]any
	for deadline := time.Now().Add(20 * time.Second); line == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, l := range readLogLines(t, logOf(c.cfgs[lead].Name)) {
			if l["msg"] == msg {
				line = l
				break
			}
		}
	}
	if line == nil {
		t.Fatalf("no %q line in the leader's log 20s after a follower stopped", msg)
	}
	// The test cluster's heartbeat interval is 50ms (ElectionTimeout 1s).
	for k, want := range map[string]any{"level": "warn", "to": fID, "heartbeat-interval": "50ms", "expected-duration": "100ms"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], want, line)
		}
	}
	if d, err := time.ParseDuration(fmt.Sprint(line["exceeded-duration"])); err != nil || d <= 0 {
		t.Errorf("exceeded-duration %v: %v", line["exceeded-duration"], err)
	}
	fams := scrape(t, "http://"+c.endpoint(lead)+"/metrics")
	if m := fams["etcd_server_heartbeat_send_failures_total"]; m == nil || m.Metric[0].GetCounter().GetValue() < 1 {
		t.Errorf("etcd_server_heartbeat_send_failures_total %v, want >= 1", m)
	}
}

// TestLogRotation: etcd's --enable-log-rotation with
// --log-rotation-config-json (lumberjack's settings) rotates the one log
// file at maxsize MB, keeping maxbackups old files; every line stays
// etcd's JSON. Without exactly one file, or with bad JSON, the logger is
// refused with etcd's errors.
func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "strata.log")
	lg, closeLog, err := server.NewRotatingLogger("info", []string{file}, "json", `{"maxsize": 1, "maxbackups": 2}`)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 200)
	for i := range 12000 { // about 3 MB
		lg.Info(fmt.Sprintf("line %d", i), "pad", pad)
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	// lumberjack removes backups past maxbackups in a goroutine of its own
	// after a rotation, which Close does not wait for: wait for it.
	var entries []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if entries, err = os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		if len(entries) <= 3 || time.Now().After(deadline) {
			break
		}
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over maxsize 1 MB", e.Name(), fi.Size())
		}
		readLogLines(t, filepath.Join(dir, e.Name()))
	}
	if len(names) != 3 || !slices.Contains(names, "strata.log") {
		t.Errorf("files %q: want strata.log and 2 rotated ones (maxbackups 2)", names)
	}
	for _, tc := range []struct {
		outputs []string
		json    string
		want    string
	}{
		{[]string{"stderr"}, server.DefaultLogRotationConfig, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")}, server.DefaultLogRotationConfig, "--log-outputs requires a single file path"},
		{[]string{file}, `{"maxsize": 1`, "improperly formatted log rotation config"},
		{[]string{file}, `{"maxsize": "big"}`, "invalid log rotation config"},
	} {
		if _, _, err := server.NewRotatingLogger("info", tc.outputs, "json", tc.json); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("outputs %q, rotation %s: error %v, want %q", tc.outputs, tc.json, err, tc.want)
		}
	}
}

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// buildHTTP sets up etcd's HTTP endpoints, served on the client URLs
// (HTTP/1 connections) and on --listen-metrics-urls:
//
//	/health    {"health":"true|false","reason":...}; ?exclude=ALARM, ?serializable=true
//	/livez     the serializable_read check
//	/readyz    data_corruption, serializable_read, linearizable_read, non_learner
//	/version   {"etcdserver":...,"etcdcluster":...,"storage":...}
//	/metrics   Prometheus metrics
func (s *Server) buildHTTP() {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", s.handleHealth)
	mux.HandleFunc("/version", s.handleVersion)
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	s.installChecks(mux, "livez", []namedCheck{
		{"serializable_read", s.readCheck(true)},
	})
	s.installChecks(mux, "readyz", []namedCheck{
		{"data_corruption", s.alarmCheck(pb.AlarmType_CORRUPT)},
		{"serializable_read", s.readCheck(true)},
		{"linearizable_read", s.readCheck(false)},
		{"non_learner", s.learnerCheck},
	})
	if s.cfg.EnablePprof {
		// As etcd: the mutex profile samples 1 contention in 5, unless
		// the process set a rate already.
		if runtime.SetMutexProfileFraction(-1) == 0 {
			runtime.SetMutexProfileFraction(5)
		}
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}
	// The client URLs serve the gateway's JSON API under /v3/ too.
	client := http.Handler(mux)
	if s.gateway != nil {
		cm := http.NewServeMux()
		cm.Handle("/v3/", s.gateway.handler)
		cm.Handle("/", mux)
		client = cm
	}
	client = s.accessControl(client)
	s.httpServer = &http.Server{Handler: client, ReadHeaderTimeout: time.Minute}
	s.tlsHTTP = &http.Server{
		Handler:           grpcHandler(s.grpc, client),
		ReadHeaderTimeout: time.Minute,
		// --max-concurrent-streams, as etcd's configureHTTPServer: net/http
		// replaces a setting above MaxInt32 with its default (250).
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: int(min(s.cfg.MaxConcurrentStreams, math.MaxInt32))},
	}
	s.tlsGRPC = &http.Server{
		Handler:           grpcHandler(s.grpc, http.NotFoundHandler()),
		ReadHeaderTimeout: time.Minute,
		HTTP2:             s.tlsHTTP.HTTP2,
	}
}

type healthJSON struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	excluded := r.URL.Query()["exclude"]
	serializable := r.URL.Query().Get("serializable") == "true"
	h := healthJSON{Health: "true"}
	for _, a := range s.node.Alarms(pb.AlarmType_NONE) {
		if slices.Contains(excluded, a.Alarm.String()) {
			continue
		}
		h.Health = "false"
		switch a.Alarm {
		case pb.AlarmType_NOSPACE:
			h.Reason = "ALARM NOSPACE"
		case pb.AlarmType_CORRUPT:
			h.Reason = "ALARM CORRUPT"
		default:
			h.Reason = "ALARM UNKNOWN"
		}
		break
	}
	if h.Health == "true" && !serializable && s.leaderID() == 0 {
		h = healthJSON{Health: "false", Reason: "RAFT NO LEADER"}
	}
	if h.Health == "true" {
		if err := s.readCheck(serializable)(r.Context()); err != nil {
			h = healthJSON{Health: "false", Reason: fmt.Sprintf("RANGE ERROR:%s", err)}
		}
	}
	d, _ := json.Marshal(h)
	if h.Health != "true" {
		s.metrics.healthFailed.Inc()
		s.cfg.Logger.Warn("/health error", "output", string(d), "status-code", http.StatusServiceUnavailable)
		http.Error(w, string(d), http.StatusServiceUnavailable)
		return
	}
	s.metrics.healthSuccess.Inc()
	w.WriteHeader(http.StatusOK)
	w.Write(d)
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Server  string `json:"etcdserver"`
		Cluster string `json:"etcdcluster"`
		Storage string `json:"storage"`
	}{ServerVersion, ClusterVersion, StorageVersion})
}

type namedCheck struct {
	name  string
	check func(context.Context) error
}

// readCheck is etcd's: a keys-only range of one key.
func (s *Server) readCheck(serializable bool) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
		defer cancel()
		return s.view(ctx, !serializable, func(st *mvcc.Store) error {
			_, err := st.Range(ctx, &pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1})
			return err
		})
	}
}

func (s *Server) alarmCheck(t pb.AlarmType) func(context.Context) error {
	return func(context.Context) error {
		for _, a := range s.node.Alarms(t) {
			return fmt.Errorf("alarm activated: %s", a.Alarm)
		}
		return nil
	}
}

func (s *Server) learnerCheck(context.Context) error {
	if s.isLearner() {
		return fmt.Errorf("can't be learner")
	}
	return nil
}

// installChecks serves /<kind> (every check, minus ?exclude=) and
// /<kind>/<check>, answering "ok" or 503 with the failures, with each
// check's line under ?verbose, as etcd does.
func (s *Server) installChecks(mux *http.ServeMux, kind string, checks []namedCheck) {
	run := func(w http.ResponseWriter, r *http.Request, checks []namedCheck) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		var out strings.Builder
		failed := false
		for _, c := range checks {
			if err := c.check(r.Context()); err != nil {
				fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
				failed = true
			} else {
				fmt.Fprintf(&out, "[+]%s ok\n", c.name)
			}
		}
		if failed {
			http.Error(w, out.String(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, ok := r.URL.Query()["verbose"]; ok {
			io.WriteString(w, out.String())
		}
		io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("/"+kind, func(w http.ResponseWriter, r *http.Request) {
		excluded := r.URL.Query()["exclude"]
		var sel []namedCheck
		for _, c := range checks {
			if !slices.Contains(excluded, c.name) {
				sel = append(sel, c)
			}
		}
		run(w, r, sel)
	})
	for _, c := range checks {
		mux.HandleFunc("/"+kind+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
			run(w, r, []namedCheck{c})
		})
	}
}

// accessControl is etcd's access controller in front of the client HTTP
// endpoints (embed's accessController): /v3beta/ paths are served as
// /v3/; a plain-http request for a host not in HostWhitelist is refused
// with 421 and etcd's text; a gateway request over TLS whose client
// certificate has a CommonName is refused while client certificates and
// auth are on (the gateway would not act as that user); CORS headers are
// added for the allowed origins, and an OPTIONS request is answered
// there.
func (s *Server) accessControl(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v3beta/") {
			r.URL.Path = strings.Replace(r.URL.Path, "/v3beta/", "/v3/", 1)
		}
		if r.TLS == nil {
			host := r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
			if !allows(s.cfg.HostWhitelist, host) {
				s.cfg.Logger.Warn("rejecting HTTP request to prevent DNS rebinding attacks", "host", host)
				http.Error(w, hostRefusal(host), http.StatusMisdirectedRequest)
				return
			}
		} else if s.cfg.ClientTLSInfo.ClientCertAuth && s.gateway != nil && s.node.Auth().Enabled() && strings.HasPrefix(r.URL.Path, "/v3/") {
			for _, chain := range r.TLS.VerifiedChains {
				if len(chain) > 0 && chain[0].Subject.CommonName != "" {
					http.Error(w, "CommonName of client sending a request against gateway will be ignored and not used as expected", http.StatusBadRequest)
					return
				}
			}
		}
		if allows(s.cfg.CORS, "*") {
			addCORSHeader(w, "*")
		} else if origin := r.Header.Get("Origin"); allows(s.cfg.CORS, origin) {
			addCORSHeader(w, origin)
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allows is etcd's rule for --cors and --host-whitelist: an empty list or
// "*" allows everything, else the value must be listed.
func allows(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, "*") || slices.Contains(list, v)
}

func addCORSHeader(w http.ResponseWriter, origin string) {
	w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	w.Header().Add("Access-Control-Allow-Origin", origin)
	w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

// hostRefusal is etcd's answer to a request for a host not whitelisted.
func hostRefusal(host string) string {
	return fmt.Sprintf(`
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Enable TLS, then any HTTPS request will be allowed.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd --host-whitelist %q

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`, host)
}

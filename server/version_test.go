package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-semver/semver"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/server"
)

// TestVersionIsEtcds checks that the versions Strata reports are the ones
// of the etcd release whose API it serves (the etcd module it is tested
// against): the server version, and the cluster and storage versions at
// major.minor.0, as etcd reports them.
func TestVersionIsEtcds(t *testing.T) {
	if server.ServerVersion != version.Version {
		t.Errorf("ServerVersion %s, etcd's module is %s", server.ServerVersion, version.Version)
	}
	sv := semver.Must(semver.NewVersion(version.Version))
	minor := fmt.Sprintf("%d.%d.0", sv.Major, sv.Minor)
	for name, v := range map[string]string{"ClusterVersion": server.ClusterVersion, "StorageVersion": server.StorageVersion} {
		if v != minor {
			t.Errorf("%s %s, want %s", name, v, minor)
		}
	}
}

// TestDiffEtcdVersion compares what an embedded etcd v3.7.3 and a Strata
// member report of their versions (/version, Status, the version metrics)
// and their answers to downgrade validate/enable/cancel for targets around
// the cluster version (code and text of every error); a valid enable is
// the one difference (ErrDowngradeUnsupported, see TestDowngrade).
func TestDiffEtcdVersion(t *testing.T) {
	etcdEP := startEtcd(t)
	c := newCluster(t, 1, engines()[0], nil)
	eps := [2]string{etcdEP, c.endpoint(0)}
	names := [2]string{"etcd", "strata"}

	var bodies, metrics [2]string
	for i, ep := range eps {
		code, body := httpGet(t, "http://"+ep+"/version")
		if code != 200 {
			t.Fatalf("%s /version: %d %s", names[i], code, body)
		}
		bodies[i] = strings.TrimSpace(body)
		_, m := httpGet(t, "http://"+ep+"/metrics")
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "etcd_server_version{") || strings.HasPrefix(l, "etcd_cluster_version{") {
				metrics[i] += l + "\n"
			}
		}
	}
	if bodies[0] != bodies[1] {
		t.Errorf("/version: etcd %s, strata %s", bodies[0], bodies[1])
	}
	if metrics[0] != metrics[1] || metrics[0] == "" {
		t.Errorf("version metrics: etcd\n%sstrata\n%s", metrics[0], metrics[1])
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var sides [2]*diffSide
	for i, ep := range eps {
		sides[i] = newDiffSide(t, names[i], ep)
	}
	var st [2]string
	for i, s := range sides {
		r, err := pb.NewMaintenanceClient(s.cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
		if err != nil {
			t.Fatalf("%s status: %v", names[i], err)
		}
		st[i] = fmt.Sprintf("version %s storage %s downgrade %v", r.Version, r.StorageVersion, r.DowngradeInfo)
	}
	if st[0] != st[1] {
		t.Errorf("status: etcd %s, strata %s", st[0], st[1])
	}

	type req struct {
		action pb.DowngradeRequest_DowngradeAction
		target string
	}
	reqs := []req{{pb.DowngradeRequest_CANCEL, ""}, {pb.DowngradeRequest_DowngradeAction(7), "3.6"}}
	for _, v := range []string{"3.6", "3.6.0", "3.6.8", "3.7", "3.7.3", "3.8", "3.5", "4.6", "2.7", "3", "v3.6", "3.6.x", "", "three"} {
		reqs = append(reqs, req{pb.DowngradeRequest_VALIDATE, v})
		if v != "3.6" && v != "3.6.0" && v != "3.6.8" {
			reqs = append(reqs, req{pb.DowngradeRequest_ENABLE, v})
		}
	}
	reqs = append(reqs, req{pb.DowngradeRequest_CANCEL, ""})
	for _, r := range reqs {
		var got [2]string
		for i, s := range sides {
			resp, err := pb.NewMaintenanceClient(s.cli.ActiveConnection()).Downgrade(ctx, &pb.DowngradeRequest{Action: r.action, Version: r.target})
			if err != nil {
				st, _ := status.FromError(err)
				got[i] = fmt.Sprintf("error code=%s msg=%q", st.Code(), st.Message())
			} else {
				got[i] = "version " + resp.Version
			}
		}
		if got[0] != got[1] {
			t.Errorf("downgrade %s %q: etcd %s, strata %s", r.action, r.target, got[0], got[1])
		}
	}
}

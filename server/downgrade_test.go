package server_test

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// TestDowngrade checks etcdctl downgrade validate/enable/cancel against
// the cluster version Strata reports (3.7): etcd's target rules and
// errors; enable of a valid target is refused, since a Strata cluster
// cannot run at an older cluster version; cancel without a downgrade
// answers as etcd's.
func TestDowngrade(t *testing.T) {
	c := newCluster(t, 1, bbolt.Engine(), nil)
	cli := c.client()
	ctx := ctxT(t)
	for _, tc := range []struct {
		name    string
		action  clientv3.DowngradeAction
		version string
		err     error // nil: success
	}{
		{"validate one minor down", clientv3.DowngradeValidate, "3.6", nil},
		{"validate with patch", clientv3.DowngradeValidate, "3.6.8", nil},
		{"validate two minors down", clientv3.DowngradeValidate, "3.5", rpctypes.ErrInvalidDowngradeTargetVersion},
		{"validate the same", clientv3.DowngradeValidate, "3.7", rpctypes.ErrInvalidDowngradeTargetVersion},
		{"validate up", clientv3.DowngradeValidate, "3.8", rpctypes.ErrInvalidDowngradeTargetVersion},
		{"validate another major", clientv3.DowngradeValidate, "2.6", rpctypes.ErrInvalidDowngradeTargetVersion},
		{"validate bad format", clientv3.DowngradeValidate, "three", rpctypes.ErrWrongDowngradeVersionFormat},
		{"enable bad target", clientv3.DowngradeEnable, "3.5", rpctypes.ErrInvalidDowngradeTargetVersion},
		{"enable bad format", clientv3.DowngradeEnable, "v3.6", rpctypes.ErrWrongDowngradeVersionFormat},
		{"enable", clientv3.DowngradeEnable, "3.6", server.ErrDowngradeUnsupported},
		{"cancel", clientv3.DowngradeCancel, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := cli.Downgrade(ctx, tc.action, tc.version)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if resp.Version != "3.7" || resp.Header.GetClusterId() == 0 {
					t.Fatalf("response %+v, want version 3.7 and a header", resp)
				}
				return
			}
			if tc.err == server.ErrDowngradeUnsupported {
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "downgrade is not supported by Strata") {
					t.Fatalf("err %v, want FailedPrecondition: %v", err, tc.err)
				}
				return
			}
			if !errors.Is(rpctypes.Error(err), tc.err) && rpctypes.ErrorDesc(err) != tc.err.Error() {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
		})
	}
}

package server_test

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestMaintenanceHash checks etcd's Maintenance.Hash on each engine:
// members that applied the same writes answer the same hash at the same
// revision, and a write changes it.
func TestMaintenanceHash(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, 3, eng, nil)
			cli := c.client()
			ctx := ctxT(t)
			if _, err := cli.Grant(ctx, 600); err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cli.Delete(ctx, "k03"); err != nil {
				t.Fatal(err)
			}
			var mcs []pb.MaintenanceClient
			for i := range c.members {
				mcs = append(mcs, pb.NewMaintenanceClient(c.client(i).ActiveConnection()))
			}
			hashes := func() (uint32, int64) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					var hs []uint32
					var revs []int64
					for _, mc := range mcs {
						resp, err := mc.Hash(ctx, &pb.HashRequest{})
						if err != nil {
							t.Fatal(err)
						}
						hs = append(hs, resp.Hash)
						revs = append(revs, resp.Header.Revision)
					}
					same := true
					for i := range hs {
						same = same && revs[i] == revs[0] && hs[i] == hs[0]
					}
					if same {
						return hs[0], revs[0]
					}
					if time.Now().After(deadline) {
						t.Fatalf("members' hashes %v at revisions %v", hs, revs)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			h1, rev1 := hashes()
			if _, err := cli.Put(ctx, "k00", "w"); err != nil {
				t.Fatal(err)
			}
			h2, rev2 := hashes()
			if rev2 != rev1+1 || h2 == h1 {
				t.Fatalf("after a put: hash %x at %d, before %x at %d", h2, rev2, h1, rev1)
			}
		})
	}
}

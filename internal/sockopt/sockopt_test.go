package sockopt

import (
	"testing"
)

// TestReusePort: a second listener binds the address of a first one only
// when both set SO_REUSEPORT.
func TestReusePort(t *testing.T) {
	for _, tc := range []struct {
		name       string
		first, sec Options
		wantBind   bool
	}{
		{"plain", Options{}, Options{}, false},
		{"reuse address only", Options{ReuseAddress: true}, Options{ReuseAddress: true}, false},
		{"reuse port", Options{ReusePort: true}, Options{ReusePort: true}, true},
		{"reuse port on one", Options{ReusePort: true}, Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l1, err := Listen("127.0.0.1:0", tc.first)
			if err != nil {
				t.Fatal(err)
			}
			defer l1.Close()
			l2, err := Listen(l1.Addr().String(), tc.sec)
			if err == nil {
				l2.Close()
			}
			if got := err == nil; got != tc.wantBind {
				t.Fatalf("second bind succeeded %v, want %v (%v)", got, tc.wantBind, err)
			}
		})
	}
}

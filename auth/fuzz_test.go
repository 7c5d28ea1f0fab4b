package auth

import (
	"context"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// FuzzTokenParsing feeds token strings and --auth-token values to the
// parsers and the simple token check: no panic, and a token never names a
// user unless it was issued.
func FuzzTokenParsing(f *testing.F) {
	for _, s := range []string{"", "abc.12", "a.b.c", "simple", "jwt,sign-method=HS256,priv-key=x", ".", "x.18446744073709551616", "Bearer x.1"} {
		f.Add(s)
	}
	s, err := NewStore(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	aux := auxMap{}
	s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "root", Options: &authpb.UserAddOptions{NoPassword: true}})
	s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "root", Role: RootRole})
	s.ApplyAuthEnable(aux)
	f.Fuzz(func(t *testing.T, tok string) {
		ParseTokenOptions(tok)
		parseSimpleToken(tok)
		if ai, err := s.AuthInfoFromToken(context.Background(), tok); err == nil {
			t.Fatalf("token %q names %v", tok, ai)
		}
	})
}

// FuzzPermissionRange grants and checks arbitrary ranges: no panic, an
// invalid range is refused, and a granted valid range is then permitted.
func FuzzPermissionRange(f *testing.F) {
	f.Add([]byte("a"), []byte("b"), []byte("a"), []byte(""))
	f.Add([]byte("a"), []byte{0}, []byte("b"), []byte{0})
	f.Add([]byte{0}, []byte{0}, []byte("z"), []byte("a"))
	f.Add([]byte("b"), []byte("a"), []byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, key, end, qkey, qend []byte) {
		s, err := NewStore(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		aux := auxMap{}
		s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "root", Options: &authpb.UserAddOptions{NoPassword: true}})
		s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "root", Role: RootRole})
		s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "u", Options: &authpb.UserAddOptions{NoPassword: true}})
		s.ApplyRoleAdd(aux, &pb.AuthRoleAddRequest{Name: "r"})
		s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"})
		_, err = s.ApplyRoleGrantPermission(aux, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: key, RangeEnd: end, PermType: authpb.Permission_READ}})
		valid := ValidPermissionRange(key, end)
		if valid != (err == nil) {
			t.Fatalf("grant [%q, %q): %v, valid %v", key, end, err, valid)
		}
		s.ApplyAuthEnable(aux)
		u := &AuthInfo{Username: "u", Revision: s.Revision()}
		s.IsRangePermitted(u, qkey, qend)
		s.IsPutPermitted(u, qkey)
		if valid {
			if err := s.IsRangePermitted(u, key, end); err != nil {
				t.Fatalf("granted [%q, %q) refused: %v", key, end, err)
			}
		}
	})
}

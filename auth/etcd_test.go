package auth

import (
	"errors"
	"maps"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEtcdImportExport moves etcd's auth buckets into a store's records and
// back: Load sees etcd's users, roles, flag and revision, and ExportEtcd
// gives the records back unchanged. Records that do not decode or are
// stored under another name are refused and nothing is written.
func TestEtcdImportExport(t *testing.T) {
	root := marshal(t, &authpb.User{Name: []byte("root"), Password: []byte("$2a$04$x"), Roles: []string{"root"}})
	bob := marshal(t, &authpb.User{Name: []byte("bob"), Roles: []string{"app"}, Options: &authpb.UserAddOptions{NoPassword: true}})
	rootRole := marshal(t, &authpb.Role{Name: []byte("root")})
	app := marshal(t, &authpb.Role{Name: []byte("app"), KeyPermission: []*authpb.Permission{
		{PermType: authpb.Permission_READWRITE, Key: []byte("/app/"), RangeEnd: []byte("/app0")}}})
	good := EtcdState{Enabled: true, Revision: 17,
		Users: map[string][]byte{"root": root, "bob": bob}, Roles: map[string][]byte{"root": rootRole, "app": app}}

	m := auxMap{}
	if err := ImportEtcd(m, good); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Load(m); err != nil {
		t.Fatal(err)
	}
	if !s.Enabled() || s.Revision() != 17 || !s.HasRole("bob", "app") || !s.HasRole("root", "root") {
		t.Fatalf("loaded: enabled %v, revision %d, bob app %v, root root %v", s.Enabled(), s.Revision(), s.HasRole("bob", "app"), s.HasRole("root", "root"))
	}
	back, err := ExportEtcd(m)
	if err != nil {
		t.Fatal(err)
	}
	if back.Enabled != good.Enabled || back.Revision != good.Revision || !maps.EqualFunc(back.Users, good.Users, bytesEqual) ||
		!maps.EqualFunc(back.Roles, good.Roles, bytesEqual) {
		t.Fatalf("exported %+v, want %+v", back, good)
	}
	// A store without auth records exports etcd's new auth store.
	if st, err := ExportEtcd(auxMap{}); err != nil || st.Enabled || st.Revision != 1 || len(st.Users)+len(st.Roles) != 0 {
		t.Fatalf("empty store exported %+v, %v", st, err)
	}

	for _, c := range []struct {
		name string
		st   EtcdState
	}{
		{"user under another name", EtcdState{Users: map[string][]byte{"alice": root}}},
		{"role under another name", EtcdState{Roles: map[string][]byte{"app": rootRole}}},
		{"user does not decode", EtcdState{Users: map[string][]byte{"root": {0xff, 0xff}}}},
		{"role does not decode", EtcdState{Roles: map[string][]byte{"app": {0x0a, 0x10}}}},
		{"empty name", EtcdState{Users: map[string][]byte{"": marshal(t, &authpb.User{})}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := auxMap{}
			if err := ImportEtcd(m, c.st); !errors.Is(err, ErrBadEtcdRecord) {
				t.Fatalf("import: %v, want %v", err, ErrBadEtcdRecord)
			}
			if len(m) != 0 {
				t.Fatalf("a refused import wrote %d records", len(m))
			}
		})
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"github.com/strata-kv/strata/internal/optionstest"
)

// auxMap is an auxiliary area in memory: what a committed WriteBatch
// would leave in the store.
type auxMap map[string][]byte

func (m auxMap) SetAux(name, value []byte) { m[string(name)] = append([]byte(nil), value...) }
func (m auxMap) DeleteAux(name []byte)     { delete(m, string(name)) }
func (m auxMap) Aux(prefix []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	for k, v := range m {
		if strings.HasPrefix(k, string(prefix)) {
			out[k] = v
		}
	}
	return out, nil
}

func newTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := NewStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func mustHash(t *testing.T, pw string) string {
	h, err := HashPassword(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPermissions checks etcd's range rules for permission checks: a key,
// a range, a prefix, from-key (open-ended), and ranges covered only by two
// permissions together.
func TestPermissions(t *testing.T) {
	aux := auxMap{}
	s := newTestStore(t, Options{})
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "root", HashedPassword: mustHash(t, "r")}))
	must(s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "root", Role: RootRole}))
	must(s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "u", Options: &authpb.UserAddOptions{NoPassword: true}}))
	must(s.ApplyRoleAdd(aux, &pb.AuthRoleAddRequest{Name: "r"}))
	grant := func(key, end string, typ authpb.Permission_Type) {
		must(s.ApplyRoleGrantPermission(aux, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte(key), RangeEnd: []byte(end), PermType: typ}}))
	}
	grant("a", "", authpb.Permission_READWRITE)     // the key a
	grant("b/", "b0", authpb.Permission_READ)       // the prefix b/
	grant("c", "d", authpb.Permission_WRITE)        // [c, d)
	grant("d", "e", authpb.Permission_WRITE)        // [d, e): with the last, [c, e)
	grant("x", "\x00", authpb.Permission_READWRITE) // every key from x on
	must(s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}))
	must(s.ApplyAuthEnable(aux))
	u := &AuthInfo{Username: "u", Revision: s.Revision()}

	for _, tc := range []struct {
		key, end string
		write    bool
		want     error
	}{
		{"a", "", false, nil},
		{"a", "", true, nil},
		{"a", "a\x00", false, nil}, // [a, a\x00) is the key a
		{"a", "b", false, ErrPermissionDenied},
		{"aa", "", false, ErrPermissionDenied},
		{"b/", "b0", false, nil},
		{"b/1", "", false, nil},
		{"b/1", "", true, ErrPermissionDenied},
		{"b", "b0", false, ErrPermissionDenied},
		{"c", "e", true, nil}, // covered by two permissions
		{"c", "e", false, ErrPermissionDenied},
		{"c", "f", true, ErrPermissionDenied},
		{"x", "\x00", false, nil},
		{"y", "\x00", true, nil},
		{"w", "\x00", false, ErrPermissionDenied},
		{"\x00", "\x00", false, ErrPermissionDenied},
	} {
		var err error
		if tc.write {
			err = s.IsDeleteRangePermitted(u, []byte(tc.key), []byte(tc.end))
		} else {
			err = s.IsRangePermitted(u, []byte(tc.key), []byte(tc.end))
		}
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("[%q, %q) write=%v: %v, want %v", tc.key, tc.end, tc.write, err, tc.want)
		}
	}

	// Root may do everything; the anonymous caller and an unknown user
	// nothing; an old revision fails.
	root := &AuthInfo{Username: "root", Revision: s.Revision()}
	if err := s.IsRangePermitted(root, []byte("\x00"), []byte("\x00")); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := s.IsAdminPermitted(root); err != nil {
		t.Errorf("root admin: %v", err)
	}
	if err := s.IsAdminPermitted(u); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("user admin: %v", err)
	}
	if err := s.IsRangePermitted(&AuthInfo{}, []byte("a"), nil); !errors.Is(err, ErrUserEmpty) {
		t.Errorf("anonymous: %v", err)
	}
	if err := s.IsPutPermitted(&AuthInfo{Username: "ghost", Revision: s.Revision()}, []byte("a")); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("unknown user: %v", err)
	}
	old := &AuthInfo{Username: "u", Revision: s.Revision() - 1}
	if err := s.IsPutPermitted(old, []byte("a")); !errors.Is(err, ErrAuthOldRevision) {
		t.Errorf("old revision: %v", err)
	}

	// A reload from the auxiliary area gives the same answers.
	again := newTestStore(t, Options{})
	if err := again.Load(aux); err != nil {
		t.Fatal(err)
	}
	if !again.Enabled() || again.Revision() != s.Revision() {
		t.Fatalf("reloaded: enabled %v revision %d, want true %d", again.Enabled(), again.Revision(), s.Revision())
	}
	if err := again.IsDeleteRangePermitted(u, []byte("c"), []byte("e")); err != nil {
		t.Errorf("reloaded [c, e): %v", err)
	}
	if r, _ := again.ApplyRoleGet(&pb.AuthRoleGetRequest{Role: "r"}); len(r.Perm) != 5 {
		t.Errorf("reloaded role: %v", r)
	}
}

// TestValidPermissionRange is etcd's rule for granted ranges.
func TestValidPermissionRange(t *testing.T) {
	for _, tc := range []struct {
		key, end string
		want     bool
	}{
		{"a", "", true},
		{"a", "b", true},
		{"a", "\x00", true},
		{"", "", false},
		{"", "b", false},
		{"b", "a", false},
		{"a", "a", false},
		{"\x00", "\x00", true},
	} {
		if got := ValidPermissionRange([]byte(tc.key), []byte(tc.end)); got != tc.want {
			t.Errorf("[%q, %q): %v, want %v", tc.key, tc.end, got, tc.want)
		}
	}
}

// TestSimpleTokens: issued at apply, known until the TTL passes unused
// (each use renews it), forgotten when the user is deleted or auth is
// disabled; a token for an index not applied yet waits for it.
func TestSimpleTokens(t *testing.T) {
	applied := make(chan struct{})
	wait := func(ctx context.Context, index uint64) error {
		if index <= 10 {
			return nil
		}
		select {
		case <-applied:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	aux := auxMap{}
	s := newTestStore(t, Options{TokenTTL: time.Hour, WaitIndex: wait})
	st := s.tokens.(*simpleTokens)
	now := time.Unix(1000, 0)
	st.now = func() time.Time { return now }
	if _, err := s.ApplyUserAdd(aux, &pb.AuthUserAddRequest{Name: "root", HashedPassword: mustHash(t, "pw")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyUserGrantRole(aux, &pb.AuthUserGrantRoleRequest{User: "root", Role: RootRole}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyAuthenticate(&pb.InternalAuthenticateRequest{Name: "root", SimpleToken: "p"}, 5); !errors.Is(err, ErrAuthNotEnabled) {
		t.Fatalf("authenticate while disabled: %v", err)
	}
	if _, err := s.ApplyAuthEnable(aux); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword("root", "bad"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("bad password: %v", err)
	}
	if _, err := s.CheckPassword("root", "pw"); err != nil {
		t.Fatal(err)
	}
	prefix, err := s.GenTokenPrefix()
	if err != nil || len(prefix) != 16 {
		t.Fatalf("prefix %q %v", prefix, err)
	}
	resp, err := s.ApplyAuthenticate(&pb.InternalAuthenticateRequest{Name: "root", SimpleToken: prefix}, 7)
	if err != nil || resp.Token != prefix+".7" {
		t.Fatalf("token %v %v", resp, err)
	}
	ctx := context.Background()
	if ai, err := s.AuthInfoFromToken(ctx, resp.Token); err != nil || ai.Username != "root" || ai.Revision != s.Revision() {
		t.Fatalf("info %v %v", ai, err)
	}
	for _, bad := range []string{"", "x", prefix, prefix + ".8", prefix + ".7.1", "a.b"} {
		if _, err := s.AuthInfoFromToken(ctx, bad); !errors.Is(err, ErrInvalidAuthToken) {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	// A token of an index not applied here yet waits for it.
	late, _ := s.ApplyAuthenticate(&pb.InternalAuthenticateRequest{Name: "root", SimpleToken: "q"}, 11)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := s.AuthInfoFromToken(tctx, late.Token); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token before its index: %v", err)
	}
	cancel()
	close(applied)
	if _, err := s.AuthInfoFromToken(ctx, late.Token); err != nil {
		t.Errorf("token after its index: %v", err)
	}
	// TTL: a use renews; unused past it, expired.
	now = now.Add(59 * time.Minute)
	if _, err := s.AuthInfoFromToken(ctx, resp.Token); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Minute)
	st.expire()
	if _, err := s.AuthInfoFromToken(ctx, resp.Token); err != nil {
		t.Fatalf("renewed token expired: %v", err)
	}
	now = now.Add(61 * time.Minute)
	st.expire()
	if _, err := s.AuthInfoFromToken(ctx, resp.Token); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("expired token: %v", err)
	}
	// Disable forgets every token.
	resp, _ = s.ApplyAuthenticate(&pb.InternalAuthenticateRequest{Name: "root", SimpleToken: prefix}, 9)
	if _, err := s.ApplyAuthDisable(aux); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyAuthEnable(aux); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthInfoFromToken(ctx, resp.Token); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token after disable: %v", err)
	}
}

// TestParseTokenOptions is etcd's --auth-token syntax.
func TestParseTokenOptions(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		typ     string
		nopts   int
		invalid bool
	}{
		{"simple", "simple", 0, false},
		{"jwt,sign-method=HS256,priv-key=k", "jwt", 2, false},
		{"jwt,sign-method", "", 0, true},
		{"jwt,a=1,a=2", "", 0, true},
		{"jwt,a=b=c", "", 0, true},
		{"", "", 0, false},
	} {
		typ, opts, err := ParseTokenOptions(tc.spec)
		if tc.invalid {
			if !errors.Is(err, ErrInvalidAuthOpts) {
				t.Errorf("%q: %v, want ErrInvalidAuthOpts", tc.spec, err)
			}
			continue
		}
		if err != nil || typ != tc.typ || len(opts) != tc.nopts {
			t.Errorf("%q: %q %v %v", tc.spec, typ, opts, err)
		}
	}
	for _, spec := range []string{"", "bogus", "jwt", "jwt,sign-method=HS256", "jwt,sign-method=NOPE,priv-key=x", "jwt,sign-method=RS256,priv-key=/nonexistent"} {
		if err := ValidateTokenOptions(spec); err == nil {
			t.Errorf("%q: accepted", spec)
		}
	}
	if err := ValidateTokenOptions("simple"); err != nil {
		t.Error(err)
	}
}

// TestOptions is the options convention's table test.
func TestOptions(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[Options]{
		{Name: "defaults", Opts: Options{}, OK: true},
		{Name: "simple with a ttl", Opts: Options{Token: "simple", TokenTTL: time.Minute}, OK: true},
		{Name: "negative ttl", Opts: Options{TokenTTL: -time.Second}},
		{Name: "unknown token type", Opts: Options{Token: "magic"}},
		{Name: "jwt without a method", Opts: Options{Token: "jwt,priv-key=x"}},
		{Name: "jwt without keys", Opts: Options{Token: "jwt,sign-method=RS256"}},
	})
}

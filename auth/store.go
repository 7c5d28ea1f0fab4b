package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"
)

// The root user and role: root may do everything, and auth can be enabled
// only once a root user with the root role exists.
const (
	RootUser = "root"
	RootRole = "root"
)

// Records in the store's auxiliary area (replicated, and in snapshots and
// backups): auxPrefix + "enabled" -> "1" or "0"; auxPrefix + "revision" ->
// 8 bytes big-endian; auxPrefix + "user/" + name -> authpb.User;
// auxPrefix + "role/" + name -> authpb.Role.
const (
	auxPrefix   = "auth/"
	auxEnabled  = auxPrefix + "enabled"
	auxRevision = auxPrefix + "revision"
	auxUser     = auxPrefix + "user/"
	auxRole     = auxPrefix + "role/"
)

// AuxReader reads the auxiliary records whose names start with prefix
// (mvcc.Store.Aux).
type AuxReader interface {
	Aux(prefix []byte) (map[string][]byte, error)
}

// AuxWriter changes auxiliary records in the batch being applied
// (mvcc.WriteBatch).
type AuxWriter interface {
	SetAux(name, value []byte)
	DeleteAux(name []byte)
}

// Options configure a Store.
type Options struct {
	// Token is etcd's --auth-token: "simple" (the default) or
	// "jwt,sign-method=...,priv-key=...,pub-key=...,ttl=...".
	Token string
	// TokenTTL is etcd's --auth-token-ttl for simple tokens (default
	// 300 s).
	TokenTTL time.Duration
	// WaitIndex returns once the member has applied the raft index, or
	// when ctx ends (simple tokens name the index they were issued at).
	WaitIndex func(ctx context.Context, index uint64) error
}

// Store is etcd's auth store: users, roles and their permissions, the
// enabled flag and the auth revision, which every change of them raises.
// Changes are applied, in log order, by the member's state machine (the
// Apply methods), and kept in the store's auxiliary area; checks read the
// applied state. Safe for concurrent use.
type Store struct {
	tokens tokenProvider

	mu       sync.RWMutex
	enabled  bool
	revision uint64
	users    map[string]*authpb.User
	roles    map[string]*authpb.Role
	perms    map[string]*userPerms
}

// ErrInvalidOptions is wrapped by the errors of Options.Validate.
var ErrInvalidOptions = errors.New("auth: invalid options")

// EnsureDefaults fills the unset fields of o: a simple token, 300 s, a
// WaitIndex that does not wait.
func (o *Options) EnsureDefaults() {
	if o.Token == "" {
		o.Token = TokenTypeSimple
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = defaultSimpleTokenTTL
	}
	if o.WaitIndex == nil {
		o.WaitIndex = func(context.Context, uint64) error { return nil }
	}
}

// Validate reports options that cannot work (an --auth-token that does
// not parse, JWT keys that do not load, a negative TTL), wrapping
// ErrInvalidOptions and the auth error at fault.
func (o *Options) Validate() error {
	if o.TokenTTL < 0 {
		return fmt.Errorf("%w: negative TokenTTL %v", ErrInvalidOptions, o.TokenTTL)
	}
	if err := ValidateTokenOptions(o.Token); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return nil
}

// NewStore returns an empty store (auth disabled, revision 1) with the
// token provider opts name. Load fills it; Close stops the provider.
func NewStore(opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	tp, err := newTokenProvider(opts.Token, opts.TokenTTL, opts.WaitIndex)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	s := &Store{tokens: tp}
	s.reset()
	return s, nil
}

func (s *Store) reset() {
	s.enabled, s.revision = false, 1
	s.users, s.roles, s.perms = map[string]*authpb.User{}, map[string]*authpb.Role{}, map[string]*userPerms{}
}

// Close stops the token provider's expiry loop.
func (s *Store) Close() { s.tokens.close() }

// Load replaces the state with what r holds (at open, and after a snapshot
// is restored). Tokens are kept only if auth stays enabled.
func (s *Store) Load(r AuxReader) error {
	recs, err := r.Aux([]byte(auxPrefix))
	if err != nil {
		return fmt.Errorf("auth: load: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	for name, v := range recs {
		switch {
		case name == auxEnabled:
			s.enabled = string(v) == "1"
		case name == auxRevision:
			if len(v) != 8 {
				return fmt.Errorf("auth: load: bad revision record")
			}
			s.revision = max(binary.BigEndian.Uint64(v), 1)
		case strings.HasPrefix(name, auxUser):
			u := &authpb.User{}
			if err := proto.Unmarshal(v, u); err != nil {
				return fmt.Errorf("auth: load user %q: %w", name, err)
			}
			s.users[string(u.Name)] = u
		case strings.HasPrefix(name, auxRole):
			r := &authpb.Role{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("auth: load role %q: %w", name, err)
			}
			s.roles[string(r.Name)] = r
		}
	}
	s.refreshPermsLocked()
	if s.enabled {
		s.tokens.enable()
	} else {
		s.tokens.disable()
	}
	return nil
}

func (s *Store) refreshPermsLocked() {
	s.perms = make(map[string]*userPerms, len(s.users))
	for name, u := range s.users {
		s.perms[name] = mergePerms(u, s.roles)
	}
}

// Enabled reports whether auth is enabled.
func (s *Store) Enabled() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.enabled
}

// Revision returns the auth revision.
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revision
}

// commitRevisionLocked raises the revision, as every change does.
func (s *Store) commitRevisionLocked(w AuxWriter) {
	s.revision++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], s.revision)
	w.SetAux([]byte(auxRevision), b[:])
}

func (s *Store) putUserLocked(w AuxWriter, u *authpb.User) {
	s.users[string(u.Name)] = u
	b, _ := proto.Marshal(u)
	w.SetAux([]byte(auxUser+string(u.Name)), b)
}

func (s *Store) putRoleLocked(w AuxWriter, r *authpb.Role) {
	s.roles[string(r.Name)] = r
	b, _ := proto.Marshal(r)
	w.SetAux([]byte(auxRole+string(r.Name)), b)
}

func hasRootRole(u *authpb.User) bool { return slices.Contains(u.Roles, RootRole) }

// HashPassword hashes a password as UserAdd and UserChangePassword carry it
// (base64 of bcrypt at cost).
func HashPassword(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// The Apply methods apply one replicated request, as etcd's auth store
// does, writing the changes through w. They run in log order, one at a
// time.

// ApplyAuthEnable enables auth; it needs a root user with the root role.
func (s *Store) ApplyAuthEnable(w AuxWriter) (*pb.AuthEnableResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled {
		return &pb.AuthEnableResponse{}, nil
	}
	u := s.users[RootUser]
	if u == nil {
		return nil, ErrRootUserNotExist
	}
	if !hasRootRole(u) {
		return nil, ErrRootRoleNotExist
	}
	s.enabled = true
	w.SetAux([]byte(auxEnabled), []byte("1"))
	s.tokens.enable()
	return &pb.AuthEnableResponse{}, nil
}

// ApplyAuthDisable disables auth and forgets every token.
func (s *Store) ApplyAuthDisable(w AuxWriter) (*pb.AuthDisableResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.enabled {
		return &pb.AuthDisableResponse{}, nil
	}
	s.enabled = false
	w.SetAux([]byte(auxEnabled), []byte("0"))
	s.commitRevisionLocked(w)
	s.tokens.disable()
	return &pb.AuthDisableResponse{}, nil
}

// ApplyAuthStatus answers whether auth is enabled and its revision.
func (s *Store) ApplyAuthStatus() (*pb.AuthStatusResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthStatusResponse{Enabled: s.enabled, AuthRevision: s.revision}, nil
}

// ApplyAuthenticate issues a token for a user whose password the proposing
// member checked. index is the raft index of the entry.
func (s *Store) ApplyAuthenticate(r *pb.InternalAuthenticateRequest, index uint64) (*pb.AuthenticateResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled {
		return nil, ErrAuthNotEnabled
	}
	u := s.users[r.Name]
	if u == nil || (u.Options != nil && u.Options.NoPassword) {
		return nil, ErrAuthFailed
	}
	token, err := s.tokens.assign(r.Name, s.revision, r.SimpleToken, index)
	if err != nil {
		return nil, err
	}
	return &pb.AuthenticateResponse{Token: token}, nil
}

func (s *Store) ApplyUserAdd(w AuxWriter, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Name == "" {
		return nil, ErrUserEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[r.Name] != nil {
		return nil, ErrUserAlreadyExist
	}
	opts := r.Options
	if opts == nil {
		opts = &authpb.UserAddOptions{}
	}
	u := &authpb.User{Name: []byte(r.Name), Options: opts}
	if !opts.NoPassword {
		h, err := base64.StdEncoding.DecodeString(r.HashedPassword)
		if err != nil {
			return nil, ErrNoPasswordUser
		}
		u.Password = h
	}
	s.putUserLocked(w, u)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthUserAddResponse{}, nil
}

func (s *Store) ApplyUserDelete(w AuxWriter, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled && r.Name == RootUser {
		return nil, ErrInvalidAuthMgmt
	}
	if s.users[r.Name] == nil {
		return nil, ErrUserNotFound
	}
	delete(s.users, r.Name)
	w.DeleteAux([]byte(auxUser + r.Name))
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	s.tokens.invalidateUser(r.Name)
	return &pb.AuthUserDeleteResponse{}, nil
}

func (s *Store) ApplyUserChangePassword(w AuxWriter, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users[r.Name]
	if old == nil {
		return nil, ErrUserNotFound
	}
	u := &authpb.User{Name: old.Name, Roles: old.Roles, Options: old.Options}
	if old.Options == nil || !old.Options.NoPassword {
		h, err := base64.StdEncoding.DecodeString(r.HashedPassword)
		if err != nil {
			return nil, ErrNoPasswordUser
		}
		u.Password = h
	}
	s.putUserLocked(w, u)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	s.tokens.invalidateUser(r.Name)
	return &pb.AuthUserChangePasswordResponse{}, nil
}

func (s *Store) ApplyUserGrantRole(w AuxWriter, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users[r.User]
	if old == nil {
		return nil, ErrUserNotFound
	}
	if r.Role != RootRole && s.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	if _, found := slices.BinarySearch(old.Roles, r.Role); found {
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	u := proto.CloneOf(old)
	u.Roles = append(u.Roles, r.Role)
	sort.Strings(u.Roles)
	s.putUserLocked(w, u)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthUserGrantRoleResponse{}, nil
}

func (s *Store) ApplyUserRevokeRole(w AuxWriter, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled && r.Name == RootUser && r.Role == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	old := s.users[r.Name]
	if old == nil {
		return nil, ErrUserNotFound
	}
	u := &authpb.User{Name: old.Name, Password: old.Password, Options: old.Options}
	for _, role := range old.Roles {
		if role != r.Role {
			u.Roles = append(u.Roles, role)
		}
	}
	if len(u.Roles) == len(old.Roles) {
		return nil, ErrRoleNotGranted
	}
	s.putUserLocked(w, u)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

// ApplyUserGet answers a user's roles. The caller checked who may ask.
func (s *Store) ApplyUserGet(r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[r.Name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	return &pb.AuthUserGetResponse{Roles: slices.Clone(u.Roles)}, nil
}

// ApplyUserList answers the users' names in order.
func (s *Store) ApplyUserList() (*pb.AuthUserListResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	resp := &pb.AuthUserListResponse{Users: make([]string, 0, len(s.users))}
	for name := range s.users {
		resp.Users = append(resp.Users, name)
	}
	sort.Strings(resp.Users)
	return resp, nil
}

func (s *Store) ApplyRoleAdd(w AuxWriter, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	if r.Name == "" {
		return nil, ErrRoleEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.roles[r.Name] != nil {
		return nil, ErrRoleAlreadyExist
	}
	s.putRoleLocked(w, &authpb.Role{Name: []byte(r.Name)})
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthRoleAddResponse{}, nil
}

// rootPerm is what RoleGet answers for the root role: readwrite on every
// key.
func rootPerm() *authpb.Permission {
	return &authpb.Permission{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}
}

// ApplyRoleGet answers a role's permissions. The caller checked who may
// ask.
func (s *Store) ApplyRoleGet(r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	role := s.roles[r.Role]
	if role == nil {
		return nil, ErrRoleNotFound
	}
	resp := &pb.AuthRoleGetResponse{}
	if r.Role == RootRole {
		resp.Perm = []*authpb.Permission{rootPerm()}
		return resp, nil
	}
	for _, p := range role.KeyPermission {
		resp.Perm = append(resp.Perm, proto.CloneOf(p))
	}
	return resp, nil
}

// ApplyRoleList answers the roles' names in order.
func (s *Store) ApplyRoleList() (*pb.AuthRoleListResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	resp := &pb.AuthRoleListResponse{Roles: make([]string, 0, len(s.roles))}
	for name := range s.roles {
		resp.Roles = append(resp.Roles, name)
	}
	sort.Strings(resp.Roles)
	return resp, nil
}

func (s *Store) ApplyRoleDelete(w AuxWriter, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled && r.Role == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	if s.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	delete(s.roles, r.Role)
	w.DeleteAux([]byte(auxRole + r.Role))
	for _, old := range s.users {
		if !slices.Contains(old.Roles, r.Role) {
			continue
		}
		u := &authpb.User{Name: old.Name, Password: old.Password, Options: old.Options}
		for _, role := range old.Roles {
			if role != r.Role {
				u.Roles = append(u.Roles, role)
			}
		}
		s.putUserLocked(w, u)
	}
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthRoleDeleteResponse{}, nil
}

func (s *Store) ApplyRoleGrantPermission(w AuxWriter, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	if r.Perm == nil {
		return nil, ErrPermissionNotGiven
	}
	if !ValidPermissionRange(r.Perm.Key, r.Perm.RangeEnd) {
		return nil, ErrInvalidAuthMgmt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.roles[r.Name]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	role := proto.CloneOf(old)
	i := sort.Search(len(role.KeyPermission), func(i int) bool {
		return bytes.Compare(role.KeyPermission[i].Key, r.Perm.Key) >= 0
	})
	if i < len(role.KeyPermission) && bytes.Equal(role.KeyPermission[i].Key, r.Perm.Key) && bytes.Equal(role.KeyPermission[i].RangeEnd, r.Perm.RangeEnd) {
		role.KeyPermission[i].PermType = r.Perm.PermType
	} else {
		role.KeyPermission = append(role.KeyPermission, &authpb.Permission{Key: r.Perm.Key, RangeEnd: r.Perm.RangeEnd, PermType: r.Perm.PermType})
		sort.SliceStable(role.KeyPermission, func(i, j int) bool {
			return bytes.Compare(role.KeyPermission[i].Key, role.KeyPermission[j].Key) < 0
		})
	}
	s.putRoleLocked(w, role)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

func (s *Store) ApplyRoleRevokePermission(w AuxWriter, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.roles[r.Role]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	role := &authpb.Role{Name: old.Name}
	for _, p := range old.KeyPermission {
		if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
			role.KeyPermission = append(role.KeyPermission, p)
		}
	}
	if len(role.KeyPermission) == len(old.KeyPermission) {
		return nil, ErrPermissionNotGranted
	}
	s.putRoleLocked(w, role)
	s.commitRevisionLocked(w)
	s.refreshPermsLocked()
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}

// CheckPassword checks a user's password and returns the revision it was
// checked at (etcd checks on the member the client asked, before
// proposing the authentication).
func (s *Store) CheckPassword(user, password string) (uint64, error) {
	s.mu.RLock()
	if !s.enabled {
		s.mu.RUnlock()
		return 0, ErrAuthNotEnabled
	}
	u, rev := s.users[user], s.revision
	s.mu.RUnlock()
	if u == nil {
		return 0, ErrAuthFailed
	}
	if u.Options != nil && u.Options.NoPassword {
		return 0, ErrNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.Password, []byte(password)) != nil {
		return 0, ErrAuthFailed
	}
	return rev, nil
}

// GenTokenPrefix makes the random part of a simple token ("" for JWT).
func (s *Store) GenTokenPrefix() (string, error) { return s.tokens.genTokenPrefix() }

// AuthInfoFromToken returns who a token names: nil while auth is disabled,
// ErrInvalidAuthToken for a token this member does not know or cannot
// verify.
func (s *Store) AuthInfoFromToken(ctx context.Context, token string) (*AuthInfo, error) {
	if !s.Enabled() {
		return nil, nil
	}
	ai, ok := s.tokens.info(ctx, token, s.Revision())
	if !ok {
		return nil, ErrInvalidAuthToken
	}
	return ai, nil
}

// HasRole reports whether user has role.
func (s *Store) HasRole(user, role string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[user]
	return u != nil && slices.Contains(u.Roles, role)
}

// The permission checks, etcd's. A nil or empty AuthInfo is the anonymous
// caller. All pass while auth is disabled.

// IsAdminPermitted checks for the root role.
func (s *Store) IsAdminPermitted(ai *AuthInfo) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled {
		return nil
	}
	if ai == nil || ai.Username == "" {
		return ErrUserEmpty
	}
	u := s.users[ai.Username]
	if u == nil {
		return ErrUserNotFound
	}
	if !hasRootRole(u) {
		return ErrPermissionDenied
	}
	return nil
}

// IsRangePermitted checks read access to [key, rangeEnd).
func (s *Store) IsRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, authpb.Permission_READ)
}

// IsPutPermitted checks write access to key.
func (s *Store) IsPutPermitted(ai *AuthInfo, key []byte) error {
	return s.isOpPermitted(ai, key, nil, authpb.Permission_WRITE)
}

// IsDeleteRangePermitted checks write access to [key, rangeEnd).
func (s *Store) IsDeleteRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, authpb.Permission_WRITE)
}

func (s *Store) isOpPermitted(ai *AuthInfo, key, rangeEnd []byte, typ authpb.Permission_Type) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled {
		return nil
	}
	if ai == nil || ai.Revision == 0 {
		return ErrUserEmpty
	}
	if ai.Revision < s.revision {
		return ErrAuthOldRevision
	}
	u := s.users[ai.Username]
	if u == nil {
		return ErrPermissionDenied
	}
	if hasRootRole(u) {
		return nil
	}
	if p := s.perms[ai.Username]; p != nil && p.permits(key, rangeEnd, typ) {
		return nil
	}
	return ErrPermissionDenied
}

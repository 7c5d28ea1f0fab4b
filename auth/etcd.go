package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"
)

// Moving the auth state between etcd's data file and a store's auxiliary
// area, offline (snapshot restore and export). etcd keeps it in three
// buckets (server/storage/schema/auth*.go): "auth" holds "authEnabled"
// (one byte, 1 or 0) and "authRevision" (8 bytes big-endian);
// "authUsers" maps a user's name to its authpb.User and "authRoles" a
// role's name to its authpb.Role, both as proto.Marshal writes them. The
// records mean the same here, so they move unchanged once checked.

// ErrBadEtcdRecord is wrapped by the errors of ImportEtcd for a record that
// does not decode, or is stored under a name that is not its own.
var ErrBadEtcdRecord = errors.New("auth: bad etcd auth record")

// EtcdState is the auth state as etcd's buckets hold it.
type EtcdState struct {
	Enabled bool
	// Revision is etcd's auth revision; 0 means none is stored (etcd then
	// starts at 1).
	Revision uint64
	// Users and Roles are the "authUsers" and "authRoles" buckets: name ->
	// marshaled authpb.User / authpb.Role.
	Users map[string][]byte
	Roles map[string][]byte
}

// AuxSetter stores one auxiliary record (mvcc.Importer, mvcc.WriteBatch).
type AuxSetter interface {
	SetAux(name, value []byte)
}

// ImportEtcd checks etcd's auth records and writes them to w as a Store
// keeps them, for Load to read. A user or role that does not decode, or
// whose name is not the key it is stored under, fails with
// ErrBadEtcdRecord and nothing is written.
func ImportEtcd(w AuxSetter, st EtcdState) error {
	recs := make(map[string][]byte, len(st.Users)+len(st.Roles)+2)
	for name, v := range st.Users {
		u := &authpb.User{}
		if err := proto.Unmarshal(v, u); err != nil {
			return fmt.Errorf("%w: user %q: %w", ErrBadEtcdRecord, name, err)
		}
		if name == "" || string(u.Name) != name {
			return fmt.Errorf("%w: user %q stored under %q", ErrBadEtcdRecord, u.Name, name)
		}
		recs[auxUser+name] = v
	}
	for name, v := range st.Roles {
		r := &authpb.Role{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("%w: role %q: %w", ErrBadEtcdRecord, name, err)
		}
		if name == "" || string(r.Name) != name {
			return fmt.Errorf("%w: role %q stored under %q", ErrBadEtcdRecord, r.Name, name)
		}
		recs[auxRole+name] = v
	}
	if st.Enabled {
		recs[auxEnabled] = []byte("1")
	}
	if st.Revision > 0 {
		recs[auxRevision] = binary.BigEndian.AppendUint64(nil, st.Revision)
	}
	for _, name := range slices.Sorted(maps.Keys(recs)) { // repeatable imports
		w.SetAux([]byte(name), recs[name])
	}
	return nil
}

// ExportEtcd reads the auth state a Store keeps in r in etcd's form. A
// store that never had auth records gives auth disabled at revision 1, as
// etcd's new auth store.
func ExportEtcd(r AuxReader) (EtcdState, error) {
	st := EtcdState{Revision: 1, Users: map[string][]byte{}, Roles: map[string][]byte{}}
	recs, err := r.Aux([]byte(auxPrefix))
	if err != nil {
		return st, fmt.Errorf("auth: export: %w", err)
	}
	for name, v := range recs {
		switch {
		case name == auxEnabled:
			st.Enabled = string(v) == "1"
		case name == auxRevision:
			if len(v) != 8 {
				return st, fmt.Errorf("auth: export: revision record of %d bytes", len(v))
			}
			st.Revision = max(binary.BigEndian.Uint64(v), 1)
		case strings.HasPrefix(name, auxUser):
			st.Users[strings.TrimPrefix(name, auxUser)] = v
		case strings.HasPrefix(name, auxRole):
			st.Roles[strings.TrimPrefix(name, auxRole)] = v
		}
	}
	return st, nil
}

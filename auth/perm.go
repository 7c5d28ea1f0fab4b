package auth

import (
	"bytes"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// Key ranges in permissions follow etcd's rules (range_perm_cache.go):
//   - an empty range end is the single key;
//   - a range end above the key is [key, end);
//   - a range end of "\x00" is every key from key on (open-ended);
//   - every other range is invalid: the key must not be empty, and an end
//     at or below the key names nothing.
// Inside the interval trees an open end is adt's empty BytesAffineComparable,
// the largest of all.

// ValidPermissionRange reports whether key and rangeEnd make a permission
// etcd accepts.
func ValidPermissionRange(key, rangeEnd []byte) bool {
	if len(key) == 0 {
		return false
	}
	if len(rangeEnd) == 0 {
		return true
	}
	if bytes.Compare(key, rangeEnd) < 0 {
		return true
	}
	return isOpenEnded(rangeEnd)
}

func isOpenEnded(rangeEnd []byte) bool { return len(rangeEnd) == 1 && rangeEnd[0] == 0 }

// userPerms is one user's permissions merged over its roles.
type userPerms struct {
	read, write adt.IntervalTree
}

func mergePerms(u *authpb.User, roles map[string]*authpb.Role) *userPerms {
	p := &userPerms{read: adt.NewIntervalTree(), write: adt.NewIntervalTree()}
	for _, name := range u.Roles {
		r := roles[name]
		if r == nil {
			continue
		}
		for _, kp := range r.KeyPermission {
			var ivl adt.Interval
			if len(kp.RangeEnd) == 0 {
				ivl = adt.NewBytesAffinePoint(kp.Key)
			} else {
				end := kp.RangeEnd
				if isOpenEnded(end) {
					end = nil
				}
				ivl = adt.NewBytesAffineInterval(kp.Key, end)
			}
			switch kp.PermType {
			case authpb.Permission_READWRITE:
				p.read.Insert(ivl, struct{}{})
				p.write.Insert(ivl, struct{}{})
			case authpb.Permission_READ:
				p.read.Insert(ivl, struct{}{})
			case authpb.Permission_WRITE:
				p.write.Insert(ivl, struct{}{})
			}
		}
	}
	return p
}

// permits reports whether the permissions cover [key, rangeEnd) (the single
// key for an empty rangeEnd, every key from key on for "\x00") for typ,
// READ or WRITE: a key must fall in a permitted range, a range must be
// covered by the permitted ranges together.
func (p *userPerms) permits(key, rangeEnd []byte, typ authpb.Permission_Type) bool {
	t := p.read
	if typ == authpb.Permission_WRITE {
		t = p.write
	}
	if len(rangeEnd) == 0 {
		return t.Intersects(adt.NewBytesAffinePoint(key))
	}
	if isOpenEnded(rangeEnd) {
		rangeEnd = nil
	}
	return t.Contains(adt.NewBytesAffineInterval(key, rangeEnd))
}

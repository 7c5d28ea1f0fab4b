package server

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-kv/strata/engine"
)

// identityFile, in the data directory, keeps the member's identity from
// its first start: later starts use it whatever the flags say, as etcd
// keeps its IDs in its WAL.
const identityFile = "strata-member.json"

// identity is who a member is. Member and cluster IDs are computed as
// etcd computes them, so the same flags give the same IDs as etcd:
//
//	member ID  = first 8 bytes (big-endian) of sha1(sorted peer URLs joined + cluster token)
//	cluster ID = first 8 bytes of sha1(the sorted member IDs of the initial cluster, 8 bytes each)
//
// The raft server ID of a member is its member ID in hex (as etcd prints
// IDs), so the leader's raft ID is its member ID.
type identity struct {
	Name      string   `json:"name"`
	MemberID  uint64   `json:"member_id,string"`
	ClusterID uint64   `json:"cluster_id,string"`
	PeerURLs  []string `json:"peer_urls"`
	Engine    string   `json:"engine"`
}

// memberID is etcd's computeMemberID without a timestamp.
func memberID(peerURLs []string, token string) uint64 {
	s := append([]string(nil), peerURLs...)
	sort.Strings(s)
	b := []byte(strings.Join(s, "") + token)
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// clusterID is etcd's RaftCluster.genID.
func clusterID(memberIDs []uint64) uint64 {
	ids := append([]uint64(nil), memberIDs...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// raftID is the raft server ID of a member ID.
func raftID(id uint64) string { return strconv.FormatUint(id, 16) }

// parseRaftID returns the member ID of a raft server ID, 0 if it is not
// one.
func parseRaftID(s string) uint64 {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0
	}
	return id
}

// initialMembers returns the member IDs of the initial cluster by name.
func (c *config) initialMembers() map[string]uint64 {
	out := make(map[string]uint64, len(c.initialCluster))
	for name, urls := range c.initialCluster {
		out[name] = memberID(urls, c.InitialClusterToken)
	}
	return out
}

// loadIdentity reads the member's identity from the data directory, or
// computes it from the configuration and stores it on the first start.
func loadIdentity(c *config) (*identity, error) {
	path := filepath.Join(c.DataDir, identityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return nil, fmt.Errorf("server: %s: %w", path, err)
		}
		if id.Engine != "" && id.Engine != c.Engine.Name {
			return nil, fmt.Errorf("server: data directory %s holds %s data, not %s (--backend)", c.DataDir, id.Engine, c.Engine.Name)
		}
		if id.Name != c.Name {
			c.Logger.Warn("member name differs from the one in the data directory; keeping the stored one", "flag", c.Name, "stored", id.Name)
		}
		return &id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: %w", err)
	}
	id, err := newIdentity(c)
	if err != nil {
		return nil, err
	}
	if err := writeIdentity(c.DataDir, id); err != nil {
		return nil, err
	}
	return id, nil
}

// newIdentity computes the identity of a member from its configuration:
// its member ID and the cluster's ID from the initial cluster.
func newIdentity(c *config) (*identity, error) {
	members := c.initialMembers()
	id := &identity{
		Name:     c.Name,
		MemberID: members[c.Name],
		PeerURLs: c.InitialAdvertisePeerURLs,
		Engine:   c.Engine.Name,
	}
	var ids []uint64
	seen := map[uint64]string{}
	for name, m := range members {
		if other, dup := seen[m]; dup {
			return nil, fmt.Errorf("server: --initial-cluster: members %s and %s have the same ID %x", name, other, m)
		}
		seen[m] = name
		// A member joining an existing cluster lists itself in
		// --initial-cluster as etcd wants, but the cluster's ID was made
		// from the members that bootstrapped it: leave it out.
		if c.InitialClusterState == ClusterStateExisting && name == c.Name {
			continue
		}
		ids = append(ids, m)
	}
	id.ClusterID = clusterID(ids)
	return id, nil
}

// writeIdentity stores id in dataDir, durably.
func writeIdentity(dataDir string, id *identity) error {
	path := filepath.Join(dataDir, identityFile)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := engine.SyncDir(dataDir); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("server: %w", err)
	}
	return f.Close()
}

// SetMemberEngine records in the identity of the stopped member in dataDir
// that its store is now on the engine named name (`strata migrate`). A
// data directory without an identity yet (restored, never started) is
// left alone.
func SetMemberEngine(dataDir, name string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("server: %s: %w", identityFile, err)
	}
	id.Engine = name
	return writeIdentity(dataDir, &id)
}

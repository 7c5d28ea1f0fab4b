// Package embed runs a Strata member inside a Go program, as etcd's embed
// package does for etcd: fill a Config (the struct cmd/strata's flags,
// ETCD_* variables and YAML config file fill), Start it, use it through
// clientv3 at ClientURLs, and Close it.
//
//	cfg := embed.NewConfig()
//	cfg.Engine = bbolt.Engine() // or backends.Registry().Lookup("pebble")
//	cfg.DataDir = "member.strata"
//	m, err := embed.Start(cfg)
//	if err != nil { ... }
//	defer m.Close()
//	if err := m.WaitReady(ctx); err != nil { ... }
//	cli, err := clientv3.New(clientv3.Config{Endpoints: m.ClientURLs()})
//
// The layers below a member can be used on their own too (see the
// examples): an engine (package engine and the backends) is an ordered,
// durable byte keyspace; an mvcc.Store on an engine is etcd's revisioned
// keyspace in process, without replication.
//
// Zero values in Config take etcd's defaults (one member named "default"
// on 127.0.0.1:2379 and :2380). Unlike etcd's embed.NewConfig, the engine
// is the caller's choice: Config.Engine must be set. The member logs etcd's
// zap JSON to stderr unless Config.Logger (any slog handler) or the Log*
// fields say otherwise.
package embed

import (
	"context"
	"fmt"

	"github.com/strata-kv/strata/server"
)

// Config configures a member; see server.Config for every field.
type Config = server.Config

// NewConfig returns a Config with etcd's defaults filled in, for the
// caller to change. Engine is left unset.
func NewConfig() Config {
	var c Config
	c.EnsureDefaults()
	return c
}

// Member is a running member: a server.Server (ClientURLs, MetricsURLs,
// ReadyNotify, StopNotify, Close, ...).
type Member struct {
	*server.Server
}

// Start starts a member. It returns once the member's data is open and
// its ports are bound; it serves clients once it is ready (WaitReady).
func Start(cfg Config) (*Member, error) {
	if cfg.Engine.Open == nil {
		return nil, fmt.Errorf("%w: embed: Config.Engine is not set (e.g. bbolt.Engine())", server.ErrInvalidConfig)
	}
	s, err := server.Start(cfg)
	if err != nil {
		return nil, err
	}
	return &Member{Server: s}, nil
}

// WaitReady waits until the member serves clients (its cluster has a
// leader), the member stops, or ctx is done.
func (m *Member) WaitReady(ctx context.Context) error {
	select {
	case <-m.ReadyNotify():
		return nil
	case <-m.StopNotify():
		return fmt.Errorf("embed: member stopped before it was ready: %v", m.Err())
	case <-ctx.Done():
		return ctx.Err()
	}
}

package auth

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AuthInfo is who sends a request: the user a token or a client
// certificate names, and the auth revision the token was issued at (for a
// certificate, the store's revision when the request arrived).
type AuthInfo struct {
	Username string
	Revision uint64
}

// tokenProvider issues and checks tokens (etcd's TokenProvider).
type tokenProvider interface {
	// info returns who token names; false for a token it does not know.
	info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool)
	// assign issues a token for username at auth revision rev. A simple
	// token is prefix + "." + the index of the raft entry that applied the
	// authentication.
	assign(username string, rev uint64, prefix string, index uint64) (string, error)
	// enable and disable follow the store's enabled flag; disable forgets
	// every token.
	enable()
	disable()
	// invalidateUser forgets the user's tokens (deleted, or a new
	// password).
	invalidateUser(username string)
	// genTokenPrefix makes the random part of a simple token.
	genTokenPrefix() (string, error)
	// close stops what the provider runs.
	close()
}

// Token types of --auth-token.
const (
	TokenTypeSimple = "simple"
	TokenTypeJWT    = "jwt"
)

// ParseTokenOptions splits an --auth-token value as etcd does: a type,
// then comma-separated name=value options, each at most once.
func ParseTokenOptions(spec string) (typ string, opts map[string]string, err error) {
	parts := strings.Split(spec, ",")
	opts = map[string]string{}
	for _, p := range parts[1:] {
		kv := strings.Split(p, "=")
		if len(kv) != 2 {
			return "", nil, fmt.Errorf("%w: option %q is not name=value", ErrInvalidAuthOpts, p)
		}
		if _, dup := opts[kv[0]]; dup {
			return "", nil, fmt.Errorf("%w: option %q given twice", ErrInvalidAuthOpts, kv[0])
		}
		opts[kv[0]] = kv[1]
	}
	return parts[0], opts, nil
}

// newTokenProvider makes the provider an --auth-token value names.
// waitIndex returns once the member has applied index (or ctx ends).
func newTokenProvider(spec string, ttl time.Duration, waitIndex func(ctx context.Context, index uint64) error) (tokenProvider, error) {
	typ, opts, err := ParseTokenOptions(spec)
	if err != nil {
		return nil, err
	}
	switch typ {
	case TokenTypeSimple:
		return newSimpleTokens(ttl, waitIndex), nil
	case TokenTypeJWT:
		return newJWTTokens(opts)
	}
	return nil, fmt.Errorf("%w: unknown token type %q", ErrInvalidAuthOpts, typ)
}

// Simple tokens, etcd's: a random 16-letter prefix the authenticating
// member picks, a dot, and the raft index the authentication was applied
// at. Every member applies the authentication, so every member knows the
// token (in memory only: a restart forgets them all); a member that has not
// applied the index yet waits for it. A token unused for the TTL (etcd's
// --auth-token-ttl, 300 s by default) expires; each use renews it.
const (
	simpleTokenLetters     = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	simpleTokenPrefixLen   = 16
	defaultSimpleTokenTTL  = 300 * time.Second
	simpleTokenTTLInterval = time.Second
)

type simpleTokens struct {
	ttl       time.Duration
	waitIndex func(ctx context.Context, index uint64) error
	now       func() time.Time

	mu sync.Mutex
	// tokens maps a token to its user and expiry; nil while disabled.
	tokens map[string]*simpleToken
	// stopc and donec stop the expiry loop while enabled.
	stopc, donec chan struct{}
}

type simpleToken struct {
	user    string
	expires time.Time
}

func newSimpleTokens(ttl time.Duration, waitIndex func(ctx context.Context, index uint64) error) *simpleTokens {
	if ttl <= 0 {
		ttl = defaultSimpleTokenTTL
	}
	return &simpleTokens{ttl: ttl, waitIndex: waitIndex, now: time.Now}
}

func (t *simpleTokens) genTokenPrefix() (string, error) {
	b := make([]byte, simpleTokenPrefixLen)
	n := big.NewInt(int64(len(simpleTokenLetters)))
	for i := range b {
		x, err := rand.Int(rand.Reader, n)
		if err != nil {
			return "", err
		}
		b[i] = simpleTokenLetters[x.Int64()]
	}
	return string(b), nil
}

// parseSimpleToken returns the index of a simple token; false when it is
// not one.
func parseSimpleToken(token string) (uint64, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 2 {
		return 0, false
	}
	index, err := strconv.ParseUint(parts[1], 10, 64)
	return index, err == nil
}

func (t *simpleTokens) info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool) {
	index, ok := parseSimpleToken(token)
	if !ok || t.waitIndex(ctx, index) != nil {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tk := t.tokens[token]
	if tk == nil {
		return nil, false
	}
	tk.expires = t.now().Add(t.ttl)
	return &AuthInfo{Username: tk.user, Revision: rev}, true
}

func (t *simpleTokens) assign(username string, _ uint64, prefix string, index uint64) (string, error) {
	token := prefix + "." + strconv.FormatUint(index, 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens != nil {
		t.tokens[token] = &simpleToken{user: username, expires: t.now().Add(t.ttl)}
	}
	return token, nil
}

func (t *simpleTokens) invalidateUser(username string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, tk := range t.tokens {
		if tk.user == username {
			delete(t.tokens, tok)
		}
	}
}

func (t *simpleTokens) enable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens != nil {
		return
	}
	t.tokens = map[string]*simpleToken{}
	t.stopc, t.donec = make(chan struct{}), make(chan struct{})
	go t.expireLoop(t.stopc, t.donec)
}

func (t *simpleTokens) disable() {
	t.mu.Lock()
	stopc, donec := t.stopc, t.donec
	t.tokens, t.stopc, t.donec = nil, nil, nil
	t.mu.Unlock()
	if stopc != nil {
		close(stopc)
		<-donec
	}
}

func (t *simpleTokens) close() { t.disable() }

// expireLoop drops expired tokens every second, as etcd's TTL keeper.
func (t *simpleTokens) expireLoop(stopc, donec chan struct{}) {
	defer close(donec)
	tick := time.NewTicker(simpleTokenTTLInterval)
	defer tick.Stop()
	for {
		select {
		case <-stopc:
			return
		case <-tick.C:
			t.expire()
		}
	}
}

func (t *simpleTokens) expire() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, tk := range t.tokens {
		if now.After(tk.expires) {
			delete(t.tokens, tok)
		}
	}
}

// ValidateTokenOptions checks an --auth-token value: its type and options
// parse, and a JWT's keys load.
func ValidateTokenOptions(spec string) error {
	tp, err := newTokenProvider(spec, 0, func(context.Context, uint64) error { return nil })
	if err != nil {
		return err
	}
	tp.close()
	return nil
}

package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT tokens, etcd's: signed claims {username, revision, exp}, checked by
// any member holding the key (nothing is kept per token). Options of
// --auth-token=jwt,...: sign-method (required), priv-key and pub-key (PEM
// files; a public key alone verifies only), ttl (default 5m).
const defaultJWTTTL = 5 * time.Minute

type jwtTokens struct {
	method     jwt.SigningMethod
	key        any
	ttl        time.Duration
	verifyOnly bool
}

func newJWTTokens(opts map[string]string) (*jwtTokens, error) {
	t := &jwtTokens{ttl: defaultJWTTTL}
	if s := opts["ttl"]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%w: ttl: %v", ErrInvalidAuthOpts, err)
		}
		t.ttl = d
	}
	read := func(name string) ([]byte, error) {
		if opts[name] == "" {
			return nil, nil
		}
		b, err := os.ReadFile(opts[name])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidAuthOpts, name, err)
		}
		return b, nil
	}
	pubPEM, err := read("pub-key")
	if err != nil {
		return nil, err
	}
	privPEM, err := read("priv-key")
	if err != nil {
		return nil, err
	}
	t.method = jwt.GetSigningMethod(opts["sign-method"])
	if t.method == nil {
		return nil, ErrInvalidAuthMethod
	}
	switch t.method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(privPEM) == 0 {
			return nil, ErrMissingKey
		}
		t.key = privPEM
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		t.key, t.verifyOnly, err = keyPair(privPEM, pubPEM, jwt.ParseRSAPrivateKeyFromPEM, jwt.ParseRSAPublicKeyFromPEM)
	case *jwt.SigningMethodECDSA:
		t.key, t.verifyOnly, err = keyPair(privPEM, pubPEM, jwt.ParseECPrivateKeyFromPEM, jwt.ParseECPublicKeyFromPEM)
	case *jwt.SigningMethodEd25519:
		t.key, t.verifyOnly, err = keyPair(privPEM, pubPEM,
			func(b []byte) (ed25519.PrivateKey, error) {
				k, err := jwt.ParseEdPrivateKeyFromPEM(b)
				if err != nil {
					return nil, err
				}
				ek, ok := k.(ed25519.PrivateKey)
				if !ok {
					return nil, ErrInvalidAuthOpts
				}
				return ek, nil
			},
			func(b []byte) (ed25519.PublicKey, error) {
				k, err := jwt.ParseEdPublicKeyFromPEM(b)
				if err != nil {
					return nil, err
				}
				ek, ok := k.(ed25519.PublicKey)
				if !ok {
					return nil, ErrInvalidAuthOpts
				}
				return ek, nil
			})
	default:
		return nil, ErrInvalidAuthMethod
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// keyPair parses a private and a public key, either of them optional but
// not both; when both are given they must match. It returns the private
// key, or the public key alone (verify only).
func keyPair[Priv interface{ Public() crypto.PublicKey }, Pub interface{ Equal(crypto.PublicKey) bool }](privPEM, pubPEM []byte, parsePriv func([]byte) (Priv, error), parsePub func([]byte) (Pub, error)) (any, bool, error) {
	var priv, pub any
	if len(privPEM) > 0 {
		k, err := parsePriv(privPEM)
		if err != nil {
			return nil, false, err
		}
		priv = k
	}
	if len(pubPEM) > 0 {
		k, err := parsePub(pubPEM)
		if err != nil {
			return nil, false, err
		}
		pub = k
	}
	switch {
	case priv == nil && pub == nil:
		return nil, false, ErrMissingKey
	case priv == nil:
		return pub, true, nil
	case pub != nil && !pub.(Pub).Equal(priv.(Priv).Public()):
		return nil, false, ErrKeyMismatch
	}
	return priv, false, nil
}

func (t *jwtTokens) enable()                         {}
func (t *jwtTokens) disable()                        {}
func (t *jwtTokens) close()                          {}
func (t *jwtTokens) invalidateUser(string)           {}
func (t *jwtTokens) genTokenPrefix() (string, error) { return "", nil }

func (t *jwtTokens) verifyKey() any {
	switch k := t.key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return t.key
}

func (t *jwtTokens) info(_ context.Context, token string, _ uint64) (*AuthInfo, bool) {
	parsed, err := jwt.Parse(token, func(tk *jwt.Token) (any, error) {
		if tk.Method.Alg() != t.method.Alg() {
			return nil, errors.New("invalid signing method")
		}
		return t.verifyKey(), nil
	})
	if err != nil || !parsed.Valid {
		return nil, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok {
		return nil, false
	}
	user, ok := claims["username"].(string)
	if !ok {
		return nil, false
	}
	rev, ok := claims["revision"].(float64)
	if !ok || rev < 0 {
		return nil, false
	}
	return &AuthInfo{Username: user, Revision: uint64(rev)}, true
}

func (t *jwtTokens) assign(username string, rev uint64, _ string, _ uint64) (string, error) {
	if t.verifyOnly {
		return "", ErrVerifyOnly
	}
	tk := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"username": username,
		"revision": rev,
		"exp":      time.Now().Add(t.ttl).Unix(),
	})
	return tk.SignedString(t.key)
}

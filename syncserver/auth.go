package syncserver

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// ErrUnauthenticated is returned by an Authenticator for a missing, unknown or expired
// credential; the server answers 401.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrForbidden is returned by an Authenticator for a valid credential whose identity may
// not use this folder (a service account not on the access list); the server answers 403.
var ErrForbidden = errors.New("forbidden")

// Authenticator maps a request's bearer token to the agent identity recorded in the
// audit log. An error wrapping ErrUnauthenticated means the token is refused (401); one
// wrapping ErrForbidden means the token is valid but its identity is not allowed (403),
// and agent then names that identity for the log; any other error means the check itself
// failed (503).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (agent string, err error)
}

// Chain tries each authenticator in order until one accepts the token. A refusal other
// than ErrUnauthenticated ends the search: ErrForbidden because the token was recognized
// and is definitely not allowed, an unavailable check because trying further could turn
// a transient failure into a 401 the agent would not retry.
type Chain []Authenticator

// Authenticate returns the first accepting authenticator's answer, or the last refusal.
func (c Chain) Authenticate(ctx context.Context, token string) (string, error) {
	err := fmt.Errorf("%w: no authenticator configured", ErrUnauthenticated)
	for _, a := range c {
		var agent string
		agent, err = a.Authenticate(ctx, token)
		if err == nil || !errors.Is(err, ErrUnauthenticated) {
			return agent, err
		}
	}
	return "", err
}

// StaticTokens authenticates bearer tokens listed in a token file.
type StaticTokens struct {
	// byDigest maps the SHA-256 of a token to its name; comparing digests keeps the
	// lookup from leaking how much of a guessed token was right.
	byDigest map[[sha256.Size]byte]string
}

// Authenticate returns the name of token, or ErrUnauthenticated.
func (a *StaticTokens) Authenticate(_ context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	d := sha256.Sum256([]byte(token))
	for k, name := range a.byDigest {
		if subtle.ConstantTimeCompare(k[:], d[:]) == 1 {
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: unknown token", ErrUnauthenticated)
}

// Len returns how many tokens are known.
func (a *StaticTokens) Len() int { return len(a.byDigest) }

// LoadTokenFile reads a token file: one "TOKEN NAME" per line, NAME being the agent
// identity; blank lines and lines starting with # are ignored. A malformed line is an
// error naming the line.
func LoadTokenFile(path string) (*StaticTokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open token file: %w", err)
	}
	defer f.Close()
	a, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return a, nil
}

// ParseTokens reads tokens in the token file format (see LoadTokenFile).
func ParseTokens(r io.Reader) (*StaticTokens, error) {
	a := &StaticTokens{byDigest: make(map[[sha256.Size]byte]string)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TOKEN NAME\", got %d fields", line, len(fields))
		}
		token, name := fields[0], fields[1]
		if len(token) < 16 {
			return nil, fmt.Errorf("line %d: token shorter than 16 characters", line)
		}
		for _, r := range token + name {
			if !unicode.IsPrint(r) {
				return nil, fmt.Errorf("line %d: non-printable character", line)
			}
		}
		d := sha256.Sum256([]byte(token))
		if _, dup := a.byDigest[d]; dup {
			return nil, fmt.Errorf("line %d: duplicate token", line)
		}
		a.byDigest[d] = name
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if len(a.byDigest) == 0 {
		return nil, errors.New("no tokens")
	}
	return a, nil
}

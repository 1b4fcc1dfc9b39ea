package botframework

import (
	"crypto/sha256"
	"sync"
)

// tokenCache remembers channel tokens whose signature has been verified.
// The channel reuses a token for its whole lifetime (about an hour) across
// many activities, and an RSA signature check is most of the CPU an
// activity costs. A token is the same bytes every time, so its signature,
// algorithm and key id need checking once; what can change — the claims'
// lifetime against the clock, and whether the key is still served — is
// checked on every use (Verifier.cached).
type tokenCache struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]verifiedToken
	max     int
}

// verifiedToken is a token that passed every check of VerifyToken.
type verifiedToken struct {
	claims Claims
	kid    string
	key    any
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{entries: make(map[[sha256.Size]byte]verifiedToken), max: max}
}

func (c *tokenCache) get(sum [sha256.Size]byte) (verifiedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.entries[sum]
	return t, ok
}

func (c *tokenCache) put(sum [sha256.Size]byte, t verifiedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Full: tokens live an hour and the channel uses few at a time, so
		// starting over costs a few verifications and bounds memory against
		// a flood of distinct valid tokens.
		clear(c.entries)
	}
	c.entries[sum] = t
}

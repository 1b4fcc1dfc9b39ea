package botframework_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/botframework/fakechannel"
)

// The channel sends the same token with many activities; the bot verifies
// its signature once, but a token seen before is still refused once it
// expires, and once its signing key is no longer served.
func TestReusedTokenIsStillCheckedAgainstClockAndKeys(t *testing.T) {
	ch := fakechannel.NewChannel(t, appID)
	ch.ServiceURL = svcURL
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v, err := botframework.NewVerifier(botframework.VerifierOptions{
		AppID: appID, Issuer: ch.Issuer, OpenIDMetadataURL: ch.MetadataURL(), Now: clock,
		RefreshInterval: 100 * time.Hour, UnknownKeyInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c := ch.Claims()
	c["exp"] = clock().Add(time.Hour).Unix()
	auth := "Bearer " + ch.Sign(t, c)
	for i := range 3 {
		claims, err := v.VerifyToken(ctx, auth)
		if err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
		if claims.ServiceURL != svcURL {
			t.Fatalf("use %d: serviceurl %q", i+1, claims.ServiceURL)
		}
	}

	// Past exp and the 5-minute leeway.
	mu.Lock()
	now = now.Add(66 * time.Minute)
	mu.Unlock()
	var ae *botframework.AuthError
	if _, err := v.VerifyToken(ctx, auth); !errors.As(err, &ae) || ae.Reason != botframework.ReasonExpired {
		t.Fatalf("expired token: %v, want %s", err, botframework.ReasonExpired)
	}

	// A fresh token, verified; then the channel stops serving its key.
	mu.Lock()
	now = time.Now()
	mu.Unlock()
	c = ch.Claims()
	auth = "Bearer " + ch.Sign(t, c)
	if _, err := v.VerifyToken(ctx, auth); err != nil {
		t.Fatal(err)
	}
	ch.Rotate(t)
	if err := v.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyToken(ctx, auth); !errors.As(err, &ae) || ae.Reason != botframework.ReasonUnknownKey {
		t.Fatalf("token of a key no longer served: %v, want %s", err, botframework.ReasonUnknownKey)
	}
}

package botframework_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/upgradeapprovals/bot/botframework"
)

// countingRecords is a per-conversation record store that counts its calls
// and can be made to fail like an unreachable Redis.
type countingRecords struct {
	mu           sync.Mutex
	recs         map[string]string
	writes, read int
	down         bool
}

func (c *countingRecords) TrustServiceURL(_ context.Context, conv, u string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errors.New("redis down")
	}
	if c.recs == nil {
		c.recs = map[string]string{}
	}
	c.writes++
	c.recs[conv] = u
	return nil
}

func (c *countingRecords) IsTrustedServiceURL(_ context.Context, conv, u string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return false, errors.New("redis down")
	}
	c.read++
	return c.recs[conv] == u, nil
}

// Teams' own connector hosts need no Redis at all, in either direction.
func TestTeamsServiceURLsNeedNoRecord(t *testing.T) {
	cloud, _ := botframework.LookupCloud("public")
	recs := &countingRecords{down: true}
	s := botframework.NewServiceURLs(botframework.ServiceURLOptions{Hosts: cloud.ServiceURLHosts, Records: recs})
	ctx := context.Background()
	for _, u := range []string{"https://smba.trafficmanager.net/amer/", "https://smba.trafficmanager.net/emea/", "https://SMBA.trafficmanager.net/teams/"} {
		if err := s.TrustServiceURL(ctx, "19:a@thread.v2", u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
		if ok, err := s.IsTrustedServiceURL(ctx, "19:other@thread.v2", u); !ok || err != nil {
			t.Errorf("%s: trusted %v, %v", u, ok, err)
		}
	}
	for _, u := range []string{"http://smba.trafficmanager.net/amer/", "https://smba.trafficmanager.net:8443/amer/", "https://smba.trafficmanager.net.evil.example/"} {
		if ok, _ := s.IsTrustedServiceURL(ctx, "19:a@thread.v2", u); ok {
			t.Errorf("%s trusted without a record", u)
		}
	}
	for name, c := range map[string]string{"usgov": "https://smba.infra.gov.teams.microsoft.us/teams/", "usgovdod": "https://smba.infra.dod.teams.microsoft.us/teams/"} {
		cl, _ := botframework.LookupCloud(name)
		s := botframework.NewServiceURLs(botframework.ServiceURLOptions{Hosts: cl.ServiceURLHosts, Records: recs})
		if ok, _ := s.IsTrustedServiceURL(ctx, "19:a@thread.v2", c); !ok {
			t.Errorf("%s: %s not trusted", name, c)
		}
	}
}

// Any other service URL is trusted only for its conversation (and that
// conversation's channel threads), written once per replica and cached.
func TestOtherServiceURLsArePerConversationAndCached(t *testing.T) {
	recs := &countingRecords{}
	s := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: recs})
	ctx := context.Background()
	const u = "https://connector.contoso.example/"
	for range 5 {
		if err := s.TrustServiceURL(ctx, "19:ch@thread.skype;messageid=17", u); err != nil {
			t.Fatal(err)
		}
	}
	if recs.writes != 1 {
		t.Errorf("%d writes for 5 activities, want 1", recs.writes)
	}
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:ch@thread.skype;messageid=99", u); !ok {
		t.Error("another thread of the channel is not trusted")
	}
	if ok, _ := s.IsTrustedServiceURL(ctx, "19:x@thread.v2", u); ok {
		t.Error("trusted for a conversation it never arrived in")
	}
	// Another replica (a fresh cache) reads the record once, then caches it.
	s2 := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: recs})
	reads := recs.read
	for range 3 {
		if ok, err := s2.IsTrustedServiceURL(ctx, "19:ch@thread.skype", u); !ok || err != nil {
			t.Fatalf("replica 2: %v %v", ok, err)
		}
	}
	if recs.read-reads != 1 {
		t.Errorf("%d reads for 3 checks, want 1", recs.read-reads)
	}
	// Plain http beyond loopback never carries the token.
	if err := s.TrustServiceURL(ctx, "19:y@thread.v2", "http://connector.contoso.example/"); err == nil {
		t.Error("a plain http service URL was trusted")
	}
}

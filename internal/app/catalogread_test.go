package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/botframework"
	"github.com/upgradeapprovals/bot/graph/fakegraph"
)

// A sweep reads the tenant's org app catalog once, as the watcher, and its
// scans look their org apps up in that read: Graph's budget goes on the
// installations. An app from the store (which the watcher does not read)
// is still looked up for the scan that finds it, and "check" reads the
// catalog afresh.
func TestSweepReadsTheCatalogOnceAndCheckReadsItAfresh(t *testing.T) {
	const storeAppID = "5a8f2c14-9b3e-4d71-8e06-2c4f9a1b7d35"
	h := newHarness(t)
	chats := seedChats(h, 4)
	h.graph.AddApp(fakegraph.App{ID: storeAppID, DisplayName: "Contoso Forms", DistributionMethod: "store",
		Definitions: []fakegraph.Definition{{Version: "2.0.0"}, {Version: "2.1.0"}}})
	h.graph.Install(fakegraph.Chat, chats[0], storeAppID, "2.0.0", nil)
	var refs []approval.ConversationRef
	for _, chat := range chats {
		refs = append(refs, approval.ConversationRef{ConversationID: chat, ConversationType: "groupChat",
			ServiceURL: h.connector.URL(), ChannelID: "msteams", TenantID: testTenant, BotID: "28:" + testAppID, Locale: "en-US",
			Scope: &approval.Scope{Kind: approval.ScopeChat, ID: chat, TenantID: testTenant}, UpdatedAt: time.Now().UTC()})
	}
	st := storeOf(t, h)
	trust := botframework.NewServiceURLs(botframework.ServiceURLOptions{Records: st.Conversations()})
	for _, ref := range refs {
		if err := errors.Join(st.Conversations().SaveReference(context.Background(), ref),
			trust.TrustServiceURL(context.Background(), ref.ConversationID, ref.ServiceURL)); err != nil {
			t.Fatal(err)
		}
	}

	r := h.replica(t, nil, 0) // its first round sweeps
	var seen string
	eventually(t, 15*time.Second, "the sweep's cards", func() bool {
		posts := cardPosts(h.connector.Calls())
		seen = fmt.Sprint(posts)
		return len(posts) == 4 && posts[chats[0]] == 2
	}, &seen)
	h.scansDone(t)
	catalogReads := func() (org int, byID []string) {
		for _, c := range h.graph.Calls() {
			if c.Method != http.MethodGet || c.Path != "/appCatalogs/teamsApps" {
				continue
			}
			if f := c.Query.Get("$filter"); strings.HasPrefix(f, "distributionMethod") {
				org++
			} else {
				byID = append(byID, f)
			}
		}
		return org, byID
	}
	org, byID := catalogReads()
	if org != 1 || len(byID) != 1 || !strings.Contains(byID[0], storeAppID) || strings.Contains(byID[0], pollsAppID) {
		t.Errorf("a sweep of %d chats read the org catalog %d times and the catalog by app %q; want the watcher's one "+
			"read, and one read of the store app alone", len(chats), org, byID)
	}

	n := len(h.connector.Calls())
	if code := r.post(t, h, h.in(h.message("1", "check"), chats[1])); code != http.StatusOK {
		t.Fatalf("check: %d", code)
	}
	h.connector.WaitCalls(t, n+1)
	if _, after := catalogReads(); len(after) != len(byID)+1 || !strings.Contains(after[len(after)-1], pollsAppID) {
		t.Errorf("check read the catalog by app %q, want one fresh read of Polls", after[len(byID):])
	}
}

package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/state"
)

const (
	teamGroup = "8f3c1e62-5d4b-4a7e-9c21-0b6d2f4e8a10"
	general   = "19:general@thread.tacv2"
	planning  = "19:planning@thread.tacv2"
)

// inChannel is the reference of an activity in a channel (or one of its
// threads) of a team.
func inChannel(conversationID, team string, seen time.Time) approval.ConversationRef {
	return approval.ConversationRef{ConversationID: conversationID, ConversationType: "channel",
		ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", TenantID: tenant, BotID: "28:app",
		Scope: &approval.Scope{Kind: approval.ScopeTeam, ID: team, TenantID: tenant}, UpdatedAt: seen}
}

// toScan lists what a sweep of the tenant scans, with how often each came.
func toScan(t *testing.T, s *state.Conversations) map[string]int {
	t.Helper()
	m := map[string]int{}
	if err := s.Conversations(context.Background(), tenant, func(id string) error { m[id]++; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// A team where the bot was talked to in several threads of two channels is
// one conversation to scan: the channel it was last talked to in (not a
// thread), while each thread still reads as itself.
func TestThreadsAndChannelsOfATeamAreScannedAsTheTeamOnce(t *testing.T) {
	prefix := fmt.Sprintf("test:threads:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	seen := time.Now().UTC().Truncate(time.Second)
	talk := func(conversationID string) {
		t.Helper()
		seen = seen.Add(time.Minute)
		if _, err := s.ClaimAndSaveReference(ctx, conversationID+"|"+seen.String(), inChannel(conversationID, teamGroup, seen)); err != nil {
			t.Fatal(err)
		}
	}
	chat := approval.ConversationRef{ConversationID: "19:abc@thread.v2", ConversationType: "groupChat",
		ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", TenantID: tenant, BotID: "28:app",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: "19:abc@thread.v2", TenantID: tenant}, UpdatedAt: seen}
	if err := s.SaveReference(ctx, chat); err != nil {
		t.Fatal(err)
	}
	for _, conv := range []string{general + ";messageid=1", general + ";messageid=2", planning + ";messageid=3",
		planning + ";messageid=4", general + ";messageid=5", general + ";messageid=1"} {
		talk(conv)
	}
	if got := toScan(t, s); len(got) != 2 || got[general] != 1 || got[chat.ConversationID] != 1 {
		t.Errorf("a sweep scans %v, want the team once, in the channel last talked in (%s), and the chat", got, general)
	}
	talk(planning + ";messageid=3")
	if got := toScan(t, s); len(got) != 2 || got[planning] != 1 {
		t.Errorf("after talking in another channel a sweep scans %v, want the team in %s", got, planning)
	}

	// Each thread reads as itself, with its channel's connector: its
	// follow-ups and replies stay in it.
	ref, err := s.Reference(ctx, general+";messageid=2")
	if err != nil || ref.ConversationID != general+";messageid=2" || ref.ServiceURL == "" || ref.Scope == nil || ref.Scope.ID != teamGroup {
		t.Errorf("a thread's reference: %+v %v", ref, err)
	}
	// One reference per channel, not per thread. (Key by key: KEYS on a
	// Redis Cluster answers for one node only.)
	for id, want := range map[string]int64{chat.ConversationID: 1, general: 1, planning: 1,
		general + ";messageid=1": 0, general + ";messageid=2": 0, planning + ";messageid=3": 0} {
		if n, err := rdb.Exists(ctx, prefix+"ref:{"+id+"}").Result(); err != nil || n != want {
			t.Errorf("reference of %s stored %d times (%v), want %d", id, n, err, want)
		}
	}

	if err := s.Forget(ctx, inChannel(general, teamGroup, seen)); err != nil {
		t.Fatal(err)
	}
	if got := toScan(t, s); len(got) != 1 || got[chat.ConversationID] != 1 {
		t.Errorf("after the bot was removed from the team a sweep scans %v, want the chat only", got)
	}
}

// legacyReference stores a reference as releases before one reference per
// channel did: under its thread, and in the tenant's where set.
func legacyReference(t *testing.T, rdb redis.UniversalClient, prefix string, ref approval.ConversationRef) {
	t.Helper()
	ctx := context.Background()
	b, err := json.Marshal(struct {
		V int `json:"v"`
		approval.ConversationRef
	}{1, ref})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, prefix+"ref:{"+ref.ConversationID+"}", b, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SAdd(ctx, prefix+"where:{"+ref.TenantID+"}", ref.ConversationID)
	rdb.SAdd(ctx, prefix+"tenants", ref.TenantID)
}

// References an earlier release stored per thread are scanned once per
// team too, still read, and a team forgotten is not brought back by them.
func TestThreadReferencesOfAnEarlierReleaseAreScannedOncePerScope(t *testing.T) {
	prefix := fmt.Sprintf("test:legacy:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	seen := time.Now().UTC().Truncate(time.Second)
	const (
		otherTeam   = "0b6d2f4e-5d4b-4a7e-9c21-8f3c1e628a10"
		removedTeam = "2d4b4a7e-5d4b-4a7e-9c21-8f3c1e628a10"
		chat        = "19:legacy-chat@thread.v2"
		unscoped    = "19:unscoped@thread.tacv2;messageid=9"
	)
	for _, conv := range []string{general + ";messageid=1", general + ";messageid=2", planning + ";messageid=3"} {
		legacyReference(t, rdb, prefix, inChannel(conv, teamGroup, seen))
	}
	for _, conv := range []string{"19:x@thread.tacv2;messageid=4", "19:y@thread.tacv2;messageid=5"} {
		legacyReference(t, rdb, prefix, inChannel(conv, otherTeam, seen))
	}
	for _, conv := range []string{"19:gone@thread.tacv2;messageid=6", "19:gone@thread.tacv2;messageid=7", "19:gone@thread.tacv2"} {
		legacyReference(t, rdb, prefix, inChannel(conv, removedTeam, seen))
	}
	legacyReference(t, rdb, prefix, approval.ConversationRef{ConversationID: chat, ConversationType: "groupChat",
		ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", TenantID: tenant, BotID: "28:app",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: chat, TenantID: tenant}, UpdatedAt: seen})
	noScope := inChannel(unscoped, teamGroup, seen)
	noScope.Scope = nil
	legacyReference(t, rdb, prefix, noScope)
	expired := "19:expired@thread.tacv2;messageid=8"
	rdb.SAdd(ctx, prefix+"where:{"+tenant+"}", expired)

	// The new release: someone talks in the first team's planning channel,
	// and the bot is removed from the third team (in its General channel).
	if err := s.SaveReference(ctx, inChannel(planning+";messageid=10", teamGroup, seen.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, inChannel("19:gone@thread.tacv2", removedTeam, seen)); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		got := toScan(t, s)
		var others []string
		for conv, n := range got {
			if n != 1 {
				t.Errorf("round %d: %s scanned %d times", round, conv, n)
			}
			if conv == "19:x@thread.tacv2;messageid=4" || conv == "19:y@thread.tacv2;messageid=5" {
				others = append(others, conv)
			}
		}
		if len(got) != 4 || got[planning] != 1 || len(others) != 1 || got[chat] != 1 || got[unscoped] != 1 {
			t.Errorf("round %d: a sweep scans %v, want the first team in %s, the other team in one of its threads, "+
				"the chat, and the conversation without a scope", round, got, planning)
		}
		if len(others) == 1 {
			ref, err := s.Reference(ctx, others[0])
			if err != nil || ref.ConversationID != others[0] || ref.Scope == nil || ref.Scope.ID != otherTeam {
				t.Errorf("round %d: the earlier release's thread reference: %+v %v", round, ref, err)
			}
		}
	}
	if ref, err := s.Reference(ctx, general+";messageid=2"); err != nil || ref.ConversationID != general+";messageid=2" {
		t.Errorf("a thread stored by the earlier release: %+v %v", ref, err)
	}
	if left := rdb.SMembers(ctx, prefix+"where:{"+tenant+"}").Val(); len(left) != 1 || left[0] != unscoped {
		t.Errorf("left in the earlier release's index: %v, want only the conversation without a scope", left)
	}
}

// A chat nobody talked in for the reference's lifetime (a meeting long
// over) leaves the tenant's index at the next sweep instead of being
// queued, sweep after sweep, for a scan that finds no reference; the
// scopes still talked in stay, and talking in that chat again brings it
// back.
func TestAScopeWhoseReferenceExpiredLeavesTheIndex(t *testing.T) {
	prefix := fmt.Sprintf("test:expiredscope:%d:", time.Now().UnixNano())
	s, rdb := newConversations(t, state.Options{Prefix: prefix})
	ctx := context.Background()
	seen := time.Now().UTC().Truncate(time.Second)
	meeting := approval.ConversationRef{ConversationID: "19:meeting_abc@thread.v2", ConversationType: "groupChat",
		ServiceURL: "https://smba.trafficmanager.net/amer/", ChannelID: "msteams", TenantID: tenant, BotID: "28:app",
		Scope: &approval.Scope{Kind: approval.ScopeChat, ID: "19:meeting_abc@thread.v2", TenantID: tenant}, UpdatedAt: seen}
	for _, ref := range []approval.ConversationRef{meeting, inChannel(general+";messageid=1", teamGroup, seen)} {
		if err := s.SaveReference(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	// A team an earlier release indexed by one of its threads: only the
	// thread's own reference is left, and it still counts.
	legacyReference(t, rdb, prefix, inChannel("19:x@thread.tacv2;messageid=4", "0b6d2f4e-5d4b-4a7e-9c21-8f3c1e628a10", seen))
	if got := toScan(t, s); len(got) != 3 || got[meeting.ConversationID] != 1 {
		t.Fatalf("a sweep scans %v, want the meeting chat, the team and the earlier release's team", got)
	}

	// The meeting chat's reference runs out of TTL.
	if err := rdb.Del(ctx, prefix+"ref:{"+meeting.ConversationID+"}").Err(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if got := toScan(t, s); len(got) != 2 || got[general] != 1 || got["19:x@thread.tacv2;messageid=4"] != 1 {
			t.Errorf("round %d: with the meeting chat's reference gone a sweep scans %v, want the two teams", round, got)
		}
	}
	if n := rdb.HLen(ctx, prefix+"scopes:{"+tenant+"}").Val(); n != 2 {
		t.Errorf("the tenant's index holds %d scopes, want the two teams", n)
	}

	meeting.UpdatedAt = seen.Add(time.Hour)
	if err := s.SaveReference(ctx, meeting); err != nil {
		t.Fatal(err)
	}
	if got := toScan(t, s); len(got) != 3 || got[meeting.ConversationID] != 1 {
		t.Errorf("after talking in the meeting chat again a sweep scans %v, want it back", got)
	}
}

package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/upgradeapprovals/bot/bot"
	"github.com/upgradeapprovals/bot/internal/redistest"
	"github.com/upgradeapprovals/bot/state"
)

// testRedis, when set, points the tests at another Redis than REDIS_URL.
var testRedis string

// The approval and dedupe tests again, on a real three-master Redis
// Cluster: every multi-key script and transaction must stay in one slot
// (no CROSSSLOT), and the client must follow the cluster (no MOVED
// errors), also after a node restarts.
func TestApprovalsAndDedupeOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t, 3)
	testRedis = c.URL()
	t.Cleanup(func() { testRedis = "" })
	suite := []struct {
		name string
		run  func(*testing.T)
	}{
		{"OpenApprovalIsOncePerInstallationAndTarget", TestOpenApprovalIsOncePerInstallationAndTarget},
		{"RacingOpensAgreeAcrossReplicas", TestRacingOpensAgreeAcrossReplicas},
		{"OnlyOneClaimWins", TestOnlyOneClaimWins},
		{"StaleClaimHasExactlyOneTakeover", TestStaleClaimHasExactlyOneTakeover},
		{"LeaseHasOneHolder", TestLeaseHasOneHolder},
		{"BatchAndAudit", TestBatchAndAudit},
		{"BatchListsAreKeptWithTheBatch", TestBatchListsAreKeptWithTheBatch},
		{"ClaimIsOncePerActivityAcrossReplicas", TestClaimIsOncePerActivityAcrossReplicas},
		{"ClaimExpires", TestClaimExpires},
		{"HeldClaimOutlivesItsFirstLease", TestHeldClaimOutlivesItsFirstLease},
		{"ClaimHolderKeepsWhatOthersWroteMeanwhile", TestClaimHolderKeepsWhatOthersWroteMeanwhile},
		{"ClaimAndSaveReferenceIsOneRoundTrip", TestClaimAndSaveReferenceIsOneRoundTrip},
		{"ActivitiesReadNoTenantWideKey", TestActivitiesReadNoTenantWideKey},
		{"ReferenceIsWrittenOnlyWhenNewOrChangedAndIndexedByTenant", TestReferenceIsWrittenOnlyWhenNewOrChangedAndIndexedByTenant},
		{"ThreadsAndChannelsOfATeamAreScannedAsTheTeamOnce", TestThreadsAndChannelsOfATeamAreScannedAsTheTeamOnce},
		{"ThreadReferencesOfAnEarlierReleaseAreScannedOncePerScope", TestThreadReferencesOfAnEarlierReleaseAreScannedOncePerScope},
		{"AScopeWhoseReferenceExpiredLeavesTheIndex", TestAScopeWhoseReferenceExpiredLeavesTheIndex},
		{"StoreContract", TestStoreContract},
		{"AuditTrailPerTenant", TestAuditTrailPerTenant},
	}
	for _, tc := range suite {
		t.Run(tc.name, tc.run)
	}

	// One master restarts (killed, back with its data): approvals opened
	// before are still there, and everything works again.
	s, _ := newApprovals(t, state.Options{})
	ctx := context.Background()
	var ids []string
	for i := range 20 {
		a := sampleApproval()
		a.Upgrade.Installation.ID = "inst-" + string(rune('a'+i))
		got, _, err := s.OpenApproval(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.ID)
	}
	c.Nodes[1].Restart()
	c.WaitHealthy(t)
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			_, err := s.Approval(ctx, id)
			if err == nil {
				break
			}
			if bot.ErrorCode(err) != bot.CodeUnavailable || time.Now().After(deadline) {
				t.Fatalf("approval %s after a node restart: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, tc := range suite[:4] {
		t.Run("after restart/"+tc.name, tc.run)
	}
}

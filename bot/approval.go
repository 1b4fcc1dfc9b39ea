package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ApprovalStatus is where an approval stands.
type ApprovalStatus string

const (
	StatusPending    ApprovalStatus = "pending"
	StatusUpgrading  ApprovalStatus = "upgrading" // claimed by one approver; the upgrade call is in flight
	StatusUpgraded   ApprovalStatus = "upgraded"
	StatusRejected   ApprovalStatus = "rejected"
	StatusFailed     ApprovalStatus = "failed" // may be retried
	StatusExpired    ApprovalStatus = "expired"
	StatusSuperseded ApprovalStatus = "superseded" // the catalog changed; a new approval replaces it
	StatusUpToDate   ApprovalStatus = "uptodate"   // someone upgraded it another way first
)

// Person is someone in a conversation.
type Person struct {
	ID          string `json:"id"`          // the channel id, e.g. "29:…"
	AADObjectID string `json:"aadObjectId"` // the Entra object id
	Name        string `json:"name,omitempty"`
}

// Approval is one request to upgrade one installation to one catalog
// definition, and what became of it.
type Approval struct {
	ID           string          `json:"id"`
	Status       ApprovalStatus  `json:"status"`
	Upgrade      PendingUpgrade  `json:"upgrade"`
	Conversation ConversationRef `json:"conversation"`
	// CardActivityID is the message showing this approval, updated for
	// everyone when it is decided.
	CardActivityID string `json:"cardActivityId,omitempty"`
	// OtherCards show the same approval elsewhere (another channel of the
	// team asked too); they are updated with it.
	OtherCards []PostedCard `json:"otherCards,omitempty"`
	Locale     string       `json:"locale,omitempty"`
	CreatedAt  time.Time    `json:"createdAt"`
	ExpiresAt  time.Time    `json:"expiresAt"`
	DecidedBy  *Person      `json:"decidedBy,omitempty"`
	DecidedAt  time.Time    `json:"decidedAt,omitzero"`
	// Problem is why the upgrade failed, with what an admin can do.
	Problem string `json:"problem,omitempty"`
	// ClaimToken names the upgrade claim while upgrading: only its holder
	// may record the outcome.
	ClaimToken string `json:"claimToken,omitempty"`
	// UpgradeSentAt is set just before Graph's upgrade is called: without
	// it an interrupted claim certainly never reached Graph.
	UpgradeSentAt time.Time `json:"upgradeSentAt,omitzero"`
	// Verification is what the bot found after an upgrade (see VerifyUpgrade).
	Verification *Verification `json:"verification,omitempty"`
}

// PostedCard is a message showing an approval.
type PostedCard struct {
	Conversation ConversationRef `json:"conversation"`
	ActivityID   string          `json:"activityId"`
}

// maxOtherCards bounds the cards one approval keeps true.
const maxOtherCards = 20

// Batch is approvals listed together on one card, for "approve all".
type Batch struct {
	ID        string
	Approvals []string
	// Lists are the messages showing the list (the reply to check, and
	// any other one an "approve all" came from); each is kept true as
	// its approvals are decided, on whichever replica.
	Lists []PostedCard
}

// OpenKey identifies "the same request": one installation (in one tenant)
// and one target version. There is at most one open approval per OpenKey,
// whichever conversation or channel thread asked, so a team installation
// seen from several channels gets one approval, and a proactive post finds
// the approval a check already opened (and the other way round).
type OpenKey struct {
	TenantID       string
	InstallationID string
	TargetVersion  string
}

func (k OpenKey) String() string {
	return k.TenantID + "|" + k.InstallationID + "|" + k.TargetVersion
}

// OpenKey is the approval's open key.
func (a Approval) OpenKey() OpenKey {
	tenant := a.Upgrade.Installation.Scope.TenantID
	if tenant == "" {
		tenant = a.Conversation.TenantID
	}
	return OpenKey{TenantID: strings.ToLower(tenant), InstallationID: a.Upgrade.Installation.ID,
		TargetVersion: strings.TrimSpace(a.Upgrade.Target.Version)}
}

// BelongsTo reports whether the approval may be acted on from ref: the same
// tenant and the same installation scope (a team's channels share the team's
// installation; a chat and a personal scope are their own), and, outside
// teams, the same conversation. Approval and batch ids travel in card data
// that anyone can copy, so an id from elsewhere is treated as unknown.
func (a Approval) BelongsTo(ref ConversationRef) bool {
	scope := a.Upgrade.Installation.Scope
	if ref.Scope == nil || ref.TenantID == "" || !strings.EqualFold(ref.TenantID, a.OpenKey().TenantID) {
		return false
	}
	if ref.Scope.Kind != scope.Kind || !strings.EqualFold(ref.Scope.ID, scope.ID) {
		return false
	}
	return scope.Kind == ScopeTeam || BaseConversation(ref.ConversationID) == BaseConversation(a.Conversation.ConversationID)
}

// BaseConversation drops a channel thread's ";messageid=…" suffix: every
// thread of a channel is the channel's conversation, with the channel's
// connector, quiet mode and history.
func BaseConversation(id string) string {
	base, _, _ := strings.Cut(id, ";")
	return base
}

// TopLevel is the reference of the channel a thread is in (of the
// conversation itself outside channels): a post there starts a new thread
// rather than replying in an old one.
func (r ConversationRef) TopLevel() ConversationRef {
	r.ConversationID = BaseConversation(r.ConversationID)
	return r
}

// NewApprovalID returns an opaque, unguessable id.
func NewApprovalID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "apr_" + hex.EncodeToString(b)
}

// AuditEvent is one line of a conversation's history.
type AuditEvent struct {
	At         time.Time      `json:"at"`
	Status     ApprovalStatus `json:"status"`
	Actor      string         `json:"actor,omitempty"`
	App        string         `json:"app"`
	From       string         `json:"from"`
	To         string         `json:"to"`
	ApprovalID string         `json:"approvalId"`
}

// ApprovalStore keeps approvals, batches and the audit trail.
type ApprovalStore interface {
	// OpenApproval returns the approval open under a.OpenKey() — pending,
	// failed (it may be retried), upgrading or upgraded — or stores a under
	// a new id (a.ID is ignored) and returns it with created true. It is
	// atomic across replicas: racing opens of one key return one approval.
	OpenApproval(ctx context.Context, a Approval) (stored Approval, created bool, err error)
	// OpenApprovalFor returns the approval open under k, or CodeNotFound.
	// Whoever posts cards unasked uses it to never post a second request.
	OpenApprovalFor(ctx context.Context, k OpenKey) (Approval, error)
	// Approval returns an approval, or an error with CodeNotFound.
	Approval(ctx context.Context, id string) (Approval, error)
	// Transition applies change to the approval atomically if its status is
	// one of from; otherwise it returns the approval as it is and an error
	// with CodeConflict.
	Transition(ctx context.Context, id string, from []ApprovalStatus, change func(*Approval)) (Approval, error)
	Claims
	// SaveBatch remembers approval ids under a new batch id ("approve all"),
	// and the batch under each approval (ListedIn).
	SaveBatch(ctx context.Context, ids []string) (string, error)
	// Batch returns a batch: its approval ids and the messages listing
	// them, or CodeNotFound.
	Batch(ctx context.Context, id string) (Batch, error)
	// RecordList remembers a message that lists the batch, so that it is
	// kept true; recording one twice changes nothing. CodeNotFound when the
	// batch is gone.
	RecordList(ctx context.Context, batchID string, list PostedCard) error
	// ListedIn returns the batches an approval was listed in, newest first
	// (a bounded number of them).
	ListedIn(ctx context.Context, approvalID string) ([]string, error)
	// AppendAudit adds an event to a conversation's history and returns the
	// batches e.ApprovalID is listed in, as ListedIn does: whoever records a
	// decision then redraws those lists, and gets both in one round trip.
	// On error the batches are unknown.
	AppendAudit(ctx context.Context, conversationID string, e AuditEvent) (listedIn []string, err error)
	// Audit returns up to n events of a conversation, newest first.
	Audit(ctx context.Context, conversationID string, n int) ([]AuditEvent, error)
}

// Claims are the upgrade claims on approvals: who may call Graph's upgrade
// for an approval, decided in the store, never from a copy read before.
type Claims interface {
	// ClaimUpgrade moves a pending or failed approval to upgrading for who,
	// under a new ClaimToken and a lease that expires in the store after
	// lease. Of concurrent claims exactly one wins; the others get the
	// approval as it stands and CodeConflict.
	ClaimUpgrade(ctx context.Context, id string, who Person, at time.Time, lease time.Duration) (Approval, error)
	// TakeOverClaim gives an upgrading approval whose lease has expired (its
	// replica died or hung) a new ClaimToken and lease, so one reconciler
	// finishes it. A live lease, or any other status, is CodeConflict.
	TakeOverClaim(ctx context.Context, id string, lease time.Duration) (Approval, error)
	// Amend applies change to the upgrading approval held.ID if held's
	// ClaimToken is still its own, keeping the claim; otherwise CodeConflict.
	// held is the approval as its holder last had it: the store may write
	// against it without reading first, but only if it is still what the
	// store holds.
	Amend(ctx context.Context, held Approval, change func(*Approval)) (Approval, error)
	// HoldClaim keeps an upgrading approval's claim, if token is still its
	// ClaimToken, for lease from now; otherwise CodeConflict.
	HoldClaim(ctx context.Context, id, token string, lease time.Duration) (Approval, error)
	// Settle applies change (the outcome) to the upgrading approval held.ID
	// if held's ClaimToken is still its own, and ends the claim; otherwise
	// CodeConflict. held is as for Amend.
	Settle(ctx context.Context, held Approval, change func(*Approval)) (Approval, error)
	// ExpiredClaims lists up to n upgrading approvals whose lease has expired.
	ExpiredClaims(ctx context.Context, n int) ([]string, error)
}

// Leases elect one replica for background work: a lease is held by one
// holder until it expires or the holder renews it.
type Leases interface {
	// HoldLease takes the lease name for holder, or renews it if holder
	// holds it, for ttl. It reports whether holder now holds it.
	HoldLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// ErrUpgradeUncertain is in the chain of an Installations.Upgrade error
// when the upgrade may have taken effect anyway: Graph answered 5xx, or the
// answer was lost. The installation is then read back, never upgraded again.
var ErrUpgradeUncertain = errors.New("the upgrade may have taken effect")

// ApproverPolicy says who may approve (BOT_APPROVERS). Anyone a rule
// allows may approve; with no rule, nobody but the personal scope's user.
type ApproverPolicy struct {
	Owners bool     // owners of the chat or team, from our tenant
	Groups []string // members (transitively) of these Entra groups
	Users  []string // these Entra users
}

// ParseApproverPolicy reads entries such as "owners", "group:<id>",
// "user:<id>", where ids are Entra object ids.
func ParseApproverPolicy(entries []string) (ApproverPolicy, error) {
	var p ApproverPolicy
	for _, e := range entries {
		kind, id, _ := strings.Cut(strings.TrimSpace(e), ":")
		switch {
		case kind == "owners" && id == "":
			p.Owners = true
		case kind == "group" && IsEntraID(id):
			p.Groups = append(p.Groups, id)
		case kind == "user" && IsEntraID(id):
			p.Users = append(p.Users, strings.ToLower(id))
		default:
			return p, fmt.Errorf("%q is not a policy entry (want owners, group:<entra-group-id> or user:<entra-user-id>)", e)
		}
	}
	return p, nil
}

func (p ApproverPolicy) namesUser(aadObjectID string) bool {
	return slices.Contains(p.Users, strings.ToLower(aadObjectID))
}

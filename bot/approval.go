package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
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
	CardActivityID string    `json:"cardActivityId,omitempty"`
	Locale         string    `json:"locale,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	ExpiresAt      time.Time `json:"expiresAt"`
	DecidedBy      *Person   `json:"decidedBy,omitempty"`
	DecidedAt      time.Time `json:"decidedAt,omitzero"`
	// Problem is why the upgrade failed, with what an admin can do.
	Problem string `json:"problem,omitempty"`
}

// OpenKey identifies "the same request": one installation, one target.
func (a Approval) OpenKey() string {
	return a.Conversation.ConversationID + "|" + a.Upgrade.Installation.ID + "|" + a.Upgrade.Target.ID
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
	// OpenApproval returns the open (pending or failed) approval with a's
	// OpenKey, or stores a as new. created reports which.
	OpenApproval(ctx context.Context, a Approval) (stored Approval, created bool, err error)
	// Approval returns an approval, or an error with CodeNotFound.
	Approval(ctx context.Context, id string) (Approval, error)
	// Transition applies change to the approval atomically if its status is
	// one of from; otherwise it returns the approval as it is and an error
	// with CodeConflict.
	Transition(ctx context.Context, id string, from []ApprovalStatus, change func(*Approval)) (Approval, error)
	// SaveBatch remembers approval ids under a new batch id ("approve all").
	SaveBatch(ctx context.Context, ids []string) (string, error)
	// Batch returns the approval ids of a batch, or CodeNotFound.
	Batch(ctx context.Context, id string) ([]string, error)
	// AppendAudit adds an event to a conversation's history.
	AppendAudit(ctx context.Context, conversationID string, e AuditEvent) error
	// Audit returns up to n events of a conversation, newest first.
	Audit(ctx context.Context, conversationID string, n int) ([]AuditEvent, error)
}

// ApproverPolicy says who may approve (BOT_APPROVERS). Anyone a rule
// allows may approve; with no rule, nobody but the personal scope's user.
type ApproverPolicy struct {
	Owners bool     // owners of the chat or team, from our tenant
	Groups []string // members (transitively) of these Entra groups
	Users  []string // these Entra users
}

// entraID is an Entra object id.
var entraID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ParseApproverPolicy reads entries such as "owners", "group:<id>",
// "user:<id>", where ids are Entra object ids.
func ParseApproverPolicy(entries []string) (ApproverPolicy, error) {
	var p ApproverPolicy
	for _, e := range entries {
		kind, id, _ := strings.Cut(strings.TrimSpace(e), ":")
		switch {
		case kind == "owners" && id == "":
			p.Owners = true
		case kind == "group" && entraID.MatchString(id):
			p.Groups = append(p.Groups, id)
		case kind == "user" && entraID.MatchString(id):
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

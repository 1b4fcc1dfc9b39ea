// Package approval is the domain of Teams app upgrade approvals: an
// approval and its lifecycle, Teams app versions and catalog definitions,
// the resource-specific consent (RSC) an upgrade changes, and who may
// approve. It does no I/O: the application (package bot) reads Graph and the
// store and applies these rules to what they return.
package approval

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"
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
	Status       Status          `json:"status"`
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
	// Problem is why the upgrade failed, or why the bot closed the
	// approval (WhatWentWrong reads it).
	Problem Problem `json:"why,omitzero"`
	// ProblemText is what releases before Problem recorded instead, an
	// English sentence: read, and cleared with Problem.
	ProblemText string `json:"problem,omitempty"`
	// ClaimToken names the upgrade claim while upgrading: only its holder
	// may record the outcome.
	ClaimToken string `json:"claimToken,omitempty"`
	// UpgradeSentAt is set just before Graph's upgrade is called: without
	// it an interrupted claim certainly never reached Graph.
	UpgradeSentAt time.Time `json:"upgradeSentAt,omitzero"`
	// RetryAt is set when Graph's answer to the upgrade was lost: if the
	// installation still shows the old version then, Retry is offered.
	RetryAt time.Time `json:"retryAt,omitzero"`
	// Verification is what the bot found when it re-read the upgraded
	// installation and the grants in force.
	Verification *Verification `json:"verification,omitempty"`
	// Quorum is how many distinct approvers must approve (QuorumFor);
	// zero is one.
	Quorum int `json:"quorum,omitempty"`
	// Approvals are the distinct approvers who approved so far, in order.
	Approvals Approvers `json:"approvals,omitempty"`
	// SnoozedUntil puts the reminder and any expiry notice off ("Remind me
	// later" by SnoozedBy); zero when nobody asked.
	SnoozedUntil time.Time `json:"snoozedUntil,omitzero"`
	SnoozedBy    *Person   `json:"snoozedBy,omitempty"`
	// AdminAskedBy are who asked an admin about the request ("Ask an
	// admin"), once each, in order.
	AdminAskedBy []Person `json:"adminAskedBy,omitempty"`
	// AsksUnposted are the asks not yet known to be in the admins'
	// conversation: recorded with the ask, dropped once its card is
	// posted, so an ask whose replica died before posting is posted by
	// another.
	AsksUnposted AdminAsks `json:"asksUnposted,omitempty"`
}

// AdminAsk is one ask of an admin: who, when, and why they did not
// approve.
type AdminAsk struct {
	Person
	At  time.Time `json:"at"`
	Why AskReason `json:"why"`
}

// AdminAsks are asks of an admin.
type AdminAsks []AdminAsk

// Without returns the asks less who's.
func (as AdminAsks) Without(who Person) AdminAsks {
	return slices.DeleteFunc(slices.Clone(as), func(a AdminAsk) bool { return who.same(a.Person) })
}

// Of returns who's ask, if it is among them.
func (as AdminAsks) Of(who Person) (AdminAsk, bool) {
	i := slices.IndexFunc(as, func(a AdminAsk) bool { return who.same(a.Person) })
	if i < 0 {
		return AdminAsk{}, false
	}
	return as[i], true
}

// Before returns the asks made before t: those whose own replica, had it
// lived, would have posted them by then.
func (as AdminAsks) Before(t time.Time) AdminAsks {
	var out AdminAsks
	for _, a := range as {
		if a.At.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

// PostedCard is a message showing an approval.
type PostedCard struct {
	Conversation ConversationRef `json:"conversation"`
	ActivityID   string          `json:"activityId"`
}

// MaxOtherCards bounds the cards one approval keeps true besides its own.
const MaxOtherCards = 20

// RecordCard remembers a posted card of the approval, so that deciding
// updates it too: the first is the approval's own, later ones (a second
// "check", another channel of the team) are kept up to MaxOtherCards. A
// card already recorded changes nothing.
func (a *Approval) RecordCard(card PostedCard) {
	switch {
	case a.CardActivityID == "":
		a.CardActivityID = card.ActivityID
	case a.ShowsOn(card.ActivityID):
	case len(a.OtherCards) < MaxOtherCards:
		a.OtherCards = append(a.OtherCards, card)
	}
}

// ShowsOn reports whether activityID is one of the approval's cards.
func (a Approval) ShowsOn(activityID string) bool {
	return a.CardActivityID == activityID || slices.ContainsFunc(a.OtherCards, func(c PostedCard) bool { return c.ActivityID == activityID })
}

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

// NewToken returns 24 random hex digits: unguessable, for ids, claim
// tokens and lease holders.
func NewToken() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

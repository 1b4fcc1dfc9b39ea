package bot

import (
	"cmp"
	"slices"
	"strings"

	"github.com/upgradeapprovals/bot/approval"
	"github.com/upgradeapprovals/bot/cards"
)

// cardFor is the card that shows an approval as it stands.
func (pl *plumbing) cardFor(a approval.Approval, locale string) cards.Card {
	place, app := placeOf(a.Conversation), appView(a.Upgrade)
	kind, decided := outcomeKind[a.Status]
	if a.Status == approval.StatusUpgrading {
		kind, decided = cards.OutcomeUpgrading, true
	}
	if !decided {
		v := cards.PendingUpgrade{Locale: locale, ApprovalID: a.ID, App: app,
			Diff: diffView(a.Upgrade.Diff), Place: place, Approvers: pl.approverView(&a.Upgrade.Installation.Scope),
			RequestedAt: a.CreatedAt, Needed: a.Needed(), ApprovedBy: approverNames(a.Approvals), SnoozedUntil: a.SnoozedUntil,
			SnoozedBy: snoozedBy(a), AskAdmin: pl.askAdmin, AdminAskedBy: personNames(a.AdminAskedBy)}
		if a.Status == approval.StatusNeedsAdmin {
			v.NeedsAdmin = &cards.WaitsForAdmin{Problem: problemView(a.WhatWentWrong())}
		}
		return pl.cards.Pending(v)
	}
	o := cards.Outcome{Locale: locale, Kind: kind, ApprovalID: a.ID, App: app, Diff: diffView(a.Upgrade.Diff),
		At: a.DecidedAt, Place: place, Approvers: pl.approverView(&a.Upgrade.Installation.Scope)}
	if a.DecidedBy != nil {
		o.By = a.DecidedBy.Name
	}
	if a.Status == approval.StatusUpgrading || a.Status == approval.StatusUpgraded {
		o.ApprovedBy = approverNames(a.Approvals)
	}
	if a.Status == approval.StatusFailed {
		o.Problem = problemView(a.WhatWentWrong())
	}
	if a.Status == approval.StatusUpgrading {
		o.RetryAt = a.RetryAt
	}
	o.Verification = verificationView(a.Verification)
	return pl.cards.Outcome(o)
}

var outcomeKind = map[approval.Status]cards.OutcomeKind{
	approval.StatusUpgraded: cards.OutcomeUpgraded, approval.StatusRejected: cards.OutcomeRejected, approval.StatusFailed: cards.OutcomeFailed,
	approval.StatusExpired: cards.OutcomeExpired, approval.StatusSuperseded: cards.OutcomeSuperseded, approval.StatusUpToDate: cards.OutcomeUpToDate,
	approval.StatusUpgradedOutside: cards.OutcomeUpgradedOutside, approval.StatusSkipped: cards.OutcomeSkipped,
	approval.StatusSnoozed: cards.OutcomeSnoozed,
}

func appView(u approval.PendingUpgrade) cards.App {
	in := u.Installation
	desc := u.Target.ShortDescription
	if desc == "" {
		desc = in.Definition.ShortDescription
	}
	return cards.App{Name: in.DisplayName, ShortDescription: desc, FromVersion: in.Definition.Version, ToVersion: u.Target.Version}
}

// installedView lists what "check" found up to date, by name.
func installedView(installed []approval.Installation) []cards.InstalledApp {
	apps := make([]cards.InstalledApp, len(installed))
	for i, in := range installed {
		apps[i] = cards.InstalledApp{Name: in.DisplayName, Version: in.Definition.Version}
	}
	slices.SortStableFunc(apps, func(a, b cards.InstalledApp) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), strings.Compare(a.Name, b.Name))
	})
	return apps
}

func diffView(d approval.PermissionDiff) cards.Diff {
	conv := func(ps []approval.Permission) []cards.Permission {
		out := make([]cards.Permission, len(ps))
		for i, p := range ps {
			out[i] = cards.Permission{Value: p.Value, Type: p.Type}
		}
		return out
	}
	return cards.Diff{Added: conv(d.Added), Removed: conv(d.Removed), Kept: conv(d.Kept)}
}

func placeOf(ref approval.ConversationRef) cards.Place {
	switch {
	case ref.ConversationType == "personal":
		return cards.PlacePersonal
	case ref.ConversationType == "channel":
		return cards.PlaceTeam
	case strings.HasPrefix(ref.ConversationID, "19:meeting_"):
		return cards.PlaceMeeting
	}
	return cards.PlaceChat
}

// approverView says who may approve in scope, for the card's sentence. A
// card is drawn without asking Graph about the chat: a meeting's chat is
// told by its id, as placeOf does; the click asks Graph.
func (pl *plumbing) approverView(scope *approval.Scope) cards.ApproverPolicy {
	if scope != nil && scope.Kind == approval.ScopeUser {
		return cards.ApproversSelf
	}
	kind := approval.ForChat
	if scope != nil {
		kind = approval.KindOf(*scope, approval.Chat{Meeting: strings.HasPrefix(scope.ID, "19:meeting_")})
	}
	r := pl.policy.For(kind)
	switch {
	case r.Owners:
		return cards.ApproversOwners
	case r.Organizer && len(r.Groups)+len(r.Users) == 0:
		return cards.ApproversOrganizer
	case len(r.Groups) > 0:
		return cards.ApproversGroup
	}
	return cards.ApproversNamed
}

func verificationView(v *approval.Verification) *cards.Verification {
	if v == nil {
		return nil
	}
	out := &cards.Verification{Problem: problemView(v.WhatWentWrong())}
	for _, p := range v.Missing {
		out.Missing = append(out.Missing, cards.Permission{Value: p.Value, Type: strings.ToLower(p.Type)})
	}
	return out
}

// approverNames names who approved, in order.
func approverNames(as []approval.Approver) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Name
	}
	return out
}

func snoozedBy(a approval.Approval) string {
	if a.SnoozedBy == nil {
		return ""
	}
	return a.SnoozedBy.Name
}

// personNames names people, in order.
func personNames(ps []approval.Person) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

package approval

import (
	"strconv"
	"strings"
	"time"
)

// Operation names an event of the audit trail, in the style of Microsoft
// 365's audit log (AppUpgradeApproved, …).
type Operation string

// The operations. Adding one is one line here and one in the operations
// table below.
const (
	OpRequested       Operation = "AppUpgradeRequested"       // a request was opened (its card is posted)
	OpReminded        Operation = "AppUpgradeReminded"        // the request's one reminder was posted
	OpApproved        Operation = "AppUpgradeApproved"        // an approver claimed it for the upgrade (approve, or retry)
	OpRejected        Operation = "AppUpgradeRejected"        // an approver rejected it
	OpUpgraded        Operation = "AppUpgraded"               // Graph upgraded the installation
	OpFailed          Operation = "AppUpgradeFailed"          // the upgrade failed (may be retried)
	OpExpired         Operation = "AppUpgradeRequestExpired"  // nobody decided in time
	OpSuperseded      Operation = "AppUpgradeSuperseded"      // the catalog moved on; a new request replaces it
	OpUpToDate        Operation = "AppUpgradeAlreadyUpToDate" // the installation already ran the target version
	OpUpgradedOutside Operation = "AppUpgradedOutsideBot"     // upgraded another way while the request was open
	OpConsentMissing  Operation = "AppUpgradeConsentMissing"  // upgraded, but permissions of the new version are not in force
	OpNeedsAdmin      Operation = "AppUpgradeNeedsAdmin"      // the approvers may not consent: an admin must allow it
	OpAdminAllowed    Operation = "AppUpgradeConsentAllowed"  // the consent policy now lets the approvers consent: pending again
	OpSkipped         Operation = "AppUpgradeVersionSkipped"  // an approver skipped this version in this scope
	OpSnoozed         Operation = "AppUpgradeSnoozed"         // someone put the reminder off (remind me later)
	OpAdminAsked      Operation = "AppUpgradeAdminAsked"      // someone asked the admins' conversation about the request
)

// operations is the one table of operations, in the order Operations
// lists them, each with the status whose reaching it records ("" for an
// event that changes no status: a reminder, a consent found missing).
var operations = []struct {
	op     Operation
	status Status
}{
	{OpRequested, StatusPending},
	{OpReminded, ""},
	{OpApproved, StatusUpgrading},
	{OpRejected, StatusRejected},
	{OpUpgraded, StatusUpgraded},
	{OpFailed, StatusFailed},
	{OpExpired, StatusExpired},
	{OpSuperseded, StatusSuperseded},
	{OpUpToDate, StatusUpToDate},
	{OpUpgradedOutside, StatusUpgradedOutside},
	{OpConsentMissing, ""},
	{OpNeedsAdmin, StatusNeedsAdmin},
	{OpAdminAllowed, ""},
	{OpSkipped, StatusSkipped},
	{OpSnoozed, StatusSnoozed},
	{OpAdminAsked, ""},
}

// Operations lists every operation.
func Operations() []Operation {
	out := make([]Operation, len(operations))
	for i, o := range operations {
		out[i] = o.op
	}
	return out
}

// OperationOf is the operation that records an approval reaching status s;
// a status the table lacks is recorded under its own name
// ("AppUpgrade_<status>"), so no event is dropped for want of a line in it.
func OperationOf(s Status) Operation {
	for _, o := range operations {
		if o.status == s && s != "" {
			return o.op
		}
	}
	return Operation("AppUpgrade_" + string(s))
}

// AuditEvent is one event of a tenant's audit trail: what happened to an
// approval, who did it and to what. The same record is a line of a
// conversation's history when it ends an approval (Status is then set).
type AuditEvent struct {
	At        time.Time `json:"at"`
	Operation Operation `json:"operation,omitempty"`
	// Status is where the approval stood after the event.
	Status Status `json:"status"`
	// Actor is who acted (their display name), ActorID their Entra object
	// id; both empty for the bot itself (a reminder, an expiry).
	Actor     string    `json:"actor,omitempty"`
	ActorID   string    `json:"actorId,omitempty"`
	TenantID  string    `json:"tenantId,omitempty"`
	ScopeKind ScopeKind `json:"scopeKind,omitempty"`
	ScopeID   string    `json:"scopeId,omitempty"`
	// AppID is the Teams app's catalog id, App its name.
	AppID      string       `json:"appId,omitempty"`
	App        string       `json:"app"`
	From       string       `json:"from"`
	To         string       `json:"to"`
	Added      []Permission `json:"added,omitempty"`
	Removed    []Permission `json:"removed,omitempty"`
	ApprovalID string       `json:"approvalId"`
	// Detail says more in a few words: why it failed, which permissions
	// did not take.
	Detail string `json:"detail,omitempty"`
}

// Event is the audit event op of the approval a at at, by who (nil: the
// bot), with detail.
func (a Approval) Event(op Operation, at time.Time, by *Person, detail string) AuditEvent {
	in := a.Upgrade.Installation
	e := AuditEvent{At: at.UTC(), Operation: op, Status: a.Status, TenantID: a.OpenKey().TenantID,
		ScopeKind: in.Scope.Kind, ScopeID: in.Scope.ID, AppID: in.TeamsAppID, App: in.DisplayName,
		From: in.Definition.Version, To: a.Upgrade.Target.Version, Added: a.Upgrade.Diff.Added,
		Removed: a.Upgrade.Diff.Removed, ApprovalID: a.ID, Detail: detail}
	if by != nil {
		e.Actor, e.ActorID = by.Name, by.AADObjectID
	}
	return e
}

// OutcomeEvent is the audit event of how the approval now stands (its
// status, who decided it and when, why it failed or was closed): the one
// its history line shows.
func (a Approval) OutcomeEvent() AuditEvent {
	return a.Event(OperationOf(a.Status), a.DecidedAt, a.DecidedBy, a.WhatWentWrong().Detail())
}

// Detail is the problem in a few words for the audit trail: its reason and
// what Graph said, e.g. "graph_refused: 403 Forbidden: …"; "" for none.
func (p Problem) Detail() string {
	if p.IsZero() {
		return ""
	}
	if p.Reason == "" {
		return p.Text
	}
	parts := []string{string(p.Reason)}
	if p.Permission != "" {
		parts = append(parts, "needs "+p.Permission)
	}
	if p.InstalledVersion != "" {
		parts = append(parts, "still "+p.InstalledVersion)
	}
	if p.Status != 0 || p.GraphCode != "" || p.GraphMessage != "" {
		graph := []string{"Graph"}
		if p.Status != 0 {
			graph = append(graph, strconv.Itoa(p.Status))
		}
		for _, w := range []string{p.GraphCode, p.GraphMessage} {
			if w != "" {
				graph = append(graph, w)
			}
		}
		parts = append(parts, strings.Join(graph, " "))
	}
	return strings.Join(parts, "; ")
}

// FormatPermissions writes permissions as "Value (type)", joined by "; ".
func FormatPermissions(ps []Permission) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Value + " (" + strings.ToLower(p.Type) + ")"
	}
	return strings.Join(parts, "; ")
}

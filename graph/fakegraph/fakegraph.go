// Package fakegraph is a fake Microsoft Graph tenant: an http.Handler that
// serves the Graph v1.0 endpoints the bot uses with Graph's response shapes
// (@odata.context, @odata.type, Graph's id formats, paging through
// @odata.nextLink, lower-case permission types, role arrays, the error
// envelope). It is seeded with chats, teams, users, catalog apps and their
// versions; its upgrade behaves like Graph's, moving an installation to the
// catalog's current definition only when the consented permissions match;
// it records every call and can be told to fail.
package fakegraph

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scope kinds, as in the URL: chats, teams, users.
const (
	Chat = "chats"
	Team = "teams"
	User = "users"
)

// Permission is an RSC permission; Type is "application" or "delegated".
type Permission struct {
	Value string `json:"permissionValue"`
	Type  string `json:"permissionType"`
}

// Definition is one version of a catalog app.
type Definition struct {
	Version          string
	State            string // published (default), submitted or rejected
	RSC              []Permission
	ShortDescription string
}

// App is a catalog app.
type App struct {
	ID                 string
	ExternalID         string
	DisplayName        string
	DistributionMethod string // organization (default), store or sideloaded
	Definitions        []Definition
}

// Member is a chat or team member.
type Member struct {
	UserID      string
	DisplayName string
	Email       string
	TenantID    string
	Roles       []string
}

// Call is one request the fake received.
type Call struct {
	Method        string
	Path          string // without the /v1.0 prefix, unescaped
	Query         url.Values
	Body          []byte // decompressed
	Authorization string
}

// Fault makes matching requests fail.
type Fault struct {
	Method     string // "" matches any
	Path       string // a substring of the path
	Status     int
	Code       string
	Message    string
	RetryAfter string // Retry-After header, if any
	Times      int    // how many requests fail; 0 means 1
}

type installation struct {
	id        string
	appID     string
	version   string
	consented []Permission // nil: no RSC (Graph's null)
}

// Tenant is the fake tenant. Its zero value is not usable; call New.
type Tenant struct {
	// PageSize splits installation, member and catalog lists into pages;
	// 0: one page.
	PageSize int
	// BaseURL starts @odata.context and @odata.nextLink; set it to the
	// server's address (httptest.Server.URL) so the SDK can follow pages.
	BaseURL string

	mu       sync.Mutex
	apps     map[string]*App
	scopes   map[string][]*installation
	members  map[string][]Member
	groups   map[string]map[string]bool
	meetings map[string]Member // chat id → the meeting's organizer
	channels map[string]string // team id/channel id → membershipType other than standard
	dropped  map[string]bool   // scope|permission grants that did not take
	calls    []Call
	faults   []*Fault
	mux      *http.ServeMux
	// The tenant's consent policies: the authorization policy's
	// permissionGrantPoliciesAssigned, the scope types its RSC
	// pre-approval policies cover, and the application permissions the
	// bot was not granted.
	grantPolicies []string
	preApproved   []string
	revoked       map[string]bool
}

// DefaultGrantPolicies is what a tenant's authorization policy assigns to
// the default user role unless told otherwise: users' own consent and
// Microsoft-managed resource-specific consent for chats and teams.
var DefaultGrantPolicies = []string{
	"ManagePermissionGrantsForSelf.microsoft-user-default-legacy",
	"ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-chat",
	"ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-team",
}

// New returns an empty tenant.
func New() *Tenant {
	t := &Tenant{
		apps: map[string]*App{}, scopes: map[string][]*installation{},
		members: map[string][]Member{}, groups: map[string]map[string]bool{}, dropped: map[string]bool{},
		meetings: map[string]Member{}, channels: map[string]string{},
		grantPolicies: slices.Clone(DefaultGrantPolicies), revoked: map[string]bool{},
	}
	a, m := (*api)(t), http.NewServeMux()
	for _, kind := range []string{Chat, Team} {
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/installedApps", a.listInstallations(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/installedApps/{id}", a.getInstallation(kind))
		m.HandleFunc("POST /v1.0/"+kind+"/{scope}/installedApps/{id}/upgrade", a.upgrade(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/members", a.listMembers(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/permissionGrants", a.permissionGrants(kind))
	}
	m.HandleFunc("GET /v1.0/chats/{scope}", a.getChat)
	m.HandleFunc("GET /v1.0/teams/{scope}/channels/{channel}", a.getChannel)
	m.HandleFunc("GET /v1.0/users/{scope}/teamwork/installedApps", a.listInstallations(User))
	m.HandleFunc("GET /v1.0/users/{scope}/teamwork/installedApps/{id}", a.getInstallation(User))
	m.HandleFunc("POST /v1.0/users/{scope}/teamwork/installedApps/{id}/upgrade", a.upgrade(User))
	m.HandleFunc("POST /v1.0/users/{scope}/checkMemberGroups", a.checkMemberGroups)
	m.HandleFunc("GET /v1.0/users/{scope}/permissionGrants", a.permissionGrants(User))
	m.HandleFunc("GET /v1.0/appCatalogs/teamsApps", a.catalog)
	m.HandleFunc("GET /v1.0/policies/authorizationPolicy", a.authorizationPolicy)
	m.HandleFunc("GET /beta/policies/permissionGrantPreApprovalPolicies", a.preApprovalPolicies)
	t.mux = m
	return t
}

// AddApp adds an app to the tenant catalog.
func (t *Tenant) AddApp(a App) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.DistributionMethod == "" {
		a.DistributionMethod = "organization"
	}
	for i := range a.Definitions {
		if a.Definitions[i].State == "" {
			a.Definitions[i].State = "published"
		}
	}
	t.apps[a.ID] = &a
}

// Publish adds a definition to a catalog app, as an admin's update does.
func (t *Tenant) Publish(appID string, d Definition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d.State == "" {
		d.State = "published"
	}
	t.apps[appID].Definitions = append(t.apps[appID].Definitions, d)
}

// Install installs version of a catalog app in a scope (kind Chat, Team or
// User) with the given consented RSC permissions, and returns the
// installation id: base64 of "scopeId##teamsAppId", as Graph's.
func (t *Tenant) Install(kind, scopeID, appID, version string, consented []Permission) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := base64.StdEncoding.EncodeToString([]byte(scopeID + "##" + appID))
	t.scopes[kind+"/"+scopeID] = append(t.scopes[kind+"/"+scopeID], &installation{id: id, appID: appID, version: version, consented: consented})
	return id
}

// Installed returns the installation's version and consented permissions.
func (t *Tenant) Installed(kind, scopeID, installationID string) (string, []Permission) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.scopes[kind+"/"+scopeID] {
		if in.id == installationID {
			return in.version, slices.Clone(in.consented)
		}
	}
	return "", nil
}

// Knows reports whether a scope (kind Chat, Team or User) has any
// installation or member: whether Graph would find it.
func (t *Tenant) Knows(kind, scopeID string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, installed := t.scopes[kind+"/"+scopeID]
	_, members := t.members[kind+"/"+scopeID]
	return installed || members
}

// Members returns a chat's or team's members.
func (t *Tenant) Members(kind, scopeID string) []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.members[kind+"/"+scopeID])
}

// AddMembers adds members to a chat or team.
func (t *Tenant) AddMembers(kind, scopeID string, ms ...Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.members[kind+"/"+scopeID] = append(t.members[kind+"/"+scopeID], ms...)
}

// SetMeeting makes a chat a meeting's chat (Graph's chatType "meeting"),
// organized by organizer (UserID, TenantID and DisplayName are used).
func (t *Tenant) SetMeeting(chatID string, organizer Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.meetings[chatID] = organizer
}

// SetChannel gives a channel of a team its membershipType ("private" or
// "shared"); every other channel of a team Graph knows is standard.
func (t *Tenant) SetChannel(teamID, channelID, membershipType string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.channels[teamID+"/"+channelID] = membershipType
}

// AddGroupMember makes userID a (transitive) member of groupID.
func (t *Tenant) AddGroupMember(groupID, userID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.groups[groupID] == nil {
		t.groups[groupID] = map[string]bool{}
	}
	t.groups[groupID][userID] = true
}

// Fail queues a fault.
func (t *Tenant) Fail(f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	t.faults = append(t.faults, &f)
}

// Calls returns the calls received so far.
func (t *Tenant) Calls() []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

// ResetCalls forgets the recorded calls.
func (t *Tenant) ResetCalls() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = nil
}

func (t *Tenant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "cannot read the request body: "+err.Error(), "")
		return
	}
	call := Call{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, "/v1.0"), Query: r.URL.Query(),
		Body: body, Authorization: r.Header.Get("Authorization")}
	t.mu.Lock()
	t.calls = append(t.calls, call)
	var fault *Fault
	for i, f := range t.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.Contains(call.Path, f.Path) {
			if f.Times--; f.Times <= 0 {
				t.faults = slices.Delete(t.faults, i, i+1)
			}
			fault = f
			break
		}
	}
	t.mu.Unlock()
	if !strings.HasPrefix(call.Authorization, "Bearer ") {
		writeError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.", "")
		return
	}
	if fault != nil {
		writeError(w, fault.Status, fault.Code, fault.Message, fault.RetryAfter)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	t.mux.ServeHTTP(w, r)
}

// readBody undoes the SDK's gzip compression of request bodies.
func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	}
	return io.ReadAll(io.LimitReader(rd, 4<<20))
}

func writeError(w http.ResponseWriter, status int, code, message, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	if code == "" {
		code = http.StatusText(status)
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": message,
		"innerError": map[string]any{
			"date":              time.Now().UTC().Format("2006-01-02T15:04:05"),
			"request-id":        "8f0c3a1e-0000-4000-8000-000000000000",
			"client-request-id": "8f0c3a1e-0000-4000-8000-000000000001",
		},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// UpgradeOutside moves an installation to a version as Teams' own Update
// button or the admin center would, consenting to that version's RSC set,
// without the bot knowing.
func (t *Tenant) UpgradeOutside(kind, scopeID, installationID, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.scopes[kind+"/"+scopeID] {
		if in.id == installationID {
			_, d, _ := (*api)(t).definitionFor(in.appID, version)
			in.version, in.consented = version, slices.Clone(d.RSC)
		}
	}
}

// DropGrant makes a consented permission have no grant in force in a scope,
// as when Teams' consent does not take after an upgrade.
func (t *Tenant) DropGrant(kind, scopeID, permission string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped[kind+"/"+scopeID+"|"+strings.ToLower(permission)] = true
}

// SetGrantPolicies sets the permission grant policies the tenant's
// authorization policy assigns to the default user role, e.g.
// "ManagePermissionGrantsForOwnedResource.microsoft-all-application-permissions-for-chat".
// An upgrade into a chat (team) that adds application RSC permissions is
// refused with Graph's 412 when no …-for-chat (…-for-team, …-for-group)
// policy is assigned.
func (t *Tenant) SetGrantPolicies(ids ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.grantPolicies = slices.Clone(ids)
}

// SetPreApproved sets the scope types ("chat", "group") the tenant's RSC
// pre-approval policies have conditions for; none by default.
func (t *Tenant) SetPreApproved(scopeTypes ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.preApproved = slices.Clone(scopeTypes)
}

// Revoke makes the calls that need an application permission the bot lacks
// answer 403 as Entra's directory does (only the policy reads know theirs:
// Policy.Read.All, Policy.Read.PermissionGrant).
func (t *Tenant) Revoke(permission string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoked[permission] = true
}

// ConsentRefused is Graph's answer to an upgrade whose resource-specific
// consent the tenant does not let the scope's owners grant, as seen in
// public reports (microsoftgraph/microsoft-graph-docs#18833): 412.
const ConsentRefused = "Failed to execute TeamsGraphService backend request IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest. Workload Unknown"

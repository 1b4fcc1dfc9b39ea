// Package graphtest is a fake Microsoft Graph tenant: an http.Handler that
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
	"strconv"
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
	m := http.NewServeMux()
	for _, kind := range []string{Chat, Team} {
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/installedApps", t.listInstallations(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/installedApps/{id}", t.getInstallation(kind))
		m.HandleFunc("POST /v1.0/"+kind+"/{scope}/installedApps/{id}/upgrade", t.upgrade(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/members", t.listMembers(kind))
		m.HandleFunc("GET /v1.0/"+kind+"/{scope}/permissionGrants", t.permissionGrants(kind))
	}
	m.HandleFunc("GET /v1.0/chats/{scope}", t.getChat)
	m.HandleFunc("GET /v1.0/teams/{scope}/channels/{channel}", t.getChannel)
	m.HandleFunc("GET /v1.0/users/{scope}/teamwork/installedApps", t.listInstallations(User))
	m.HandleFunc("GET /v1.0/users/{scope}/teamwork/installedApps/{id}", t.getInstallation(User))
	m.HandleFunc("POST /v1.0/users/{scope}/teamwork/installedApps/{id}/upgrade", t.upgrade(User))
	m.HandleFunc("POST /v1.0/users/{scope}/checkMemberGroups", t.checkMemberGroups)
	m.HandleFunc("GET /v1.0/users/{scope}/permissionGrants", t.permissionGrants(User))
	m.HandleFunc("GET /v1.0/appCatalogs/teamsApps", t.catalog)
	m.HandleFunc("GET /v1.0/policies/authorizationPolicy", t.authorizationPolicy)
	m.HandleFunc("GET /beta/policies/permissionGrantPreApprovalPolicies", t.preApprovalPolicies)
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

// getChat answers GET /chats/{id} in Graph's shape: a meeting's chat
// carries onlineMeetingInfo with its organizer (a teamworkUserIdentity),
// any other chat is a group chat whose onlineMeetingInfo is null.
func (t *Tenant) getChat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("scope")
	t.mu.Lock()
	organizer, meeting := t.meetings[id]
	_, installed := t.scopes[Chat+"/"+id]
	_, members := t.members[Chat+"/"+id]
	t.mu.Unlock()
	if !meeting && !installed && !members {
		writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
		return
	}
	chat := map[string]any{
		"@odata.context":      t.context("chats/$entity"),
		"id":                  id,
		"topic":               nil,
		"createdDateTime":     "2026-01-05T09:00:00.000Z",
		"lastUpdatedDateTime": "2026-01-05T09:00:00.000Z",
		"chatType":            "group",
		"webUrl":              "https://teams.microsoft.com/l/chat/" + url.PathEscape(id) + "/0",
		"tenantId":            nil,
		"onlineMeetingInfo":   nil,
		"viewpoint":           map[string]any{"isHidden": false, "lastMessageReadDateTime": "2026-01-05T09:00:00.000Z"},
	}
	if meeting {
		chat["chatType"] = "meeting"
		chat["topic"], chat["tenantId"] = "Weekly sync", organizer.TenantID
		chat["onlineMeetingInfo"] = map[string]any{
			"calendarEventId": nil,
			"joinWebUrl":      "https://teams.microsoft.com/l/meetup-join/" + url.PathEscape(id) + "/0",
			"organizer": map[string]any{
				"id": organizer.UserID, "displayName": nil, "userIdentityType": "aadUser", "tenantId": organizer.TenantID,
			},
		}
	}
	writeJSON(w, http.StatusOK, chat)
}

// SetChannel gives a channel of a team its membershipType ("private" or
// "shared"); every other channel of a team Graph knows is standard.
func (t *Tenant) SetChannel(teamID, channelID, membershipType string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.channels[teamID+"/"+channelID] = membershipType
}

// getChannel answers GET /teams/{id}/channels/{id} in Graph's shape.
func (t *Tenant) getChannel(w http.ResponseWriter, r *http.Request) {
	team, id := r.PathValue("scope"), r.PathValue("channel")
	t.mu.Lock()
	kind, set := t.channels[team+"/"+id]
	_, installed := t.scopes[Team+"/"+team]
	_, members := t.members[Team+"/"+team]
	t.mu.Unlock()
	if !set && !installed && !members {
		writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
		return
	}
	if !set {
		kind = "standard"
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(id, "19:"), "@")
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.context":      t.context("teams('" + url.PathEscape(team) + "')/channels/$entity"),
		"id":                  id,
		"createdDateTime":     "2026-01-05T09:00:00.000Z",
		"displayName":         name,
		"description":         nil,
		"isFavoriteByDefault": nil,
		"email":               "",
		"tenantId":            nil,
		"webUrl":              "https://teams.microsoft.com/l/channel/" + url.PathEscape(id) + "/" + url.PathEscape(name),
		"membershipType":      kind,
	})
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

func (t *Tenant) context(path string) string {
	return strings.TrimRight(t.BaseURL, "/") + "/v1.0/$metadata#" + path
}

// definitionID is Graph's definition id: base64 of "teamsAppId##version##state".
func definitionID(appID string, d Definition) string {
	return base64.StdEncoding.EncodeToString([]byte(appID + "##" + d.Version + "##" + d.State))
}

func (t *Tenant) definitionJSON(a *App, d Definition, withAuthorization bool) map[string]any {
	m := map[string]any{
		"id": definitionID(a.ID, d), "teamsAppId": a.ID, "displayName": a.DisplayName, "version": d.Version,
		"publishingState": d.State, "shortDescription": d.ShortDescription, "description": d.ShortDescription,
		"lastModifiedDateTime": nil,
	}
	if withAuthorization {
		rsc := d.RSC
		if rsc == nil {
			rsc = []Permission{}
		}
		m["authorization"] = map[string]any{
			"clientAppId":           nil,
			"requiredPermissionSet": map[string]any{"resourceSpecificPermissions": lower(rsc)},
		}
	}
	return m
}

// lower returns permissions with lower-case types, as Graph sends them.
func lower(ps []Permission) []Permission {
	out := make([]Permission, len(ps))
	for i, p := range ps {
		out[i] = Permission{Value: p.Value, Type: strings.ToLower(p.Type)}
	}
	return out
}

func (t *Tenant) definitionFor(appID, version string) (*App, Definition, bool) {
	a, ok := t.apps[appID]
	if !ok {
		return nil, Definition{}, false
	}
	for _, d := range a.Definitions {
		if d.Version == version && d.State == "published" {
			return a, d, true
		}
	}
	return a, Definition{Version: version, State: "published"}, true
}

// current is the catalog's newest published definition of an app.
func (t *Tenant) current(appID string) (Definition, bool) {
	a, ok := t.apps[appID]
	if !ok {
		return Definition{}, false
	}
	var best *Definition
	for i, d := range a.Definitions {
		if d.State == "published" && (best == nil || compareVersions(d.Version, best.Version) > 0) {
			best = &a.Definitions[i]
		}
	}
	if best == nil {
		return Definition{}, false
	}
	return *best, true
}

func (t *Tenant) installationJSON(kind string, in *installation, q url.Values) map[string]any {
	odataType := "#microsoft.graph.teamsAppInstallation"
	if kind == User {
		odataType = "#microsoft.graph.userScopeTeamsAppInstallation"
	}
	m := map[string]any{"@odata.type": odataType, "id": in.id}
	sel := q.Get("$select")
	// consentedPermissionSet appears only when selected, as on Graph.
	if strings.Contains(sel, "consentedPermissionSet") {
		if in.consented == nil {
			m["consentedPermissionSet"] = nil
		} else {
			m["consentedPermissionSet"] = map[string]any{"resourceSpecificPermissions": lower(in.consented)}
		}
	}
	expand := q.Get("$expand")
	a, d, ok := t.definitionFor(in.appID, in.version)
	if ok && strings.Contains(expand, "teamsAppDefinition") {
		m["teamsAppDefinition"] = t.definitionJSON(a, d, false)
	}
	if ok && strings.Contains(strings.ReplaceAll(expand, "teamsAppDefinition", ""), "teamsApp") {
		m["teamsApp"] = map[string]any{"id": a.ID, "externalId": a.ExternalID, "displayName": a.DisplayName,
			"distributionMethod": a.DistributionMethod}
	}
	return m
}

func (t *Tenant) scope(kind string, r *http.Request) ([]*installation, bool) {
	ins, ok := t.scopes[kind+"/"+r.PathValue("scope")]
	return ins, ok
}

func (t *Tenant) listInstallations(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		ins, ok := t.scope(kind, r)
		if !ok {
			writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
			return
		}
		items := make([]any, 0, len(ins))
		for _, in := range ins {
			items = append(items, t.installationJSON(kind, in, r.URL.Query()))
		}
		t.writePage(w, r, kind+"('"+url.PathEscape(r.PathValue("scope"))+"')/installedApps", items)
	}
}

// writePage writes one page of a collection, with @odata.nextLink when more
// follow; the link keeps the query and adds $skiptoken, as Graph's do.
func (t *Tenant) writePage(w http.ResponseWriter, r *http.Request, ctx string, items []any) {
	q := r.URL.Query()
	start, _ := strconv.Atoi(q.Get("$skiptoken"))
	end := len(items)
	if t.PageSize > 0 && start+t.PageSize < end {
		end = start + t.PageSize
	}
	if start > len(items) {
		start = len(items)
	}
	resp := map[string]any{"@odata.context": t.context(ctx), "value": items[start:end]}
	if end < len(items) {
		q.Set("$skiptoken", strconv.Itoa(end))
		resp["@odata.nextLink"] = strings.TrimRight(t.BaseURL, "/") + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (t *Tenant) getInstallation(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		ins, _ := t.scope(kind, r)
		for _, in := range ins {
			if in.id == r.PathValue("id") {
				m := t.installationJSON(kind, in, r.URL.Query())
				m["@odata.context"] = t.context(kind + "('" + url.PathEscape(r.PathValue("scope")) + "')/installedApps/$entity")
				writeJSON(w, http.StatusOK, m)
				return
			}
		}
		writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
	}
}

func (t *Tenant) upgrade(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		var in *installation
		ins, _ := t.scope(kind, r)
		for _, i := range ins {
			if i.id == r.PathValue("id") {
				in = i
			}
		}
		if in == nil {
			writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
			return
		}
		var body struct {
			ConsentedPermissionSet *struct {
				ResourceSpecificPermissions []Permission `json:"resourceSpecificPermissions"`
			} `json:"consentedPermissionSet"`
		}
		raw, _ := io.ReadAll(r.Body)
		if len(bytes.TrimSpace(raw)) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				writeError(w, http.StatusBadRequest, "BadRequest", "Invalid request body.", "")
				return
			}
		}
		target, ok := t.current(in.appID)
		if !ok {
			writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
			return
		}
		if compareVersions(in.version, target.Version) >= 0 {
			writeError(w, http.StatusConflict, "Conflict", "App is already up to date.", "")
			return
		}
		var consented []Permission
		if body.ConsentedPermissionSet != nil {
			consented = body.ConsentedPermissionSet.ResourceSpecificPermissions
		}
		// Graph lets the set be omitted only when the definition has no
		// application permissions.
		omittedDelegatedOnly := body.ConsentedPermissionSet == nil && !slices.ContainsFunc(target.RSC, func(p Permission) bool {
			return strings.EqualFold(p.Type, "application")
		})
		if !omittedDelegatedOnly && !samePermissions(consented, target.RSC) {
			writeError(w, http.StatusBadRequest, "BadRequest",
				"The consented permissions do not match the resource-specific permissions required by the app definition.", "")
			return
		}
		adds := slices.ContainsFunc(target.RSC, func(p Permission) bool {
			return strings.EqualFold(p.Type, "application") && !slices.ContainsFunc(in.consented, func(c Permission) bool { return key(c) == key(p) })
		})
		if adds && !t.consentAllowed(kind) {
			writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", ConsentRefused, "")
			return
		}
		in.version = target.Version
		in.consented = slices.Clone(target.RSC)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (t *Tenant) catalog(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := r.URL.Query()
	filter := q.Get("$filter")
	var apps []*App
	if ids, ok := idFilter(filter); ok {
		for _, id := range ids {
			if a, ok := t.apps[id]; ok {
				apps = append(apps, a)
			}
		}
	} else if method, ok := strings.CutPrefix(filter, "distributionMethod eq '"); ok && strings.HasSuffix(method, "'") {
		for _, a := range t.sortedApps() {
			if a.DistributionMethod == strings.TrimSuffix(method, "'") {
				apps = append(apps, a)
			}
		}
	} else if filter != "" {
		writeError(w, http.StatusBadRequest, "BadRequest", "Invalid filter clause", "")
		return
	} else {
		apps = t.sortedApps()
	}
	expand := q.Get("$expand")
	items := make([]any, 0, len(apps))
	for _, a := range apps {
		m := map[string]any{"id": a.ID, "externalId": a.ExternalID, "displayName": a.DisplayName,
			"distributionMethod": a.DistributionMethod}
		if strings.Contains(expand, "appDefinitions") {
			defs := make([]any, 0, len(a.Definitions))
			for _, d := range a.Definitions {
				// authorization is returned only when selected.
				defs = append(defs, t.definitionJSON(a, d, strings.Contains(expand, "authorization")))
			}
			m["appDefinitions"] = defs
		}
		items = append(items, m)
	}
	t.writePage(w, r, "appCatalogs/teamsApps(appDefinitions())", items)
}

// idFilter reads the filters "id eq 'a'" and "id in ('a','b')".
func idFilter(f string) ([]string, bool) {
	if rest, ok := strings.CutPrefix(f, "id eq "); ok {
		ids, ok := literals(rest)
		return ids, ok && len(ids) == 1
	}
	rest, ok := strings.CutPrefix(f, "id in (")
	if !ok || !strings.HasSuffix(rest, ")") {
		return nil, false
	}
	return literals(strings.TrimSuffix(rest, ")"))
}

// literals reads comma-separated OData string literals, which double
// their quotes.
func literals(s string) ([]string, bool) {
	var out []string
	for {
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "'") {
			return nil, false
		}
		var b strings.Builder
		i := 1
		for ; ; i++ {
			if i >= len(s) {
				return nil, false
			}
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				break
			}
			b.WriteByte(s[i])
		}
		out = append(out, b.String())
		s = strings.TrimSpace(s[i+1:])
		if s == "" {
			return out, true
		}
		if s[0] != ',' {
			return nil, false
		}
		s = s[1:]
	}
}

// sortedApps keeps catalog pages stable from one request to the next.
func (t *Tenant) sortedApps() []*App {
	apps := make([]*App, 0, len(t.apps))
	for _, a := range t.apps {
		apps = append(apps, a)
	}
	slices.SortFunc(apps, func(a, b *App) int { return strings.Compare(a.ID, b.ID) })
	return apps
}

func (t *Tenant) listMembers(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		ms, ok := t.members[kind+"/"+r.PathValue("scope")]
		if !ok {
			writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
			return
		}
		// Teams' member list filters on a member's user id, as Graph
		// documents it; anything else is refused as Graph would.
		if f := r.URL.Query().Get("$filter"); f != "" {
			user, ok := strings.CutPrefix(f, "(microsoft.graph.aadUserConversationMember/userId eq '")
			user, ok2 := strings.CutSuffix(user, "')")
			if kind != Team || !ok || !ok2 {
				writeError(w, http.StatusBadRequest, "BadRequest", "Invalid filter clause", "")
				return
			}
			ms = slices.DeleteFunc(slices.Clone(ms), func(m Member) bool { return !strings.EqualFold(m.UserID, user) })
		}
		items := make([]any, 0, len(ms))
		for _, m := range ms {
			roles := m.Roles
			if roles == nil {
				roles = []string{}
			}
			item := map[string]any{
				"@odata.type": "#microsoft.graph.aadUserConversationMember",
				"id":          base64.StdEncoding.EncodeToString([]byte("1#" + r.PathValue("scope") + "#" + m.UserID)),
				"roles":       roles, "displayName": m.DisplayName, "userId": m.UserID, "tenantId": m.TenantID,
				"visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
			}
			if m.Email != "" {
				item["email"] = m.Email
			} else {
				item["email"] = nil
			}
			items = append(items, item)
		}
		t.writePage(w, r, kind+"('"+url.PathEscape(r.PathValue("scope"))+"')/members", items)
	}
}

func (t *Tenant) checkMemberGroups(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var body struct {
		GroupIDs []string `json:"groupIds"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "Invalid request body.", "")
		return
	}
	var in []string
	for _, g := range body.GroupIDs {
		if t.groups[g][r.PathValue("scope")] {
			in = append(in, g)
		}
	}
	if in == nil {
		in = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": t.context("Collection(Edm.String)"), "value": in})
}

func key(p Permission) string { return strings.ToLower(p.Value) + "|" + strings.ToLower(p.Type) }

func samePermissions(a, b []Permission) bool {
	set := func(ps []Permission) map[string]bool {
		m := map[string]bool{}
		for _, p := range ps {
			m[key(p)] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for k := range sa {
		if !sb[k] {
			return false
		}
	}
	return true
}

// compareVersions orders dotted numeric versions; the fake's own, so that a
// bug in the bot's comparison cannot hide in both.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// UpgradeOutside moves an installation to a version as Teams' own Update
// button or the admin center would, consenting to that version's RSC set,
// without the bot knowing.
func (t *Tenant) UpgradeOutside(kind, scopeID, installationID, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range t.scopes[kind+"/"+scopeID] {
		if in.id == installationID {
			_, d, _ := t.definitionFor(in.appID, version)
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

// permissionGrants lists the RSC grants in force in a scope: each
// installation's consented permissions, less the dropped ones, in Graph's
// resourceSpecificPermissionGrant shape (permissionType capitalised).
func (t *Tenant) permissionGrants(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		defer t.mu.Unlock()
		scope := kind + "/" + r.PathValue("scope")
		ins, ok := t.scopes[scope]
		if !ok {
			writeError(w, http.StatusNotFound, "NotFound", "Not Found", "")
			return
		}
		items := []any{}
		for _, in := range ins {
			for _, p := range in.consented {
				if t.dropped[scope+"|"+strings.ToLower(p.Value)] {
					continue
				}
				typ := "Application"
				if strings.EqualFold(p.Type, "delegated") {
					typ = "Delegated"
				}
				items = append(items, map[string]any{
					"id":              base64.StdEncoding.EncodeToString([]byte(in.id + "|" + p.Value)),
					"deletedDateTime": nil, "clientId": in.appID, "clientAppId": in.appID,
					"resourceAppId": "00000003-0000-0000-c000-000000000000", "permissionType": typ, "permission": p.Value,
				})
			}
		}
		t.writePage(w, r, kind+"('"+url.PathEscape(r.PathValue("scope"))+"')/permissionGrants", items)
	}
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

// insufficientPrivileges is the directory's answer to an app without the
// permission a policy read needs.
func insufficientPrivileges(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", "")
}

// authorizationPolicy is GET /policies/authorizationPolicy (v1.0), in the
// shape of Microsoft's reference example.
func (t *Tenant) authorizationPolicy(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked["Policy.Read.All"] {
		insufficientPrivileges(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.context":                         t.context("policies/authorizationPolicy/$entity"),
		"@odata.type":                            "#microsoft.graph.authorizationPolicy",
		"id":                                     "authorizationPolicy",
		"displayName":                            "Authorization Policy",
		"description":                            "Used to manage authorization related settings across the company.",
		"allowInvitesFrom":                       "everyone",
		"allowedToSignUpEmailBasedSubscriptions": true,
		"allowedToUseSSPR":                       true,
		"allowEmailVerifiedUsersToJoinOrganization": false,
		"blockMsolPowerShell":                       false,
		"guestUserRoleId":                           "10dae51f-b6af-4016-8d66-8c2a99b929b3",
		"defaultUserRolePermissions": map[string]any{
			"allowedToCreateApps":                      true,
			"allowedToCreateSecurityGroups":            true,
			"allowedToCreateTenants":                   true,
			"allowedToReadBitlockerKeysForOwnedDevice": true,
			"allowedToReadOtherUsers":                  true,
			"permissionGrantPoliciesAssigned":          slices.Clone(t.grantPolicies),
		},
	})
}

// preApprovalPolicies is GET /policies/permissionGrantPreApprovalPolicies
// (beta): one policy per pre-approved scope type, pre-approving all
// application permissions there, in the reference example's shape.
func (t *Tenant) preApprovalPolicies(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoked["Policy.Read.PermissionGrant"] {
		insufficientPrivileges(w)
		return
	}
	items := []any{}
	for i, scope := range t.preApproved {
		items = append(items, map[string]any{
			"id":              "71ba13dc-5947-4e59-bcc5-0ad5c339a85" + strconv.Itoa(i),
			"deletedDateTime": nil,
			"conditions": []any{map[string]any{
				"scopeType":         scope,
				"sensitivityLabels": map[string]any{"@odata.type": "#microsoft.graph.allScopeSensitivityLabels", "labelKind": "all"},
				"permissions": map[string]any{"@odata.type": "#microsoft.graph.allPreApprovedPermissions",
					"permissionKind": "all", "permissionType": "application"},
			}},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.context": strings.TrimRight(t.BaseURL, "/") + "/beta/$metadata#policies/permissionGrantPreApprovalPolicies",
		"value":          items,
	})
}

// consentAllowed reports whether the tenant's policy lets owners of a scope
// of kind consent to application RSC permissions (t.mu held).
func (t *Tenant) consentAllowed(kind string) bool {
	suffixes := map[string][]string{Chat: {"-for-chat"}, Team: {"-for-team", "-for-group"}}[kind]
	if suffixes == nil {
		return true
	}
	for _, g := range t.grantPolicies {
		g = strings.ToLower(g)
		if !strings.HasPrefix(g, "managepermissiongrantsforownedresource.") {
			continue
		}
		for _, suf := range suffixes {
			if strings.HasSuffix(g, suf) {
				return true
			}
		}
	}
	return false
}

// ConsentRefused is Graph's answer to an upgrade whose resource-specific
// consent the tenant does not let the scope's owners grant, as seen in
// public reports (microsoftgraph/microsoft-graph-docs#18833): 412.
const ConsentRefused = "Failed to execute TeamsGraphService backend request IsUserAuthorizedToGrantGroupResourceSpecificPermissionsRequest. Workload Unknown"

package fakegraph

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// api is the tenant as Graph serves it: the HTTP handlers and the shapes
// they answer in, apart from the methods tests seed and inspect a Tenant
// with. It is a Tenant (the same fields, under the same lock), seen
// through the type whose methods answer requests.
type api Tenant

// getChat answers GET /chats/{id} in Graph's shape: a meeting's chat
// carries onlineMeetingInfo with its organizer (a teamworkUserIdentity),
// any other chat is a group chat whose onlineMeetingInfo is null.
func (t *api) getChat(w http.ResponseWriter, r *http.Request) {
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

// getChannel answers GET /teams/{id}/channels/{id} in Graph's shape.
func (t *api) getChannel(w http.ResponseWriter, r *http.Request) {
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

func (t *api) context(path string) string {
	return strings.TrimRight(t.BaseURL, "/") + "/v1.0/$metadata#" + path
}

func (t *api) definitionJSON(a *App, d Definition, withAuthorization bool) map[string]any {
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

func (t *api) definitionFor(appID, version string) (*App, Definition, bool) {
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
func (t *api) current(appID string) (Definition, bool) {
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

func (t *api) installationJSON(kind string, in *installation, q url.Values) map[string]any {
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

func (t *api) scope(kind string, r *http.Request) ([]*installation, bool) {
	ins, ok := t.scopes[kind+"/"+r.PathValue("scope")]
	return ins, ok
}

func (t *api) listInstallations(kind string) http.HandlerFunc {
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
func (t *api) writePage(w http.ResponseWriter, r *http.Request, ctx string, items []any) {
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

func (t *api) getInstallation(kind string) http.HandlerFunc {
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

func (t *api) upgrade(kind string) http.HandlerFunc {
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

func (t *api) catalog(w http.ResponseWriter, r *http.Request) {
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

// sortedApps keeps catalog pages stable from one request to the next.
func (t *api) sortedApps() []*App {
	apps := make([]*App, 0, len(t.apps))
	for _, a := range t.apps {
		apps = append(apps, a)
	}
	slices.SortFunc(apps, func(a, b *App) int { return strings.Compare(a.ID, b.ID) })
	return apps
}

func (t *api) listMembers(kind string) http.HandlerFunc {
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

func (t *api) checkMemberGroups(w http.ResponseWriter, r *http.Request) {
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

// permissionGrants lists the RSC grants in force in a scope: each
// installation's consented permissions, less the dropped ones, in Graph's
// resourceSpecificPermissionGrant shape (permissionType capitalised).
func (t *api) permissionGrants(kind string) http.HandlerFunc {
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

// authorizationPolicy is GET /policies/authorizationPolicy (v1.0), in the
// shape of Microsoft's reference example.
func (t *api) authorizationPolicy(w http.ResponseWriter, r *http.Request) {
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
func (t *api) preApprovalPolicies(w http.ResponseWriter, r *http.Request) {
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
func (t *api) consentAllowed(kind string) bool {
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

// definitionID is Graph's definition id: base64 of "teamsAppId##version##state".
func definitionID(appID string, d Definition) string {
	return base64.StdEncoding.EncodeToString([]byte(appID + "##" + d.Version + "##" + d.State))
}

// lower returns permissions with lower-case types, as Graph sends them.
func lower(ps []Permission) []Permission {
	out := make([]Permission, len(ps))
	for i, p := range ps {
		out[i] = Permission{Value: p.Value, Type: strings.ToLower(p.Type)}
	}
	return out
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

// insufficientPrivileges is the directory's answer to an app without the
// permission a policy read needs.
func insufficientPrivileges(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", "")
}

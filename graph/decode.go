package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/upgradeapprovals/bot/approval"
)

// Reads are built by msgraph-sdk-go's request builders and sent through its
// request adapter (auth, retry, redirects, Graph's error mapping), but their
// answers are decoded here, with encoding/json, into the few properties the
// bot reads. The SDK's typed models would decode them too, yet a chat
// member's user, or a personal installation's chat, reaches every entity of
// Graph's model: typed reads link and register all of it (most of the
// binary, and resident memory) and cost tens of allocations a property.

// errorMapping turns any failed answer into Graph's ODataError, which
// translate reads.
var errorMapping = abstractions.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue}

// maxPages bounds how many @odata.nextLink pages one list follows.
const maxPages = 1000

// getJSON sends the request ri and decodes Graph's JSON answer into v.
func getJSON(ctx context.Context, g *msgraph.GraphServiceClient, ri *abstractions.RequestInformation, v any) error {
	raw, err := g.GetAdapter().SendPrimitive(ctx, ri, "[]byte", errorMapping)
	if err != nil {
		return err
	}
	body, _ := raw.([]byte)
	if len(body) == 0 {
		return errors.New("graph: empty answer")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("graph: decode answer: %w", err)
	}
	return nil
}

// page is one page of a Graph collection.
type page[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"@odata.nextLink"`
}

// list reads every page of the collection ri asks for, following
// @odata.nextLink as Graph's paging requires (the link keeps the query).
func list[T any](ctx context.Context, g *msgraph.GraphServiceClient, ri *abstractions.RequestInformation) ([]T, error) {
	var items []T
	for range maxPages {
		var p page[T]
		if err := getJSON(ctx, g, ri, &p); err != nil {
			return nil, err
		}
		items = append(items, p.Value...)
		if p.NextLink == "" {
			return items, nil
		}
		next, err := url.Parse(p.NextLink)
		if err != nil || !next.IsAbs() {
			return nil, fmt.Errorf("graph: next page link %q: want an absolute URL", p.NextLink)
		}
		ri = abstractions.NewRequestInformation()
		ri.Method = abstractions.GET
		ri.SetUri(*next)
		ri.Headers.TryAdd("Accept", "application/json")
	}
	return nil, fmt.Errorf("graph: more than %d pages", maxPages)
}

// The properties the bot reads, as Graph's JSON names them.
type (
	installationJSON struct {
		ID       string `json:"id"`
		TeamsApp *struct {
			ID                 string `json:"id"`
			DisplayName        string `json:"displayName"`
			DistributionMethod string `json:"distributionMethod"`
		} `json:"teamsApp"`
		TeamsAppDefinition     *definitionJSON    `json:"teamsAppDefinition"`
		ConsentedPermissionSet *permissionSetJSON `json:"consentedPermissionSet"`
	}
	definitionJSON struct {
		ID               string `json:"id"`
		TeamsAppID       string `json:"teamsAppId"`
		DisplayName      string `json:"displayName"`
		Version          string `json:"version"`
		ShortDescription string `json:"shortDescription"`
		PublishingState  string `json:"publishingState"`
		Authorization    *struct {
			RequiredPermissionSet *permissionSetJSON `json:"requiredPermissionSet"`
		} `json:"authorization"`
	}
	permissionSetJSON struct {
		ResourceSpecificPermissions []struct {
			PermissionValue string `json:"permissionValue"`
			PermissionType  string `json:"permissionType"`
		} `json:"resourceSpecificPermissions"`
	}
	catalogAppJSON struct {
		ID             string           `json:"id"`
		AppDefinitions []definitionJSON `json:"appDefinitions"`
	}
	memberJSON struct {
		ODataType   string   `json:"@odata.type"`
		DisplayName string   `json:"displayName"`
		Roles       []string `json:"roles"`
		UserID      string   `json:"userId"`
		Email       string   `json:"email"`
		TenantID    string   `json:"tenantId"`
	}
	grantJSON struct {
		ClientID       string `json:"clientId"`
		ClientAppID    string `json:"clientAppId"`
		Permission     string `json:"permission"`
		PermissionType string `json:"permissionType"`
	}
)

func toInstallation(scope approval.Scope, it installationJSON) approval.Installation {
	in := approval.Installation{ID: it.ID, Scope: scope}
	if app := it.TeamsApp; app != nil {
		in.TeamsAppID = app.ID
		in.DisplayName = app.DisplayName
		in.DistributionMethod = app.DistributionMethod
	}
	if d := it.TeamsAppDefinition; d != nil {
		in.Definition = definition(*d)
		if in.TeamsAppID == "" {
			in.TeamsAppID = in.Definition.TeamsAppID
		}
		if in.DisplayName == "" {
			in.DisplayName = in.Definition.DisplayName
		}
	}
	in.Consented = permissions(it.ConsentedPermissionSet)
	return in
}

func definition(d definitionJSON) approval.AppDefinition {
	def := approval.AppDefinition{
		ID:               d.ID,
		TeamsAppID:       d.TeamsAppID,
		DisplayName:      d.DisplayName,
		Version:          d.Version,
		ShortDescription: d.ShortDescription,
		PublishingState:  d.PublishingState,
	}
	if a := d.Authorization; a != nil {
		def.Permissions = permissions(a.RequiredPermissionSet)
	}
	return def
}

// permissions reads an RSC permission set; a null set (apps without RSC) is
// empty.
func permissions(set *permissionSetJSON) []approval.Permission {
	if set == nil || len(set.ResourceSpecificPermissions) == 0 {
		return nil
	}
	out := make([]approval.Permission, 0, len(set.ResourceSpecificPermissions))
	for _, p := range set.ResourceSpecificPermissions {
		out = append(out, approval.Permission{Value: p.PermissionValue, Type: strings.ToLower(p.PermissionType)})
	}
	return out
}

// Package botframework speaks the Bot Framework protocol for the bot: it
// authenticates what Azure Bot Service sends to POST /api/messages, and it
// writes to conversations through the connector with the bot's own token.
//
// It replaces msbotbuilder-go's adapter and auth package, which hard-code the
// public cloud's OpenID metadata and multi-tenant token URL, never refresh
// signing keys on an unknown kid, share caches without locks and cannot answer
// invokes. The msbotbuilder-go schema types are still used for activities.
package botframework

import "fmt"

// Cloud holds the Bot Framework endpoints of one Azure cloud.
type Cloud struct {
	Name string
	// Issuer is the iss of tokens the channel sends to the bot.
	Issuer string
	// OpenIDMetadataURL names the JWKS with the channel's signing keys.
	OpenIDMetadataURL string
	// TokenScope is what the bot asks Entra ID for to call the connector.
	TokenScope string
	// AuthorityHost is Entra ID's login host.
	AuthorityHost string
	// MultiTenantAuthority is the tenant a MultiTenant bot gets tokens from.
	MultiTenantAuthority string
	// GraphBaseURL is Microsoft Graph v1.0 in this cloud, which the same
	// app registration calls; kept here so one table names every endpoint.
	GraphBaseURL string
	// ServiceURLHosts are Teams' connector hosts in this cloud: service URLs
	// on them are trusted without a per-conversation record.
	ServiceURLHosts []string
}

// Clouds by BOT_CLOUD name. US Gov DoD bots use the Azure Government Bot
// Service, like US Gov L4; only their Graph endpoint differs.
var clouds = map[string]Cloud{
	"public": {
		Name:                 "public",
		Issuer:               "https://api.botframework.com",
		OpenIDMetadataURL:    "https://login.botframework.com/v1/.well-known/openidconfiguration",
		TokenScope:           "https://api.botframework.com/.default",
		AuthorityHost:        "https://login.microsoftonline.com/",
		MultiTenantAuthority: "botframework.com",
		GraphBaseURL:         "https://graph.microsoft.com/v1.0",
		ServiceURLHosts:      []string{"smba.trafficmanager.net", "smba.infra.gcc.teams.microsoft.com"},
	},
	"usgov": {
		Name:                 "usgov",
		Issuer:               "https://api.botframework.us",
		OpenIDMetadataURL:    "https://login.botframework.azure.us/v1/.well-known/openidconfiguration",
		TokenScope:           "https://api.botframework.us/.default",
		AuthorityHost:        "https://login.microsoftonline.us/",
		MultiTenantAuthority: "MicrosoftServices.onmicrosoft.us",
		GraphBaseURL:         "https://graph.microsoft.us/v1.0",
		ServiceURLHosts:      []string{"smba.infra.gov.teams.microsoft.us"},
	},
	"usgovdod": {
		Name:                 "usgovdod",
		Issuer:               "https://api.botframework.us",
		OpenIDMetadataURL:    "https://login.botframework.azure.us/v1/.well-known/openidconfiguration",
		TokenScope:           "https://api.botframework.us/.default",
		AuthorityHost:        "https://login.microsoftonline.us/",
		MultiTenantAuthority: "MicrosoftServices.onmicrosoft.us",
		GraphBaseURL:         "https://dod-graph.microsoft.us/v1.0",
		ServiceURLHosts:      []string{"smba.infra.dod.teams.microsoft.us"},
	},
	"china": {
		Name:                 "china",
		Issuer:               "https://api.botframework.azure.cn",
		OpenIDMetadataURL:    "https://login.botframework.azure.cn/v1/.well-known/openidconfiguration",
		TokenScope:           "https://api.botframework.azure.cn/.default",
		AuthorityHost:        "https://login.chinacloudapi.cn/",
		MultiTenantAuthority: "microsoftservices.partner.onmschina.cn",
		GraphBaseURL:         "https://microsoftgraph.chinacloudapi.cn/v1.0",
		// No published connector host: every service URL gets a
		// per-conversation record.
	},
}

// LookupCloud returns the endpoints of a BOT_CLOUD name; "" means public.
func LookupCloud(name string) (Cloud, error) {
	if name == "" {
		name = "public"
	}
	c, ok := clouds[name]
	if !ok {
		return Cloud{}, fmt.Errorf("botframework: unknown cloud %q (want public, usgov, usgovdod or china)", name)
	}
	return c, nil
}

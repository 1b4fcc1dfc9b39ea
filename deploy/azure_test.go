package deploy

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/upgradeapprovals/bot/internal/app"
)

// armTemplate is the part of an ARM template the tests read.
type armTemplate struct {
	Schema     string               `json:"$schema"`
	Parameters map[string]armParam  `json:"parameters"`
	Variables  map[string]any       `json:"variables"`
	Resources  []armResource        `json:"resources"`
	Outputs    map[string]armOutput `json:"outputs"`
}

type armParam struct {
	Type          string `json:"type"`
	DefaultValue  any    `json:"defaultValue"`
	AllowedValues []any  `json:"allowedValues"`
	MinValue      *int   `json:"minValue"`
}

type armResource struct {
	Type       string          `json:"type"`
	APIVersion string          `json:"apiVersion"`
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Properties json.RawMessage `json:"properties"`
	Identity   json.RawMessage `json:"identity"`
}

type armOutput struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func loadTemplate(t *testing.T) armTemplate {
	t.Helper()
	raw, err := os.ReadFile("azure/azuredeploy.json")
	if err != nil {
		t.Fatal(err)
	}
	var tpl armTemplate
	if err := json.Unmarshal(raw, &tpl); err != nil {
		t.Fatalf("azuredeploy.json: %v", err)
	}
	return tpl
}

func (tpl armTemplate) resource(t *testing.T, typ string) armResource {
	t.Helper()
	for _, r := range tpl.Resources {
		if r.Type == typ {
			return r
		}
	}
	t.Fatalf("no %s in the template", typ)
	return armResource{}
}

// The resource types and API versions the template was written against: a
// new type or version is a deliberate change to this list.
var pinnedAPIVersions = map[string]string{
	"Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
	"Microsoft.OperationalInsights/workspaces":         "2022-10-01",
	"Microsoft.Cache/redis":                            "2024-03-01",
	"Microsoft.App/managedEnvironments":                "2024-03-01",
	"Microsoft.App/containerApps":                      "2024-03-01",
	"Microsoft.BotService/botServices":                 "2022-09-15",
	"Microsoft.BotService/botServices/channels":        "2022-09-15",
}

func TestARMTemplateResources(t *testing.T) {
	tpl := loadTemplate(t)
	if !strings.HasPrefix(tpl.Schema, "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json") {
		t.Errorf("$schema %s", tpl.Schema)
	}
	var types []string
	for _, r := range tpl.Resources {
		types = append(types, r.Type)
		want, ok := pinnedAPIVersions[r.Type]
		if !ok || r.APIVersion != want {
			t.Errorf("%s %s: not on the pinned list (%s)", r.Type, r.APIVersion, want)
		}
	}
	for typ := range pinnedAPIVersions {
		if !slices.Contains(types, typ) {
			t.Errorf("no %s", typ)
		}
	}
	// Every reference() and listKeys() names one of the pinned versions of its type.
	raw, _ := os.ReadFile("azure/azuredeploy.json")
	for _, m := range regexp.MustCompile(`(?:reference|listKeys)\(variables\('(\w+)'\), '([0-9-]+)'\)`).FindAllStringSubmatch(string(raw), -1) {
		idExpr, _ := tpl.Variables[m[1]].(string)
		var found bool
		for typ, v := range pinnedAPIVersions {
			found = found || (strings.Contains(idExpr, "'"+typ+"'") && v == m[2])
		}
		if !found {
			t.Errorf("%s: API version %s is not the pinned one of %s", m[0], m[2], idExpr)
		}
	}

	var bot struct {
		MsaAppType          string `json:"msaAppType"`
		MsaAppID            string `json:"msaAppId"`
		MsaAppMSIResourceID string `json:"msaAppMSIResourceId"`
		MsaAppTenantID      string `json:"msaAppTenantId"`
		Endpoint            string `json:"endpoint"`
	}
	if err := json.Unmarshal(tpl.resource(t, "Microsoft.BotService/botServices").Properties, &bot); err != nil {
		t.Fatal(err)
	}
	if bot.MsaAppType != "UserAssignedMSI" || !strings.Contains(bot.MsaAppMSIResourceID, "identityId") ||
		!strings.Contains(bot.MsaAppID, "clientId") || bot.MsaAppTenantID == "" || !strings.HasSuffix(bot.Endpoint, "/api/messages')]") {
		t.Errorf("Azure Bot %+v", bot)
	}
	var channel struct {
		ChannelName string `json:"channelName"`
		Properties  struct {
			IsEnabled bool `json:"isEnabled"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(tpl.resource(t, "Microsoft.BotService/botServices/channels").Properties, &channel); err != nil {
		t.Fatal(err)
	}
	if channel.ChannelName != "MsTeamsChannel" || !channel.Properties.IsEnabled {
		t.Errorf("channel %+v, want Microsoft Teams", channel)
	}

	var redis struct {
		EnableNonSslPort    bool   `json:"enableNonSslPort"`
		MinimumTLSVersion   string `json:"minimumTlsVersion"`
		PublicNetworkAccess string `json:"publicNetworkAccess"`
	}
	if err := json.Unmarshal(tpl.resource(t, "Microsoft.Cache/redis").Properties, &redis); err != nil {
		t.Fatal(err)
	}
	if redis.EnableNonSslPort || redis.MinimumTLSVersion != "1.2" {
		t.Errorf("Redis %+v, want TLS only", redis)
	}
	// Public access is the deployer's choice: Disabled once Redis has a
	// private endpoint. Enabled by default, as the template's Container Apps
	// environment is not in a virtual network and would not reach it else.
	access := tpl.Parameters["redisPublicNetworkAccess"]
	if redis.PublicNetworkAccess != "[parameters('redisPublicNetworkAccess')]" ||
		!slices.Equal(access.AllowedValues, []any{"Enabled", "Disabled"}) || access.DefaultValue != "Enabled" {
		t.Errorf("Redis publicNetworkAccess %q, parameter redisPublicNetworkAccess %+v: want it from the parameter, Enabled or Disabled, Enabled by default",
			redis.PublicNetworkAccess, access)
	}
	if sku := tpl.Parameters["redisSku"]; slices.Contains(sku.AllowedValues, any("Basic")) {
		t.Errorf("Redis Basic (one node, no replica) is offered")
	}
}

// containerApp is the Container App's properties the tests read.
type containerApp struct {
	Configuration struct {
		Ingress struct {
			External      bool `json:"external"`
			TargetPort    any  `json:"targetPort"`
			AllowInsecure bool `json:"allowInsecure"`
		} `json:"ingress"`
		Secrets any `json:"secrets"`
	} `json:"configuration"`
	Template struct {
		TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
		Containers                    []struct {
			Image     string   `json:"image"`
			Args      []string `json:"args"`
			Resources struct {
				Memory string `json:"memory"`
			} `json:"resources"`
			Env []struct {
				Name      string `json:"name"`
				Value     string `json:"value"`
				SecretRef string `json:"secretRef"`
			} `json:"env"`
			Probes []struct {
				Type    string `json:"type"`
				HTTPGet struct {
					Path string `json:"path"`
					Port any    `json:"port"`
				} `json:"httpGet"`
			} `json:"probes"`
		} `json:"containers"`
		Scale struct {
			MinReplicas string `json:"minReplicas"`
		} `json:"scale"`
	} `json:"template"`
}

// armLeavesOut are the configuration names the template does not set, and
// why: every other name the bot reads is the container's environment, from
// a parameter where a tenant chooses it. A name the bot starts reading must
// be added to one or the other.
var armLeavesOut = map[string]string{
	"MicrosoftAppPassword":            "the managed identity needs no secret",
	"MicrosoftAppCertificatePath":     "the managed identity needs no certificate",
	"MicrosoftAppCertificatePassword": "the managed identity needs no certificate",
	"AZURE_FEDERATED_TOKEN_FILE":      "Kubernetes workload identity, not Container Apps",
	"BOT_OPENID_METADATA_URL":         "derived from BOT_CLOUD",
	"AZURE_AUTHORITY_HOST":            "derived from BOT_CLOUD",
	"GRAPH_BASE_URL":                  "derived from BOT_CLOUD",
	"HOST":                            "the container listens on every interface",
}

// Each configuration name the bot reads is set by the template or left out
// for a reason (armLeavesOut).
func TestARMTemplateSetsEveryConfigurationName(t *testing.T) {
	tpl := loadTemplate(t)
	var ca containerApp
	if err := json.Unmarshal(tpl.resource(t, "Microsoft.App/containerApps").Properties, &ca); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, e := range ca.Template.Containers[0].Env {
		set[e.Name] = true
	}
	for _, name := range app.ConfigNames() {
		why, out := armLeavesOut[name]
		switch {
		case set[name] && out:
			t.Errorf("%s is set, yet listed as left out (%s)", name, why)
		case !set[name] && !out:
			t.Errorf("%s cannot be set through the template: add a parameter and an environment entry, or say in armLeavesOut why not", name)
		}
	}
	for name := range armLeavesOut {
		if !slices.Contains(app.ConfigNames(), name) {
			t.Errorf("armLeavesOut names %s, which the bot does not read", name)
		}
	}
}

func TestARMTemplateContainerApp(t *testing.T) {
	tpl := loadTemplate(t)
	var ca containerApp
	if err := json.Unmarshal(tpl.resource(t, "Microsoft.App/containerApps").Properties, &ca); err != nil {
		t.Fatal(err)
	}
	if ing := ca.Configuration.Ingress; !ing.External || ing.AllowInsecure || ing.TargetPort != "[variables('httpPort')]" {
		t.Errorf("ingress %+v, want external HTTPS to the bot's port", ing)
	}
	if len(ca.Template.Containers) != 1 {
		t.Fatalf("containers %d", len(ca.Template.Containers))
	}
	c := ca.Template.Containers[0]
	if !strings.HasSuffix(tpl.Parameters["containerImage"].DefaultValue.(string), ":"+app.Version) || c.Image != "[parameters('containerImage')]" {
		t.Errorf("image %s (default %v), want the bot's version %s", c.Image, tpl.Parameters["containerImage"].DefaultValue, app.Version)
	}
	known := app.ConfigNames()
	env := map[string]string{}
	for _, e := range c.Env {
		if !slices.Contains(known, e.Name) && e.Name != "GOMEMLIMIT" {
			t.Errorf("the container sets %s, which the bot does not read", e.Name)
		}
		env[e.Name] = e.Value + e.SecretRef
	}
	if env["MicrosoftAppType"] != "UserAssignedMSI" || env["REDIS_URL"] != "redis-url" || !strings.Contains(env["MicrosoftAppId"], "clientId") {
		t.Errorf("env %v", env)
	}
	if !strings.Contains(ca.Configuration.Secrets.(string), "'rediss://:'") {
		t.Errorf("REDIS_URL is not rediss://: %v", ca.Configuration.Secrets)
	}
	ports := map[string]string{}
	for _, name := range []string{"httpPort", "opsPort"} {
		ports["[variables('"+name+"')]"] = strconv.Itoa(int(tpl.Variables[name].(float64)))
	}
	if env["PORT"] != "[string(variables('httpPort'))]" || env["OPS_PORT"] != "[string(variables('opsPort'))]" {
		t.Errorf("PORT %s OPS_PORT %s", env["PORT"], env["OPS_PORT"])
	}
	// GOMEMLIMIT: 90% of the container's memory.
	mem, err := strconv.Atoi(strings.TrimSuffix(c.Resources.Memory, "Gi"))
	if err != nil {
		t.Fatalf("memory %s", c.Resources.Memory)
	}
	if want := strconv.Itoa(mem*1024*9/10) + "MiB"; env["GOMEMLIMIT"] != want {
		t.Errorf("GOMEMLIMIT %s, want %s", env["GOMEMLIMIT"], want)
	}
	probes := map[string]string{}
	for _, p := range c.Probes {
		probes[p.Type] = p.HTTPGet.Path + " on " + ports[p.HTTPGet.Port.(string)]
	}
	ops := ports["[variables('opsPort')]"]
	if probes["Startup"] != "/healthz on "+ops || probes["Liveness"] != "/healthz on "+ops || probes["Readiness"] != "/readyz on "+ops {
		t.Errorf("probes %v, want /healthz and /readyz on the ops port %s", probes, ops)
	}
	if float64(ca.Template.TerminationGracePeriodSeconds) <= app.StopTimeout().Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d, want more than %s", ca.Template.TerminationGracePeriodSeconds, app.StopTimeout())
	}
	if ca.Template.Scale.MinReplicas != "[parameters('minReplicas')]" || *tpl.Parameters["minReplicas"].MinValue < 2 {
		t.Errorf("minReplicas %s (min %v), want at least 2", ca.Template.Scale.MinReplicas, tpl.Parameters["minReplicas"].MinValue)
	}
}

func TestARMTemplateParametersAndOutputs(t *testing.T) {
	tpl := loadTemplate(t)
	types := []string{"string", "securestring", "int", "bool", "object", "secureObject", "array"}
	for name, p := range tpl.Parameters {
		if !slices.Contains(types, p.Type) {
			t.Errorf("parameter %s: type %q", name, p.Type)
		}
	}
	// A value the bot checks against a fixed set is offered only from it.
	for name, want := range map[string][]any{
		"botCloud":     {"public", "usgov", "usgovdod", "china"},
		"botProactive": {"on", "off"},
		"botSku":       {"F0", "S1"},
	} {
		if got := tpl.Parameters[name].AllowedValues; !slices.Equal(got, want) {
			t.Errorf("parameter %s allows %v, want %v", name, got, want)
		}
	}
	if tpl.Parameters["registryPassword"].Type != "securestring" {
		t.Errorf("registryPassword is not a securestring")
	}
	for _, name := range []string{"messagingEndpoint", "botAppId", "identityClientId", "identityPrincipalId"} {
		o, ok := tpl.Outputs[name]
		if !ok || o.Type != "string" || o.Value == "" {
			t.Errorf("output %s: %+v", name, o)
		}
	}
	if !strings.HasSuffix(tpl.Outputs["messagingEndpoint"].Value, "'/api/messages')]") {
		t.Errorf("messagingEndpoint %s", tpl.Outputs["messagingEndpoint"].Value)
	}
	for name, o := range tpl.Outputs {
		if strings.Contains(o.Value, "listKeys") || strings.Contains(o.Value, "Password") {
			t.Errorf("output %s shows a secret: %s", name, o.Value)
		}
	}
}

// The grant script assigns exactly the bot's Graph permissions, printing
// each: run against a fake `az` that answers as Graph does.
func TestGrantScriptAssignsExactlyTheBotsPermissions(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// The fake az: Graph's service principal, the assignments the identity
	// has (AppCatalog.Read.All already), and an app role id per permission.
	fake := `#!/usr/bin/env bash
printf '%s\x1f' "$@" >> "` + calls + `"; echo >> "` + calls + `"
args="$*"
case "$args" in
  *"servicePrincipals(appId='00000003-0000-0000-c000-000000000000')"*) echo graph-sp ;;
  *"--method GET"*"appRoleAssignments"*) echo role-AppCatalog.Read.All ;;
  *"--method GET"*"appRoles"*) q=${args#*value==\'}; echo "role-${q%%\'*}" ;;
  *"--method POST"*) echo '{}' ;;
  *) echo "unexpected az $args" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "az"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "azure/grant-graph-permissions.sh", "11111111-2222-3333-4444-555555555555")
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var wantOut []string
	var wantPosts []map[string]string
	for _, p := range app.GraphPermissions() {
		if p.Name == "AppCatalog.Read.All" {
			wantOut = append(wantOut, "ok      AppCatalog.Read.All (already granted)")
			continue
		}
		wantOut = append(wantOut, "granted "+p.Name)
		wantPosts = append(wantPosts, map[string]string{
			"principalId": "11111111-2222-3333-4444-555555555555", "resourceId": "graph-sp", "appRoleId": "role-" + p.Name,
		})
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); !slices.Equal(got, wantOut) {
		t.Errorf("printed:\n%s\nwant:\n%s", out, strings.Join(wantOut, "\n"))
	}
	raw, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	var posts []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		args := strings.Split(strings.TrimSuffix(line, "\x1f"), "\x1f")
		if !slices.Contains(args, "POST") {
			continue
		}
		i := slices.Index(args, "--body")
		if i < 0 || !strings.HasSuffix(args[slices.Index(args, "--url")+1], "/v1.0/servicePrincipals/11111111-2222-3333-4444-555555555555/appRoleAssignments") {
			t.Fatalf("POST %v", args)
		}
		var body map[string]string
		if err := json.Unmarshal([]byte(args[i+1]), &body); err != nil {
			t.Fatalf("body %s: %v", args[i+1], err)
		}
		posts = append(posts, body)
	}
	if len(posts) != len(wantPosts) {
		t.Fatalf("%d assignments, want %d: %v", len(posts), len(wantPosts), posts)
	}
	for i := range posts {
		if !maps.Equal(posts[i], wantPosts[i]) {
			t.Errorf("assignment %d: %v, want %v", i, posts[i], wantPosts[i])
		}
	}
}

// Package deploy holds the tests of the Helm chart (deploy/helm) and the
// Azure template (deploy/azure). No cluster or container engine runs here:
// the chart is rendered and linted with the Helm SDK, and every object it
// renders is decoded strictly into the Kubernetes API types, so a misspelt or
// misplaced field fails as the API server would refuse it. The Helm SDK and
// the Kubernetes modules are imported by these tests only, so the bot's
// binary gains nothing (TestBotBinaryHasNoHelm).
package deploy

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/upgradeapprovals/bot/internal/app"
)

const (
	chartDir  = "helm/upgradebot"
	release   = "ua"
	namespace = "bots"
	appID     = "00000000-0000-0000-0000-0000000000b0"
	tenantID  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render renders the chart as `helm template` and `helm install` do, values
// checked against values.schema.json first.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	return renderRelease(t, release, vals)
}

func renderRelease(t *testing.T, name string, vals map[string]any) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	top, err := util.ToRenderValuesWithSchemaValidation(c, vals,
		common.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true}, nil, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, top)
}

// objects are a rendered release's objects, decoded strictly.
type objects struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	pods            map[string]*corev1.Pod // helm test hooks
	ingresses       map[string]*networkingv1.Ingress
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
	serviceMonitors map[string]*serviceMonitor
	notes           string
}

// serviceMonitor is monitoring.coreos.com/v1 ServiceMonitor, the fields the
// chart sets: the Prometheus Operator's types are not a dependency, so its
// shape is checked here, strictly.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// strict decodes one object: an unknown, misspelt or duplicated field fails.
func strict(t *testing.T, file string, doc []byte, into any) {
	t.Helper()
	strictErrs, err := kjson.UnmarshalStrict(doc, into)
	if err != nil {
		t.Fatalf("%s: %v\n%s", file, err, doc)
	}
	if len(strictErrs) > 0 {
		t.Fatalf("%s: %v\n%s", file, strictErrs, doc)
	}
}

func decode(t *testing.T, rendered map[string]string) objects {
	t.Helper()
	o := objects{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		secrets: map[string]*corev1.Secret{}, serviceAccounts: map[string]*corev1.ServiceAccount{},
		pods: map[string]*corev1.Pod{}, ingresses: map[string]*networkingv1.Ingress{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		serviceMonitors: map[string]*serviceMonitor{},
	}
	for _, file := range slices.Sorted(maps.Keys(rendered)) {
		text := rendered[file]
		if strings.HasSuffix(file, "NOTES.txt") {
			o.notes = text
			continue
		}
		for _, raw := range regexp.MustCompile(`(?m)^---\s*$`).Split(text, -1) {
			if strings.TrimSpace(stripComments(raw)) == "" {
				continue
			}
			doc, err := yaml.YAMLToJSONStrict([]byte(raw))
			if err != nil {
				t.Fatalf("%s: %v\n%s", file, err, raw)
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatal(err)
			}
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				decodeInto(t, file, doc, o.deployments)
			case "v1 Service":
				decodeInto(t, file, doc, o.services)
			case "v1 Secret":
				decodeInto(t, file, doc, o.secrets)
			case "v1 ServiceAccount":
				decodeInto(t, file, doc, o.serviceAccounts)
			case "v1 Pod":
				decodeInto(t, file, doc, o.pods)
			case "networking.k8s.io/v1 Ingress":
				decodeInto(t, file, doc, o.ingresses)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				decodeInto(t, file, doc, o.hpas)
			case "policy/v1 PodDisruptionBudget":
				decodeInto(t, file, doc, o.pdbs)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				sm := &serviceMonitor{}
				strict(t, file, doc, sm)
				o.serviceMonitors[sm.Metadata.Name] = sm
			default:
				t.Fatalf("%s: unexpected object %s %s", file, head.APIVersion, head.Kind)
			}
		}
	}
	return o
}

type named interface{ GetName() string }

func decodeInto[T any, PT interface {
	*T
	named
}](t *testing.T, file string, doc []byte, into map[string]PT) {
	t.Helper()
	obj := PT(new(T))
	strict(t, file, doc, obj)
	if obj.GetName() == "" {
		t.Fatalf("%s: an object without a name", file)
	}
	if _, dup := into[obj.GetName()]; dup {
		t.Fatalf("%s: two objects named %s", file, obj.GetName())
	}
	into[obj.GetName()] = obj
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// values parses `--set` flags as helm does.
func values(t *testing.T, sets ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return vals
}

// tenantSets are the values a tenant must set, as README's helm install sets
// them (TestREADMEHelmInstall checks that README says the same).
func tenantSets() []string {
	return []string{
		"config.MicrosoftAppId=" + appID,
		"config.MicrosoftAppTenantId=" + tenantID,
		"secrets.existingSecret=upgradebot",
		"redis.existingSecret=upgradebot",
		"ingress.enabled=true",
		"ingress.className=nginx",
		"ingress.host=bot.contoso.com",
		"ingress.tlsSecretName=bot-contoso-com-tls",
	}
}

func renderOK(t *testing.T, sets ...string) objects {
	t.Helper()
	rendered, err := render(t, values(t, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, rendered)
}

const fullname = release + "-upgradebot"

func (o objects) bot(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d, ok := o.deployments[fullname]
	if !ok {
		t.Fatalf("no Deployment %s among %v", fullname, slices.Collect(maps.Keys(o.deployments)))
	}
	return d
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func TestChartDefaultsForATenant(t *testing.T) {
	o := renderOK(t, tenantSets()...)
	d := o.bot(t)
	spec := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v, want maxUnavailable 0", d.Spec.Strategy)
	}
	pdb, ok := o.pdbs[fullname]
	if !ok || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v, want minAvailable 1", pdb)
	} else if !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the PodDisruptionBudget's selector %v misses the pods %v", pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	var keys []string
	for _, c := range spec.TopologySpreadConstraints {
		keys = append(keys, c.TopologyKey)
		if !selects(c.LabelSelector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("topology spread %s selects %v, not the pods", c.TopologyKey, c.LabelSelector.MatchLabels)
		}
	}
	if !slices.Contains(keys, "kubernetes.io/hostname") || !slices.Contains(keys, "topology.kubernetes.io/zone") {
		t.Errorf("topology spread over %v, want nodes and zones", keys)
	}
	if len(o.hpas) != 0 {
		t.Errorf("an HPA without autoscaling.enabled")
	}

	if len(spec.Containers) != 1 {
		t.Fatalf("containers %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "ghcr.io/upgradeapprovals/upgradebot:"+app.Version {
		t.Errorf("image %s, want the bot's version %s as its tag", c.Image, app.Version)
	}
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("args %v", c.Args)
	}

	// Probes on the real paths, on the ops port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	e := env(c)
	if e["PORT"].Value != strconv.Itoa(int(ports["http"])) || e["OPS_PORT"].Value != strconv.Itoa(int(ports["ops"])) {
		t.Errorf("PORT %q OPS_PORT %q, container ports %v", e["PORT"].Value, e["OPS_PORT"].Value, ports)
	}
	for name, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("no %s probe", name)
			continue
		}
		want := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}[name]
		if probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s probe %s on %s, want %s on ops", name, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), want)
		}
	}

	// The pod serves on while the Ingress stops routing to it, then has long
	// enough for the bot to finish upgrades after SIGTERM.
	checkGrace(t, spec, 5)

	// Resources, and GOMEMLIMIT 90% of the memory limit.
	limit := c.Resources.Limits[corev1.ResourceMemory]
	if limit.IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	gomem, err := resource.ParseQuantity(strings.TrimSuffix(e["GOMEMLIMIT"].Value, "B"))
	if err != nil {
		t.Fatalf("GOMEMLIMIT %q: %v", e["GOMEMLIMIT"].Value, err)
	}
	if got, want := gomem.Value(), limit.Value()*9/10; got > want || got < want-(1<<20) {
		t.Errorf("GOMEMLIMIT %s (%d bytes), want 90%% of the limit %s (%d)", e["GOMEMLIMIT"].Value, got, limit.String(), want)
	}

	// Hardened.
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v", sc)
	}
	checkNoKubernetesToken(t, o)

	// Secrets by reference only.
	for _, name := range []string{"MicrosoftAppPassword", "REDIS_URL"} {
		v, ok := e[name]
		if !ok || v.Value != "" || v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil || v.ValueFrom.SecretKeyRef.Name != "upgradebot" {
			t.Errorf("%s: %+v, want it from Secret upgradebot", name, v)
		}
	}
	if len(o.secrets) != 0 {
		t.Errorf("the chart made Secrets %v though the tenant's own Secret holds everything", slices.Collect(maps.Keys(o.secrets)))
	}

	// The Service, and the Ingress to /api/messages alone.
	svc, ok := o.services[fullname]
	if !ok || svc.Spec.Type != corev1.ServiceTypeClusterIP || !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Fatalf("Service %+v", svc)
	}
	ing, ok := o.ingresses[fullname]
	if !ok {
		t.Fatal("no Ingress")
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.TLS) != 1 ||
		ing.Spec.TLS[0].SecretName != "bot-contoso-com-tls" || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{"bot.contoso.com"}) {
		t.Errorf("Ingress class or TLS %+v", ing.Spec)
	}
	var paths []string
	for _, r := range ing.Spec.Rules {
		for _, p := range r.HTTP.Paths {
			paths = append(paths, r.Host+p.Path)
			if p.Backend.Service.Name != svc.Name || p.Backend.Service.Port.Name != "http" {
				t.Errorf("Ingress backend %+v", p.Backend)
			}
		}
	}
	if !slices.Equal(paths, []string{"bot.contoso.com/api/messages"}) {
		t.Errorf("Ingress paths %v, want /api/messages alone", paths)
	}
	if !strings.Contains(o.notes, "https://bot.contoso.com/api/messages") || !strings.Contains(o.notes, "/readyz") {
		t.Errorf("NOTES.txt does not print the messaging endpoint and how to check readiness:\n%s", o.notes)
	}

	// helm test runs doctor with the release's configuration.
	pod, ok := o.pods[fullname+"-doctor"]
	if !ok {
		t.Fatal("no helm test pod")
	}
	if pod.Annotations["helm.sh/hook"] != "test" || !slices.Equal(pod.Spec.Containers[0].Args, []string{"doctor"}) ||
		pod.Spec.Containers[0].Image != c.Image {
		t.Errorf("helm test pod %+v", pod)
	}
	if !reflect.DeepEqual(env(pod.Spec.Containers[0]), e) {
		t.Errorf("the doctor's environment differs from the bot's")
	}
	if selects(svc.Spec.Selector, pod.Labels) {
		t.Errorf("the Service would send Teams to the helm test pod")
	}
	if len(o.serviceMonitors) != 0 || len(o.deployments) != 1 {
		t.Errorf("objects not asked for: %d ServiceMonitors, %d Deployments", len(o.serviceMonitors), len(o.deployments))
	}
}

// checkGrace: the bot sleeps sleep seconds in a preStop hook, then the grace
// period still covers the bot's stop after SIGTERM.
func checkGrace(t *testing.T, spec corev1.PodSpec, sleep int64) {
	t.Helper()
	var got int64
	if l := spec.Containers[0].Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil {
		t.Errorf("no preStop sleep: a terminating pod would refuse requests the Ingress still routes to it")
	} else if got = l.PreStop.Sleep.Seconds; got != sleep {
		t.Errorf("preStop sleep %d s, want %d", got, sleep)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || float64(*g) <= float64(got)+app.StopTimeout().Seconds() {
		t.Errorf("terminationGracePeriodSeconds %v, want more than the %d s preStop sleep plus the bot's %s to stop", g, got, app.StopTimeout())
	}
}

// The longest preStop sleep the schema accepts beside the shortest grace
// period it accepts still leaves the bot its time to stop; the chart needs
// a cluster with the sleep action.
func TestChartGraceCoversPreStopSleepAndStop(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Sleep struct {
				Minimum, Maximum *int64
			} `json:"preStopSleepSeconds"`
			Grace struct {
				Minimum *int64
			} `json:"terminationGracePeriodSeconds"`
		} `json:"properties"`
	}
	if err := yaml.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	sleep, grace := schema.Properties.Sleep, schema.Properties.Grace
	if sleep.Minimum == nil || *sleep.Minimum < 1 || sleep.Maximum == nil || grace.Minimum == nil {
		t.Fatalf("values.schema.json bounds preStopSleepSeconds %+v and terminationGracePeriodSeconds %+v", sleep, grace)
	}
	o := renderOK(t, append(tenantSets(), "preStopSleepSeconds="+strconv.FormatInt(*sleep.Maximum, 10),
		"terminationGracePeriodSeconds="+strconv.FormatInt(*grace.Minimum, 10))...)
	checkGrace(t, o.bot(t).Spec.Template.Spec, *sleep.Maximum)

	kube := loadChart(t).Metadata.KubeVersion
	if chartutil.IsCompatibleRange(kube, "v1.29.9") || !chartutil.IsCompatibleRange(kube, "v1.30.0") {
		t.Errorf("kubeVersion %q, want 1.30 or later: the preStop sleep action is on by default from 1.30", kube)
	}
}

// checkNoKubernetesToken: neither the bot's pods, nor the helm test pod, nor
// the chart's service account mount a Kubernetes API token; the bot never
// calls the API.
func checkNoKubernetesToken(t *testing.T, o objects) {
	t.Helper()
	mounts := map[string]*bool{"the bot's pods": o.bot(t).Spec.Template.Spec.AutomountServiceAccountToken}
	if pod, ok := o.pods[fullname+"-doctor"]; ok {
		mounts["the helm test pod"] = pod.Spec.AutomountServiceAccountToken
	} else {
		t.Error("no helm test pod")
	}
	if sa, ok := o.serviceAccounts[fullname]; ok {
		mounts["the service account"] = sa.AutomountServiceAccountToken
	} else {
		t.Error("no service account")
	}
	for who, a := range mounts {
		if a == nil || *a {
			t.Errorf("%s: automountServiceAccountToken %v, want false", who, a)
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The documented option sets each render to valid objects and do what they say.
func TestChartOptions(t *testing.T) {
	t.Run("workload identity, its client id in capitals", func(t *testing.T) {
		renderOK(t, append(tenantSets()[:2:2], "redis.existingSecret=upgradebot", "workloadIdentity.enabled=true",
			"workloadIdentity.clientId="+strings.ToUpper(appID))...)
	})
	t.Run("one replica at least, autoscaling off", func(t *testing.T) {
		// The bound on minReplicas is autoscaling's: values that keep
		// autoscaling off are not refused for it.
		renderOK(t, append(tenantSets(), "autoscaling.minReplicas=1")...)
	})
	t.Run("workload identity", func(t *testing.T) {
		sets := append(tenantSets()[:2:2], "redis.existingSecret=upgradebot", "workloadIdentity.enabled=true",
			"workloadIdentity.clientId="+appID)
		o := renderOK(t, sets...)
		d := o.bot(t)
		if d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
			t.Errorf("pod labels %v", d.Spec.Template.Labels)
		}
		sa := o.serviceAccounts[d.Spec.Template.Spec.ServiceAccountName]
		if sa == nil || sa.Annotations["azure.workload.identity/client-id"] != appID {
			t.Fatalf("service account %+v", sa)
		}
		// The webhook projects its own token volume: the Kubernetes API
		// token stays out of the pods.
		checkNoKubernetesToken(t, o)
		if _, ok := env(d.Spec.Template.Spec.Containers[0])["MicrosoftAppPassword"]; ok {
			t.Errorf("a client secret beside workload identity")
		}
	})
	t.Run("HPA", func(t *testing.T) {
		o := renderOK(t, append(tenantSets(), "autoscaling.enabled=true", "autoscaling.maxReplicas=8")...)
		d := o.bot(t)
		if d.Spec.Replicas != nil {
			t.Errorf("replicas %d beside an HPA", *d.Spec.Replicas)
		}
		h, ok := o.hpas[fullname]
		if !ok || h.Spec.ScaleTargetRef.Name != d.Name || h.Spec.ScaleTargetRef.Kind != "Deployment" ||
			h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 8 ||
			h.Spec.Metrics[0].Resource.Target.AverageUtilization == nil {
			t.Fatalf("HPA %+v", h)
		}
		if _, ok := o.pdbs[fullname]; !ok {
			t.Error("no PodDisruptionBudget with autoscaling")
		}
	})
	t.Run("MultiTenant with the tenants it serves, or any on purpose", func(t *testing.T) {
		for _, tenants := range []string{tenantID, "*"} {
			o := renderOK(t, append(tenantSets(), "config.MicrosoftAppType=MultiTenant", "config.BOT_ALLOWED_TENANTS="+tenants)...)
			if e := env(o.bot(t).Spec.Template.Spec.Containers[0]); e["BOT_ALLOWED_TENANTS"].Value != tenants {
				t.Errorf("BOT_ALLOWED_TENANTS %q, want %q", e["BOT_ALLOWED_TENANTS"].Value, tenants)
			}
		}
	})
	t.Run("one replica has no PodDisruptionBudget", func(t *testing.T) {
		// minAvailable 1 of 1 would block every node drain.
		o := renderOK(t, append(tenantSets(), "replicaCount=1")...)
		if len(o.pdbs) != 0 {
			t.Errorf("PodDisruptionBudget with one replica")
		}
	})
	t.Run("external Redis Cluster from values", func(t *testing.T) {
		url := "rediss://:p@ss/w0rd@redis.contoso.internal:6380/0?cluster=true&addr=redis-2.contoso.internal:6380"
		o := renderOK(t, append(tenantSets()[:2:2], "secrets.MicrosoftAppPassword=s3cret", "redis.url="+url)...)
		s, ok := o.secrets[fullname+"-secrets"]
		if !ok || string(s.Data["REDIS_URL"]) != url || string(s.Data["MicrosoftAppPassword"]) != "s3cret" {
			t.Fatalf("Secret %+v among %v", s, slices.Collect(maps.Keys(o.secrets)))
		}
		e := env(o.bot(t).Spec.Template.Spec.Containers[0])
		for _, name := range []string{"REDIS_URL", "MicrosoftAppPassword"} {
			if r := e[name].ValueFrom; r == nil || r.SecretKeyRef.Name != s.Name || r.SecretKeyRef.Key != name {
				t.Errorf("%s %+v, want it from the chart's Secret %s", name, e[name], s.Name)
			}
		}
		checksum := o.bot(t).Spec.Template.Annotations["checksum/secret"]
		if checksum == "" {
			t.Error("no checksum of the Secret: a changed secret would not roll the pods")
		}
	})
	t.Run("README's install with redis.url", func(t *testing.T) {
		// README names the release and the tenant's Secret upgradebot; the
		// chart's own Secret must not take that name, or the install would
		// clash with (or overwrite) the tenant's client secret.
		var sets []string
		for _, set := range tenantSets() {
			if !strings.HasPrefix(set, "redis.") {
				sets = append(sets, set)
			}
		}
		rendered, err := renderRelease(t, "upgradebot", values(t, append(sets, "redis.url=rediss://:k@redis.contoso.internal:6380/0")...))
		if err != nil {
			t.Fatal(err)
		}
		o := decode(t, rendered)
		if _, clash := o.secrets["upgradebot"]; clash || len(o.secrets) != 1 {
			t.Fatalf("the chart renders Secrets %v beside the tenant's Secret upgradebot", slices.Collect(maps.Keys(o.secrets)))
		}
		e := env(o.deployments["upgradebot"].Spec.Template.Spec.Containers[0])
		if r := e["MicrosoftAppPassword"].ValueFrom; r == nil || r.SecretKeyRef.Name != "upgradebot" {
			t.Errorf("MicrosoftAppPassword %+v, want it from the tenant's Secret upgradebot", e["MicrosoftAppPassword"])
		}
		if r := e["REDIS_URL"].ValueFrom; r == nil || o.secrets[r.SecretKeyRef.Name] == nil {
			t.Errorf("REDIS_URL %+v, want it from the chart's Secret", e["REDIS_URL"])
		}
	})
	t.Run("ServiceMonitor", func(t *testing.T) {
		o := renderOK(t, append(tenantSets(), "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")...)
		sm, ok := o.serviceMonitors[fullname]
		if !ok {
			t.Fatal("no ServiceMonitor")
		}
		svc := o.services[fullname]
		var opsPort bool
		for _, p := range svc.Spec.Ports {
			opsPort = opsPort || p.Name == "ops"
		}
		if !opsPort || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "ops" || sm.Spec.Endpoints[0].Path != "/metrics" ||
			!selects(sm.Spec.Selector.MatchLabels, svc.Labels) || sm.Metadata.Labels["release"] != "prom" ||
			!slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
			t.Errorf("ServiceMonitor %+v against Service %+v", sm, svc)
		}
	})
	t.Run("certificate", func(t *testing.T) {
		o := renderOK(t, append(tenantSets()[:2:2], "redis.existingSecret=upgradebot", "certificate.existingSecret=bot-cert")...)
		spec := o.bot(t).Spec.Template.Spec
		path := env(spec.Containers[0])["MicrosoftAppCertificatePath"].Value
		var mounted bool
		for _, m := range spec.Containers[0].VolumeMounts {
			mounted = mounted || (m.ReadOnly && strings.HasPrefix(path, m.MountPath+"/"))
		}
		if path == "" || !mounted {
			t.Errorf("MicrosoftAppCertificatePath %q is not on a read-only mount", path)
		}
	})
	t.Run("development Redis", func(t *testing.T) {
		o := renderOK(t, append(tenantSets()[:3:3], "devRedis.enabled=true")...)
		if _, ok := o.deployments[fullname+"-dev-redis"]; !ok {
			t.Fatal("no development Redis")
		}
		if got := env(o.bot(t).Spec.Template.Spec.Containers[0])["REDIS_URL"].Value; got != "redis://"+fullname+"-dev-redis:6379/0" {
			t.Errorf("REDIS_URL %q", got)
		}
		if !strings.Contains(o.notes, "NOT highly") {
			t.Errorf("NOTES.txt does not warn about the development Redis")
		}
		if selects(o.services[fullname].Spec.Selector, o.deployments[fullname+"-dev-redis"].Spec.Template.Labels) {
			t.Error("the bot's Service selects the Redis pod")
		}
	})
	t.Run("sandbox", func(t *testing.T) {
		o := renderOK(t, "sandbox=true")
		d := o.bot(t)
		if *d.Spec.Replicas != 1 || !slices.Equal(d.Spec.Template.Spec.Containers[0].Args, []string{"sandbox"}) ||
			len(o.pdbs) != 0 || len(o.pods) != 0 {
			t.Errorf("sandbox: %+v", d.Spec)
		}
	})
}

// A bad value is refused before anything renders, naming the value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
		want []string // each in the message
	}{
		{"replicaCount a word", append(tenantSets(), `replicaCount="two"`), []string{"/replicaCount", "integer"}},
		{"unknown app type", append(tenantSets(), "config.MicrosoftAppType=Personal"), []string{"/config/MicrosoftAppType", "MultiTenant"}},
		{"no app id", tenantSets()[1:], []string{"/config/MicrosoftAppId"}},
		{"app id not a GUID", append(tenantSets(), "config.MicrosoftAppId=upgradebot"), []string{"/config/MicrosoftAppId"}},
		{"SingleTenant without its tenant", append(tenantSets(), "config.MicrosoftAppTenantId="), []string{"/config/MicrosoftAppTenantId"}},
		{"UserAssignedMSI without its tenant", append(tenantSets(), "config.MicrosoftAppType=UserAssignedMSI", "config.MicrosoftAppTenantId="), []string{"/config/MicrosoftAppTenantId"}},
		{"MultiTenant without the tenants it serves", append(tenantSets(), "config.MicrosoftAppType=MultiTenant"), []string{"/config/BOT_ALLOWED_TENANTS"}},
		{"no Redis for two replicas", []string{tenantSets()[0], tenantSets()[2]}, []string{"/redis/url", "/redis/existingSecret"}},
		{"no Redis for autoscaling", []string{tenantSets()[0], tenantSets()[2], "autoscaling.enabled=true"}, []string{"/redis/url"}},
		{"unknown cloud", append(tenantSets(), "config.BOT_CLOUD=mars"), []string{"/config/BOT_CLOUD", "usgov"}},
		{"a misspelt configuration name", append(tenantSets(), "config.BOT_APROVERS=owners"), []string{"BOT_APROVERS"}},
		{"memory limit in bytes", append(tenantSets(), "resources.limits.memory=134217728"), []string{"/resources/limits/memory"}},
		{"a LoadBalancer would expose the ops port", append(tenantSets(), "service.type=LoadBalancer"), []string{"/service/type", "ClusterIP"}},
		{"a NodePort would expose the ops port", append(tenantSets(), "service.type=NodePort"), []string{"/service/type", "ClusterIP"}},
		{"Ingress without host", append(tenantSets(), "ingress.host="), []string{"/ingress/host"}},
		{"a grace period shorter than the drain", append(tenantSets(), "terminationGracePeriodSeconds=30"), []string{"/terminationGracePeriodSeconds"}},
		{"a grace period shorter than the longest preStop sleep and the drain", append(tenantSets(), "terminationGracePeriodSeconds=99"), []string{"/terminationGracePeriodSeconds"}},
		{"a preStop sleep longer than the grace period allows for", append(tenantSets(), "preStopSleepSeconds=11"), []string{"/preStopSleepSeconds"}},
		{"no preStop sleep", append(tenantSets(), "preStopSleepSeconds=0"), []string{"/preStopSleepSeconds"}},
		{"workload identity for another app", append(tenantSets(), "workloadIdentity.enabled=true", "workloadIdentity.clientId=00000000-0000-0000-0000-00000000beef"),
			[]string{"workloadIdentity.clientId", "config.MicrosoftAppId"}},
		{"workload identity beside a client secret", append(tenantSets(), "workloadIdentity.enabled=true", "workloadIdentity.clientId="+appID, "secrets.MicrosoftAppPassword=hunter2"),
			[]string{"workloadIdentity.enabled", "secrets.MicrosoftAppPassword"}},
		{"workload identity beside a Secret with the app's password", append(tenantSets()[:2:2], "redis.existingSecret=upgradebot", "secrets.existingSecret=upgradebot",
			"workloadIdentity.enabled=true", "workloadIdentity.clientId="+appID), []string{"workloadIdentity.enabled", "secrets.existingSecret"}},
		{"autoscaling down to one replica, whose disruption budget would block node drains", append(tenantSets(), "autoscaling.enabled=true", "autoscaling.minReplicas=1"), []string{"/autoscaling/minReplicas"}},
		{"autoscaling with fewer at most than at least", append(tenantSets(), "autoscaling.enabled=true", "autoscaling.minReplicas=4", "autoscaling.maxReplicas=3"), []string{"autoscaling.maxReplicas", "autoscaling.minReplicas"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, values(t, tc.sets...))
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the refusal does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestChartLint(t *testing.T) {
	for _, sets := range [][]string{tenantSets(), append(tenantSets(), "autoscaling.enabled=true", "metrics.serviceMonitor.enabled=true")} {
		l := lint.RunAll(chartDir, values(t, sets...), namespace)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("lint: %s", m)
			}
		}
	}
	// Lint checks the schema too: the defaults alone lack the app id.
	l := lint.RunAll(chartDir, nil, namespace)
	if l.HighestSeverity < support.ErrorSev {
		t.Errorf("lint accepts the chart without an app id")
	}
}

// Every configuration name the chart sets is one the bot reads, and
// values.yaml documents every name the bot reads.
func TestChartConfigNamesAreTheBots(t *testing.T) {
	known := app.ConfigNames()
	runtime := []string{"GOMEMLIMIT"} // read by the Go runtime, not the bot
	for _, sets := range [][]string{
		tenantSets(),
		append(tenantSets()[:2:2], "redis.url=redis://r:6379/0", "secrets.MicrosoftAppPassword=x", "secrets.MicrosoftAppCertificatePassword=y",
			"certificate.existingSecret=c", "config.BOT_APPROVERS=owners", "config.BOT_SCAN_INTERVAL=5m", "config.BOT_CLOUD=usgov"),
	} {
		o := renderOK(t, sets...)
		for _, pod := range []corev1.PodSpec{o.bot(t).Spec.Template.Spec, o.pods[fullname+"-doctor"].Spec} {
			for name := range env(pod.Containers[0]) {
				if !slices.Contains(known, name) && !slices.Contains(runtime, name) {
					t.Errorf("the chart sets %s, which the bot does not read (it reads %v)", name, known)
				}
			}
		}
	}
	valuesYAML, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range known {
		if !bytes.Contains(valuesYAML, []byte(name)) {
			t.Errorf("values.yaml does not document %s", name)
		}
	}
	// values.yaml's config block holds configuration names only (the
	// schema refuses others: a misspelt name would be set and ignored).
	var v struct {
		Config map[string]any `json:"config"`
	}
	if err := yaml.Unmarshal(valuesYAML, &v); err != nil {
		t.Fatal(err)
	}
	for name := range v.Config {
		if !slices.Contains(known, name) {
			t.Errorf("values.yaml config.%s is not a name the bot reads", name)
		}
	}
}

func TestChartAppVersionIsTheBots(t *testing.T) {
	if c := loadChart(t); c.Metadata.AppVersion != app.Version {
		t.Errorf("Chart.yaml appVersion %s, the bot is %s", c.Metadata.AppVersion, app.Version)
	}
}

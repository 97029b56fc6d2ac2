// Package chart tests treaty's Helm chart (deploy/helm/treaty): it renders
// the chart with Helm's own engine over a matrix of values, decodes every
// object strictly into the Kubernetes API types (an unknown or misplaced
// field fails), parses the generated treaty.yaml with treaty's own
// configuration parser, and checks what matters: the ports agree with the
// configuration, the admin socket is never exposed, the keys live on the
// volume, the pods run locked down.
package chart

import (
	"bytes"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/treatyhq/treaty/internal/config"
)

const chartDir = "../../deploy/helm/treaty"

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// the chart writes; decoding strictly into it catches a misspelt field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// rendered is one rendering of the chart, decoded.
type rendered struct {
	configMaps   map[string]*corev1.ConfigMap
	services     []*corev1.Service
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	ingresses    []*networkingv1.Ingress
	policies     []*networkingv1.NetworkPolicy
	pdbs         []*policyv1.PodDisruptionBudget
	monitors     []*serviceMonitor
	accounts     []*corev1.ServiceAccount
}

func render(vals string) (*rendered, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	var values map[string]any
	if err := yaml.Unmarshal([]byte(vals), &values); err != nil {
		return nil, err
	}
	top, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: "treaty", Namespace: "federation", IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	r := &rendered{configMaps: map[string]*corev1.ConfigMap{}}
	for name, body := range files {
		if path.Ext(name) != ".yaml" {
			continue
		}
		for doc := range strings.SplitSeq(body, "\n---") {
			if err := r.decode([]byte(doc)); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return r, nil
}

// decode decodes one YAML document strictly into the type of its kind.
func (r *rendered) decode(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	if tm.Kind == "" && len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return nil // a template that rendered nothing
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Service":
		obj = appendNew(&r.services)
	case "v1 ServiceAccount":
		obj = appendNew(&r.accounts)
	case "apps/v1 StatefulSet":
		obj = appendNew(&r.statefulSets)
	case "apps/v1 Deployment":
		obj = appendNew(&r.deployments)
	case "networking.k8s.io/v1 Ingress":
		obj = appendNew(&r.ingresses)
	case "networking.k8s.io/v1 NetworkPolicy":
		obj = appendNew(&r.policies)
	case "policy/v1 PodDisruptionBudget":
		obj = appendNew(&r.pdbs)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = appendNew(&r.monitors)
	default:
		return fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		r.configMaps[cm.Name] = cm
	}
	return nil
}

func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// pod returns the pod template of the one workload rendered.
func (r *rendered) pod(t *testing.T) (*corev1.PodSpec, int32) {
	t.Helper()
	switch {
	case len(r.statefulSets) == 1 && len(r.deployments) == 0:
		return &r.statefulSets[0].Spec.Template.Spec, *r.statefulSets[0].Spec.Replicas
	case len(r.deployments) == 1 && len(r.statefulSets) == 0:
		return &r.deployments[0].Spec.Template.Spec, *r.deployments[0].Spec.Replicas
	}
	t.Fatalf("want one StatefulSet or one Deployment, got %d and %d", len(r.statefulSets), len(r.deployments))
	return nil, 0
}

// treatyConfig parses the generated treaty.yaml as the server would.
func (r *rendered) treatyConfig(t *testing.T) *config.Config {
	t.Helper()
	cm, ok := r.configMaps["treaty"]
	if !ok {
		t.Fatal("no ConfigMap treaty")
	}
	c, err := config.Parse([]byte(cm.Data["treaty.yaml"]), "treaty.yaml")
	if err != nil {
		t.Fatalf("treaty rejects the generated configuration: %v\n%s", err, cm.Data["treaty.yaml"])
	}
	return c
}

const base = "trustDomain: alpha.example\n"

var okCases = []struct {
	name, values string
	replicas     int32
}{
	{"ok/sqlite defaults", base, 1},
	{"ok/sqlite passthrough ingress", base + `
ingress: {enabled: true, mode: passthrough, host: bundle.alpha.example}
onboarding:
  files:
    beta.yaml: |
      className: treaty
      trustDomain: beta.example
      bundleEndpointURL: https://bundle.beta.example
      bundleEndpointProfile: {type: https_web}
`, 1},
	{"ok/sqlite https_web termination ingress", base + `
bundleEndpoint: {profile: https_web, web: {secretName: treaty-web}}
ingress: {enabled: true, mode: termination, host: bundle.alpha.example, tls: {secretName: public-tls}, backendCASecret: federation/treaty-ca}
`, 1},
	{"ok/sqlite replicaCount ignored", base + "replicaCount: 5\n", 1},
	{"ok/postgres three replicas", base + `
replicaCount: 3
datastore: {driver: postgres, dsn: "postgres://treaty@db:5432/treaty?sslmode=verify-full", passwordSecret: treaty-db}
ca: {sealKeySecret: treaty-seal}
metrics: {serviceMonitor: {enabled: true}}
agentAPI: {enabled: true}
onboarding: {existingConfigMap: partners}
probes: {readinessPath: /healthz}
`, 3},
	{"ok/postgres one replica other ports", base + `
replicaCount: 1
datastore: {driver: postgres, dsn: "postgres://treaty@db/treaty"}
ca: {sealKeySecret: treaty-seal}
bundleEndpoint: {port: 9443}
metrics: {port: 9090}
networkPolicy: {enabled: false}
extraConfig: {federation: {min_refresh: 1m}}
`, 1},
}

func TestRender(t *testing.T) {
	for _, tt := range okCases {
		t.Run(tt.name, func(t *testing.T) {
			r, err := render(tt.values)
			if err != nil {
				t.Fatal(err)
			}
			c := r.treatyConfig(t)
			pod, replicas := r.pod(t)
			if replicas != tt.replicas {
				t.Errorf("replicas %d, want %d", replicas, tt.replicas)
			}
			checkPorts(t, r, c, pod)
			checkAdminSocket(t, r, c, pod)
			checkKeys(t, r, c, pod)
			checkSecurity(t, pod)
			checkPDB(t, r, replicas)
			checkIngress(t, r, c)
		})
	}
}

var failCases = []struct{ name, values, want string }{
	{"fail/no trust domain", "", "trustDomain is required"},
	{"fail/passthrough of https_web", base + "bundleEndpoint: {profile: https_web, web: {secretName: w}}\ningress: {enabled: true, mode: passthrough, host: h.example}\n", "passthrough is for bundleEndpoint.profile https_spiffe"},
	{"fail/termination of https_spiffe", base + "ingress: {enabled: true, mode: termination, host: h.example}\n", "no SPIFFE ID"},
	{"fail/ingress without host", base + "ingress: {enabled: true}\n", "ingress.host is required"},
	{"fail/https_web without certificate", base + "bundleEndpoint: {profile: https_web}\n", "web.secretName"},
	{"fail/postgres without seal key", base + "datastore: {driver: postgres, dsn: postgres://db/treaty}\n", "ca.sealKeySecret"},
	{"fail/postgres without dsn", base + "datastore: {driver: postgres}\nca: {sealKeySecret: s}\n", "datastore.dsn"},
	{"fail/unknown driver", base + "datastore: {driver: mysql}\n", "sqlite or postgres"},
}

func TestRenderRefuses(t *testing.T) {
	for _, tt := range failCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// checkPorts: the container listens where treaty.yaml says, the Service
// and the NetworkPolicy point at those ports, the probes at telemetry.
func checkPorts(t *testing.T, r *rendered, c *config.Config, pod *corev1.PodSpec) {
	t.Helper()
	ports := containerPorts(pod.Containers[0])
	wantPort(t, "bundle", ports, c.BundleEndpoint.Address)
	wantPort(t, "metrics", ports, c.Telemetry.Address)
	if c.AgentAPI.Address != "" {
		wantPort(t, "agent", ports, c.AgentAPI.Address)
	}
	for _, p := range []*corev1.Probe{pod.Containers[0].LivenessProbe, pod.Containers[0].ReadinessProbe, pod.Containers[0].StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v is not an HTTP GET on the metrics port", p)
		}
	}
	if len(r.services) != 1 {
		t.Fatalf("%d Services, want 1", len(r.services))
	}
	for _, sp := range r.services[0].Spec.Ports {
		if _, ok := ports[sp.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %s, which the container does not have", sp.Name, sp.TargetPort.String())
		}
	}
	for _, np := range r.policies {
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if !slices.Contains(mapValues(ports), p.Port.IntVal) {
					t.Errorf("NetworkPolicy admits port %d, which the container does not listen on", p.Port.IntVal)
				}
			}
		}
	}
}

func containerPorts(c corev1.Container) map[string]int32 {
	m := map[string]int32{}
	for _, p := range c.Ports {
		m[p.Name] = p.ContainerPort
	}
	return m
}

func mapValues(m map[string]int32) []int32 {
	var v []int32
	for _, p := range m {
		v = append(v, p)
	}
	return v
}

func wantPort(t *testing.T, name string, ports map[string]int32, address string) {
	t.Helper()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		t.Fatalf("%s address %q: %v", name, address, err)
	}
	if host != "0.0.0.0" {
		t.Errorf("%s listens on %s: the kubelet and the Service cannot reach it", name, host)
	}
	if strconv.Itoa(int(ports[name])) != port {
		t.Errorf("container port %s is %d, treaty.yaml listens on %s", name, ports[name], port)
	}
}

// checkAdminSocket: the admin socket is in the memory-backed "run" volume
// of this pod alone, and no port of any kind leads to it.
func checkAdminSocket(t *testing.T, r *rendered, c *config.Config, pod *corev1.PodSpec) {
	t.Helper()
	vol := volumeAt(t, pod, pod.Containers[0], c.AdminSocket)
	if vol.EmptyDir == nil || vol.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("the admin socket %s is on volume %s, not a memory emptyDir of the pod", c.AdminSocket, vol.Name)
	}
	for _, svc := range r.services {
		for _, p := range svc.Spec.Ports {
			if !slices.Contains([]string{"bundle", "metrics", "agent"}, p.Name) {
				t.Errorf("Service exposes port %s", p.Name)
			}
		}
	}
	for _, ing := range r.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service.Port.Name != "bundle" {
					t.Errorf("Ingress leads to port %q, not the bundle endpoint", p.Backend.Service.Port.Name)
				}
			}
		}
	}
}

// checkKeys: with sqlite, data_dir (database and CA keys) is the
// StatefulSet's PersistentVolumeClaim; with postgres, the seal key comes
// from a Secret only the init container mounts, copied to the memory volume.
func checkKeys(t *testing.T, r *rendered, c *config.Config, pod *corev1.PodSpec) {
	t.Helper()
	vol := volumeAt(t, pod, pod.Containers[0], c.DataDir)
	if c.Datastore.Driver == config.DriverSQLite {
		if len(r.statefulSets) != 1 || vol != nil && vol.Name != r.statefulSets[0].Spec.VolumeClaimTemplates[0].Name {
			t.Fatalf("data_dir %s is not on the StatefulSet's PersistentVolumeClaim", c.DataDir)
		}
		return
	}
	seal := volumeAt(t, pod, pod.Containers[0], c.CA.KeySealFile)
	if seal.EmptyDir == nil || seal.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("key_seal_file %s is not on a memory volume", c.CA.KeySealFile)
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if v := volume(pod, m.Name); v != nil && v.Secret != nil && v.Secret.SecretName == "treaty-seal" {
			t.Errorf("the treaty container mounts the seal key Secret itself")
		}
	}
}

// volumeAt returns the volume that file (or directory) path is on in the
// container. A path on no volume is on the read-only root: a failure. For
// a StatefulSet's claim template the volume is nil and the name is
// checked by the caller.
func volumeAt(t *testing.T, pod *corev1.PodSpec, c corev1.Container, p string) *corev1.Volume {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		t.Fatalf("%s is on no volume of container %s", p, c.Name)
	}
	if v := volume(pod, best.Name); v != nil {
		return v
	}
	return &corev1.Volume{Name: best.Name}
}

func volume(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// checkSecurity: treaty runs as a user other than root, on a read-only
// root, without privileges or capabilities, and its pod carries no
// service account token.
func checkSecurity(t *testing.T, pod *corev1.PodSpec) {
	t.Helper()
	sc := pod.Containers[0].SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext on the treaty container")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot is not true")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root file system is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Error("capabilities are not all dropped")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Error("the pod runs as root")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it never uses")
	}
}

func checkPDB(t *testing.T, r *rendered, replicas int32) {
	t.Helper()
	if want := replicas > 1; want != (len(r.pdbs) == 1) {
		t.Errorf("%d replicas with %d PodDisruptionBudgets", replicas, len(r.pdbs))
	}
}

// checkIngress: each NGINX shape has the annotations it needs and goes
// with its profile, as in deploy/nginx.
func checkIngress(t *testing.T, r *rendered, c *config.Config) {
	t.Helper()
	for _, ing := range r.ingresses {
		a := ing.Annotations
		if a["nginx.ingress.kubernetes.io/backend-protocol"] != "HTTPS" {
			t.Error("NGINX talks plain HTTP to the bundle endpoint, which serves only TLS")
		}
		passthrough := a["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"
		switch c.BundleEndpoint.Profile {
		case "https_spiffe":
			if !passthrough || len(ing.Spec.TLS) > 0 {
				t.Error("https_spiffe behind an Ingress that is not ssl-passthrough: partners would see NGINX's certificate")
			}
		case "https_web":
			if passthrough || len(ing.Spec.TLS) == 0 || a["nginx.ingress.kubernetes.io/proxy-ssl-verify"] != "on" {
				t.Errorf("https_web Ingress: want TLS termination and a verified backend, got annotations %v", a)
			}
		}
	}
}

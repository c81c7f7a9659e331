package deploy

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // the bootstrap's typed_extension_protocol_options
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/xdsbridge/xdsbridge/internal/config"
)

const k8sDir = "kubernetes"

// kustomization is the part of kustomization.yaml this repository uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests are the decoded objects of deploy/kubernetes.
type manifests struct {
	kust       kustomization
	namespace  *corev1.Namespace
	account    *corev1.ServiceAccount
	configMap  *corev1.ConfigMap
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
}

// loadManifests decodes every file the kustomization lists with the
// Kubernetes API's own strict decoder: an unknown or duplicated field, or a
// value of the wrong type, fails the test, as `kubectl apply
// --validate=strict` would.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	var m manifests
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(k8sDir, "kustomization.yaml")), &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion/kind %s/%s", m.kust.APIVersion, m.kust.Kind)
	}
	// Every manifest in the directory is listed, and every listed file exists.
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	listed := slices.Sorted(slices.Values(m.kust.Resources))
	if !slices.Equal(listed, onDisk) {
		t.Fatalf("kustomization resources %v, want the directory's manifests %v", listed, onDisk)
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	for _, name := range m.kust.Resources {
		obj, gvk, err := dec.Decode(readFile(t, filepath.Join(k8sDir, name)), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		meta, ok := obj.(interface{ GetNamespace() string })
		if !ok {
			t.Fatalf("%s: %v has no metadata", name, gvk)
		}
		if _, isNS := obj.(*corev1.Namespace); !isNS && meta.GetNamespace() != m.kust.Namespace {
			t.Errorf("%s: namespace %q, want the kustomization's %q", name, meta.GetNamespace(), m.kust.Namespace)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			m.namespace = o
		case *corev1.ServiceAccount:
			m.account = o
		case *corev1.ConfigMap:
			m.configMap = o
		case *appsv1.Deployment:
			m.deployment = o
		case *corev1.Service:
			m.service = o
		case *policyv1.PodDisruptionBudget:
			m.pdb = o
		default:
			t.Fatalf("%s: unexpected %v", name, gvk)
		}
	}
	if m.namespace == nil || m.account == nil || m.configMap == nil || m.deployment == nil || m.service == nil || m.pdb == nil {
		t.Fatalf("want a Namespace, ServiceAccount, ConfigMap, Deployment, Service and PodDisruptionBudget")
	}
	if m.namespace.Name != m.kust.Namespace {
		t.Errorf("Namespace %q, want the kustomization's %q", m.namespace.Name, m.kust.Namespace)
	}
	return &m
}

// TestKustomizationDecodesStrictly: a misspelt field is caught, so the
// other tests' decoding means something.
func TestKustomizationDecodesStrictly(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	good := readFile(t, filepath.Join(k8sDir, "deployment.yaml"))
	for name, bad := range map[string]string{
		"unknown field":   strings.Replace(string(good), "readinessProbe:", "readynessProbe:", 1),
		"wrong case":      strings.Replace(string(good), "readinessProbe:", "ReadinessProbe:", 1),
		"duplicate field": strings.Replace(string(good), "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", 1),
	} {
		if bad == string(good) {
			t.Fatalf("%s: the mutation did not apply", name)
		}
		if _, _, err := dec.Decode([]byte(bad), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// shippedConfig parses the ConfigMap's plugins.yaml with xdsbridge's own
// configuration parser.
func shippedConfig(t *testing.T, m *manifests) (*config.Config, string) {
	t.Helper()
	data, ok := m.configMap.Data["plugins.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no plugins.yaml", m.configMap.Name)
	}
	cfg, err := config.Parse("plugins.yaml", []byte(data))
	if err != nil {
		t.Fatalf("the ConfigMap's plugins.yaml:\n%v", err)
	}
	return cfg, data
}

func port(t *testing.T, what, addr string) int32 {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsLoopback() {
		t.Errorf("%s %q: listens on loopback or a name; in a pod it must listen on the pod's address (0.0.0.0)", what, addr)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	return int32(n)
}

// TestKubernetesManifests checks that the manifests fit together and fit
// the shipped configuration: probes on the admin port and paths, the
// Service's ports on the ports xdsbridge listens on, the config and token
// mounted where plugins.yaml and the arguments say, and the security
// settings.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	cfg, _ := shippedConfig(t, m)
	d := m.deployment
	pod := d.Spec.Template.Spec
	labels := d.Spec.Template.Labels

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment replicas %v, want 2", d.Spec.Replicas)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Named container ports match where the configuration listens.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	wantPorts := map[string]int32{
		"xds-grpc": port(t, "xds.grpc_address", cfg.XDS.GRPCAddress),
		"xds-rest": port(t, "xds.rest_address", cfg.XDS.RESTAddress),
		"admin":    port(t, "admin.address", cfg.Admin.Address),
	}
	for name, want := range wantPorts {
		if ports[name] != want {
			t.Errorf("container port %q = %d, want %d from the ConfigMap's plugins.yaml", name, ports[name], want)
		}
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return ports[p.StrVal]
		}
		return p.IntVal
	}

	// Probes: /readyz and /healthz on the admin port, plain HTTP.
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET", pr.name)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path || resolve(g.Port) != wantPorts["admin"] || (g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP) {
			t.Errorf("%s probe: %s %s port %v (= %d), want HTTP %s on the admin port %d", pr.name, g.Scheme, g.Path, g.Port.String(), resolve(g.Port), pr.path, wantPorts["admin"])
		}
	}

	// The Service: xDS gRPC with appProtocol grpc, REST and admin, onto the
	// container's ports, selecting the pods.
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range m.service.Spec.Ports {
		svcPorts[p.Name] = p
	}
	for name, want := range wantPorts {
		sp, ok := svcPorts[name]
		if !ok {
			t.Errorf("Service has no port %q", name)
			continue
		}
		if got := resolve(sp.TargetPort); got != want {
			t.Errorf("Service port %q targets %d, want %d", name, got, want)
		}
	}
	if ap := svcPorts["xds-grpc"].AppProtocol; ap == nil || *ap != "grpc" {
		t.Errorf("Service port xds-grpc: appProtocol %v, want grpc", ap)
	}
	for name, sel := range map[string]map[string]string{"Service": m.service.Spec.Selector, "PodDisruptionBudget": m.pdb.Spec.Selector.MatchLabels, "Deployment": d.Spec.Selector.MatchLabels} {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", name)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry (%v)", name, k, v, labels)
			}
		}
	}
	if mu := m.pdb.Spec.MinAvailable; mu == nil || mu.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1 (of 2 replicas)", mu)
	}

	// The configuration file: --config names a file of the ConfigMap where it
	// is mounted; admin.token_file lies in the mounted Secret.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || c.Args[0] != "run" {
		t.Fatalf("args %q: want run --config FILE", c.Args)
	}
	confPath := c.Args[i+1]
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(path string) (corev1.VolumeMount, corev1.Volume, bool) {
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(path) == vm.MountPath {
				return vm, volumes[vm.Name], true
			}
		}
		return corev1.VolumeMount{}, corev1.Volume{}, false
	}
	if _, v, ok := mountOf(confPath); !ok || v.ConfigMap == nil || v.ConfigMap.Name != m.configMap.Name {
		t.Errorf("--config %s is not in a mount of ConfigMap %s", confPath, m.configMap.Name)
	} else if _, ok := m.configMap.Data[filepath.Base(confPath)]; !ok {
		t.Errorf("--config %s: ConfigMap %s has no key %s", confPath, m.configMap.Name, filepath.Base(confPath))
	}
	if cfg.Admin.TokenFile == "" {
		t.Errorf("admin listens off loopback without admin.token_file: xdsbridge refuses to start")
	} else if _, v, ok := mountOf(cfg.Admin.TokenFile); !ok || v.Secret == nil {
		t.Errorf("admin.token_file %s is not in a mounted Secret", cfg.Admin.TokenFile)
	}
	// go-plugin's sockets need a writable temporary directory.
	if vm, ok := mounts["tmp"]; !ok || vm.MountPath != "/tmp" || volumes["tmp"].EmptyDir == nil {
		t.Errorf("want an emptyDir mounted at /tmp for the plugins' sockets (the root file system is read-only)")
	}

	// Security context.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("want pod and container security contexts")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod: want runAsNonRoot with a non-zero runAsUser")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod: want seccompProfile RuntimeDefault")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container: want readOnlyRootFilesystem")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container: want allowPrivilegeEscalation false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container: privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container: want capabilities drop [ALL], add none")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.ServiceAccountName != m.account.Name {
		t.Errorf("pod: want service account %s without a mounted token", m.account.Name)
	}

	// Resources: requests for CPU and memory, a memory limit no lower.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("resources: want CPU and memory requests and a memory limit ≥ the request, got %v / %v", req, lim)
	}

	// The image is the one make image builds, renamed by the kustomization.
	if c.Image != "xdsbridge" || len(m.kust.Images) != 1 || m.kust.Images[0].Name != "xdsbridge" {
		t.Errorf("image %q: want \"xdsbridge\", renamed in kustomization.yaml's images", c.Image)
	}

	// The consul plugin reads consul-server.consul:8500.
	i = slices.IndexFunc(cfg.Plugins, func(p config.Plugin) bool { return p.Type == "consul" })
	if i < 0 || !strings.Contains(string(cfg.Plugins[i].Config), "address: consul-server.consul:8500") {
		t.Errorf("want a consul plugin reading consul-server.consul:8500")
	}
}

// TestKubernetesConfigValidates runs `xdsbridge validate` on the
// ConfigMap's plugins.yaml, which starts every plugin in validate-only mode
// to check its config block.
func TestKubernetesConfigValidates(t *testing.T) {
	m := loadManifests(t)
	_, data := shippedConfig(t, m)
	path := filepath.Join(t.TempDir(), "plugins.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bridgeBin, "validate", "--config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok (1 plugins)") {
		t.Fatalf("xdsbridge validate: %v\n%s", err, out)
	}
}

// TestEnvoySidecarBootstrap decodes the example Envoy bootstrap into
// Envoy's Bootstrap message (unknown fields are errors), validates it with
// Envoy's own constraints, and checks that its xds_cluster points at the
// Service's xDS port over HTTP/2 and that ADS carries clusters and
// listeners.
func TestEnvoySidecarBootstrap(t *testing.T) {
	m := loadManifests(t)
	js, err := yaml.YAMLToJSON(readFile(t, filepath.Join(k8sDir, "envoy-sidecar", "bootstrap.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType().String() != "GRPC" || len(ads.GetGrpcServices()) != 1 {
		t.Fatalf("bootstrap: want ADS over gRPC")
	}
	if b.GetDynamicResources().GetCdsConfig().GetAds() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Errorf("bootstrap: want CDS and LDS over ADS")
	}
	name := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	i := slices.IndexFunc(b.GetStaticResources().GetClusters(), func(c *clusterv3.Cluster) bool { return c.GetName() == name })
	if i < 0 {
		t.Fatalf("bootstrap: no static cluster %q for ADS", name)
	}
	xc := b.GetStaticResources().GetClusters()[i]
	if _, ok := xc.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		t.Errorf("bootstrap: cluster %s does not speak HTTP/2 (gRPC needs it)", name)
	}
	sa := xc.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	wantHost := m.service.Name + "." + m.service.Namespace + ".svc.cluster.local"
	var grpcPort int32
	for _, p := range m.service.Spec.Ports {
		if p.Name == "xds-grpc" {
			grpcPort = p.Port
		}
	}
	if sa.GetAddress() != wantHost || int32(sa.GetPortValue()) != grpcPort {
		t.Errorf("bootstrap: %s points at %s:%d, want the Service %s:%d", name, sa.GetAddress(), sa.GetPortValue(), wantHost, grpcPort)
	}
}

// TestKubernetesConfigRuns runs xdsbridge on the ConfigMap's plugins.yaml as
// a pod would, with only the addresses moved to free loopback ports, the
// token in a file of its own and Consul unreachable: the liveness probe's
// /healthz answers without the token, the readiness probe's /readyz answers
// 503 without it (the replica stays out of the Service) while Consul has not
// delivered its catalog, and /metrics needs the token.
func TestKubernetesConfigRuns(t *testing.T) {
	m := loadManifests(t)
	cfg, data := shippedConfig(t, m)
	dir := t.TempDir()
	token := "deploy-test-token-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freePort(t)
	consul := freePort(t) // closed: nothing answers there
	i := slices.IndexFunc(cfg.Plugins, func(p config.Plugin) bool { return p.Type == "consul" })
	if i < 0 {
		t.Fatal("no consul plugin in the ConfigMap's plugins.yaml")
	}
	for old, repl := range map[string]string{
		cfg.XDS.GRPCAddress:         freePort(t),
		cfg.XDS.RESTAddress:         freePort(t),
		cfg.Admin.Address:           admin,
		cfg.Admin.TokenFile:         filepath.Join(dir, "token"),
		"consul-server.consul:8500": consul,
	} {
		if strings.Count(data, old) != 1 {
			t.Fatalf("plugins.yaml: want %q once", old)
		}
		data = strings.Replace(data, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins.yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	runBridge(t, bridgeBin, dir, admin, "/healthz")

	get := func(path, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Consul unreachable: %d %s, want 503", code, body)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	code, body := get("/metrics", token)
	if code != http.StatusOK {
		t.Fatalf("/metrics with the token: %d", code)
	}
	for _, want := range []string{"xdsbridge_ready 0", `xdsbridge_source_connected_state{source="consul"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

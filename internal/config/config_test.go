package config

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

const fullFile = `trust_domain: example.org
data_dir: /var/lib/treaty
admin_socket: /run/treaty/admin.sock
workload_socket: /run/treaty/workload.sock
log_level: Warn
ca:
  key_type: rsa-2048
  ca_ttl: 10d
  x509_svid_ttl: 2h
  jwt_svid_ttl: 10m
  upstream:
    cert_file: /etc/treaty/up.crt
    key_file: /etc/treaty/up.key
    bundle_file: /etc/treaty/up-bundle.pem
bundle_endpoint:
  address: 0.0.0.0:8443
  refresh_hint: 1m
  profile: https_web
  endpoint_spiffe_id: spiffe://example.org/bundle
  web:
    cert_file: /etc/treaty/web.crt
    key_file: /etc/treaty/web.key
  rate_limit: 2.5
  max_conns_per_client: 500
  max_conns: 8000
  client_certificate_header: X-SPIFFE-Client-Cert
  trusted_proxies: [127.0.0.1, 10.0.0.0/8, "::1"]
federation:
  onboarding_dir: /etc/treaty/federation
  class_name: treaty
telemetry:
  address: 127.0.0.1:9988
agent_api:
  address: 0.0.0.0:8081
  agent_svid_ttl: 30m
  x509pop:
    ca_bundle_path: /etc/treaty/node-ca.pem
    agent_path_template: /x509pop/{{ .Subject.CommonName }}
datastore:
  driver: sqlite
`

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(td spiffeid.TrustDomain) Config
	}{
		{
			name: "ok/minimal",
			yaml: "trust_domain: example.org\n",
			want: defaults,
		},
		{
			name: "ok/full",
			yaml: fullFile,
			want: func(td spiffeid.TrustDomain) Config {
				return Config{
					TrustDomain:    td,
					DataDir:        "/var/lib/treaty",
					AdminSocket:    "/run/treaty/admin.sock",
					WorkloadSocket: "/run/treaty/workload.sock",
					LogLevel:       slog.LevelWarn,
					CA: CA{
						KeyType: ca.RSA2048, CATTL: 240 * time.Hour, X509SVIDTTL: 2 * time.Hour, JWTSVIDTTL: 10 * time.Minute,
						Upstream: &Upstream{CertFile: "/etc/treaty/up.crt", KeyFile: "/etc/treaty/up.key", BundleFile: "/etc/treaty/up-bundle.pem"},
					},
					BundleEndpoint: BundleEndpoint{
						Address: "0.0.0.0:8443", RefreshHint: time.Minute, Profile: profile.HTTPSWeb,
						EndpointSPIFFEID:        spiffeid.RequireFromString("spiffe://example.org/bundle"),
						Web:                     Web{CertFile: "/etc/treaty/web.crt", KeyFile: "/etc/treaty/web.key"},
						RateLimit:               2.5,
						MaxConnsPerClient:       500,
						MaxConns:                8000,
						ClientCertificateHeader: "X-SPIFFE-Client-Cert",
						TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
							netip.MustParsePrefix("::1/128")},
					},
					Federation: Federation{OnboardingDir: "/etc/treaty/federation", ClassName: "treaty"},
					Telemetry:  Telemetry{Address: "127.0.0.1:9988"},
					AgentAPI: AgentAPI{Address: "0.0.0.0:8081", AgentSVIDTTL: 30 * time.Minute, X509POP: X509POP{
						CABundlePath: "/etc/treaty/node-ca.pem", AgentPathTemplate: "/x509pop/{{ .Subject.CommonName }}",
					}},
					Datastore: Datastore{Driver: DriverSQLite},
				}
			},
		},
		{
			name: "ok/defaults for empty sections",
			yaml: "trust_domain: example.org\nca:\nbundle_endpoint: {}\nfederation:\ntelemetry:\nagent_api: {}\ndatastore:\nlog_level:\ndata_dir: ''\n",
			want: defaults,
		},
		{
			name: "ok/trust domain as spiffe id",
			yaml: "trust_domain: spiffe://example.org\n",
			want: defaults,
		},
		{
			name: "ok/days suffix",
			yaml: "trust_domain: example.org\nca:\n  ca_ttl: 1d12h\n",
			want: func(td spiffeid.TrustDomain) Config {
				c := defaults(td)
				c.CA.CATTL = 36 * time.Hour
				return c
			},
		},
		{
			name: "ok/anchors and aliases",
			yaml: "trust_domain: &td example.org\nfederation:\n  class_name: *td\n",
			want: func(td spiffeid.TrustDomain) Config {
				c := defaults(td)
				c.Federation.ClassName = "example.org"
				return c
			},
		},
		{
			name: "ok/https_web without address needs no files",
			yaml: "trust_domain: example.org\nbundle_endpoint:\n  profile: https_web\n",
			want: func(td spiffeid.TrustDomain) Config {
				c := defaults(td)
				c.BundleEndpoint.Profile = profile.HTTPSWeb
				return c
			},
		},
		{
			name: "ok/agent api with join tokens only",
			yaml: "trust_domain: example.org\nagent_api:\n  address: 127.0.0.1:8081\n  x509pop: {}\n",
			want: func(td spiffeid.TrustDomain) Config {
				c := defaults(td)
				c.AgentAPI.Address = "127.0.0.1:8081"
				return c
			},
		},
		{
			name: "ok/empty second document",
			yaml: "trust_domain: example.org\n---\n",
			want: defaults,
		},
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "treaty.yaml")
			require.NoError(t, err)
			require.Equal(t, tt.want(td), exported(c))
		})
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		want string
	}{
		{"fail/empty file", "", 0, "the file is empty; it needs at least trust_domain"},
		{"fail/only comments", "# nothing\n", 0, "the file is empty"},
		{"fail/empty document", "---\n", 0, "the file is empty"},
		{"fail/top level list", "- trust_domain: example.org\n", 1, "the top level must be a mapping"},
		{"fail/syntax error", "trust_domain: example.org\nca:\n  ca_ttl: 1h\n ca_ttl: 2h\n", 4, "not valid YAML: did not find expected key"},
		{"fail/unclosed flow", "trust_domain: [example.org\n", 1, "not valid YAML"},
		{"fail/two documents", "trust_domain: example.org\n---\ndata_dir: x\n", 2, "more than one YAML document"},
		{"fail/trust domain missing", "data_dir: ./d\n", 0, "trust_domain is required"},
		{"fail/trust domain null", "data_dir: ./d\ntrust_domain:\n", 2, "trust_domain is required"},
		{"fail/trust domain uppercase", "trust_domain: Alpha.Test\n", 1,
			`trust_domain: "Alpha.Test" is not a valid trust domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores; use lowercase letters`},
		{"fail/trust domain with path", "trust_domain: spiffe://example.org/x\n", 1, "is a SPIFFE ID with a path; write only the trust domain name, example.org"},
		{"fail/trust domain list", "trust_domain: [a]\n", 1, "trust_domain must be text, got a list"},
		{"fail/bool as text", "trust_domain: example.org\ndata_dir: true\n", 2, "data_dir must be text, got the boolean true"},
		{"fail/unknown key", "trust_domain: example.org\nfrobnicate: 1\n", 2,
			`unknown key "frobnicate" at the top level; the known keys are trust_domain, data_dir, admin_socket, workload_socket, audit_log, log_level, ca, bundle_endpoint, federation, telemetry, agent_api, datastore`},
		{"fail/unknown key with typo", "trust_domian: example.org\n", 1, `unknown key "trust_domian" at the top level; the known keys are trust_domain, `},
		{"fail/typo suggestion", "trust_domian: example.org\n", 1, "did you mean trust_domain?"},
		{"fail/key in wrong section", "trust_domain: example.org\nrefresh_hint: 5m\n", 2, "; move it under bundle_endpoint"},
		{"fail/unknown key in ca", "trust_domain: example.org\nca:\n  foo: 1\n", 3,
			`unknown key "foo" in ca; the known keys are key_type, ca_ttl, x509_svid_ttl, jwt_svid_ttl, upstream`},
		{"fail/unknown key in web", "trust_domain: example.org\nbundle_endpoint:\n  web:\n    cert_file: a\n    foo: b\n", 5,
			`unknown key "foo" in bundle_endpoint.web; the known keys are cert_file, key_file, acme`},
		{"fail/odd unknown key", "trust_domain: example.org\n\"a b\": 1\n", 2, `unknown key "a b" at the top level`},
		{"fail/complex key", "trust_domain: example.org\n? [a]\n: 1\n", 2, "keys must be plain words, got a list"},
		{"fail/merge key", "trust_domain: example.org\nbase: &b {class_name: x}\nfederation:\n  <<: *b\n", 4, "merge keys (<<) are not supported"},
		{"fail/duplicate key", "trust_domain: example.org\nca:\n  ca_ttl: 1h\n  ca_ttl: 2h\n", 4, `duplicate key "ca_ttl"; it is already set on line 3`},
		{"fail/section not a mapping", "trust_domain: example.org\nca: 5\n", 2, "ca must be a mapping, got the number 5; its keys are key_type, ca_ttl"},
		{"fail/bad duration", "trust_domain: example.org\nca:\n  ca_ttl: 7x\n", 3, `ca.ca_ttl: "7x" is not a duration; write it like 720h or 30m`},
		{"fail/duration without unit", "trust_domain: example.org\nca:\n  ca_ttl: 3600\n", 3, `"3600" is not a duration`},
		{"fail/bad days", "trust_domain: example.org\nca:\n  ca_ttl: 1d-1h\n", 3, `"1d-1h" is not a duration`},
		{"fail/zero duration", "trust_domain: example.org\nca:\n  jwt_svid_ttl: 0s\n", 3, `ca.jwt_svid_ttl: "0s" must be greater than zero`},
		{"fail/negative duration", "trust_domain: example.org\nca:\n  jwt_svid_ttl: -5m\n", 3, `"-5m" must be greater than zero`},
		{"fail/duration is a mapping", "trust_domain: example.org\nca:\n  ca_ttl: {a: 1}\n", 3, "ca.ca_ttl must be a duration, got a mapping"},
		{"fail/ca_ttl too short for refresh hint", "trust_domain: example.org\nca:\n  ca_ttl: 1h\nbundle_endpoint:\n  refresh_hint: 10m\n", 3,
			"ca.ca_ttl: 1h is too short for bundle_endpoint.refresh_hint 10m: the next CA is published at half the CA lifetime and activated at five sixths of it"},
		{"fail/ca_ttl fix proposes values", "trust_domain: example.org\nca:\n  ca_ttl: 1h\nbundle_endpoint:\n  refresh_hint: 10m\n", 3,
			"set ca_ttl to 1h30m or more, or refresh_hint to 6m40s or less"},
		{"fail/refresh hint line when ca_ttl defaulted", "trust_domain: example.org\nbundle_endpoint:\n  refresh_hint: 4d\n", 3,
			"ca.ca_ttl: 30d is too short for bundle_endpoint.refresh_hint 4d"},
		{"fail/x509 ttl not shorter than ca ttl", "trust_domain: example.org\nca:\n  ca_ttl: 2h\n  x509_svid_ttl: 2h\nbundle_endpoint:\n  refresh_hint: 1m\n", 4,
			"ca.x509_svid_ttl: 2h must be shorter than ca.ca_ttl (2h)"},
		{"fail/jwt ttl longer than ca ttl", "trust_domain: example.org\nca:\n  ca_ttl: 1h\n  x509_svid_ttl: 5m\n  jwt_svid_ttl: 3h\nbundle_endpoint:\n  refresh_hint: 1m\n", 5,
			"ca.jwt_svid_ttl: 3h must be shorter than ca.ca_ttl (1h)"},
		{"fail/default x509 ttl not shorter than ca ttl", "trust_domain: example.org\nca:\n  ca_ttl: 1h\nbundle_endpoint:\n  refresh_hint: 1m\n", 3,
			"ca.x509_svid_ttl: 1h (the default) must be shorter than ca.ca_ttl (1h)"},
		{"fail/key type", "trust_domain: example.org\nca:\n  key_type: ed25519\n", 3,
			`ca.key_type: unknown key type "ed25519": use one of ec-p256, ec-p384, rsa-2048, rsa-4096`},
		{"fail/upstream without key", "trust_domain: example.org\nca:\n  upstream:\n    cert_file: a.crt\n", 3,
			"ca.upstream.key_file is required when ca.upstream is set"},
		{"fail/upstream empty", "trust_domain: example.org\nca:\n  upstream:\n", 3, "ca.upstream.cert_file is required when ca.upstream is set"},
		{"fail/refresh hint too short", "trust_domain: example.org\nbundle_endpoint:\n  refresh_hint: 500ms\n", 3, "bundle_endpoint.refresh_hint: 500ms is too short; use 1s or more"},
		{"fail/refresh hint too long", "trust_domain: example.org\nbundle_endpoint:\n  refresh_hint: 8d\n", 3, "bundle_endpoint.refresh_hint: 8d is too long"},
		{"fail/profile", "trust_domain: example.org\nbundle_endpoint:\n  profile: https\n", 3,
			`bundle_endpoint.profile: "https" is not a bundle endpoint profile; use https_spiffe or https_web`},
		{"fail/https_web without cert", "trust_domain: example.org\nbundle_endpoint:\n  address: :8443\n  profile: https_web\n  web:\n    key_file: k\n", 4,
			"bundle_endpoint.web.cert_file is required by profile https_web"},
		{"fail/https_spiffe with web cert", "trust_domain: example.org\nbundle_endpoint:\n  web:\n    cert_file: c\n", 4,
			"bundle_endpoint.web.cert_file is only used by profile https_web"},
		{"fail/endpoint id in other trust domain", "trust_domain: example.org\nbundle_endpoint:\n  endpoint_spiffe_id: spiffe://other.org/x\n", 3,
			"bundle_endpoint.endpoint_spiffe_id: spiffe://other.org/x is not in trust domain example.org"},
		{"fail/endpoint id not an id", "trust_domain: example.org\nbundle_endpoint:\n  endpoint_spiffe_id: example.org/x\n", 3,
			`bundle_endpoint.endpoint_spiffe_id: "example.org/x" is not a SPIFFE ID`},
		{"fail/address without port", "trust_domain: example.org\nbundle_endpoint:\n  address: localhost\n", 3,
			`bundle_endpoint.address: "localhost" is not host:port (missing port in address); write it like 127.0.0.1:8443`},
		{"fail/address with bad port", "trust_domain: example.org\nbundle_endpoint:\n  address: localhost:99999\n", 3,
			`has port "99999"; the port must be a number from 0 to 65535`},
		{"fail/telemetry address", "trust_domain: example.org\ntelemetry:\n  address: 9988\n", 3, `telemetry.address: "9988" is not host:port`},
		{"fail/telemetry on the bundle endpoint address", "trust_domain: example.org\nbundle_endpoint:\n  address: :8443\ntelemetry:\n  address: :8443\n", 5,
			`telemetry.address: ":8443" is also bundle_endpoint.address`},
		{"fail/client certificate header without proxies", "trust_domain: example.org\nbundle_endpoint:\n  client_certificate_header: X-Cert\n", 3,
			"bundle_endpoint.client_certificate_header needs bundle_endpoint.trusted_proxies"},
		{"fail/proxies without a header", "trust_domain: example.org\nbundle_endpoint:\n  trusted_proxies: [127.0.0.1]\n", 3,
			"bundle_endpoint.trusted_proxies is only used with bundle_endpoint.client_certificate_header"},
		{"fail/not a header name", "trust_domain: example.org\nbundle_endpoint:\n  client_certificate_header: 'X Cert'\n  trusted_proxies: [127.0.0.1]\n", 3,
			`"X Cert" is not an HTTP header name`},
		{"fail/proxy not an address", "trust_domain: example.org\nbundle_endpoint:\n  client_certificate_header: X-Cert\n  trusted_proxies: [127.0.0.1, nginx]\n", 4,
			`bundle_endpoint.trusted_proxies[1]: "nginx" is neither an IP address nor a CIDR prefix`},
		{"fail/every address a proxy", "trust_domain: example.org\nbundle_endpoint:\n  client_certificate_header: X-Cert\n  trusted_proxies: ['::/0']\n", 4,
			"bundle_endpoint.trusted_proxies: ::/0 trusts every address, so any client could claim a partner's fetch"},
		{"fail/proxies not a list", "trust_domain: example.org\nbundle_endpoint:\n  client_certificate_header: X-Cert\n  trusted_proxies: 127.0.0.1\n", 4,
			`bundle_endpoint.trusted_proxies must be a list, got "127.0.0.1"; e.g. trusted_proxies: [127.0.0.1/32]`},
		{"fail/rate limit negative", "trust_domain: example.org\nbundle_endpoint:\n  rate_limit: -1\n", 3, "bundle_endpoint.rate_limit: -1 is not allowed"},
		{"fail/rate limit not a number", "trust_domain: example.org\nbundle_endpoint:\n  rate_limit: lots\n", 3, `bundle_endpoint.rate_limit: "lots" is not a number`},
		{"fail/connection cap zero", "trust_domain: example.org\nbundle_endpoint:\n  max_conns_per_client: 0\n", 3, "bundle_endpoint.max_conns_per_client: \"0\" is not allowed; write a whole number from 1 to 1000000"},
		{"fail/connection cap not a number", "trust_domain: example.org\nbundle_endpoint:\n  max_conns: many\n", 3, `bundle_endpoint.max_conns: "many" is not allowed`},
		{"fail/rate limit nan", "trust_domain: example.org\nbundle_endpoint:\n  rate_limit: NaN\n", 3, `"NaN" is not a number`},
		{"fail/socket path too long", "trust_domain: example.org\nadmin_socket: /" + strings.Repeat("a", 110) + "\n", 2,
			"is 111 bytes long; unix socket paths must be shorter than 104 bytes"},
		{"fail/same sockets", "trust_domain: example.org\nadmin_socket: /tmp/s.sock\nworkload_socket: /tmp/./s.sock\n", 3,
			`workload_socket: "/tmp/./s.sock" is also admin_socket`},
		{"fail/gateway with agents", "trust_domain: example.org\nspire_server:\n  admin_socket: /run/spire/api.sock\nagent_api:\n  address: 0.0.0.0:8081\n", 5,
			"agent_api.address: with spire_server.admin_socket treaty is the federation layer of that SPIRE server"},
		{"fail/gateway with a CA setting", "trust_domain: example.org\nspire_server:\n  admin_socket: /run/spire/api.sock\nca:\n  ca_ttl: 48h\n", 5,
			"ca.ca_ttl: with spire_server.admin_socket"},
		{"fail/gateway endpoint id reserved", "trust_domain: example.org\nspire_server:\n  admin_socket: /run/spire/api.sock\nbundle_endpoint:\n  endpoint_spiffe_id: spiffe://example.org/spire/server\n", 5,
			"is in SPIRE's reserved namespace (/spire/)"},
		{"fail/gateway on postgres", "trust_domain: example.org\nspire_server:\n  admin_socket: /run/spire/api.sock\ndatastore:\n  driver: postgres\n  dsn: postgres://x\n", 5,
			"several replicas in front of one SPIRE server are not supported yet"},
		{"fail/sqlite with key_seal_file", "trust_domain: example.org\nca:\n  key_seal_file: /etc/seal\n", 3, "ca.key_seal_file is only used with datastore driver postgres"},
		{"fail/sqlite with password_file", "trust_domain: example.org\ndatastore:\n  password_file: /etc/pw\n", 3, "datastore.password_file is only used by driver postgres"},
		{"fail/postgres without dsn", "trust_domain: example.org\ndatastore:\n  driver: postgres\n", 3, "datastore.dsn is required by driver postgres"},
		{"fail/sqlite with dsn", "trust_domain: example.org\ndatastore:\n  dsn: file:x\n", 3, "datastore.dsn is only used by driver postgres"},
		{"fail/unknown driver", "trust_domain: example.org\ndatastore:\n  driver: mysql\n", 3, `datastore.driver: "mysql" is not a datastore driver`},
		{"fail/unknown key in agent_api", "trust_domain: example.org\nagent_api:\n  join_token: {}\n", 3,
			`unknown key "join_token" in agent_api; the known keys are address, agent_svid_ttl, x509pop`},
		{"fail/unknown key in x509pop", "trust_domain: example.org\nagent_api:\n  x509pop:\n    ca_bundle: a.pem\n", 4,
			`unknown key "ca_bundle" in agent_api.x509pop; the known keys are ca_bundle_path, agent_path_template`},
		{"fail/agent api address", "trust_domain: example.org\nagent_api:\n  address: 8081\n", 3,
			`agent_api.address: "8081" is not host:port (missing port in address); write it like 0.0.0.0:8081`},
		{"fail/agent api on the bundle endpoint address", "trust_domain: example.org\nbundle_endpoint:\n  address: :8443\nagent_api:\n  address: :8443\n", 5,
			`agent_api.address: ":8443" is also bundle_endpoint.address; give them different ports`},
		{"fail/agent svid ttl zero", "trust_domain: example.org\nagent_api:\n  agent_svid_ttl: 0s\n", 3,
			`agent_api.agent_svid_ttl: "0s" must be greater than zero`},
		{"fail/agent svid ttl not shorter than ca ttl", "trust_domain: example.org\nca:\n  ca_ttl: 2h\n  x509_svid_ttl: 5m\nbundle_endpoint:\n  refresh_hint: 1m\nagent_api:\n  agent_svid_ttl: 3h\n", 8,
			"agent_api.agent_svid_ttl: 3h must be shorter than ca.ca_ttl (2h)"},
		{"fail/x509pop without address", "trust_domain: example.org\nagent_api:\n  x509pop:\n    ca_bundle_path: ca.pem\n", 4,
			"agent_api.x509pop.ca_bundle_path: x509pop is only used by the agent API; set agent_api.address too"},
		{"fail/log level", "trust_domain: example.org\nlog_level: verbose\n", 2, `log_level: "verbose" is not a log level; use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "treaty.yaml")
			requireProblem(t, err, tt.line, tt.want)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	const file = `trust_domain: Alpha.Test
data_dir: ./data
ca:
  key_type: ec-p256
  ca_ttl: 7x
  frobnicate: yes
bundle_endpoint:
  address: 127.0.0.1
  frobnicate: 1
datastore:
  driver: postgres
`
	_, err := Parse([]byte(file), "treaty.yaml")
	for _, want := range []struct {
		line int
		msg  string
	}{
		{1, `trust_domain: "Alpha.Test" is not a valid trust domain`},
		{5, `ca.ca_ttl: "7x" is not a duration`},
		{6, `unknown key "frobnicate" in ca`},
		{8, `bundle_endpoint.address: "127.0.0.1" is not host:port`},
		{9, `unknown key "frobnicate" in bundle_endpoint; the known keys are address, refresh_hint, profile, endpoint_spiffe_id, web, rate_limit`},
		{11, "datastore.dsn is required by driver postgres"},
	} {
		requireProblem(t, err, want.line, want.msg)
	}
	var pe *yamldoc.Error
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Problems, 6, "a value with a problem must not cause a second one: %v", err)
	require.True(t, strings.HasPrefix(err.Error(), "treaty.yaml: 6 problems:\n  line 1: trust_domain: "), err.Error())
}

func TestProblemsErrorFormat(t *testing.T) {
	err := &yamldoc.Error{Source: "treaty.yaml", Problems: []yamldoc.Problem{
		{Line: 2, Field: "trust_domain", Message: "bad"},
		{Field: "trust_domain", Message: "trust_domain is required"},
		{Line: 3, Message: "not valid YAML: oops"},
	}}
	require.Equal(t, "treaty.yaml: 3 problems:\n  line 2: trust_domain: bad\n  trust_domain is required\n  line 3: not valid YAML: oops", err.Error())
	_, parseErr := Parse([]byte("trust_domain: Bad\n"), "")
	require.ErrorContains(t, parseErr, "configuration: 1 problem:\n  line 1: trust_domain: ")
}

func TestDefault(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	t.Run("ok/defaults", func(t *testing.T) {
		c := Default(td, "")
		require.Equal(t, defaults(td), exported(c))
		require.NoError(t, c.Validate())
	})
	t.Run("ok/data dir kept", func(t *testing.T) {
		require.Equal(t, "./somewhere", Default(td, "./somewhere").DataDir)
	})
	t.Run("fail/no trust domain", func(t *testing.T) {
		err := Default(spiffeid.TrustDomain{}, "").Validate()
		requireProblem(t, err, 0, "trust_domain is required")
		require.True(t, strings.HasPrefix(err.Error(), "configuration: 1 problem:\n  trust_domain is required"), err.Error())
	})
}

func TestOverrides(t *testing.T) {
	other := spiffeid.RequireTrustDomainFromString("other.org")
	t.Run("ok/trust domain override moves the default endpoint id", func(t *testing.T) {
		c, err := Parse([]byte("trust_domain: example.org\n"), "treaty.yaml")
		require.NoError(t, err)
		c.TrustDomain = other
		c.ApplyDefaults()
		require.NoError(t, c.Validate())
		require.Equal(t, "spiffe://other.org/spire/server", c.BundleEndpoint.EndpointSPIFFEID.String())
	})
	t.Run("ok/trust domain from a flag when the file has none", func(t *testing.T) {
		c, err := Parse([]byte("data_dir: ./d\n"), "treaty.yaml")
		requireProblem(t, err, 0, "trust_domain is required")
		require.NotNil(t, c)
		c.TrustDomain = other
		c.ApplyDefaults()
		require.NoError(t, c.Validate())
	})
	t.Run("fail/file problems survive overrides", func(t *testing.T) {
		c, err := Parse([]byte("trust_domain: example.org\nfoo: 1\n"), "treaty.yaml")
		require.Error(t, err)
		c.TrustDomain = other
		c.ApplyDefaults()
		requireProblem(t, c.Validate(), 2, `unknown key "foo"`)
	})
	t.Run("fail/explicit endpoint id stays", func(t *testing.T) {
		c, err := Parse([]byte("trust_domain: example.org\nbundle_endpoint:\n  endpoint_spiffe_id: spiffe://example.org/x\n"), "treaty.yaml")
		require.NoError(t, err)
		c.TrustDomain = other
		c.ApplyDefaults()
		requireProblem(t, c.Validate(), 3, "is not in trust domain other.org")
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("ok/data dir made absolute", func(t *testing.T) {
		path := filepath.Join(dir, "treaty.yaml")
		require.NoError(t, os.WriteFile(path, []byte("trust_domain: example.org\ndata_dir: ./d\n"), 0o600))
		c, err := Load(path)
		require.NoError(t, err)
		wd, err := os.Getwd()
		require.NoError(t, err)
		require.Equal(t, filepath.Join(wd, "d"), c.DataDir)
	})
	t.Run("fail/problems name the file", func(t *testing.T) {
		path := filepath.Join(dir, "bad.yaml")
		require.NoError(t, os.WriteFile(path, []byte("trust_domain: example.org\nca:\n  ca_ttl: 7x\n"), 0o600))
		_, err := Load(path)
		require.ErrorContains(t, err, path+": 1 problem:\n  line 3: ca.ca_ttl:")
	})
	t.Run("fail/missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "missing.yaml"))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestExamples(t *testing.T) {
	for _, name := range []string{"alpha", "beta"} {
		t.Run("ok/"+name, func(t *testing.T) {
			c, err := Load(filepath.Join("..", "..", "examples", name+".yaml"))
			require.NoError(t, err)
			require.Equal(t, name+".test", c.TrustDomain.Name())
			require.Equal(t, profile.HTTPSSPIFFE, c.BundleEndpoint.Profile)
			require.Equal(t, "/tmp/treaty/"+name+"/admin.sock", c.AdminSocket)
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true},
		{"1d12h", 36 * time.Hour, true},
		{"1d1.5h", 25*time.Hour + 30*time.Minute, true},
		{"90m", 90 * time.Minute, true},
		{"-1h", -time.Hour, true},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"-1d", 0, false},
		{"1d1d", 0, false},
		{"1dh", 0, false},
		{"1d-1h", 0, false},
		{"999999999999d", 0, false},
		{"106751d23h47m17s", 0, false},
	}
	for _, tt := range tests {
		name := "ok/" + tt.in
		if !tt.ok {
			name = "fail/" + tt.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if !tt.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[time.Duration]string{
		30 * day: "30d", time.Hour: "1h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m",
		90 * time.Second: "1m30s", 500 * time.Millisecond: "500ms", 25 * time.Hour: "25h", 0: "0s",
	} {
		t.Run("ok/"+want, func(t *testing.T) {
			require.Equal(t, want, formatDuration(in))
		})
	}
}

// requireProblem asserts that err is a *ProblemsError holding a problem at
// line whose text contains want.
func requireProblem(t *testing.T, err error, line int, want string) {
	t.Helper()
	var pe *yamldoc.Error
	require.ErrorAs(t, err, &pe)
	for _, p := range pe.Problems {
		if p.Line == line && strings.Contains(p.String(), want) {
			return
		}
	}
	require.Failf(t, "problem not reported", "want line %d: %q\ngot %v", line, want, err)
}

// defaults returns the Config Parse makes of a file naming only td.
func defaults(td spiffeid.TrustDomain) Config {
	return Config{
		TrustDomain:    td,
		DataDir:        "./data",
		AdminSocket:    "/tmp/treaty/private/admin.sock",
		WorkloadSocket: "/tmp/treaty/public/workload.sock",
		LogLevel:       slog.LevelInfo,
		CA:             CA{KeyType: ca.ECP256, CATTL: 720 * time.Hour, X509SVIDTTL: time.Hour, JWTSVIDTTL: 5 * time.Minute},
		BundleEndpoint: BundleEndpoint{
			RefreshHint: 5 * time.Minute, Profile: profile.HTTPSSPIFFE,
			EndpointSPIFFEID: spiffeid.RequireFromPath(td, "/spire/server"),
		},
		AgentAPI:  AgentAPI{AgentSVIDTTL: time.Hour},
		Datastore: Datastore{Driver: DriverSQLite},
	}
}

// exported returns a copy of c without its unexported fields.
func exported(c *Config) Config {
	cp := *c
	cp.src = nil
	cp.defaultedEndpointID = spiffeid.ID{}
	return cp
}

// In front of a SPIRE server the endpoint's default SPIFFE ID is one SPIRE
// will mint: outside its reserved /spire/ namespace.
func TestGatewayEndpointIDDefault(t *testing.T) {
	c, err := Parse([]byte("trust_domain: example.org\nspire_server:\n  admin_socket: /run/spire/api.sock\n"), "treaty.yaml")
	require.NoError(t, err)
	require.Equal(t, "spiffe://example.org/treaty/bundle-endpoint", c.BundleEndpoint.EndpointSPIFFEID.String())
}

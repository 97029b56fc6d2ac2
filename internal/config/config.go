// Package config owns treaty's configuration file: it turns the YAML file
// into a typed Config, fills in defaults and checks every value, reporting
// all problems at once with the file's line numbers.
package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/socket"
	"github.com/treatyhq/treaty/internal/yamldoc"
)

// Defaults for the fields of Config. A zero field means "use the default".
const (
	DefaultDataDir        = "./data"
	DefaultAdminSocket    = socket.DefaultAdminPath
	DefaultWorkloadSocket = socket.DefaultWorkloadPath
	DefaultCATTL          = ca.DefaultCATTL // 30 days
	DefaultX509SVIDTTL    = ca.DefaultX509SVIDTTL
	DefaultJWTSVIDTTL     = ca.DefaultJWTSVIDTTL
	DefaultRefreshHint    = ca.DefaultRefreshHint
	DefaultProfile        = profile.HTTPSSPIFFE
	// DefaultEndpointPath is the path of the default bundle endpoint SPIFFE
	// ID, the same one SPIRE servers use.
	DefaultEndpointPath = "/spire/server"
	// GatewayEndpointPath is the path of the default bundle endpoint
	// SPIFFE ID in front of a SPIRE server, which mints the endpoint's SVID
	// and refuses IDs under /spire/, its reserved namespace.
	GatewayEndpointPath = "/treaty/bundle-endpoint"
	DefaultDriver       = DriverSQLite
	// DefaultAgentSVIDTTL is the lifetime of agent X509-SVIDs, as
	// spire-server's default_x509_svid_ttl.
	DefaultAgentSVIDTTL = time.Hour
)

// The datastore drivers Datastore.Driver may name.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config is treaty's validated configuration. Parse and Load return it with
// defaults applied; a zero field means "use the default" to ApplyDefaults.
type Config struct {
	// TrustDomain is the trust domain this server is the authority for
	// (YAML trust_domain). It is required.
	TrustDomain spiffeid.TrustDomain
	// DataDir holds the keys and the database (data_dir, default
	// DefaultDataDir). Parse keeps a relative path as written; Load makes it
	// absolute against the working directory.
	DataDir string
	// AdminSocket is the unix socket of the admin API (admin_socket,
	// default DefaultAdminSocket).
	AdminSocket string
	// WorkloadSocket is the unix socket of the SPIFFE Workload API
	// (workload_socket, default DefaultWorkloadSocket).
	WorkloadSocket string
	// AuditLog, when set, is a file every admin API change is appended to
	// as one JSON line (audit_log; default none: audit records go to the
	// log only).
	AuditLog string
	// LogLevel is the least severe level logged (log_level: debug, info,
	// warn or error, any case; default info, the zero slog.Level).
	LogLevel slog.Level
	// CA configures the certificate authority (ca).
	CA CA
	// BundleEndpoint configures the SPIFFE bundle endpoint (bundle_endpoint).
	BundleEndpoint BundleEndpoint
	// Federation configures federation with other trust domains (federation).
	Federation Federation
	// Telemetry configures the metrics endpoint (telemetry).
	Telemetry Telemetry
	// AgentAPI configures the server side of SPIRE's node protocol, for
	// spire-agents (agent_api).
	AgentAPI AgentAPI
	// SPIREServer, when its AdminSocket is set, makes treaty the
	// federation layer of that SPIRE server (spire_server): no CA of its
	// own, SPIRE's bundle published, partners' bundles written into SPIRE.
	SPIREServer SPIREServer
	// Datastore configures the database (datastore).
	Datastore Datastore

	// src remembers the file this Config came from, so that Validate can
	// point at its lines; nil for a Config built in code.
	src *source
	// defaultedEndpointID is the EndpointSPIFFEID ApplyDefaults filled in,
	// so that a later change of TrustDomain moves it along.
	defaultedEndpointID spiffeid.ID
}

// CA configures the certificate authority.
type CA struct {
	// KeyType is the algorithm of authority keys (key_type, default
	// ca.ECP256).
	KeyType ca.KeyType
	// CATTL is the lifetime of an authority (ca_ttl, default DefaultCATTL).
	CATTL time.Duration
	// X509SVIDTTL is the lifetime of an X509-SVID (x509_svid_ttl, default
	// DefaultX509SVIDTTL). It must be shorter than CATTL.
	X509SVIDTTL time.Duration
	// JWTSVIDTTL is the lifetime of a JWT-SVID (jwt_svid_ttl, default
	// DefaultJWTSVIDTTL). It must be shorter than CATTL.
	JWTSVIDTTL time.Duration
	// Upstream, when set, makes the authority an intermediate signed by an
	// upstream CA (upstream); nil means a self-signed root.
	Upstream *Upstream
	// KeySealFile, with the postgres datastore, keeps the authorities'
	// private keys in the database sealed with the key in this file
	// (key_seal_file: 64 hex digits, the same on every replica), so that
	// replicas share one authority. Empty keeps them in data_dir/keys,
	// which serves one replica only.
	KeySealFile string
}

// Upstream names the files of an upstream CA.
type Upstream struct {
	// CertFile is the PEM certificate of the upstream CA (cert_file, required).
	CertFile string
	// KeyFile is the PEM private key of the upstream CA (key_file, required).
	KeyFile string
	// BundleFile holds extra PEM roots to publish (bundle_file, optional).
	BundleFile string
}

// BundleEndpoint configures the SPIFFE bundle endpoint.
type BundleEndpoint struct {
	// Address is the host:port to listen on (address); empty disables the
	// endpoint, and is the default.
	Address string
	// RefreshHint is the spiffe_refresh_hint published in the bundle
	// (refresh_hint, default DefaultRefreshHint, from 1s to 7 days).
	RefreshHint time.Duration
	// Profile is the endpoint profile (profile, default DefaultProfile).
	Profile profile.Name
	// EndpointSPIFFEID is the SPIFFE ID the https_spiffe profile serves
	// (endpoint_spiffe_id, default spiffe://<trust domain>/spire/server).
	EndpointSPIFFEID spiffeid.ID
	// Web holds the certificate the https_web profile serves (web).
	Web Web
	// RateLimit is the number of requests per second allowed from one
	// client IP address (rate_limit); 0, the default, turns it off.
	RateLimit float64
	// MaxConnsPerClient caps the open connections from one client address
	// (max_conns_per_client, default 64); behind a TLS-passthrough proxy
	// every partner comes from the proxy's address, so raise it there.
	MaxConnsPerClient int
	// MaxConns caps all open connections (max_conns, default 4096).
	MaxConns int
	// ClientCertificateHeader names the request header in which a
	// TLS-terminating proxy in TrustedProxies passes the client
	// certificate it was shown, URL-escaped PEM as NGINX's
	// $ssl_client_escaped_cert (client_certificate_header); partners'
	// receipts then survive the proxy. Empty, the default, reads none.
	ClientCertificateHeader string
	// TrustedProxies are the addresses (IP or CIDR prefix) whose requests
	// may carry ClientCertificateHeader (trusted_proxies); from any other
	// client it is ignored.
	TrustedProxies []netip.Prefix
}

// Web names the Web PKI certificate files of the https_web profile.
type Web struct {
	// ACME, when set, obtains and renews the certificate from an ACME CA
	// instead of reading CertFile and KeyFile (acme).
	ACME *ACME
	// CertFile is the PEM certificate chain (cert_file).
	CertFile string
	// KeyFile is the PEM private key (key_file).
	KeyFile string
}

// Federation configures federation with other trust domains.
type Federation struct {
	// OnboardingDir is the directory of onboarding files (onboarding_dir).
	OnboardingDir string
	// ClassName names this server's class of federation (class_name).
	ClassName string
	// MinRefresh and MaxRefresh clamp partners' refresh hints when
	// polling (min_refresh, default 30s; max_refresh, default 1h).
	MinRefresh time.Duration
	MaxRefresh time.Duration
	// CAFile holds extra PEM roots for https_web partners, for endpoints
	// with certificates from an enterprise CA (ca_file).
	CAFile string
	// SignedBundlesDir is a directory of partners' signed bundle files
	// (treaty bundle show -sign), e.g. a git checkout, applied every 10s
	// (signed_bundles_dir; docs/offline-federation.md).
	SignedBundlesDir string
	// SignedBundlePins are, by partner trust domain, the fingerprints a
	// partner's first signed file must have while no bundle is held for it
	// (signed_bundle_pins).
	SignedBundlePins map[spiffeid.TrustDomain]string
}

// Telemetry configures the metrics endpoint.
type Telemetry struct {
	// Address is the host:port to serve metrics on (address); empty, the
	// default, turns metrics off, unless Dashboard is on: then it is
	// DefaultDashboardAddress.
	Address string
	// Dashboard serves a read-only web page of the server's state at
	// /dashboard on Address (dashboard; default off).
	Dashboard bool
}

// DefaultDashboardAddress is where the dashboard listens when telemetry has
// no address: loopback only.
const DefaultDashboardAddress = "127.0.0.1:9988"

// AgentAPI configures the agent API, which unmodified spire-agents attach
// to as to spire-server. Agents attest with join tokens (treaty token
// generate) whenever it is on, and with x509pop when X509POP names a CA
// bundle.
type AgentAPI struct {
	// Address is the host:port agents connect to (address; spire-server
	// listens on port 8081); empty, the default, turns the agent API off.
	Address string
	// AgentSVIDTTL is the lifetime of agent X509-SVIDs (agent_svid_ttl,
	// default DefaultAgentSVIDTTL). It must be shorter than ca.ca_ttl.
	AgentSVIDTTL time.Duration
	// X509POP configures the x509pop node attestor (x509pop).
	X509POP X509POP
}

// X509POP configures the x509pop node attestor: agents prove they hold
// the key of a node certificate signed by one of the configured CAs.
type X509POP struct {
	// CABundlePath is a PEM file of the CA certificates that sign node
	// certificates (ca_bundle_path); empty, the default, turns x509pop off.
	CABundlePath string
	// AgentPathTemplate is the Go template of the agent's SPIFFE ID path
	// (agent_path_template); empty means SPIRE's default,
	// /{{ .PluginName }}/{{ .Fingerprint }} under /spire/agent.
	AgentPathTemplate string
}

// SPIREServer names the SPIRE server treaty is the federation layer of.
type SPIREServer struct {
	// AdminSocket is the SPIRE server's admin API socket (admin_socket),
	// e.g. /run/spire/server/private/api.sock.
	AdminSocket string
}

// Datastore configures the database.
type Datastore struct {
	// Driver is DriverSQLite, the default, or DriverPostgres (driver).
	Driver string
	// DSN is the connection string of the postgres driver (dsn), URL or
	// key=value form, e.g. postgres://treaty@db.internal:5432/treaty.
	DSN string
	// PasswordFile is a file holding the database password (password_file),
	// so that the DSN need not: read at start, surrounding white space
	// trimmed. Without it the password comes from the DSN, PGPASSWORD or
	// ~/.pgpass, as with libpq.
	PasswordFile string
}

// Default returns a Config for td and dataDir with every other field set to
// its default. An empty dataDir means DefaultDataDir.
func Default(td spiffeid.TrustDomain, dataDir string) *Config {
	c := &Config{TrustDomain: td, DataDir: dataDir}
	c.ApplyDefaults()
	return c
}

// Load reads the file at path and parses it like Parse, then makes DataDir
// absolute against the working directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if c != nil {
		if abs, absErr := filepath.Abs(c.DataDir); absErr == nil {
			c.DataDir = abs
		}
	}
	return c, err
}

// Parse decodes the YAML configuration data, applies defaults and validates
// the result. name is the file name used in messages. Unknown keys,
// duplicate keys and values of the wrong type are errors.
//
// Problems are returned as a *yamldoc.Error listing all of them. When the
// file is YAML with a top-level mapping, Parse also returns the Config it
// decoded despite the problems, so that a caller can override fields (such
// as the trust domain from a flag), then call ApplyDefaults and Validate
// again; problems of the file itself, such as unknown keys, stay reported.
// When the file is empty or not YAML, the Config is nil.
func Parse(data []byte, name string) (*Config, error) {
	doc, root := yamldoc.Read("", data, readOptions)
	if root == nil {
		return nil, &yamldoc.Error{Source: cmp.Or(name, "configuration"), Problems: doc.Problems}
	}
	c := decode(doc, root, name)
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// ApplyDefaults sets every zero field of c to its default. The default
// endpoint SPIFFE ID follows the trust domain, so call it again after
// changing TrustDomain.
func (c *Config) ApplyDefaults() {
	setDefault(&c.DataDir, DefaultDataDir)
	setDefault(&c.AdminSocket, DefaultAdminSocket)
	setDefault(&c.WorkloadSocket, DefaultWorkloadSocket)
	if c.Telemetry.Dashboard {
		setDefault(&c.Telemetry.Address, DefaultDashboardAddress)
	}
	setDefault(&c.CA.KeyType, ca.ECP256)
	setDefault(&c.CA.CATTL, DefaultCATTL)
	setDefault(&c.CA.X509SVIDTTL, DefaultX509SVIDTTL)
	setDefault(&c.CA.JWTSVIDTTL, DefaultJWTSVIDTTL)
	setDefault(&c.BundleEndpoint.RefreshHint, DefaultRefreshHint)
	setDefault(&c.BundleEndpoint.Profile, DefaultProfile)
	setDefault(&c.Datastore.Driver, DefaultDriver)
	setDefault(&c.AgentAPI.AgentSVIDTTL, DefaultAgentSVIDTTL)
	c.defaultEndpointID()
}

// defaultEndpointID sets the endpoint SPIFFE ID when it is unset, or when it
// is a default made for a trust domain that has since changed.
func (c *Config) defaultEndpointID() {
	id := c.BundleEndpoint.EndpointSPIFFEID
	if !id.IsZero() && id != c.defaultedEndpointID {
		return
	}
	path := DefaultEndpointPath
	if c.SPIREServer.AdminSocket != "" {
		path = GatewayEndpointPath
	}
	id, err := spiffeid.FromPath(c.TrustDomain, path)
	if err != nil {
		return // no trust domain yet; Validate reports it
	}
	c.BundleEndpoint.EndpointSPIFFEID = id
	c.defaultedEndpointID = id
}

// setDefault sets *v to def when *v is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// ACME configures certificates from an ACME CA for the https_web profile,
// validated with the tls-alpn-01 challenge on the bundle endpoint's port.
type ACME struct {
	// DirectoryURL is the CA's ACME directory (directory_url), e.g.
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// DomainName is the endpoint's DNS name (domain_name); partners must
	// use it in the bundle endpoint URL.
	DomainName string
	// Email is the account contact (email), optional.
	Email string
	// TOSAccepted records that the operator accepts the CA's terms of
	// service (tos_accepted); it must be true.
	TOSAccepted bool
	// CAFile holds PEM roots for the ACME directory's own TLS (ca_file),
	// for private ACME CAs; the system roots are used as well.
	CAFile string
	// RenewBefore is how long before expiry the certificate is renewed
	// (renew_before, default 30 days, or a third of the lifetime for
	// short-lived certificates).
	RenewBefore time.Duration
}

package config

import "github.com/treatyhq/treaty/internal/yamldoc"

// schema lists the keys each section of the file may hold, by section
// path, in the order the documentation gives them.
var schema = yamldoc.Schema{
	"": {Keys: []string{"trust_domain", "data_dir", "admin_socket", "workload_socket", "audit_log", "log_level",
		"ca", "bundle_endpoint", "federation", "telemetry", "agent_api", "datastore", "spire_server"}},
	"ca":                            {Keys: []string{"key_type", "ca_ttl", "x509_svid_ttl", "jwt_svid_ttl", "upstream", "key_seal_file"}},
	"ca.upstream":                   {Keys: []string{"cert_file", "key_file", "bundle_file"}},
	"bundle_endpoint":               {Keys: []string{"address", "refresh_hint", "profile", "endpoint_spiffe_id", "web", "rate_limit", "max_conns_per_client", "max_conns", "client_certificate_header", "trusted_proxies"}},
	"bundle_endpoint.web":           {Keys: []string{"cert_file", "key_file", "acme"}},
	"bundle_endpoint.web.acme":      {Keys: []string{"directory_url", "domain_name", "email", "tos_accepted", "ca_file", "renew_before"}},
	"federation":                    {Keys: []string{"onboarding_dir", "class_name", "min_refresh", "max_refresh", "ca_file", "signed_bundles_dir", "signed_bundle_pins"}},
	"federation.signed_bundle_pins": {Example: "signed_bundle_pins: {partner.example: <the partner's bundle fingerprint, 64 hex digits>}"},
	"telemetry":                     {Keys: []string{"address", "dashboard"}},
	"agent_api":                     {Keys: []string{"address", "agent_svid_ttl", "x509pop"}},
	"agent_api.x509pop":             {Keys: []string{"ca_bundle_path", "agent_path_template"}},
	"spire_server":                  {Keys: []string{"admin_socket"}},
	"datastore":                     {Keys: []string{"driver", "dsn", "password_file"}},
}

// readOptions say what a configuration file holds, for the messages about
// one that does not.
var readOptions = yamldoc.Options{
	Needs:       "at least trust_domain, e.g. trust_domain: example.org",
	TopLevel:    "of keys such as trust_domain: example.org",
	OneDocument: "treaty reads a single one, so remove this --- line and merge the documents",
}

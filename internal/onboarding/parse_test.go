package onboarding

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
)

// want is a problem a test expects: its line and a part of its message.
type want struct {
	line int
	msg  string
}

// lines joins the lines of a file.
func lines(ls ...string) string {
	return strings.Join(ls, "\n") + "\n"
}

var (
	partnerTD = spiffeid.RequireTrustDomainFromString("partner.example")
	serverID  = spiffeid.RequireFromString("spiffe://partner.example/spire/server")
)

func TestParseExamples(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		check func(t *testing.T, f *File)
	}{
		{name: "ok/full resource with bundle", file: "partner.example.yaml", check: func(t *testing.T, f *File) {
			require.Equal(t, "partner-example", f.Name)
			require.Equal(t, "spire-system-spire", f.ClassName)
			r := f.Relationship
			require.Equal(t, partnerTD, r.TrustDomain)
			require.Equal(t, []string{"https://spire.partner.example:8443"}, urlStrings(r))
			require.Equal(t, profile.HTTPSSPIFFE, r.Profile)
			require.Equal(t, serverID, r.EndpointSPIFFEID)
			require.Equal(t, "onboarding:partner.example.yaml", r.ManagedBy)
			require.NotNil(t, r.TrustDomainBundle)
			require.Len(t, r.TrustDomainBundle.X509Authorities(), 1)
			require.Len(t, r.TrustDomainBundle.JWTAuthorities(), 1)
			seq, ok := r.TrustDomainBundle.SequenceNumber()
			require.True(t, ok)
			require.Equal(t, uint64(3), seq)
			hint, _ := r.TrustDomainBundle.RefreshHint()
			require.Equal(t, 5*time.Minute, hint)
			require.Empty(t, f.Warnings)
		}},
		{name: "ok/bare spec https_web", file: "web.example.yaml", check: func(t *testing.T, f *File) {
			require.Equal(t, "web.example", f.Name)
			require.Equal(t, "dir-spire", f.ClassName)
			require.Equal(t, profile.HTTPSWeb, f.Relationship.Profile)
			require.True(t, f.Relationship.EndpointSPIFFEID.IsZero())
			require.Nil(t, f.Relationship.TrustDomainBundle)
			require.Empty(t, f.Warnings)
		}},
		{name: "ok/bare spec with failover URLs", file: "failover.example.yaml", check: func(t *testing.T, f *File) {
			require.Equal(t, "failover.example", f.Name)
			require.Empty(t, f.ClassName)
			require.Equal(t, []string{"https://spire-a.failover.example", "https://spire-b.failover.example:8443"}, urlStrings(f.Relationship))
			require.Equal(t, []string{"the relationship cannot authenticate the endpoint until a bundle for failover.example is stored (treaty bundle set)"}, f.Warnings)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			f, problems := Parse(data, path)
			require.Empty(t, problems)
			require.NotNil(t, f)
			require.Equal(t, path, f.Path)
			require.NoError(t, f.Relationship.Validate())
			tc.check(t, f)
		})
	}
}

func urlStrings(r federation.Relationship) []string {
	var s []string
	for _, u := range r.BundleEndpointURLs {
		s = append(s, u.String())
	}
	return s
}

// The lines of a valid bare spec for each profile.
var (
	tdLine      = "trustDomain: partner.example"
	urlLine     = "bundleEndpointURL: https://spire.partner.example"
	profileLine = "bundleEndpointProfile:"
	webLine     = "  type: https_web"
	spiffeLine  = "  type: https_spiffe"
	idLine      = "  endpointSPIFFEID: spiffe://partner.example/spire/server"
)

func TestParseOK(t *testing.T) {
	good := bundleJSON(t, "partner.example", "spiffe://partner.example")
	for _, tc := range []struct {
		name  string
		yaml  string
		check func(t *testing.T, f *File)
	}{
		{
			name: "ok/resource without apiVersion and kind",
			yaml: lines("metadata:", "  name: partner", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine),
			check: func(t *testing.T, f *File) {
				require.Equal(t, "partner", f.Name)
			},
		},
		{
			name: "ok/resource without metadata name takes the file name",
			yaml: lines("apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterFederatedTrustDomain",
				"metadata:", "  namespace: ignored", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine,
				"status:", "  anything: [1, 2]"),
			check: func(t *testing.T, f *File) {
				require.Equal(t, "partner", f.Name)
			},
		},
		{
			name: "ok/urls deduplicated primary first",
			yaml: lines(tdLine, urlLine, "bundleEndpointURLs:", "  - https://backup.partner.example",
				"  - https://spire.partner.example", "  - https://backup.partner.example", profileLine, webLine),
			check: func(t *testing.T, f *File) {
				require.Equal(t, []string{"https://spire.partner.example", "https://backup.partner.example"}, urlStrings(f.Relationship))
			},
		},
		{
			name: "ok/bundleEndpointURLs alone",
			yaml: lines(tdLine, "bundleEndpointURLs: [https://a.partner.example, https://b.partner.example]", profileLine, webLine),
			check: func(t *testing.T, f *File) {
				require.Equal(t, []string{"https://a.partner.example", "https://b.partner.example"}, urlStrings(f.Relationship))
			},
		},
		{
			name: "ok/https_spiffe with bundle",
			yaml: lines(tdLine, urlLine, profileLine, spiffeLine, idLine, "trustDomainBundle: '"+good+"'"),
			check: func(t *testing.T, f *File) {
				require.Equal(t, serverID, f.Relationship.EndpointSPIFFEID)
				require.Len(t, f.Relationship.TrustDomainBundle.X509Authorities(), 1)
				require.Empty(t, f.Warnings)
			},
		},
		{
			name: "ok/https_spiffe without bundle warns",
			yaml: lines(tdLine, urlLine, profileLine, spiffeLine, idLine),
			check: func(t *testing.T, f *File) {
				require.Nil(t, f.Relationship.TrustDomainBundle)
				require.Equal(t, []string{"the relationship cannot authenticate the endpoint until a bundle for partner.example is stored (treaty bundle set)"}, f.Warnings)
			},
		},
		{
			name: "ok/bundle warnings are kept",
			yaml: lines(tdLine, urlLine, profileLine, webLine,
				`trustDomainBundle: '`+strings.Replace(good, `{"keys"`, `{"spiffe_sequence_number":1,"keys"`, 1)+`'`),
			check: func(t *testing.T, f *File) {
				require.NotNil(t, f.Relationship.TrustDomainBundle)
				require.Len(t, f.Warnings, 1)
				require.Contains(t, f.Warnings[0], `trustDomainBundle: member "spiffe_sequence_number" is not part of the standard`)
			},
		},
		{
			name: "ok/trust domain as SPIFFE ID, nulls and a document marker",
			yaml: lines("---", "className: null", "trustDomain: spiffe://partner.example", urlLine,
				"bundleEndpointURLs:", profileLine, webLine, "  endpointSPIFFEID:", "trustDomainBundle: ''", "---"),
			check: func(t *testing.T, f *File) {
				require.Equal(t, partnerTD, f.Relationship.TrustDomain)
				require.Empty(t, f.ClassName)
				require.Empty(t, f.Warnings)
			},
		},
		{
			name: "ok/resource words as values of a bare spec",
			yaml: lines("className: spec", tdLine, urlLine, profileLine, webLine),
			check: func(t *testing.T, f *File) {
				require.Equal(t, "spec", f.ClassName)
				require.Equal(t, "partner", f.Name)
			},
		},
		{
			name: "ok/aliases",
			yaml: lines("trustDomain: &td partner.example", urlLine, "bundleEndpointProfile: &p {type: https_web}", "className: *td"),
			check: func(t *testing.T, f *File) {
				require.Equal(t, "partner.example", f.ClassName)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, problems := Parse([]byte(tc.yaml), "dir/partner.yaml")
			require.Empty(t, problems)
			require.NotNil(t, f)
			require.NoError(t, f.Relationship.Validate())
			require.Equal(t, "onboarding:partner.yaml", f.Relationship.ManagedBy)
			tc.check(t, f)
		})
	}
}

func TestParseProblems(t *testing.T) {
	good := bundleJSON(t, "partner.example", "spiffe://partner.example")
	unusable := `{"keys":[{"use":"x509-svid","kty":"EC"}]}`
	for _, tc := range []struct {
		name     string
		yaml     string
		problems []want
	}{
		// The file as a whole.
		{name: "fail/empty file", yaml: "", problems: []want{{0, "the file is empty"}}},
		{name: "fail/only a comment", yaml: "# nothing\n", problems: []want{{0, "the file is empty"}}},
		{name: "fail/yaml syntax", yaml: lines(tdLine, "bundleEndpointURL: [https://a"), problems: []want{{2, "not valid YAML: did not find expected ',' or ']'"}}},
		{name: "fail/yaml block mapping", yaml: lines(tdLine, urlLine, "- https://b.partner.example"), problems: []want{{3, "not valid YAML: did not find expected key"}}},
		{name: "fail/yaml unknown anchor", yaml: lines(tdLine, "bundleEndpointURL: *url"), problems: []want{{0, "not valid YAML: unknown anchor 'url' referenced"}}},
		{name: "fail/yaml indentation", yaml: lines(tdLine, "  x: y"), problems: []want{{2, "not valid YAML: mapping values are not allowed"}}},
		{name: "fail/top level list", yaml: lines("- trustDomain: partner.example"), problems: []want{{1, "the top level must be a mapping (a ClusterFederatedTrustDomain or its spec), got a list"}}},
		{name: "fail/top level text", yaml: lines("# hello", "partner.example"), problems: []want{{2, `the top level must be a mapping (a ClusterFederatedTrustDomain or its spec), got "partner.example"`}}},
		{name: "fail/two documents", yaml: lines(tdLine, urlLine, profileLine, webLine, "---", "trustDomain: other.example"),
			problems: []want{{5, "the file holds more than one YAML document, the second starting here"}}},
		{name: "fail/too large", yaml: lines(tdLine, urlLine, profileLine, webLine, "# "+strings.Repeat("x", MaxFileSize)),
			problems: []want{{0, "the file is larger than 1048576 bytes"}}},

		// Keys.
		{name: "fail/unknown key in bare spec", yaml: lines(tdLine, urlLine, profileLine, webLine, "refreshHint: 5m"),
			problems: []want{{5, `unknown key "refreshHint" at the top level; the known keys are className, trustDomain, bundleEndpointURL, bundleEndpointURLs, bundleEndpointProfile, trustDomainBundle`}}},
		{name: "fail/unknown key with other case", yaml: lines(tdLine, "bundleEndpointUrl: https://spire.partner.example", profileLine, webLine),
			problems: []want{{2, `unknown key "bundleEndpointUrl" at the top level; the known keys are className, trustDomain, bundleEndpointURL, bundleEndpointURLs, bundleEndpointProfile, trustDomainBundle, trustDomainBundleSHA256; did you mean bundleEndpointURL? keys are case-sensitive`}}},
		{name: "fail/unknown key in profile", yaml: lines(tdLine, urlLine, profileLine, spiffeLine, "  endpointSpiffeId: spiffe://partner.example/spire/server"),
			problems: []want{{5, `unknown key "endpointSpiffeId" in bundleEndpointProfile; the known keys are type, endpointSPIFFEID; did you mean endpointSPIFFEID?`}}},
		{name: "fail/misspelt key suggests the nearest and is not also missing", yaml: lines(tdLine, urlLine, "bundleEndpointProfle:", webLine),
			problems: []want{{3, `unknown key "bundleEndpointProfle" at the top level; the known keys are className, trustDomain, bundleEndpointURL, bundleEndpointURLs, bundleEndpointProfile, trustDomainBundle, trustDomainBundleSHA256; did you mean bundleEndpointProfile?`}}},
		{name: "fail/misspelt key in resource spec", yaml: lines("kind: ClusterFederatedTrustDomain", "spec:", "  trustDomian: partner.example", "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{3, `did you mean trustDomain?`}}},
		{name: "fail/unknown key in resource spec", yaml: lines("kind: ClusterFederatedTrustDomain", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine, "  federatesWith: [a]"),
			problems: []want{{7, `unknown key "federatesWith" in spec`}}},
		{name: "fail/spec key beside resource keys", yaml: lines("apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterFederatedTrustDomain", "spec:", "  "+urlLine, "  "+profileLine, "  "+webLine, tdLine),
			problems: []want{{3, "trustDomain is required"}, {7, `unknown key "trustDomain" at the top level; the known keys are apiVersion, kind, metadata, spec, status; move it under spec`}}},
		{name: "fail/duplicate key", yaml: lines(tdLine, urlLine, profileLine, webLine, "trustDomain: other.example"),
			problems: []want{{5, `duplicate key "trustDomain"; it is already set on line 1`}}},
		{name: "fail/merge key", yaml: lines("base: &b {type: https_web}", tdLine, urlLine, profileLine, "  <<: *b"),
			problems: []want{{1, `unknown key "base"`}, {4, "bundleEndpointProfile.type is required"}, {5, "merge keys (<<) are not supported"}}},
		{name: "fail/key not a word", yaml: lines(tdLine, urlLine, profileLine, webLine, "? [a]", ": b"),
			problems: []want{{5, "keys must be plain words, got a list"}}},

		// The resource.
		{name: "fail/other kind", yaml: lines("apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterSPIFFEID", "spec:", "  spiffeIDTemplate: x"),
			problems: []want{{2, `kind "ClusterSPIFFEID" is not ClusterFederatedTrustDomain; an onboarding directory holds only ClusterFederatedTrustDomain resources`}}},
		{name: "fail/kind not text", yaml: lines("kind: [a]", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{1, "kind must be text, got a list"}}},
		{name: "fail/other apiVersion", yaml: lines("apiVersion: spire.spiffe.io/v1beta1", "kind: ClusterFederatedTrustDomain", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{1, `apiVersion "spire.spiffe.io/v1beta1" is not spire.spiffe.io/v1alpha1`}}},
		{name: "fail/no spec", yaml: lines("# a resource", "apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterFederatedTrustDomain", "metadata: {name: x}"),
			problems: []want{{2, "spec is required"}}},
		{name: "fail/spec not a mapping", yaml: lines("kind: ClusterFederatedTrustDomain", "spec: partner.example"),
			problems: []want{{2, `spec must be a mapping, got "partner.example"; write it like spec: {`}}},
		{name: "fail/metadata not a mapping", yaml: lines("metadata: partner", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{1, `metadata must be a mapping, got "partner"`}}},
		{name: "fail/metadata name not text", yaml: lines("metadata:", "  name: {a: b}", "spec:", "  "+tdLine, "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{2, "metadata.name must be text, got a mapping"}}},

		// trustDomain.
		{name: "fail/no trust domain", yaml: lines(urlLine, profileLine, webLine), problems: []want{{1, "trustDomain is required, e.g. trustDomain: partner.example"}}},
		{name: "fail/empty trust domain", yaml: lines(urlLine, "trustDomain: ''", profileLine, webLine), problems: []want{{2, "trustDomain is required"}}},
		{name: "fail/no trust domain in resource", yaml: lines("apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterFederatedTrustDomain", "spec:", "  "+urlLine, "  "+profileLine, "  "+webLine),
			problems: []want{{3, "trustDomain is required"}}},
		{name: "fail/bad trust domain", yaml: lines("trustDomain: Partner.Example", urlLine, profileLine, webLine),
			problems: []want{{1, `trustDomain: "Partner.Example" is not a valid trust domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`}}},
		{name: "fail/trust domain with path", yaml: lines("trustDomain: spiffe://partner.example/spire/server", urlLine, profileLine, webLine),
			problems: []want{{1, "is a SPIFFE ID with a path; write only the trust domain name, partner.example"}}},
		{name: "fail/trust domain not text", yaml: lines("trustDomain: [partner.example]", urlLine, profileLine, webLine),
			problems: []want{{1, "trustDomain must be text, got a list"}}},

		// Endpoint URLs.
		{name: "fail/no url", yaml: lines(tdLine, profileLine, webLine), problems: []want{{1, "bundleEndpointURL is required"}}},
		{name: "fail/empty url list", yaml: lines(tdLine, "bundleEndpointURL:", "bundleEndpointURLs: []", profileLine, webLine),
			problems: []want{{2, "bundleEndpointURL is required"}}},
		{name: "fail/empty url list alone", yaml: lines(tdLine, profileLine, webLine, "bundleEndpointURLs: []"),
			problems: []want{{4, "bundleEndpointURL is required"}}},
		{name: "fail/http url", yaml: lines(tdLine, "bundleEndpointURL: http://spire.partner.example", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "http://spire.partner.example" uses http://, but the SPIFFE Federation standard requires TLS: use https://`}}},
		{name: "fail/other scheme", yaml: lines(tdLine, "bundleEndpointURL: spire.partner.example:8443", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "spire.partner.example:8443" is not an https:// URL`}}},
		{name: "fail/url without host", yaml: lines(tdLine, "bundleEndpointURL: https:///bundle", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "https:///bundle" has no host`}}},
		{name: "fail/url with password", yaml: lines(tdLine, "bundleEndpointURL: https://u:s3cr3t@spire.partner.example", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "https://u:xxxxx@spire.partner.example": ` + federation.ErrEndpointUserinfo.Error()}}},
		{name: "fail/url with user name alone", yaml: lines(tdLine, "bundleEndpointURL: https://s3cr3t@spire.partner.example", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "https://xxxxx@spire.partner.example": a bundle endpoint URL must not hold a user name or password`}}},
		{name: "fail/fallback url with password", yaml: lines(tdLine, urlLine, "bundleEndpointURLs:", "  - https://u:s3cr3t@b.partner.example", profileLine, webLine),
			problems: []want{{4, `bundleEndpointURLs[0]: "https://u:xxxxx@b.partner.example": a bundle endpoint URL must not hold`}}},
		{name: "fail/unparsable url with password", yaml: lines(tdLine, "bundleEndpointURL: 'https://u:s3cr3t@spire partner'", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "https://xxxxx@spire partner" is not a URL`}}},
		{name: "fail/not a url", yaml: lines(tdLine, "bundleEndpointURL: 'https://spire partner'", profileLine, webLine),
			problems: []want{{2, `bundleEndpointURL: "https://spire partner" is not a URL`}}},
		{name: "fail/url not text", yaml: lines(tdLine, "bundleEndpointURL: [https://spire.partner.example]", profileLine, webLine),
			problems: []want{{2, "bundleEndpointURL must be text, got a list"}}},
		{name: "fail/urls not a list", yaml: lines(tdLine, "bundleEndpointURLs: https://spire.partner.example", profileLine, webLine),
			problems: []want{{2, "bundleEndpointURLs must be a list of URLs"}}},
		{name: "fail/bad url in list", yaml: lines(tdLine, urlLine, "bundleEndpointURLs:", "  - https://b.partner.example", "  - http://c.partner.example", "  - ''", profileLine, webLine),
			problems: []want{{5, `bundleEndpointURLs[1]: "http://c.partner.example" uses http://`}, {6, "bundleEndpointURLs[2]: the URL is empty"}}},

		// bundleEndpointProfile.
		{name: "fail/no profile", yaml: lines(tdLine, urlLine), problems: []want{{1, "bundleEndpointProfile is required, e.g. bundleEndpointProfile: {type: https_web}"}}},
		{name: "fail/profile as text", yaml: lines(tdLine, urlLine, "bundleEndpointProfile: https_web"),
			problems: []want{{3, `bundleEndpointProfile must be a mapping, got "https_web"; write it like bundleEndpointProfile: {type: https_web}`}}},
		{name: "fail/no profile type", yaml: lines(tdLine, urlLine, profileLine), problems: []want{{3, "bundleEndpointProfile.type is required: https_web or https_spiffe"}}},
		{name: "fail/unknown profile type", yaml: lines(tdLine, urlLine, profileLine, "  type: https"),
			problems: []want{{4, `bundleEndpointProfile.type: unknown bundle endpoint profile "https": use https_web or https_spiffe`}}},
		{name: "fail/no endpoint id", yaml: lines(tdLine, urlLine, profileLine, spiffeLine),
			problems: []want{{3, "bundleEndpointProfile.endpointSPIFFEID is required with type https_spiffe, e.g. endpointSPIFFEID: spiffe://partner.example/spire/server"}}},
		{name: "fail/bad endpoint id", yaml: lines(tdLine, urlLine, profileLine, spiffeLine, "  endpointSPIFFEID: partner.example/spire/server"),
			problems: []want{{5, `bundleEndpointProfile.endpointSPIFFEID "partner.example/spire/server" is not a SPIFFE ID`}}},
		{name: "fail/endpoint id in other trust domain", yaml: lines(tdLine, urlLine, profileLine, spiffeLine, "  endpointSPIFFEID: spiffe://other.example/spire/server"),
			problems: []want{{5, "bundleEndpointProfile.endpointSPIFFEID spiffe://other.example/spire/server is not in trust domain partner.example"}}},
		{name: "fail/endpoint id with https_web", yaml: lines(tdLine, urlLine, profileLine, webLine, idLine),
			problems: []want{{5, "bundleEndpointProfile.endpointSPIFFEID is only used with type https_spiffe"}}},

		// trustDomainBundle.
		{name: "fail/bundle not json", yaml: lines(tdLine, urlLine, profileLine, spiffeLine, idLine, "trustDomainBundle: |", "  -----BEGIN CERTIFICATE-----"),
			problems: []want{{6, "trustDomainBundle: not a JSON object"}}},
		{name: "fail/bundle without keys", yaml: lines(tdLine, urlLine, profileLine, webLine, `trustDomainBundle: '{"keys": []}'`),
			problems: []want{{5, "trustDomainBundle: the bundle has no usable keys"}}},
		{name: "fail/bundle without a usable key", yaml: lines(tdLine, urlLine, profileLine, spiffeLine, idLine, "trustDomainBundle: '"+unusable+"'"),
			problems: []want{{6, `trustDomainBundle: the bundle has no usable keys: all 1 of its entries were ignored (keys[0] (x509-svid) ignored: no certificate in "x5c" (SPIFFE X509-SVID §6.2))`}}},
		{name: "fail/bundle not text", yaml: lines(tdLine, urlLine, profileLine, webLine, "trustDomainBundle:", "  keys: []"),
			problems: []want{{5, "trustDomainBundle must be text, got a mapping"}}},

		// Several at once, ordered by line.
		{name: "fail/too many problems", yaml: strings.Repeat("k: v\n", 60) + lines(tdLine, urlLine, profileLine, webLine),
			problems: append(unknownKs(50), want{51, "10 more problems not listed; fix the ones above first"})},
		{name: "fail/several problems", yaml: lines("trustDomain: bad domain", "bundleEndpointURL: http://x", profileLine, spiffeLine, "  endpointSPIFFEID: spiffe://other.example/x", "trustDomainBundle: '"+good+"'", "extra: 1"),
			problems: []want{{1, "is not a valid trust domain"}, {2, "requires TLS"}, {7, `unknown key "extra"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, problems := Parse([]byte(tc.yaml), "partner.yaml")
			require.Nil(t, f)
			require.Len(t, problems, len(tc.problems), "problems: %v", problems)
			for i, w := range tc.problems {
				require.Equal(t, "partner.yaml", problems[i].File)
				require.Equal(t, w.line, problems[i].Line, "problem %d: %s", i, problems[i])
				require.Contains(t, problems[i].Message, w.msg)
				require.NotContains(t, problems[i].String(), "s3cr3t", "a password in the file is never repeated")
			}
		})
	}
}

// unknownKs returns the problems of n lines "k: v".
func unknownKs(n int) []want {
	ws := make([]want, n)
	for i := range ws {
		ws[i] = want{i + 1, `unknown key "k" at the top level`}
	}
	return ws
}

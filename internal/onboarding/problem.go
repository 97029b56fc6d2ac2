package onboarding

import "github.com/treatyhq/treaty/internal/yamldoc"

// readOptions say what an onboarding file holds, for the messages about one
// that does not.
var readOptions = yamldoc.Options{
	MaxSize:     MaxFileSize,
	TooLarge:    tooLargeHint,
	Needs:       "at least trustDomain, bundleEndpointURL and bundleEndpointProfile",
	TopLevel:    "(a ClusterFederatedTrustDomain or its spec)",
	OneDocument: "put each ClusterFederatedTrustDomain in a file of its own",
}

// tooLargeHint explains MaxFileSize.
const tooLargeHint = "an onboarding file holds one trust domain and its bundle"

// problems collects the problems of one file as it is read.
type problems struct{ *yamldoc.Document }

// add records a problem at line.
func (ps *problems) add(line int, format string, args ...any) {
	ps.Add(line, "", format, args...)
}

package adminwire

import "github.com/treatyhq/treaty/internal/finding"

// DoctorResponse is the outcome of the server's named health checks, each
// a finding whose check is the check's name and whose doc is its anchor in
// docs/doctor.md.
type DoctorResponse struct {
	Checks []finding.Finding `json:"checks"`
}

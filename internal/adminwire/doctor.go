package adminwire

import "github.com/treatyhq/treaty/internal/finding"

// DoctorResponse is the outcome of the server's named health checks.
type DoctorResponse struct {
	Checks []Check `json:"checks"`
}

// Check is one named health check's outcome.
type Check struct {
	Name string `json:"name"`
	// Status is finding.Pass, finding.Warn or finding.Fail.
	Status  finding.Severity `json:"status"`
	Message string           `json:"message"`
	// Fix says what to do about a warning or failure.
	Fix string `json:"fix,omitempty"`
	// Doc is the anchor in docs/doctor.md that explains the check.
	Doc string `json:"doc"`
}

// Package finding is the one vocabulary treaty's checkers report in:
// `treaty bundle validate`, `treaty probe`, `treaty doctor` and `treaty
// onboarding check`. A Finding names the check that made it, grades it with
// a Severity, says what was found and, when the check did not pass, how to
// fix it. Each checker owns its check IDs and fixes; this package owns only
// the words they share, so that a script reading one command's
// `-output json` can read the others'.
//
// Exit codes: a command that reports findings exits 1 when the Worst of
// them is Fail and 0 otherwise. A command with a -strict flag (bundle
// validate) also exits 1 on Warn. Pass and Skip never fail a command.
package finding

import "fmt"

// Severity grades a finding.
type Severity string

// The severities, from best to worst.
const (
	// Pass: the check found nothing wrong.
	Pass Severity = "pass"
	// Skip: the check did not run, because an earlier finding made it
	// meaningless (that finding says why).
	Skip Severity = "skip"
	// Warn: something works but deserves attention.
	Warn Severity = "warn"
	// Fail: something does not work.
	Fail Severity = "fail"
)

// rank orders the severities that decide a result; Skip ranks with Pass.
func (s Severity) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Worse reports whether s decides a result more severely than t: Fail is
// worse than Warn, which is worse than Pass and Skip.
func (s Severity) Worse(t Severity) bool { return s.rank() > t.rank() }

// Diagnostic returns the word compilers and linters use for s in
// "file:line: word: message" lines, which editors and CI annotate: error
// for Fail, warning for Warn, note otherwise.
func (s Severity) Diagnostic() string {
	switch s {
	case Fail:
		return "error"
	case Warn:
		return "warning"
	}
	return "note"
}

// Worst returns the severity that decides the result of findings: Fail if
// any failed, else Warn if any warned, else Pass (also for no findings). A
// skipped check does not make a result worse; the finding that caused the
// skip does.
func Worst(findings []Finding) Severity {
	worst := Pass
	for _, f := range findings {
		if f.Severity.Worse(worst) {
			worst = f.Severity
		}
	}
	return worst
}

// CheckID names a check. Each checker defines its own, such as the bundle
// checks "x5c" and "expiry" or the doctor check "rotation"; they are stable
// because `-output json` reports them and the docs explain each.
type CheckID string

// Finding is one thing a check found. Its JSON form is stable.
type Finding struct {
	// Check is the check that made the finding.
	Check CheckID `json:"check,omitempty"`
	// Severity grades the finding.
	Severity Severity `json:"severity"`
	// Message says what was found: the cause, when the check did not pass.
	Message string `json:"message"`
	// Fix says what to do about it; empty when there is nothing to do.
	Fix string `json:"fix,omitempty"`
	// Doc optionally points at the documentation of the check, such as
	// "docs/doctor.md#rotation".
	Doc string `json:"doc,omitempty"`
}

// String formats f as "severity check: message".
func (f Finding) String() string {
	if f.Check == "" {
		return fmt.Sprintf("%s: %s", f.Severity, f.Message)
	}
	return fmt.Sprintf("%s %s: %s", f.Severity, f.Check, f.Message)
}

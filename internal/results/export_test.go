package results

// Test helpers for the envtest tests, which are in package results_test:
// the API server comes from testenv, whose operator imports this package.
var (
	BigState   = bigState
	SmallState = smallState
	Load137    = load137
)

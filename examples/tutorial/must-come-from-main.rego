package github.ref

import rego.v1

# Cilock's github attestor exposes the verified Actions OIDC token's claims under
# `input.jwt.claims`. The `ref` claim is the git ref the workflow ran for
# ("refs/heads/main" for a push to main).
#
# Two changes from the tutorial's module (see README.md in this folder):
# - a missing or non-string claim denies: in the original, `sprintf` over a missing value is
#   undefined, so the rule produced no message and the attestation passed;
# - the ref must be exactly refs/heads/main: the original accepted any ref ending in "/main",
#   such as a branch named "feature/main".

deny contains msg if {
	not is_string(input.jwt.claims.ref)
	msg := "the github attestation has no verified ref claim"
}

deny contains msg if {
	ref := input.jwt.claims.ref
	is_string(ref)
	ref != "refs/heads/main"
	msg := sprintf("build did not come from main: %s", [ref])
}

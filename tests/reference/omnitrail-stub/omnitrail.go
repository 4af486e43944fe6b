// Package omnitrail is a build-only stand-in for github.com/fkautz/omnitrail-go.
//
// It offers exactly the API that go-witness's attestation/omnitrail package
// uses. Envelope is generic JSON, so an omnitrail attestation found in
// evidence is decoded and shown to Rego unchanged; producing one (witness run
// -a omnitrail) fails.
package omnitrail

import "errors"

// Envelope holds an omnitrail envelope as generic JSON.
type Envelope map[string]interface{}

// Trail is the producer side, which this stand-in does not implement.
type Trail struct{}

// NewTrail returns a Trail whose Add always fails.
func NewTrail() *Trail { return &Trail{} }

// Add fails: omnitrail is not available in the reference builds.
func (t *Trail) Add(path string) error {
	return errors.New("the omnitrail attestor is not available in this reference build (omnitrail-go is not served by the module proxy)")
}

// Envelope returns nil.
func (t *Trail) Envelope() *Envelope { return nil }

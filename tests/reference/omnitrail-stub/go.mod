// Local stand-in for github.com/fkautz/omnitrail-go, which the Go module proxy
// refuses (403 "This module version is not available"). go-witness's root
// package imports its omnitrail attestor, so without this the reference CLIs
// cannot be built. See ../README.md.
module github.com/fkautz/omnitrail-go

go 1.21

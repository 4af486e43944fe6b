// Reference witness-style CLI for attestgate's conformance tests.
//
// The real witness CLI module (github.com/in-toto/witness) is not served by the
// Go module proxy reachable from this project's machines, so this program
// re-creates the parts of its command line that our tests need (`run`, `sign`,
// `verify`, `version`) directly on go-witness's public API, with witness's flag
// names, shorthands and defaults. All of the verification logic is the
// library's: `verify` calls witness.Verify exactly the way witness's
// cmd/verify.go does. See README.md in this folder for the differences.
//
// The same source is built twice by .ci/peers.sh:
//   - tests/reference/witness-v012 (go.mod requires go-witness v0.12.0)
//   - tests/reference/witness-v010 (go.mod requires go-witness v0.10.0, the
//     version the released witness CLI v0.11.0 pins; main.go is a symlink)
//
// Nothing here talks to the network: Archivista is not offered, timestamp
// servers are used only when given, and the attestors that reach a cloud
// metadata service, an OIDC/JWKS endpoint or a cluster are refused.
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	witness "github.com/in-toto/go-witness"
	"github.com/in-toto/go-witness/attestation"
	"github.com/in-toto/go-witness/attestation/commandrun"
	"github.com/in-toto/go-witness/attestation/material"
	"github.com/in-toto/go-witness/attestation/product"
	"github.com/in-toto/go-witness/cryptoutil"
	"github.com/in-toto/go-witness/dsse"
	"github.com/in-toto/go-witness/log"
	"github.com/in-toto/go-witness/signer/file"
	"github.com/in-toto/go-witness/source"
	"github.com/in-toto/go-witness/timestamp"
	"github.com/spf13/pflag"
)

const goWitnessModule = "github.com/in-toto/go-witness"

// Attestors that contact a remote service (cloud metadata, OIDC token or JWKS
// endpoints, a Kubernetes API server) or need kernel tracing privileges.
var refusedAttestors = map[string]string{
	"aws":           "queries the EC2 instance metadata service",
	"aws-codebuild": "calls the AWS CodeBuild API",
	"gcp-iit":       "queries the GCP metadata server",
	"github":        "requests an OIDC token and fetches GitHub's JWKS",
	"gitlab":        "fetches GitLab's JWKS",
	"jwt":           "fetches a JWKS",
	"k8smanifest":   "may run a server-side dry run against a cluster",
	"network-trace": "needs eBPF privileges and proxies network traffic",
}

type stderrLogger struct{ debug bool }

func (l stderrLogger) Errorf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "ERROR "+format+"\n", args...)
}
func (l stderrLogger) Error(args ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"ERROR"}, args...)...)
}
func (l stderrLogger) Warnf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "WARN  "+format+"\n", args...)
}
func (l stderrLogger) Warn(args ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"WARN "}, args...)...)
}
func (l stderrLogger) Debugf(format string, args ...interface{}) {
	if l.debug {
		fmt.Fprintf(os.Stderr, "DEBUG "+format+"\n", args...)
	}
}
func (l stderrLogger) Debug(args ...interface{}) {
	if l.debug {
		fmt.Fprintln(os.Stderr, append([]interface{}{"DEBUG"}, args...)...)
	}
}
func (l stderrLogger) Infof(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "INFO  "+format+"\n", args...)
}
func (l stderrLogger) Info(args ...interface{}) {
	fmt.Fprintln(os.Stderr, append([]interface{}{"INFO "}, args...)...)
}

const usage = `usage: %[1]s <command> [flags]

commands (flags as in witness; see README.md):
  run      -s STEP -k KEY [-o OUT] [-a ATTESTORS] [-d DIR] [--hashes H] [--dirhash-glob G] [-- CMD ARGS...]
  sign     -k KEY -f IN -o OUT [-t DATATYPE]
  verify   -p POLICY (-k PUB | --policy-ca-roots CA) -a ENVELOPE... (-s HEX... | -f FILE)
  keyid    FILE...   (not in witness: prints go-witness's key id of a PEM key or certificate)
  version
`

func main() {
	log.SetLogger(stderrLogger{debug: os.Getenv("WITNESS_REF_DEBUG") != ""})
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, usage, os.Args[0])
		os.Exit(1)
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(ctx, os.Args[2:])
	case "sign":
		err = signCmd(ctx, os.Args[2:])
	case "verify":
		err = verifyCmd(ctx, os.Args[2:])
	case "keyid":
		err = keyidCmd(os.Args[2:])
	case "version", "--version":
		versionCmd()
	case "help", "-h", "--help":
		fmt.Printf(usage, os.Args[0])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
		fmt.Fprintf(os.Stderr, usage, os.Args[0])
	}
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		// witness (cobra) exits 1 for every error, usage errors included.
		os.Exit(1)
	}
}

func goWitnessVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == goWitnessModule {
			if dep.Replace != nil {
				return dep.Replace.Version + " (replaces " + dep.Version + ")"
			}
			return dep.Version
		}
	}
	return "unknown"
}

func versionCmd() {
	fmt.Printf("attestgate witness reference CLI, go-witness %s\n", goWitnessVersion())
}

func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	return fs
}

// loadSigner loads a key the way witness's file signer provider does
// (-k/--signer-file-key-path, optional certificate and intermediates,
// passphrase from WITNESS_KEY_PASSPHRASE).
func loadSigner(ctx context.Context, keyPath, certPath string, intermediates []string) (cryptoutil.Signer, error) {
	if keyPath == "" {
		return nil, errors.New("a signing key is required: -k/--signer-file-key-path")
	}
	opts := []file.Option{file.WithKeyPath(keyPath)}
	if certPath != "" {
		opts = append(opts, file.WithCertPath(certPath))
	}
	if len(intermediates) > 0 {
		opts = append(opts, file.WithIntermediatePaths(intermediates))
	}
	return file.New(opts...).Signer(ctx)
}

func timestampers(urls []string) []timestamp.Timestamper {
	out := []timestamp.Timestamper{}
	for _, url := range urls {
		out = append(out, timestamp.NewTimestamper(timestamp.TimestampWithUrl(url)))
	}
	return out
}

func openOut(path string) (io.WriteCloser, error) {
	if path == "" {
		return nopCloser{os.Stdout}, nil
	}
	return os.Create(path)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func runCmd(ctx context.Context, args []string) error {
	fs := newFlags("run")
	step := fs.StringP("step", "s", "", "Name of the step being run")
	key := fs.StringP("signer-file-key-path", "k", "", "Path to the file containing the private key")
	cert := fs.String("signer-file-cert-path", "", "Path to the file containing the certificate for the private key")
	inter := fs.StringSlice("signer-file-intermediate-paths", nil, "Paths to intermediate certificates")
	out := fs.StringP("outfile", "o", "", "File to write signed data to (default stdout)")
	atts := fs.StringSliceP("attestations", "a", []string{"environment", "git"}, "Attestations to record ('product', 'material' and 'command-run' are always run)")
	dir := fs.StringP("workingdir", "d", "", "Directory from which commands will run")
	hashes := fs.StringSlice("hashes", []string{"sha256"}, "Hashes selected for digest calculation")
	dirGlob := fs.StringSlice("dirhash-glob", nil, "Dirhash glob can be used to collapse material and product hashes on matching directory matches")
	trace := fs.Bool("trace", false, "Enable tracing for the command")
	tsURLs := fs.StringSlice("timestamp-servers", nil, "Timestamp Authority Servers to use when signing envelope (none by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *step == "" {
		return errors.New("required flag \"step\" not set")
	}
	signer, err := loadSigner(ctx, *key, *cert, *inter)
	if err != nil {
		return fmt.Errorf("failed to load signer: %w", err)
	}

	attestors := []attestation.Attestor{product.New(), material.New()}
	command := fs.Args()
	if len(command) > 0 {
		attestors = append(attestors, commandrun.New(commandrun.WithCommand(command), commandrun.WithTracing(*trace)))
	}
	for _, a := range *atts {
		a = strings.TrimSpace(a)
		if a == "" || a == "product" || a == "material" || a == "command-run" {
			continue // always run, as in witness
		}
		attestor, err := attestation.GetAttestor(a)
		if err != nil {
			return fmt.Errorf("failed to create attestor: %w", err)
		}
		if why, bad := refusedAttestors[attestor.Name()]; bad {
			return fmt.Errorf("attestor %q is refused by this reference build: it %s", attestor.Name(), why)
		}
		attestors = append(attestors, attestor)
	}

	digests := []cryptoutil.DigestValue{}
	for _, h := range *hashes {
		hash, err := cryptoutil.HashFromString(h)
		if err != nil {
			return fmt.Errorf("failed to parse hash: %w", err)
		}
		digests = append(digests, cryptoutil.DigestValue{Hash: hash, GitOID: false})
	}

	results, err := witness.RunWithExports(*step,
		witness.RunWithSigners(signer),
		witness.RunWithAttestors(attestors),
		witness.RunWithAttestationOpts(
			attestation.WithContext(ctx),
			attestation.WithWorkingDir(*dir),
			attestation.WithHashes(digests),
			attestation.WithDirHashGlob(*dirGlob),
		),
		witness.RunWithTimestampers(timestampers(*tsURLs)...),
	)
	if err != nil {
		return err
	}

	for _, result := range results {
		signed, err := json.Marshal(&result.SignedEnvelope)
		if err != nil {
			return fmt.Errorf("failed to marshal envelope: %w", err)
		}
		path := *out
		if result.AttestorName != "" && path != "" {
			// Exported attestors (e.g. slsa, sbom) go next to the collection.
			path = fmt.Sprintf("%s-%s.json", strings.TrimSuffix(path, ".json"), strings.ReplaceAll(result.AttestorName, "/", "-"))
		}
		w, err := openOut(path)
		if err != nil {
			return fmt.Errorf("failed to open out file: %w", err)
		}
		if _, err := w.Write(signed); err != nil {
			w.Close()
			return fmt.Errorf("failed to write envelope to out file: %w", err)
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}

func signCmd(ctx context.Context, args []string) error {
	fs := newFlags("sign")
	key := fs.StringP("signer-file-key-path", "k", "", "Path to the file containing the private key")
	cert := fs.String("signer-file-cert-path", "", "Path to the file containing the certificate for the private key")
	inter := fs.StringSlice("signer-file-intermediate-paths", nil, "Paths to intermediate certificates")
	in := fs.StringP("infile", "f", "", "Witness policy file to sign")
	out := fs.StringP("outfile", "o", "", "File to write signed data to (default stdout)")
	dataType := fs.StringP("datatype", "t", "https://witness.testifysec.com/policy/v0.1", "The URI reference to the type of data being signed")
	tsURLs := fs.StringSlice("timestamp-servers", nil, "Timestamp Authority Servers to use when signing envelope (none by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("required flag \"infile\" not set")
	}
	signer, err := loadSigner(ctx, *key, *cert, *inter)
	if err != nil {
		return fmt.Errorf("failed to load signer: %w", err)
	}
	inFile, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("failed to open file to sign: %w", err)
	}
	defer inFile.Close()
	w, err := openOut(*out)
	if err != nil {
		return fmt.Errorf("failed to open out file: %w", err)
	}
	if err := witness.Sign(inFile, *dataType, w, dsse.SignWithSigners(signer), dsse.SignWithTimestampers(timestampers(*tsURLs)...)); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func readCert(path, what string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s certificate file: %w", what, err)
	}
	cert, err := cryptoutil.TryParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s certificate: %w", what, err)
	}
	return cert, nil
}

func verifyCmd(ctx context.Context, args []string) error {
	fs := newFlags("verify")
	keys := fs.StringArrayP("publickey", "k", nil, "Path to the policy signer's public key (repeatable here; one in witness)")
	attestations := fs.StringSliceP("attestations", "a", nil, "Attestation files to test against the policy")
	policyPath := fs.StringP("policy", "p", "", "Path to the policy to verify")
	artifact := fs.StringP("artifactfile", "f", "", "Path to the artifact subject to verify")
	subjects := fs.StringSliceP("subjects", "s", nil, "Additional subjects to lookup attestations (bare sha256 hex)")
	caRoots := fs.StringSlice("policy-ca-roots", nil, "Paths to CA root certificates to use for verifying a policy signed with x.509")
	caInter := fs.StringSlice("policy-ca-intermediates", nil, "Paths to CA intermediate certificates to use for verifying a policy signed with x.509")
	tsCerts := fs.StringSlice("policy-timestamp-servers", nil, "Paths to the CA certificates for Timestamp Authority Servers to use when verifying policy signed with x.509")
	cn := fs.String("policy-commonname", "*", "The common name to use when verifying a policy signed with x.509")
	dns := fs.StringSlice("policy-dns-names", []string{"*"}, "The DNS names to use when verifying a policy signed with x.509")
	emails := fs.StringSlice("policy-emails", []string{"*"}, "The emails to use when verifying a policy signed with x.509")
	orgs := fs.StringSlice("policy-organizations", []string{"*"}, "The organizations to use when verifying a policy signed with x.509")
	uris := fs.StringSlice("policy-uris", []string{"*"}, "The URIs to use when verifying a policy signed with x.509")
	libDefaults := fs.Bool("library-cert-defaults", false, "Not in witness: pass the --policy-* identity constraints to go-witness only when one is given on the command line, so go-witness's own defaults apply (v0.12.0: an x509 policy signer is refused without explicit constraints)")
	jsonOut := fs.Bool("json", false, "Not in witness: print the step results as JSON on stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *policyPath == "" {
		return errors.New("required flag \"policy\" not set")
	}
	if len(*keys) == 0 && len(*caRoots) == 0 {
		return errors.New("at least one of the flags in the group [publickey policy-ca-roots] is required")
	}
	if len(*attestations) == 0 {
		return errors.New("must specify attestation file paths (-a); Archivista is not offered by this build")
	}

	verifiers := []cryptoutil.Verifier{}
	for _, k := range *keys {
		f, err := os.Open(k)
		if err != nil {
			return fmt.Errorf("failed to open key file: %w", err)
		}
		v, err := cryptoutil.NewVerifierFromReader(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("failed to create verifier: %w", err)
		}
		verifiers = append(verifiers, v)
	}

	var roots, intermediates []*x509.Certificate
	for _, p := range *caRoots {
		c, err := readCert(p, "root CA")
		if err != nil {
			return err
		}
		roots = append(roots, c)
	}
	for _, p := range *caInter {
		c, err := readCert(p, "intermediate CA")
		if err != nil {
			return err
		}
		intermediates = append(intermediates, c)
	}
	tsVerifiers := []timestamp.TimestampVerifier{}
	for _, p := range *tsCerts {
		c, err := readCert(p, "Timestamp Server CA")
		if err != nil {
			return err
		}
		tsVerifiers = append(tsVerifiers, timestamp.NewVerifier(timestamp.VerifyWithCerts([]*x509.Certificate{c})))
	}

	pf, err := os.Open(*policyPath)
	if err != nil {
		return fmt.Errorf("failed to open policy file: %w", err)
	}
	policyEnvelope := dsse.Envelope{}
	err = json.NewDecoder(pf).Decode(&policyEnvelope)
	pf.Close()
	if err != nil {
		return fmt.Errorf("could not unmarshal policy envelope: %w", err)
	}

	seeds := []cryptoutil.DigestSet{}
	if *artifact != "" {
		ds, err := cryptoutil.CalculateDigestSetFromFile(*artifact, []cryptoutil.DigestValue{{Hash: crypto.SHA256, GitOID: false}})
		if err != nil {
			return fmt.Errorf("failed to calculate artifact digest: %w", err)
		}
		seeds = append(seeds, ds)
	}
	for _, s := range *subjects {
		// witness takes each value verbatim as a sha256 digest (no "sha256:" prefix).
		seeds = append(seeds, cryptoutil.DigestSet{cryptoutil.DigestValue{Hash: crypto.SHA256, GitOID: false}: s})
	}
	if len(seeds) == 0 {
		return errors.New("at least one subject is required, provide an artifact file or subject")
	}

	mem := source.NewMemorySource()
	for _, p := range *attestations {
		if err := mem.LoadFile(p); err != nil {
			return fmt.Errorf("failed to load attestation file: %w", err)
		}
	}

	opts := []witness.VerifyOption{
		witness.VerifyWithSubjectDigests(seeds),
		witness.VerifyWithCollectionSource(mem),
		witness.VerifyWithPolicyTimestampAuthorities(tsVerifiers),
		witness.VerifyWithPolicyCARoots(roots),
		witness.VerifyWithPolicyCAIntermediates(intermediates),
	}
	constraintsGiven := false
	for _, name := range []string{"policy-commonname", "policy-dns-names", "policy-emails", "policy-organizations", "policy-uris"} {
		constraintsGiven = constraintsGiven || fs.Changed(name)
	}
	if !*libDefaults || constraintsGiven {
		opts = append(opts, witness.VerifyWithPolicyCertConstraints(*cn, *dns, *emails, *orgs, *uris))
	}

	result, verr := witness.Verify(ctx, policyEnvelope, verifiers, opts...)
	if *jsonOut {
		printJSON(result, verr)
	}
	if verr != nil {
		printSteps(result, true)
		return fmt.Errorf("failed to verify policy: %w", verr)
	}
	log.Info("Verification succeeded")
	printSteps(result, false)
	return nil
}

func stepNames(result witness.VerifyResult) []string {
	names := make([]string, 0, len(result.StepResults))
	for name := range result.StepResults {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func printSteps(result witness.VerifyResult, failed bool) {
	for _, name := range stepNames(result) {
		sr := result.StepResults[name]
		for _, p := range sr.Passed {
			log.Infof("step %s: passed: %s", name, p.Reference)
		}
		for _, r := range sr.Rejected {
			log.Infof("step %s: rejected: %s: %v", name, r.Collection.Reference, r.Reason)
		}
		if failed && len(sr.Passed) == 0 && len(sr.Rejected) == 0 {
			log.Infof("step %s: no collections found", name)
		}
	}
}

type jsonStep struct {
	Step     string         `json:"step"`
	Passed   []string       `json:"passed"`
	Rejected []jsonRejected `json:"rejected"`
}

type jsonRejected struct {
	Reference string `json:"reference"`
	Reason    string `json:"reason"`
}

func printJSON(result witness.VerifyResult, verr error) {
	body := struct {
		Passed    bool       `json:"passed"`
		Error     string     `json:"error,omitempty"`
		GoWitness string     `json:"go_witness"`
		Result    string     `json:"verification_result"`
		Steps     []jsonStep `json:"steps"`
	}{Passed: verr == nil, GoWitness: goWitnessVersion(), Result: string(result.VerificationSummary.VerificationResult), Steps: []jsonStep{}}
	if verr != nil {
		body.Error = verr.Error()
	}
	for _, name := range stepNames(result) {
		sr := result.StepResults[name]
		js := jsonStep{Step: name, Passed: []string{}, Rejected: []jsonRejected{}}
		for _, p := range sr.Passed {
			js.Passed = append(js.Passed, p.Reference)
		}
		for _, r := range sr.Rejected {
			reason := ""
			if r.Reason != nil {
				reason = r.Reason.Error()
			}
			js.Rejected = append(js.Rejected, jsonRejected{Reference: r.Collection.Reference, Reason: reason})
		}
		body.Steps = append(body.Steps, js)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// keyidCmd prints the key id go-witness computes (sha256 of the canonical PEM
// of the PKIX public key) for public keys, private keys or certificates.
func keyidCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: keyid FILE...")
	}
	for _, p := range args {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var kid string
		if v, err := cryptoutil.NewVerifierFromReader(strings.NewReader(string(data))); err == nil {
			kid, err = v.KeyID()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		} else if s, serr := cryptoutil.NewSignerFromReader(strings.NewReader(string(data))); serr == nil {
			kid, err = s.KeyID()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		} else {
			return fmt.Errorf("%s: not a key or certificate go-witness can load: %v", p, err)
		}
		fmt.Printf("%s  %s\n", kid, p)
	}
	return nil
}
